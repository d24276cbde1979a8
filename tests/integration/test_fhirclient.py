"""A real FHIR client library (SMART's fhirclient, R4 models) against the local server."""

from __future__ import annotations

import uuid

import pytest
import requests
from fhirclient import client
from fhirclient.models.humanname import HumanName
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

pytestmark = pytest.mark.http


@pytest.fixture(scope="module")
def server(api_url: str):
    return client.FHIRClient(settings={"app_id": "fhirlake-tests", "api_base": api_url + "/"}).server


def test_create_read_search_update_delete(server) -> None:
    family = f"Client{uuid.uuid4().hex[:8]}"
    patient = Patient({"gender": "female", "birthDate": "1970-05-01"})
    name = HumanName()
    name.family, name.given = family, ["Ada"]
    patient.name = [name]
    created = patient.create(server)
    pid = created["id"]

    read = Patient.read(pid, server)
    assert read.name[0].family == family and read.birthDate.isostring == "1970-05-01"

    found = Patient.where(struct={"family": family.lower(), "birthdate": "ge1970"}).perform_resources(server)
    assert [p.id for p in found] == [pid]

    observation = Observation(
        {
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "valueQuantity": {
                "value": 172.5,
                "unit": "cm",
                "system": "http://unitsofmeasure.org",
                "code": "cm",
            },
        }
    )
    observation.create(server)
    bundle = Observation.where(
        struct={"subject": f"Patient/{pid}", "value-quantity": "gt170|http://unitsofmeasure.org|cm"}
    ).perform(server)
    assert bundle.total == 1 and bundle.entry[0].resource.valueQuantity.value == 172.5

    read.gender = "other"
    read.update(server)
    assert Patient.read(pid, server).gender == "other"

    read.delete(server)
    with pytest.raises(requests.HTTPError) as gone:
        Patient.read(pid, server)
    assert gone.value.response.status_code == 410
