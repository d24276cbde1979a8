"""Compartment search (http.html#vsearch, compartmentdefinition-patient.html)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http


def observation(code: str, **links: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "urn:t", "code": code}]},
        **{k: ({"reference": v} if k == "subject" else [{"reference": v}]) for k, v in links.items()},
    }


def test_patient_compartment_unions_every_link(fhir: FhirHttp) -> None:
    pid, other = uuid.uuid4().hex, uuid.uuid4().hex
    for rid in (pid, other):
        fhir.put(f"Patient/{rid}", {"resourceType": "Patient", "id": rid})
    as_subject = fhir.post("Observation", observation("a", subject=f"Patient/{pid}")).json()["id"]
    as_performer = fhir.post("Observation", observation("b", performer=f"Patient/{pid}")).json()["id"]
    fhir.post("Observation", observation("a", subject=f"Patient/{other}"))
    bundle = fhir.get(f"Patient/{pid}/Observation").json()
    assert {e["resource"]["id"] for e in bundle["entry"]} == {as_subject, as_performer}
    assert bundle["total"] == 2
    narrowed = fhir.get(f"Patient/{pid}/Observation", code="urn:t|a").json()
    assert [e["resource"]["id"] for e in narrowed["entry"]] == [as_subject]
    own = fhir.get(f"Patient/{pid}/Patient").json()
    assert [e["resource"]["id"] for e in own["entry"]] == [pid]  # the patient belongs to its compartment


def test_compartment_paging(fhir: FhirHttp) -> None:
    pid = uuid.uuid4().hex
    ids = {
        fhir.post("Observation", observation("p", subject=f"Patient/{pid}")).json()["id"] for _ in range(5)
    }
    seen, url = [], f"Patient/{pid}/Observation?_count=2"
    while url:
        bundle = fhir.get(url).json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted(ids) and len(seen) == 5


def test_types_outside_the_compartment(fhir: FhirHttp) -> None:
    assert fhir.get("Patient/x/Organization").status_code == 400
    assert fhir.get("Organization/x/Observation").status_code == 400  # not a compartment type
