"""Conditional read, create, update and delete (http.html#cread, #ccreate, #cond-update, #cdelete)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http


def practitioner(npi: str, **extra: object) -> dict:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}],
        **extra,
    }


def npi() -> str:
    return uuid.uuid4().hex[:10]


def test_conditional_read(fhir: FhirHttp) -> None:
    created = fhir.post("Practitioner", practitioner(npi()))
    rid, etag = created.json()["id"], created.headers["ETag"]
    assert fhir.get(f"Practitioner/{rid}", headers={"If-None-Match": etag}).status_code == 304
    assert fhir.get(f"Practitioner/{rid}", headers={"If-None-Match": 'W/"9"'}).status_code == 200
    later = "Fri, 01 Jan 2100 00:00:00 GMT"
    assert fhir.get(f"Practitioner/{rid}", headers={"If-Modified-Since": later}).status_code == 304
    earlier = "Thu, 01 Jan 1970 00:00:00 GMT"
    assert fhir.get(f"Practitioner/{rid}", headers={"If-Modified-Since": earlier}).status_code == 200


def test_conditional_create_creates_once(fhir: FhirHttp) -> None:
    number = npi()
    condition = {"If-None-Exist": f"identifier=http://hl7.org/fhir/sid/us-npi|{number}"}
    first = fhir.post("Practitioner", practitioner(number), headers=condition)
    assert first.status_code == 201
    again = fhir.post("Practitioner", practitioner(number, active=True), headers=condition)
    assert again.status_code == 200  # the existing resource, unchanged
    assert again.json()["id"] == first.json()["id"] and "active" not in again.json()
    fhir.post("Practitioner", practitioner(number))  # a duplicate made without the condition
    assert fhir.post("Practitioner", practitioner(number), headers=condition).status_code == 412


def test_conditional_create_rejects_unknown_parameters(fhir: FhirHttp) -> None:
    response = fhir.post("Practitioner", practitioner(npi()), headers={"If-None-Exist": "nonsense=1"})
    assert response.status_code == 400


def test_conditional_update(fhir: FhirHttp) -> None:
    number = npi()
    criteria = f"identifier=http://hl7.org/fhir/sid/us-npi|{number}"
    created = fhir.put(f"Practitioner?{criteria}", practitioner(number))
    assert created.status_code == 201  # no match, no id: created
    rid = created.json()["id"]
    updated = fhir.put(f"Practitioner?{criteria}", practitioner(number, active=False))
    assert updated.status_code == 200 and updated.json()["id"] == rid
    assert updated.json()["meta"]["versionId"] == "2"
    wrong_id = fhir.put(f"Practitioner?{criteria}", practitioner(number, id="someone-else"))
    assert wrong_id.status_code == 400
    fhir.post("Practitioner", practitioner(number))
    assert fhir.put(f"Practitioner?{criteria}", practitioner(number)).status_code == 412


def test_conditional_delete_single_and_multiple(fhir: FhirHttp) -> None:
    number = npi()
    criteria = f"identifier=http://hl7.org/fhir/sid/us-npi|{number}"
    ids = [fhir.post("Practitioner", practitioner(number)).json()["id"] for _ in range(3)]
    assert fhir.delete(f"Practitioner?{criteria}").status_code == 204
    assert all(fhir.get(f"Practitioner/{rid}").status_code == 410 for rid in ids)
    assert fhir.delete(f"Practitioner?{criteria}").status_code == 204  # nothing left: still fine
    assert fhir.delete("Practitioner").status_code == 400  # no criteria: refused, never "delete all"
