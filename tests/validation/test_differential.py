"""Differential test against fhir.resources' R4B models (pydantic): what R4B rejects, fhirlake rejects.

Only for resource types R4B has with the same definition as R4; fhir.resources ships no R4 4.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhirlake.validation import get_validator

from tests.validation.conftest import DATA, example_files, synthea_resources

# R4 types whose R4B definition differs (R4B rejects valid R4 content for reasons R4 does not have).
DEFINITION_DIFFERS = {
    "Evidence",  # completely redesigned in R4B
    "EvidenceVariable",
    "Citation",
}


def _r4b_class(rtype: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        return None


def _r4b_rejects(resource: dict[str, Any]) -> bool:
    cls = _r4b_class(resource["resourceType"])
    if cls is None or resource["resourceType"] in DEFINITION_DIFFERS:
        return False
    try:
        cls.model_validate(resource)
    except Exception:
        return True
    return False


def _fhirlake_rejects(resource: dict[str, Any]) -> bool:
    return any(i.is_error for i in get_validator("strict").validate(resource))


def test_examples_rejected_by_r4b_are_rejected() -> None:
    missed = []
    rejected = 0
    for path in example_files():
        resource = orjson.loads(path.read_bytes())
        if _r4b_rejects(resource):
            rejected += 1
            if not _fhirlake_rejects(resource):
                missed.append(path.name)
    assert missed == []
    assert rejected >= 1  # Questionnaire-qs1


def test_invalid_cases_rejected_by_r4b_are_rejected() -> None:
    index = json.loads((DATA / "invalid" / "index.json").read_text())
    for case in index["cases"]:
        try:
            resource = orjson.loads((DATA / "invalid" / "cases" / case["file"]).read_bytes())
        except orjson.JSONDecodeError:
            continue
        if _r4b_rejects(resource):
            assert _fhirlake_rejects(resource), case["name"]


@pytest.mark.parametrize("mutation", ["bogus-element", "string-for-object", "bad-date", "empty-string"])
def test_mutations_rejected_by_r4b_are_rejected(mutation: str) -> None:
    """Same mutation applied to one resource of each Synthea type: wherever R4B rejects, so do we."""
    seen: set[str] = set()
    checked = 0
    for _, original in synthea_resources():
        if original["resourceType"] in seen:
            continue
        seen.add(original["resourceType"])
        resource = dict(original)
        if mutation == "bogus-element":
            resource["bogusElement"] = 1
        elif mutation == "string-for-object":
            resource["meta"] = "x"
        elif mutation == "bad-date":
            key = next(
                (k for k in ("birthDate", "recordedDate", "authoredOn", "date", "issued") if k in resource),
                None,
            )
            if key is None:
                continue
            resource[key] = "2020-13-45"
        else:
            resource["id"] = ""
        if _r4b_rejects(resource):
            checked += 1
            assert _fhirlake_rejects(resource), (mutation, resource["resourceType"])
    assert checked > 0


def test_r4b_accepts_the_examples_we_accept_mostly(validation_data: Path) -> None:
    """Sanity: R4B and fhirlake agree on most HL7 examples (both accept)."""
    agree = sum(
        1
        for p in example_files()[:200]
        if not _r4b_rejects(r := orjson.loads(p.read_bytes())) and not _fhirlake_rejects(r)
    )
    assert agree > 150
