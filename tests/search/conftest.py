"""Corpora for the search tests: the HL7 R4 examples and a sample of Synthea (../shared/data)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _resources(value: dict[str, Any]):
    yield value
    if value.get("resourceType") == "Bundle":
        for entry in value.get("entry") or ():
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield from _resources(entry["resource"])


@pytest.fixture(scope="session")
def hl7_examples() -> list[dict[str, Any]]:
    from fhirlake.fhir.json import loads

    folder = SHARED / "r4-examples"
    if not folder.is_dir():
        pytest.skip(f"no HL7 examples at {folder}")
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        out.extend(_resources(loads(path.read_bytes())))
    return out


@pytest.fixture(scope="session")
def synthea_sample() -> list[dict[str, Any]]:
    """All bulk NDJSON resources plus the entries of 10 Synthea patient bundles."""
    from fhirlake.fhir.json import loads

    folder = SHARED / "synthea"
    if not folder.is_dir():
        pytest.skip(f"no Synthea data at {folder}")
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("bulk-ndjson-10-patients/*.ndjson.gz")):
        with gzip.open(path) as lines:
            out.extend(loads(line) for line in lines if line.strip())
    for path in sorted(folder.glob("smart-generated-sample-data-r4/*.json.gz"))[:10]:
        with gzip.open(path) as raw:
            out.extend(e["resource"] for e in loads(raw.read())["entry"])
    return out


@pytest.fixture(scope="session")
def search_parameter_bundle() -> dict[str, Any]:
    path = SHARED / "spec" / "r4" / "search-parameters.json"
    if not path.is_file():
        pytest.skip(f"no search-parameters.json at {path}")
    return json.loads(path.read_text())


# -- the index on moto (tests/search/test_index_*.py, test_reindex.py) --------------------------------------
@pytest.fixture
def use_index_config():
    """Switch this process's search index configuration (JSON text); the default again after the test."""
    from fhirlake.fhir import capability
    from fhirlake.search.config import load_config, use_config

    def switch(doc: str | None) -> None:
        use_config(load_config(doc) if doc else None)
        capability._capability_statement.cache_clear()  # /metadata is cached per base and day

    yield switch
    switch(None)


@pytest.fixture
def index_settings(aws):
    from fhirlake.config import Settings

    return Settings.from_env(aws.environment())


@pytest.fixture
def index_service(index_settings):
    """The core (store + search) on moto in-process, with readable ids: p0, p1, ..."""
    import itertools

    from fhirlake.bootstrap import build_store
    from fhirlake.persistence.dynamodb_search import DynamoSearch
    from fhirlake.service.crud import ResourceService
    from fhirlake.validation import get_validator

    store = build_store(index_settings)
    ids = (f"r{n}" for n in itertools.count())
    return ResourceService(
        store, get_validator("minimal"), searcher=DynamoSearch(store), new_id=lambda: next(ids)
    )


@pytest.fixture
def create_all(index_service):
    """Store resources 50 to a transaction (moto in-process copies the table once per transaction, so
    one create per resource is quadratic); returns their ids in order."""
    import itertools

    from fhirlake.local import moto_server

    # moto deep-copies the whole table for every transaction; the local runtime's patch skips the copy
    # when the transaction's conditions hold (what DynamoDB does is unchanged).
    moto_server.patch_transactions()
    counter = itertools.count()

    def create(resources: list[dict[str, Any]]) -> list[str]:
        plans = [
            index_service.plan_write(r["resourceType"], r.get("id") or f"b{next(counter)}", r, None, "PUT")
            for r in resources
        ]
        for start in range(0, len(plans), 50):
            index_service.commit(plans[start : start + 50])
        return [version.id for version, _ in plans]

    return create
