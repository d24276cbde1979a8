"""Athena (Trino) SQL -> DuckDB: every shipped query, checked against answers computed in Python from the
same Synthea resources; and each transpilation gap that would change a FHIR query's answer."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from fhirlake.analytics import dialect
from fhirlake.analytics.engine import QueryError
from fhirlake.analytics.queries import shipped_queries

from tests.analytics.conftest import Lake

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def codings(resource: dict[str, Any], element: str = "code") -> list[dict[str, Any]]:
    return (resource.get(element) or {}).get("coding") or []


def first_code(resource: dict[str, Any], element: str = "code") -> str | None:
    return (codings(resource, element) or [{}])[0].get("code")


def patient_of(resource: dict[str, Any]) -> str:
    return resource["subject"]["reference"].split("/", 1)[1]


# -- every shipped query ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(shipped_queries()))
def test_every_shipped_query_parses_as_trino_transpiles_and_runs(name: str, duckdb_engine) -> None:
    query = shipped_queries()[name]
    assert query.title and query.question
    assert query.params_line() in query.sql, "the params CTE must equal the documented defaults"
    tree = dialect.parse_trino(query.sql)
    assert dialect.referenced_tables(tree, "fhirlake"), "reads the lake"
    duck_sql = dialect.to_duckdb(tree, "fhirlake")
    assert "from_iso8601" not in duck_sql.lower().replace("trino_from_iso8601", "")
    result = duckdb_engine.run(query.sql)
    assert result.rows, f"{name} answers nothing on the fixture lake"
    assert len(result.columns) == len(set(result.columns))


def test_cohort_counts_by_condition(lake: Lake, duckdb_engine) -> None:
    patients: dict[tuple[str, str], set[str]] = defaultdict(set)
    active: dict[tuple[str, str], set[str]] = defaultdict(set)
    for condition in lake.data.current("Condition"):
        for coding in codings(condition):
            key = (coding["system"], coding["code"])
            patients[key].add(patient_of(condition))
            if first_code(condition, "clinicalStatus") == "active":
                active[key].add(patient_of(condition))
    expected = {(s, c, len(p), len(active[(s, c)])) for (s, c), p in patients.items()}

    result = duckdb_engine.run(shipped_queries()["cohort_counts_by_condition"].sql)

    assert {(r[0], r[1], r[3], r[4]) for r in result.rows} == expected
    counts = [r[3] for r in result.rows]
    assert counts == sorted(counts, reverse=True)
    # One of the three prediabetes Conditions was deleted in the lake: the current view drops it.
    assert (SNOMED, "15777000", 2, 2) in expected


def test_lab_value_trajectories(lake: Lake, duckdb_engine) -> None:
    series: dict[tuple[str, str], list[tuple[datetime, str, float]]] = defaultdict(list)
    for observation in lake.data.current("Observation"):
        coding = codings(observation)[0]
        if (
            coding["system"] == LOINC
            and coding["code"] in ("4548-4", "39156-5")
            and "valueQuantity" in observation
        ):
            point = (
                instant(observation["effectiveDateTime"]),
                observation["id"],
                observation["valueQuantity"]["value"],
            )
            series[(patient_of(observation), coding["code"])].append(point)
    expected = []
    for (patient, code), points in sorted(series.items()):
        previous = None
        for number, (when, _id, value) in enumerate(sorted(points), start=1):
            expected.append(
                (patient, code, when, value, number, None if previous is None else value - previous)
            )
            previous = value

    rows = duckdb_engine.run(shipped_queries()["lab_value_trajectories"].sql).records()

    got = [
        (r["patient_id"], r["code"], r["effective"], r["value"], r["measurement"], r["change_since_previous"])
        for r in rows
    ]
    assert [g[:5] for g in got] == [e[:5] for e in expected]
    assert [g[5] for g in got] == pytest.approx([e[5] for e in expected])
    assert 9.9 in [r["value"] for r in rows], "the updated HbA1c version is the one queried"


def test_latest_lab_value_reads_nested_columns_and_resource_json(lake: Lake, duckdb_engine) -> None:
    latest: dict[str, dict[str, Any]] = {}
    for observation in lake.data.current("Observation"):
        if any(c["system"] == LOINC and c["code"] == "4548-4" for c in codings(observation)):
            patient = patient_of(observation)
            key = (instant(observation["effectiveDateTime"]), observation["id"])
            best = latest.get(patient)
            if best is None or key > (instant(best["effectiveDateTime"]), best["id"]):
                latest[patient] = observation
    expected = [
        (p, o["valueQuantity"]["value"], o["valueQuantity"]["unit"], o["status"])
        for p, o in sorted(latest.items())
    ]

    rows = duckdb_engine.run(shipped_queries()["latest_lab_value"].sql).records()

    assert [(r["patient_id"], r["value"], r["unit"], r["status"]) for r in rows] == expected


def test_observation_mean_by_month(lake: Lake, duckdb_engine) -> None:
    values: dict[date, list[float]] = defaultdict(list)
    for observation in lake.data.current("Observation"):
        if codings(observation)[0]["code"] == "39156-5" and "valueQuantity" in observation:
            when = instant(observation["effectiveDateTime"])
            values[date(when.year, when.month, 1)].append(observation["valueQuantity"]["value"])

    rows = duckdb_engine.run(shipped_queries()["observation_mean_by_month"].sql).records()

    assert [r["month"] for r in rows] == sorted(values)
    assert [r["mean_value"] for r in rows] == pytest.approx(
        [sum(v) / len(v) for _, v in sorted(values.items())]
    )
    assert [r["observations"] for r in rows] == [len(v) for _, v in sorted(values.items())]


def _prevalence_cases(lake: Lake, code: str) -> list[tuple[str, date, date | None]]:
    return [
        (
            patient_of(c),
            instant(c["onsetDateTime"]).date(),
            instant(c["abatementDateTime"]).date() if "abatementDateTime" in c else None,
        )
        for c in lake.data.current("Condition")
        if first_code(c) == code and "onsetDateTime" in c
    ]


def test_prevalence_by_month(lake: Lake, duckdb_engine) -> None:
    query = shipped_queries()["prevalence_by_month"]
    sql = query.with_parameters({"first_month": "2015-01-01", "last_month": "2020-12-01"})
    cases = _prevalence_cases(lake, "15777000")
    born = {p["id"]: date.fromisoformat(p["birthDate"]) for p in lake.data.current("Patient")}

    rows = duckdb_engine.run(sql).records()

    assert len(rows) == 72
    for row in rows:
        month = row["month"]
        end = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        population = {p for p, b in born.items() if b < end}
        ill = {
            p
            for p, onset, abated in cases
            if p in population and onset < end and (abated is None or abated >= month)
        }
        assert (row["population"], row["cases"]) == (len(population), len(ill)), month
        assert row["prevalence"] == pytest.approx(len(ill) / len(population))
    assert max(r["cases"] for r in rows) == 2, "the deleted prediabetes Condition is not counted"


def test_prevalence_by_age_band_and_gender(lake: Lake, duckdb_engine) -> None:
    as_of = date(2019, 1, 1)
    cases = {
        p
        for p, onset, abated in _prevalence_cases(lake, "15777000")
        if onset <= as_of and (abated is None or abated > as_of)
    }
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for patient in lake.data.current("Patient"):
        born = date.fromisoformat(patient["birthDate"])
        age = as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
        band = "0-17" if age < 18 else "18-39" if age < 40 else "40-64" if age < 65 else "65+"
        counts = expected[(band, patient["gender"])]
        counts[0] += 1
        counts[1] += patient["id"] in cases

    rows = duckdb_engine.run(shipped_queries()["prevalence_by_age_band_gender"].sql).records()

    assert {(r["age_band"], r["gender"]): [r["population"], r["cases"]] for r in rows} == dict(expected)


def test_time_to_first_medication(lake: Lake, duckdb_engine) -> None:
    diagnosed: dict[str, datetime] = {}
    for condition in lake.data.current("Condition"):
        if first_code(condition) == "44054006":
            onset = instant(condition["onsetDateTime"])
            diagnosed[patient_of(condition)] = min(onset, diagnosed.get(patient_of(condition), onset))
    expected = []
    for patient, onset in sorted(diagnosed.items()):
        later = [
            instant(m["authoredOn"])
            for m in lake.data.current("MedicationRequest")
            if patient_of(m) == patient and instant(m["authoredOn"]) >= onset
        ]
        first = min(later) if later else None
        # Trino's date_diff counts whole days elapsed, not calendar boundaries crossed.
        expected.append((patient, onset, first, (first - onset).days if first else None))

    rows = duckdb_engine.run(shipped_queries()["time_to_first_medication"].sql).rows

    assert [tuple(r) for r in rows] == expected
    assert len(expected) >= 2


# -- the gaps sqlglot alone leaves ------------------------------------------------------------------
@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    for statement in dialect.DUCKDB_SETUP:
        connection.execute(statement)
    connection.register(
        "obs",
        pa.Table.from_pylist(
            [
                {
                    "id": "a",
                    "category": [{"coding": [{"system": "s", "code": "vital"}], "text": "Vital"}],
                    "given": ["Ann", "Bo"],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                    "onset": "2010-05",
                    "resource_json": '{"status": "final", "code": {"coding": [{"code": "4548-4"}]}}',
                },
                {
                    "id": "b",
                    "category": [{"coding": None, "text": "Lab"}, {"coding": [], "text": "Other"}],
                    "given": None,
                    "code": {"coding": []},
                    "onset": "2011",
                    "resource_json": '{"status": "amended"}',
                },
            ]
        ),
    )
    return connection


def run(duck: duckdb.DuckDBPyConnection, trino_sql: str) -> list[tuple]:
    return duck.execute(dialect.transpile(trino_sql, "fhirlake")).fetchall()


def test_date_diff_counts_whole_units_like_trino(duck) -> None:
    # Trino: 0 whole years between 2000-06-01 and 2001-05-31, 0 whole days between 23:00 and 01:00 next day.
    assert run(
        duck,
        "SELECT date_diff('year', DATE '2000-06-01', DATE '2001-05-31'), "
        "date_diff('day', from_iso8601_timestamp('2020-01-01T23:00:00Z'), "
        "from_iso8601_timestamp('2020-01-02T01:00:00Z'))",
    ) == [(0, 0)]


def test_partial_fhir_dates_parse_like_trino_iso8601(duck) -> None:
    rows = run(
        duck, "SELECT id, from_iso8601_date(onset), from_iso8601_timestamp(onset) FROM obs ORDER BY id"
    )
    assert [(r[0], r[1], r[2].isoformat()) for r in rows] == [
        ("a", date(2010, 5, 1), "2010-05-01T00:00:00+00:00"),
        ("b", date(2011, 1, 1), "2011-01-01T00:00:00+00:00"),
    ]


def test_unnest_of_rows_expands_fields_positionally_like_trino(duck) -> None:
    rows = run(
        duck,
        "SELECT o.id, t.label FROM obs o CROSS JOIN UNNEST(o.category) AS t (codes, label) ORDER BY 1, 2",
    )
    assert rows == [("a", "Vital"), ("b", "Lab"), ("b", "Other")]


def test_unnest_with_ordinality_and_left_join(duck) -> None:
    assert run(
        duck,
        "SELECT o.id, n, g FROM obs o CROSS JOIN UNNEST(o.given) WITH ORDINALITY AS t (g, n) ORDER BY 1, 2",
    ) == [("a", 1, "Ann"), ("a", 2, "Bo")]
    assert run(
        duck,
        "SELECT o.id, t.label, t.n FROM obs o CROSS JOIN UNNEST(o.category) WITH ORDINALITY "
        "AS t (codes, label, n) WHERE o.id = 'b' ORDER BY 3",
    ) == [("b", "Lab", 1), ("b", "Other", 2)]
    assert run(
        duck, "SELECT o.id, g FROM obs o LEFT JOIN UNNEST(o.given) AS t (g) ON TRUE ORDER BY 1, 2"
    ) == [("a", "Ann"), ("a", "Bo"), ("b", None)]


def test_unnest_alias_without_columns_and_one_based_subscripts(duck) -> None:
    assert run(duck, "SELECT o.id, c.code FROM obs o CROSS JOIN UNNEST(o.code.coding) AS c") == [
        ("a", "4548-4")
    ]
    assert run(duck, "SELECT id, category[1].text, code.coding[1].code FROM obs ORDER BY id") == [
        ("a", "Vital", "4548-4"),
        ("b", "Lab", None),
    ]


def test_array_predicates_json_and_casts(duck) -> None:
    rows = run(
        duck,
        "SELECT id, any_match(code.coding, c -> c.code = '4548-4'), "
        "none_match(code.coding, c -> c.code = '4548-4'), "
        "json_extract_scalar(resource_json, '$.status'), CAST(cardinality(given) AS varchar) "
        "FROM fhirlake.obs ORDER BY id",
    )
    assert rows == [("a", True, False, "final", "2"), ("b", False, True, "amended", None)]


def test_integer_division_and_joda_formats(duck) -> None:
    assert run(
        duck,
        "SELECT 7 / 2, 7.0 / 2, format_datetime(from_iso8601_timestamp('2020-03-04T05:06:07Z'), "
        "'yyyy-MM-dd HH:mm')",
    ) == [(3, pytest.approx(3.5), "2020-03-04 05:06")]


def test_date_trunc_and_date_add_in_utc(duck) -> None:
    rows = run(
        duck,
        "SELECT CAST(date_trunc('month', from_iso8601_timestamp('2020-01-31T23:30:00-05:00')) AS date), "
        "date_add('day', 1, DATE '2020-02-28')",
    )
    assert rows[0][0] == date(2020, 2, 1)  # 2020-02-01T04:30Z: the month of the UTC instant, as in Athena
    assert rows[0][1] in (date(2020, 2, 29), datetime(2020, 2, 29))


def test_tables_qualified_with_the_database_or_catalog(duck) -> None:
    tree = dialect.parse_trino(
        "SELECT * FROM awsdatacatalog.fhirlake.obs JOIN fhirlake.patient p ON TRUE JOIN other.x ON TRUE"
    )
    assert dialect.referenced_tables(tree, "fhirlake") == {"obs", "patient"}
    assert "FROM obs" in dialect.to_duckdb(tree, "fhirlake")


def test_cte_names_are_not_catalog_tables() -> None:
    tree = dialect.parse_trino("WITH recent AS (SELECT * FROM observation) SELECT * FROM recent")
    assert dialect.referenced_tables(tree, "fhirlake") == {"observation"}


def test_syntax_error_is_a_clear_message() -> None:
    with pytest.raises(QueryError) as error:
        dialect.transpile("SELECT FROM WHERE (", "fhirlake")
    assert error.value.status == 400
    assert error.value.message.startswith("SQL syntax error")
    assert "Traceback" not in error.value.message


def test_presto_view_round_trip_and_malformed_views() -> None:
    from tests.analytics.lake_fixture import presto_view_text

    view = dialect.decode_presto_view(presto_view_text("SELECT 1 AS x", [("x", "integer")]))
    assert view.sql == "SELECT 1 AS x"
    assert view.columns == [{"name": "x", "type": "integer"}]
    for bad in ("SELECT 1", "/* Presto View: bm90IGpzb24= */"):
        with pytest.raises(QueryError):
            dialect.decode_presto_view(bad)
