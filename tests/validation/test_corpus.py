"""Every externally authored valid resource validates with zero errors at every level."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fhirlake.validation import ValidationLevel, get_validator

from tests.validation.conftest import example_files, synthea_bundles, synthea_resources

# HL7 R4 examples that are themselves invalid per the R4 definitions, with the reason and the issue the
# validator must report (expression).
KNOWN_INVALID_EXAMPLES: dict[str, tuple[str, str]] = {
    "Questionnaire-qs1.json": (
        "Questionnaire.item.linkId is 1..1 but the nested display items have no linkId",
        "Questionnaire.item[0].item[0]",
    ),
}


def _errors(resource: object, level: str = "strict") -> list:
    return [i for i in get_validator(level).validate(resource) if i.is_error]


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_hl7_example_is_valid(path: Path) -> None:
    resource = orjson.loads(path.read_bytes())
    errors = _errors(resource)
    if path.name in KNOWN_INVALID_EXAMPLES:
        _, expression = KNOWN_INVALID_EXAMPLES[path.name]
        assert any(expression in i.expression for i in errors), errors
        return
    assert errors == [], [i.to_fhir() for i in errors]


def test_example_count(validation_data: Path) -> None:
    assert len(example_files()) == 751


@pytest.mark.parametrize("level", [lv.value for lv in ValidationLevel])
def test_synthea_resources_are_valid(level: str) -> None:
    resources = synthea_resources()
    assert len(resources) > 80_000
    validator = get_validator(level)
    bad = {}
    for name, resource in resources:
        errors = [i for i in validator.validate(resource) if i.is_error]
        if errors:
            bad[name] = [i.to_fhir() for i in errors[:3]]
    assert bad == {}, list(bad.items())[:5]


def test_synthea_bundles_are_valid() -> None:
    bundles = synthea_bundles()
    validator = get_validator("strict")
    bad = {
        name: [i.to_fhir() for i in validator.validate(b)[:3]] for name, b in bundles if validator.validate(b)
    }
    assert bad == {}, list(bad.items())[:5]
