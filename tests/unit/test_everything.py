"""``Patient/[id]/$everything`` in the core (service.everything) on moto in-process."""

from __future__ import annotations

import pytest
from fhirlake.bootstrap import build_service
from fhirlake.config import Settings
from fhirlake.fhir.outcome import FhirError
from fhirlake.persistence.dynamodb import InvalidCursor
from fhirlake.search.parameters import parameters
from fhirlake.service.crud import ResourceService
from fhirlake.service.everything import (
    CARE_DATE,
    EverythingPage,
    EverythingQuery,
    PatientEverything,
    parse_everything,
)
from fhirlake.service.searching import compartments

BASE = "https://fhir.example/r4"
ALLERGY_STATUS = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"


@pytest.fixture
def service(settings: Settings) -> ResourceService:
    return build_service(settings)


@pytest.fixture
def everything(service: ResourceService) -> PatientEverything:
    return PatientEverything(service.store, service.searching())


def put(service: ResourceService, resource: dict) -> None:
    service.update(resource["resourceType"], resource["id"], resource, None)


def observation(rid: str, when: str, subject: str | None = None, performer: str | None = None) -> dict:
    resource: dict = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"text": "weight"},
        "effectiveDateTime": when,
    }
    if subject:
        resource["subject"] = {"reference": subject}
    if performer:
        resource["performer"] = [{"reference": performer}]
    return resource


@pytest.fixture
def record(service: ResourceService) -> None:
    """Patient p1 (with a GP and a managing organization), its observations, encounter and allergy;
    another patient p2 with its own observation."""
    put(service, {"resourceType": "Practitioner", "id": "gp"})
    put(service, {"resourceType": "Practitioner", "id": "unrelated"})
    put(service, {"resourceType": "Organization", "id": "org", "name": "Clinic"})
    put(
        service,
        {
            "resourceType": "Patient",
            "id": "p1",
            "generalPractitioner": [{"reference": "Practitioner/gp"}],
            "managingOrganization": {"reference": "Organization/org"},
        },
    )
    put(service, {"resourceType": "Patient", "id": "p2"})
    put(service, observation("o-both", "2020-05-01", subject="Patient/p1", performer="Patient/p1"))
    put(service, observation("o-subject", "2018-01-01", subject="Patient/p1", performer="Practitioner/gp"))
    put(service, observation("o-performer", "2020-06-01", performer="Patient/p1"))
    put(service, observation("o-other", "2020-05-01", subject="Patient/p2"))
    put(
        service,
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2020-05-01T10:00:00Z", "end": "2020-05-01T11:00:00Z"},
            "serviceProvider": {"reference": "Organization/org"},
        },
    )
    put(
        service,
        {
            "resourceType": "AllergyIntolerance",
            "id": "a1",
            "clinicalStatus": {"coding": [{"system": ALLERGY_STATUS, "code": "active"}]},
            "patient": {"reference": "Patient/p1"},
            "recordedDate": "2010-01-01",
        },
    )


def ids(versions) -> list[str]:
    return [f"{v.resource_type}/{v.id}" for v in versions]


def all_pages(everything: PatientEverything, query: list[tuple[str, str]]) -> list[EverythingPage]:
    pages, cursor = [], None
    while True:
        parsed = parse_everything([*query, *([("_cursor", cursor)] if cursor else [])], strict=True)
        page = everything.page("p1", parsed, BASE)
        pages.append(page)
        cursor = page.next_cursor
        if cursor is None:
            return pages


P1_RECORD = {
    "Patient/p1",
    "AllergyIntolerance/a1",
    "Encounter/e1",
    "Observation/o-both",
    "Observation/o-subject",
    "Observation/o-performer",
}


@pytest.mark.usefixtures("record")
def test_the_patient_first_then_each_compartment_member_once(everything: PatientEverything) -> None:
    page = everything.page("p1", parse_everything([], strict=True), BASE)
    found = ids(page.versions)
    assert found[0] == "Patient/p1"
    assert len(found) == len(set(found))  # o-both is linked by subject and performer: returned once
    assert set(found) == P1_RECORD
    assert page.next_cursor is None
    # The practitioner and organization the record refers to come along; an unrelated one does not.
    assert set(ids(page.included)) == {"Practitioner/gp", "Organization/org"}


