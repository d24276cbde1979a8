"""The validator's shortcuts give the same answers as the rules they shortcut.

Lazy locations (expressions built only for an issue), the code/uri checks that skip the regex for plain
printable strings, the calendar check that skips dates with a day up to 28, the memoized dateTime and
reference checks, base64 without the regex, per-1's time-zone-aware comparison of epoch offsets, and the
walk skipping the strict rules of uri-like values that are not local references.
"""

from __future__ import annotations

import datetime
import itertools
from typing import Any

import pytest
from fhirlake.fhir.json import JsonDecimal
from fhirlake.validation import get_validator
from fhirlake.validation.engine import expression
from fhirlake.validation.invariants import compare_datetimes
from fhirlake.validation.primitives import (
    BASE64_RE,
    CHECKERS,
    CODE_RE,
    DATE_RE,
    MEMO_MAX_LEN,
    URI_RE,
    is_base64,
)
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


def test_base64_without_regex_matches_regex_on_every_short_string() -> None:
    # every string up to 6 characters over the alphabet's classes (letter, +, /, padding, ASCII and
    # non-ASCII outsiders), and up to 10 over the characters that make the padding cases
    cases = itertools.chain(
        ("".join(t) for n in range(7) for t in itertools.product("A/+=-.é", repeat=n)),
        ("".join(t) for n in range(11) for t in itertools.product("AR=", repeat=n)),
    )
    for s in cases:
        assert is_base64(s) is (len(s) % 4 == 0 and BASE64_RE.fullmatch(s) is not None), s


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("dateTime", "2019-02-16T05:06:14-04:00", "2023-02-31T10:00:00Z"),
        (
            "dateTime",
            "2019-02-16T05:06:14." + "1" * MEMO_MAX_LEN + "Z",
            "2019-02-16T05:06:14." + "1" * MEMO_MAX_LEN,
        ),
        ("reference", "Patient/1", "Foo/1"),
        ("reference", "urn:uuid:" + "a" * MEMO_MAX_LEN, "Patient/" + "a" * MEMO_MAX_LEN),
    ],
)
def test_memoized_checks_give_the_same_answer_every_time(kind: str, good: str, bad: str) -> None:
    check = CHECKERS[kind]
    for _ in range(3):
        assert check(good) is None
        assert check(bad) is not None
        assert check(5) == "Must be a JSON string"


def _aware(draw_minutes: int, moment: datetime.datetime) -> str:
    tz = datetime.timezone(datetime.timedelta(minutes=draw_minutes))
    return moment.replace(tzinfo=tz).isoformat(timespec="microseconds" if moment.microsecond else "seconds")


MOMENTS = st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30))
OFFSETS = st.sampled_from([0, -240, -300, 330, 840, -840])


@SETTINGS
@given(MOMENTS, OFFSETS, MOMENTS, OFFSETS)
def test_compare_datetimes_orders_instants_across_time_zones(
    a: datetime.datetime, za: int, b: datetime.datetime, zb: int
) -> None:
    x, y = _aware(za, a), _aware(zb, b)
    dx, dy = datetime.datetime.fromisoformat(x), datetime.datetime.fromisoformat(y)
    assert compare_datetimes(x, y) == (dx > dy) - (dx < dy)
    # with a time but without a time zone against one with a zone: undecided
    assert compare_datetimes(x[:19], y) is None


def test_period_end_before_start_in_another_time_zone_fails_per_1() -> None:
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}}
    # 08:00Z is before 05:06-04:00 (09:06Z), although the string sorts after it
    bad = {**enc, "period": {"start": "2019-02-16T05:06:14-04:00", "end": "2019-02-16T08:00:00Z"}}
    good = {**enc, "period": {"start": "2019-02-16T05:06:14-04:00", "end": "2019-02-16T09:10:00Z"}}
    for _ in range(2):  # the second time from the memoized keys
        assert _exprs(bad) == [("invariant", ("Encounter.period",))]
        assert _exprs(good) == []


def test_uri_values_count_as_local_references_only_when_they_start_with_hash() -> None:
    plan = {**CP, "contained": [{"resourceType": "Patient", "id": "p"}]}
    unreferenced = [("invariant", ("CarePlan.contained[0]",))]  # dom-3
    assert _exprs({**plan, "instantiatesUri": ["http://example.org/p"]}) == unreferenced
    assert _exprs({**plan, "instantiatesUri": ["#p"]}) == []  # an array item
    coding = {"system": "http://example.org/p", "code": "x"}
    assert _exprs({**plan, "category": [{"coding": [coding]}]}) == unreferenced
    assert _exprs({**plan, "category": [{"coding": [{**coding, "system": "#p"}]}]}) == []  # a single value
