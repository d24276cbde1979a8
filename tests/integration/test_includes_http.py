"""_include and _revinclude (search.html#include)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http


@pytest.fixture(scope="module")
def family(fhir: FhirHttp) -> dict[str, str]:
    """An organization, a patient managed by it, and two encounters of the patient."""
    tag = uuid.uuid4().hex
    org = fhir.post("Organization", {"resourceType": "Organization", "name": tag}).json()["id"]
    patient = fhir.post(
        "Patient",
        {
            "resourceType": "Patient",
            "name": [{"family": tag}],
            "managingOrganization": {"reference": f"Organization/{org}"},
        },
    ).json()["id"]
    encounters = [
        fhir.post(
            "Encounter",
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{patient}"},
                "serviceProvider": {"reference": f"Organization/{org}"},
            },
        ).json()["id"]
        for _ in range(2)
    ]
    return {"tag": tag, "org": org, "patient": patient, "e1": encounters[0], "e2": encounters[1]}


def by_mode(bundle: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        out.setdefault(entry["search"]["mode"], set()).add(f"{resource['resourceType']}/{resource['id']}")
    return out


def test_include_follows_references(fhir: FhirHttp, family: dict[str, str]) -> None:
    bundle = fhir.get("Patient", family=family["tag"], _include="Patient:organization").json()
    assert by_mode(bundle) == {
        "match": {f"Patient/{family['patient']}"},
        "include": {f"Organization/{family['org']}"},
    }


def test_revinclude_finds_referrers(fhir: FhirHttp, family: dict[str, str]) -> None:
    bundle = fhir.get("Patient", family=family["tag"], _revinclude="Encounter:subject").json()
    assert by_mode(bundle)["include"] == {f"Encounter/{family['e1']}", f"Encounter/{family['e2']}"}


def test_iterate_and_wildcard(fhir: FhirHttp, family: dict[str, str]) -> None:
    bundle = fhir.get(
        "Patient",
        **{
            "family": family["tag"],
            "_revinclude": "Encounter:subject",
            "_include:iterate": "Encounter:service-provider",
        },
    ).json()
    assert f"Organization/{family['org']}" in by_mode(bundle)["include"]
    wildcard = fhir.get("Encounter", _id=family["e1"], _include="Encounter:*").json()
    assert by_mode(wildcard)["include"] == {f"Patient/{family['patient']}", f"Organization/{family['org']}"}


def test_include_links_keep_the_include_parameters(fhir: FhirHttp, family: dict[str, str]) -> None:
    bundle = fhir.get(
        "Encounter", subject=f"Patient/{family['patient']}", _count="1", _include="Encounter:subject"
    ).json()
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert "_include=Encounter%3Asubject" in next_url or "_include=Encounter:subject" in next_url
    page2 = fhir.get(next_url).json()
    assert by_mode(page2)["include"] == {f"Patient/{family['patient']}"}


@pytest.mark.parametrize("value", ["Patient:name", "Patient:nonsense", "Nope:subject", "*"])
def test_bad_include_is_400(fhir: FhirHttp, value: str) -> None:
    assert fhir.get("Patient", _include=value).status_code == 400
