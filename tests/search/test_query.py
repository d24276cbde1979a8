"""Parsing and matching edge cases of ``fhirlake.search.query`` and the index keys a search drives on."""

from __future__ import annotations

import pytest
from fhirlake.fhir.outcome import FhirError
from fhirlake.persistence import search_index
from fhirlake.search.extract import parameter_values
from fhirlake.search.parameters import parameter
from fhirlake.search.query import matches, parse_search

BASE = "http://fhir.example/base"


def criterion(rtype: str, name: str, value: str):
    return parse_search(rtype, [(name, value)], BASE, strict=True).criteria[0]


def hit(resource: dict, name: str, value: str) -> bool:
    c = criterion(resource["resourceType"], name, value)
    return matches(c, parameter_values(c.param, resource))


def driven_by_an_own_entry(resource: dict, name: str, value: str) -> bool:
    """Whether one of the resource's own index entries falls inside the criterion's driver ranges."""
    c = criterion(resource["resourceType"], name, value)
    prefixes = search_index.driver_prefixes(c)
    assert prefixes is not None
    entries = search_index.entries(
        "t", resource["resourceType"], resource["id"], parameter_values(c.param, resource)
    )
    return any(sk.startswith(p) for _, sk in entries for p in prefixes)


OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"text": "x"},
    "subject": {"reference": "http://other.example/fhir/Patient/p1"},
    "performer": [{"reference": "#prac"}],
}


def test_absolute_reference_to_another_server_is_found_through_the_index() -> None:
    # The entry of a reference whose URL ends in Type/id is keyed Type/id; a search by that URL used to
    # drive on the URL itself and never found it.
    url = "http://other.example/fhir/Patient/p1"
    assert hit(OBS, "subject", url)
    assert driven_by_an_own_entry(OBS, "subject", url)
    assert not hit(OBS, "subject", "http://third.example/fhir/Patient/p1")


def test_contained_reference_is_matched_as_written() -> None:
    # "#prac" used to be parsed as a bare id and driven on "{target}/#prac" ranges: never found.
    assert hit(OBS, "performer", "#prac")
    assert driven_by_an_own_entry(OBS, "performer", "#prac")
    assert not hit(OBS, "performer", "#other")


def test_reference_to_this_server_is_relative() -> None:
    assert hit({**OBS, "subject": {"reference": "Patient/p1"}}, "subject", f"{BASE}/Patient/p1")
    assert hit({**OBS, "subject": {"reference": "Patient/p1/_history/3"}}, "subject", "Patient/p1")


def test_escaped_comma_and_pipe() -> None:
    c = criterion("Patient", "identifier", "http://x|a\\,b,c")
    assert [(v.system, v.code) for v in c.values] == [("http://x", "a,b"), (None, "c")]
    c = criterion("Patient", "identifier", "a\\|b")
    assert [(v.system, v.code) for v in c.values] == [(None, "a|b")]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("birthdate", "1970-02-30"),
        ("birthdate", "xx1970"),
        ("gender:missing", "yes"),
        ("identifier:of-type", "only|two"),
        ("family:below", "x"),
    ],
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(FhirError) as err:
        parse_search("Patient", [(name, value)], BASE, strict=True)
    assert err.value.status in (400, 501)


def test_date_boundaries() -> None:
    patient = {"resourceType": "Patient", "id": "p", "birthDate": "1970"}
    assert hit(patient, "birthdate", "1970")
    assert not hit(patient, "birthdate", "1970-01")  # a month does not contain the year
    assert hit(patient, "birthdate", "ne1970-01")
    assert not hit(patient, "birthdate", "le1970-01-01")  # nothing of 1970 lies before 1970-01-01
    assert hit(patient, "birthdate", "ge1970-06")  # 1970 extends beyond June
    assert not hit(patient, "birthdate", "ge1970-12-31")  # ... but not beyond its last day
    assert hit(patient, "birthdate", "sa1969-12-31")
    assert not hit(patient, "birthdate", "sa1970-01-01")


def test_number_precision() -> None:
    risk = {
        "resourceType": "RiskAssessment",
        "id": "r",
        "status": "final",
        "subject": {"reference": "Patient/p"},
        "prediction": [{"probabilityDecimal": 0.25}],
    }
    assert hit(risk, "probability", "0.25")
    assert hit(risk, "probability", "0.3")  # 0.3 covers [0.25, 0.35): 0.25 is in it
    assert hit(risk, "probability", "0.2") is False
    assert hit(risk, "probability", "ne0.2")


def test_parameter_registry_has_common_parameters() -> None:
    assert parameter("Observation", "_id") is not None
    assert parameter("Observation", "_lastUpdated") is not None
