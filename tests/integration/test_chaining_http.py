"""Chained parameters and reverse chaining with _has (search.html#chaining, #has)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http


@pytest.fixture(scope="module")
def world(fhir: FhirHttp) -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    org = fhir.post("Organization", {"resourceType": "Organization", "name": f"Org{tag}"}).json()["id"]
    patient = fhir.post(
        "Patient",
        {
            "resourceType": "Patient",
            "name": [{"family": f"Fam{tag}"}],
            "managingOrganization": {"reference": f"Organization/{org}"},
        },
    ).json()["id"]
    other = fhir.post("Patient", {"resourceType": "Patient", "name": [{"family": f"Other{tag}"}]}).json()[
        "id"
    ]
    code = f"code-{tag}"
    obs = fhir.post(
        "Observation",
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "urn:test", "code": code}]},
            "subject": {"reference": f"Patient/{patient}"},
        },
    ).json()["id"]
    return {"tag": tag, "org": org, "patient": patient, "other": other, "obs": obs, "code": code}


def ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def test_chained_parameter_one_and_two_levels(fhir: FhirHttp, world: dict[str, str]) -> None:
    tag = world["tag"]
    assert ids(fhir.get("Observation", **{"subject.name": f"fam{tag}"}).json()) == {world["obs"]}
    assert ids(fhir.get("Observation", **{"subject:Patient.family": f"Fam{tag}"}).json()) == {world["obs"]}
    two_levels = fhir.get("Observation", **{"subject:Patient.organization.name": f"org{tag}"}).json()
    assert ids(two_levels) == {world["obs"]}
    assert ids(fhir.get("Observation", **{"subject.name": f"Other{tag}"}).json()) == set()


def test_reverse_chaining(fhir: FhirHttp, world: dict[str, str]) -> None:
    has = fhir.get("Patient", **{"_has:Observation:patient:code": f"urn:test|{world['code']}"}).json()
    assert ids(has) == {world["patient"]}
    nested = fhir.get(
        "Organization", **{"_has:Patient:organization:_has:Observation:patient:code": world["code"]}
    )
    assert ids(nested.json()) == {world["org"]}
    assert ids(fhir.get("Patient", **{"_has:Observation:patient:code": "no-such-code"}).json()) == set()


def test_links_repeat_the_chain_not_its_expansion(fhir: FhirHttp, world: dict[str, str]) -> None:
    bundle = fhir.get("Observation", **{"subject.name": f"fam{world['tag']}"}).json()
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "subject.name=" in self_link and world["patient"] not in self_link


@pytest.mark.parametrize(
    "query",
    [
        {"subject.nonsense": "1"},
        {"status.name": "x"},
        {"_has:Nope:patient:code": "1"},
        {"_has:Observation:code:code": "1"},
        {"_has:Observation": "1"},
    ],
)
def test_bad_chains_are_400(fhir: FhirHttp, query: dict[str, str]) -> None:
    response = fhir.get(
        "Observation" if "subject" in next(iter(query)) or "status" in next(iter(query)) else "Patient",
        **query,
    )
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"
