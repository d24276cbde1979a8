"""Every case in ../shared/data/invalid is rejected with an issue at the HL7 validator's location."""

from __future__ import annotations

import json
import re

import pytest
from fhirlake.validation import parse_and_validate

from tests.validation.conftest import DATA


def _cases() -> list[dict]:
    index = DATA / "invalid" / "index.json"
    return json.loads(index.read_text())["cases"] if index.is_file() else []


def _normalize(expression: str) -> str:
    """HL7 writes choice elements as ``value.ofType(integer)``; fhirlake uses the JSON name."""
    return re.sub(r"\.(\w+)\.ofType\((\w)(\w*)\)", lambda m: f".{m[1]}{m[2].upper()}{m[3]}", expression)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_invalid_case_is_rejected(case: dict) -> None:
    raw = (DATA / "invalid" / "cases" / case["file"]).read_bytes()
    _, issues = parse_and_validate(raw, "strict")
    errors = [i for i in issues if i.is_error]
    assert errors, "accepted an invalid resource"
    expected_errors = [i for i in case["issues"] if i["severity"] in ("error", "fatal")]
    got = {e for i in errors for e in i.expression}
    for exp in expected_errors:
        for expression in exp.get("expression") or []:
            assert _normalize(expression) in got, (expression, [i.to_fhir() for i in errors])
    # nothing beyond what the reference validator reports
    assert len(errors) == case["expected"]["errors"], [i.to_fhir() for i in errors]


def test_cases_present() -> None:
    assert len(_cases()) >= 8
