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
