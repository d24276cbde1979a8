"""The shipped queries over the lake the real writer builds (``fhirlake.lake``, its ViewDefinitions and Glue
catalog) answer exactly what they answer over the hand-built contract lake holding the same versions."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fhirlake.analytics.duckdb_engine import DuckDbEngine
from fhirlake.analytics.queries import shipped_queries
from fhirlake.persistence import StoredVersion

from tests.analytics.conftest import Lake
from tests.analytics.lake_fixture import BUCKET

REAL_DATABASE = "real_lake"


@pytest.fixture(scope="module")
def real_engine(lake: Lake) -> DuckDbEngine:
    from fhirlake.lake.bootstrap import LakeSettings, build_lake

    lake.session.client("glue").create_database(DatabaseInput={"Name": REAL_DATABASE})
    written = build_lake(LakeSettings(lake_bucket=BUCKET, glue_database=REAL_DATABASE), lake.session)
    written.writer.write(
        StoredVersion(
            v.resource_type,
            v.id,
            v.version_id,
            v.last_updated.isoformat().replace("+00:00", "Z"),
            "DELETE" if v.resource is None else "PUT",
            v.resource,
        )
        for v in lake.data.versions
    )
    return DuckDbEngine.from_session(lake.session, REAL_DATABASE)


def normalized(rows: list[list[Any]]) -> list[tuple[Any, ...]]:
    def value(v: Any) -> Any:
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 9)
        return float(round(v, 9)) if hasattr(v, "as_integer_ratio") and not isinstance(v, int | bool) else v

    return [tuple(value(v) for v in row) for row in rows]


@pytest.mark.parametrize("name", sorted(shipped_queries()))
def test_shipped_query_answers_the_same_over_the_real_lake(name: str, duckdb_engine, real_engine) -> None:
    sql = shipped_queries()[name].sql
    expected = duckdb_engine.run(sql)
    got = real_engine.run(sql)
    assert got.columns == expected.columns
    assert normalized(got.rows) == normalized(expected.rows)
