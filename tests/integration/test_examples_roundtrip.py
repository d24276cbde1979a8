"""Every HL7 R4 example survives create, update, read and delete unchanged (except meta.versionId /
meta.lastUpdated), decimals included (1.50 stays 1.50). vread, history and If-Match have their own tests
(test_crud_http.py); this one is about the content of every resource type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.integration.fhir_http import FhirHttp, strip_server_meta
from tests.validation.test_corpus import KNOWN_INVALID_EXAMPLES

pytestmark = pytest.mark.http

EXAMPLES = sorted((SHARED_DATA / "r4-examples").glob("*.json"))


def exact(content: bytes | str) -> object:
    """Parse keeping number text, so that precision changes are caught."""
    return json.loads(content, parse_float=str, parse_int=str)


def test_the_example_corpus_is_there() -> None:
    assert len(EXAMPLES) >= 750


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_round_trip(fhir: FhirHttp, path: Path) -> None:
    raw = path.read_bytes()
    example = exact(raw)
    rtype = example["resourceType"]
    if "id" not in example:  # e.g. Parameters-example: give it one so that it can be PUT
        raw = json.dumps({**json.loads(raw), "id": path.stem.lower()}).encode()
        example = exact(raw)
    rid = example["id"]

    created = fhir.post(rtype, raw=raw)
    if path.name in KNOWN_INVALID_EXAMPLES:  # invalid per the R4 definitions: refused, with the path
        reason, expression = KNOWN_INVALID_EXAMPLES[path.name]
        assert created.status_code == 400, reason
        assert any(expression in issue.get("expression", []) for issue in created.json()["issue"])
        return
    assert created.status_code == 201, created.text[:2000]
    new_id = exact(created.content)["id"]
    assert strip_server_meta(exact(created.content)) == {**strip_server_meta(example), "id": new_id}

    put = fhir.put(f"{rtype}/{rid}", raw=raw)
    assert put.status_code in (200, 201), put.text[:2000]
    assert strip_server_meta(exact(put.content)) == strip_server_meta(example)

    read = fhir.get(f"{rtype}/{rid}")
    assert read.status_code == 200 and read.headers["ETag"] == f'W/"{put.json()["meta"]["versionId"]}"'
    assert strip_server_meta(exact(read.content)) == strip_server_meta(example)

    assert fhir.delete(f"{rtype}/{rid}").status_code == 204
    assert fhir.get(f"{rtype}/{rid}").status_code == 410