@pytest.mark.usefixtures("record")
def test_small_pages_return_the_same_record_without_repeats(everything: PatientEverything) -> None:
    pages = all_pages(everything, [("_count", "2")])
    found = [rid for page in pages for rid in ids(page.versions)]
    assert all(len(page.versions) <= 2 for page in pages)
    assert len(found) == len(set(found)) and set(found) == P1_RECORD
    assert found[0] == "Patient/p1"


@pytest.mark.usefixtures("record")
def test_type_since_and_care_dates_narrow_the_record(
    everything: PatientEverything, service: ResourceService
) -> None:
    only = everything.page("p1", parse_everything([("_type", "Observation,Practitioner")], True), BASE)
    assert set(ids(only.versions)) == {
        "Observation/o-both",
        "Observation/o-subject",
        "Observation/o-performer",
    }
    assert ids(only.included) == ["Practitioner/gp"]  # supporting types follow _type too

    dated = everything.page("p1", parse_everything([("start", "2020-01-01"), ("end", "2020-05")], True), BASE)
    # o-subject (2018) and o-performer (June) fall outside; the allergy has no care date: kept.
    assert set(ids(dated.versions)) == {
        "Patient/p1",
        "AllergyIntolerance/a1",
        "Encounter/e1",
        "Observation/o-both",
    }

    since = service.read("Observation", "o-other").last_updated  # written after every p1 resource but e1, a1
    changed = everything.page("p1", parse_everything([("_since", since)], True), BASE)
    assert set(ids(changed.versions)) == {"Encounter/e1", "AllergyIntolerance/a1"}


def test_unknown_invalid_and_deleted_patients(
    everything: PatientEverything, service: ResourceService
) -> None:
    for patient_id in ("nobody", "not valid!"):
        with pytest.raises(FhirError) as caught:
            everything.page(patient_id, EverythingQuery(), BASE)
        assert caught.value.status == 404
    put(service, {"resourceType": "Patient", "id": "gone"})
    service.delete("Patient", "gone", None)
    with pytest.raises(FhirError) as caught:
        everything.page("gone", EverythingQuery(), BASE)
    assert caught.value.status == 410


@pytest.mark.usefixtures("record")
def test_a_cursor_only_pages_the_request_it_was_made_for(everything: PatientEverything) -> None:
    cursor = everything.page("p1", parse_everything([("_count", "1")], True), BASE).next_cursor
    assert cursor is not None
    for query in ([("_count", "1"), ("_cursor", "garbage")], [("_count", "2"), ("_cursor", cursor)]):
        with pytest.raises(InvalidCursor):
            everything.page("p1", parse_everything(query, True), BASE)
    with pytest.raises(InvalidCursor):
        everything.page("p2", parse_everything([("_count", "1"), ("_cursor", cursor)], True), BASE)


def test_parameters_are_checked_and_unknown_ones_follow_handling() -> None:
    lenient = parse_everything([("foo", "1"), ("_count", "5")], strict=False)
    assert lenient.count == 5 and "foo" in lenient.warnings[0].diagnostics
    with pytest.raises(FhirError) as caught:
        parse_everything([("foo", "1")], strict=True)
    assert caught.value.status == 400
    for name, bad in (("_since", "yesterday"), ("start", "2020-13"), ("end", "x"), ("_count", "-1")):
        with pytest.raises(FhirError) as caught:
            parse_everything([(name, bad)], strict=False)
        assert caught.value.status == 400 and caught.value.issues[0].expression == (name,)
    with pytest.raises(FhirError):
        parse_everything([("_type", "Observation,Nope")], strict=False)
    assert parse_everything([("_count", "100000")], strict=True).count == 1000  # search's maximum
    assert parse_everything([("_type", "Observation"), ("_type", "Encounter")], True).types == {
        "Observation",
        "Encounter",
    }


def test_every_care_date_is_a_date_parameter_of_a_compartment_type() -> None:
    members = compartments()["Patient"]
    for rtype, code in CARE_DATE.items():
        assert rtype in members, rtype
        assert parameters(rtype)[code].type == "date", (rtype, code)
