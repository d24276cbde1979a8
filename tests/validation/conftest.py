"""Fixtures for the validator tests: the shared corpus (../shared/data) loaded once per worker."""

from __future__ import annotations

import gzip
import os
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("FHIRLAKE_SHARED_DATA", REPO / ".." / "shared" / "data")).resolve()


def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"shared test data not found at {DATA} (set FHIRLAKE_SHARED_DATA)")
    return DATA


@pytest.fixture(scope="session")
def validation_data() -> Path:
    return data_dir()


def example_files() -> list[Path]:
    return sorted((DATA / "r4-examples").glob("*.json")) if DATA.is_dir() else []


@cache
def synthea_resources() -> list[tuple[str, dict[str, Any]]]:
    """Every Synthea resource: bundle entries and NDJSON lines, with a name for messages."""
    out: list[tuple[str, dict[str, Any]]] = []
    for f in sorted((data_dir() / "synthea").glob("*/*.json.gz")):
        bundle = orjson.loads(gzip.decompress(f.read_bytes()))
        for i, entry in enumerate(bundle.get("entry", [])):
            out.append((f"{f.name}#entry[{i}]", entry["resource"]))
    for f in sorted((data_dir() / "synthea").glob("*/*.ndjson.gz")):
        for i, line in enumerate(gzip.decompress(f.read_bytes()).splitlines()):
            if line.strip():
                out.append((f"{f.name}:{i + 1}", orjson.loads(line)))
    return out


@cache
def synthea_bundles() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f.name, orjson.loads(gzip.decompress(f.read_bytes())))
        for f in sorted((data_dir() / "synthea").glob("*/*.json.gz"))
    ]
