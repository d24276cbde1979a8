"""``Patient/[id]/$everything`` through HTTP on the local runtime, on a Synthea patient."""

from __future__ import annotations

import gzip
import json
import uuid
from collections import Counter
from pathlib import Path

import pytest
from fhirlake.service.searching import compartments

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http

# The smallest Synthea patient of the shared data: 66 entries (33 observations, claims, encounters...).
SYNTHEA_PATIENT = (
    "synthea/smart-generated-sample-data-r4/Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json.gz"
)


@pytest.fixture(scope="module")
def synthea(fhir: FhirHttp, shared_data: Path) -> dict[str, list[str]]:
    """The patient bundle stored by a transaction: stored ids by type (the Patient's is first)."""
    bundle = json.loads(gzip.decompress((shared_data / SYNTHEA_PATIENT).read_bytes()))
    response = fhir.post("", bundle)
    assert response.status_code == 200, response.text
    stored: dict[str, list[str]] = {}
    for entry in response.json()["entry"]:
        rtype, rid = entry["response"]["location"].split("/")[:2]
        stored.setdefault(rtype, []).append(rid)
    return stored


def pages(fhir: FhirHttp, url: str, **params: str) -> list[dict]:
    out = []
    while url:
        bundle = fhir.get(url, **params).json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", bundle
        out.append(bundle)
        params = {}
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return out


def entries(bundles: list[dict], mode: str) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for bundle in bundles
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    ]


def test_paging_the_record_gives_what_the_compartment_searches_give(
    fhir: FhirHttp, synthea: dict[str, list[str]]
) -> None:
    pid = synthea["Patient"][0]
    bundles = pages(fhir, f"Patient/{pid}/$everything", _count="10")
    matched = entries(bundles, "match")
    assert matched[0] == f"Patient/{pid}"
    assert len(matched) == len(set(matched))  # no page repeats another
    assert all(len([e for e in b.get("entry", []) if e["search"]["mode"] == "match"]) <= 10 for b in bundles)
    compartment = {f"Patient/{pid}"}
    for rtype in synthea:
        if rtype in compartments()["Patient"] and rtype != "Patient":
            searched = pages(fhir, f"Patient/{pid}/{rtype}", _count="1000")
            compartment |= set(entries(searched, "match"))
    assert set(matched) == compartment
    # Everything the transaction stored but the practitioner and organization is in the compartment...
    expected = Counter(
        {t: len(ids) for t, ids in synthea.items() if t not in ("Practitioner", "Organization")}
    )
    assert Counter(m.split("/")[0] for m in matched) == expected
    # ...and those two come along as supporting resources.
    included = set(entries(bundles, "include"))
    assert {
        f"Practitioner/{synthea['Practitioner'][0]}",
        f"Organization/{synthea['Organization'][0]}",
    } <= included


def test_post_parameters_narrow_by_type_and_care_dates(fhir: FhirHttp, synthea: dict[str, list[str]]) -> None:
    pid = synthea["Patient"][0]
    everything = fhir.get(f"Patient/{pid}/$everything", _type="Encounter", _count="1000").json()
    dates = sorted(e["resource"]["period"]["start"][:10] for e in everything["entry"])
    assert len(dates) == len(synthea["Encounter"]) and everything["total"] == len(dates)
    first_day = dates[0]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Encounter,Patient"},
            {"name": "end", "valueDate": first_day},
        ],
    }
    narrowed = fhir.post(f"Patient/{pid}/$everything", body).json()
    found = [f"{e['resource']['resourceType']}" for e in narrowed["entry"] if e["search"]["mode"] == "match"]
    assert found == ["Patient"] + ["Encounter"] * dates.count(first_day)


def test_errors_are_operation_outcomes(fhir: FhirHttp) -> None:
    pid = uuid.uuid4().hex
    assert fhir.get(f"Patient/{pid}/$everything").status_code == 404
    fhir.put(f"Patient/{pid}", {"resourceType": "Patient", "id": pid})
    lenient = fhir.get(f"Patient/{pid}/$everything", foo="1").json()
    assert [e["search"]["mode"] for e in lenient["entry"]] == ["match", "outcome"]  # the unknown is ignored
    strict = fhir.get(f"Patient/{pid}/$everything", foo="1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    bad = fhir.get(f"Patient/{pid}/$everything", start="last year")
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["start"]
    assert fhir.get(f"Patient/{pid}/$everything", _cursor="nope").status_code == 400
    not_primitive = {"resourceType": "Parameters", "parameter": [{"name": "start", "valuePeriod": {}}]}
    rejected = fhir.post(f"Patient/{pid}/$everything", not_primitive)
    assert rejected.status_code == 400 and rejected.json()["issue"][0]["expression"][0].startswith(
        "Parameters"
    )
    fhir.delete(f"Patient/{pid}")
    gone = fhir.get(f"Patient/{pid}/$everything")
    assert gone.status_code == 410 and gone.json()["resourceType"] == "OperationOutcome"
    assert fhir.get("Patient/$everything").status_code == 501
    assert fhir.get(f"Encounter/{pid}/$everything").status_code == 501


def test_capability_statement_lists_the_operation(fhir: FhirHttp) -> None:
    statement = fhir.get("metadata").json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {
        "name": "everything",
        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    }.items() <= next(op for op in patient["operation"] if op["name"] == "everything").items()
