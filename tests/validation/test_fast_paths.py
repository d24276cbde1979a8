"""The validator's shortcuts give the same answers as the rules they shortcut.

Lazy locations (expressions built only for an issue), the code/uri checks that skip the regex for plain
printable strings, and the calendar check that skips dates with a day up to 28.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from fhirlake.fhir.json import JsonDecimal
from fhirlake.validation import get_validator
from fhirlake.validation.engine import expression
from fhirlake.validation.primitives import CHECKERS, CODE_RE, DATE_RE, URI_RE
from hypothesis import given, settings
from hypothesis import strategies as st

# ASCII whitespace (re.ASCII \s), other Unicode spaces and controls, and plain characters
TEXT = st.text(alphabet=st.sampled_from(list(" \t\n\r\f\v\x1c\x85\xa0\u2028\u3000ab1:/#.-é")), max_size=8)
SETTINGS = settings(max_examples=400, deadline=None)


def _code_by_regex(v: str) -> bool:
    return bool(v) and CODE_RE.fullmatch(v) is not None


@SETTINGS
@given(TEXT)
def test_code_fast_path_matches_regex(v: str) -> None:
    assert (CHECKERS["code"](v) is None) is _code_by_regex(v)


@SETTINGS
@given(TEXT)
def test_uri_fast_path_matches_regex(v: str) -> None:
    for t in ("uri", "url", "canonical"):
        assert (CHECKERS[t](v) is None) is (bool(v) and URI_RE.fullmatch(v) is not None)


@pytest.mark.parametrize("year", [1900, 2000, 2023, 2024])
def test_calendar_check_every_day(year: int) -> None:
    for month in range(1, 13):
        for day in range(1, 32):
            v = f"{year}-{month:02d}-{day:02d}"
            assert DATE_RE.fullmatch(v)
            try:
                datetime.date(year, month, day)
                real = True
            except ValueError:
                real = False
            assert (CHECKERS["date"](v) is None) is real, v
            assert (CHECKERS["dateTime"](v + "T10:00:00Z") is None) is real, v


def test_expression_of_locations() -> None:
    assert expression("Patient") == "Patient"
    assert expression(("Patient", "name")) == "Patient.name"
    loc = (((("Bundle", "entry", 3), "resource"), "contained", 0), "code")
    assert (
        expression(((loc, "coding", 1), "system"))
        == "Bundle.entry[3].resource.contained[0].code.coding[1].system"
    )


def _exprs(resource: Any, level: str = "strict") -> list[tuple[str, tuple[str, ...]]]:
    return [(i.code, i.expression) for i in get_validator(level).validate(resource)]


CP: dict[str, Any] = {
    "resourceType": "CarePlan",
    "status": "active",
    "intent": "plan",
    "subject": {"reference": "Patient/p1"},
}


@pytest.mark.parametrize("level", ["structure-only", "strict"])
def test_non_string_in_uri_array_is_a_value_issue_not_a_crash(level: str) -> None:
    bad = {**CP, "instantiatesUri": [5, {"a": 1}, "#x"]}
    expected = [("value", ("CarePlan.instantiatesUri[0]",)), ("value", ("CarePlan.instantiatesUri[1]",))]
    assert _exprs(bad, level) == expected


def test_locations_in_nested_resources_and_primitive_extensions() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "name": [{"family": "A"}, {"given": ["x", "y"], "_given": [None, {"extension": [{"url": "u"}]}]}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient"}}, {"resource": patient}],
    }
    # the extension of a primitive is located on the primitive's FHIRPath name (given, not _given)
    assert _exprs(bundle) == [("invariant", ("Bundle.entry[1].resource.name[1].given[1].extension[0]",))]
    assert _exprs(bundle, "structure-only") == []


def test_local_references_in_entries_and_contained() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "#missing"},
        "contained": [
            {"resourceType": "Patient", "id": "p", "link": [{"other": {"reference": "#"}, "type": "seealso"}]}
        ],
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": obs}]}
    assert _exprs(bundle) == [("invariant", ("Bundle.entry[0].resource.subject.reference",))]
    assert _exprs(bundle, "structure-only") == []


def test_numbers_of_every_parsed_type() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    for value in (72, 72.5, JsonDecimal("72.50")):
        assert _exprs({**obs, "valueQuantity": {"value": value}}) == []
    assert _exprs({**obs, "valueQuantity": {"value": "72"}}) == [
        ("value", ("Observation.valueQuantity.value",))
    ]
