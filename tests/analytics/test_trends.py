"""Patient progression through the FHIR service layer (moto in-process), and both renderers."""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fhirlake.analytics.charts import PNG_SIGNATURE, render_html, render_png
from fhirlake.analytics.trends import Chart, Code, Marker, Point, Series, patient_progression
from fhirlake.bootstrap import build_service
from fhirlake.config import Settings
from fhirlake.fhir.outcome import FhirError
from fhirlake.local.provision import Provisioned
from fhirlake.service.crud import ResourceService

from tests.analytics.lake_fixture import synthea_resources

LOINC_HBA1C = Code("http://loinc.org", "4548-4")


@pytest.fixture
def service(aws: Provisioned) -> ResourceService:
    return build_service(Settings.from_env(aws.environment()))


@pytest.fixture
def patient(service: ResourceService, shared_data: Path) -> dict:
    """One Synthea patient with diabetes (Louis Maggio) written through the service, as the API would."""
    resources = synthea_resources(shared_data)
    patient = next(
        r for r in resources if r["resourceType"] == "Patient" and r["name"][0]["family"].startswith("Maggio")
    )
    wanted = {"4548-4", "55284-4"}  # HbA1c and the blood pressure panel: the other vitals only cost time
    mine = [
        r
        for r in resources
        if r is patient
        or (
            (r.get("subject") or {}).get("reference") == f"Patient/{patient['id']}"
            and (r["resourceType"] != "Observation" or r["code"]["coding"][0]["code"] in wanted)
        )
    ]
    for resource in mine:
        service.update(resource["resourceType"], resource["id"], resource, None)
    return {"resource": patient, "all": mine}


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # IHDR follows the signature and chunk header
    return width, height


def test_patient_progression_reads_fresh_data_through_the_service(
    service: ResourceService, patient: dict
) -> None:
    pid = patient["resource"]["id"]
    expected_values = sorted(
        (r["effectiveDateTime"], r["valueQuantity"]["value"])
        for r in patient["all"]
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "4548-4"
    )
    chart = patient_progression(service, pid, LOINC_HBA1C)

    assert len(chart.series) == 1
    assert [p.value for p in chart.series[0].points] == [v for _, v in expected_values]
    assert chart.series[0].unit == "%"
    assert "Hemoglobin A1c" in chart.title
    conditions = [m for m in chart.markers if m.kind == "condition"]
    assert "Diabetes" in {m.label for m in conditions}
    medications = [m for m in chart.markers if m.kind == "medication"]
    codes = {
        r["medicationCodeableConcept"]["coding"][0]["code"]
        for r in patient["all"]
        if r["resourceType"] == "MedicationRequest"
    }
    assert len(medications) == len(codes)  # one start per medication, renewals are not new starts

    # A value written a moment ago shows at once: the chart does not wait for the lake.
    service.create(
        "Observation",
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]
            },
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2030-01-01T00:00:00Z",
            "valueQuantity": {"value": 12.5, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        },
    )
    fresh = patient_progression(service, pid, LOINC_HBA1C)
    assert len(fresh.series) == 1, "one series per code, whatever display each observation carries"
    assert fresh.series[0].points[-1].value == 12.5

    # Panels (blood pressure) give one series per component.
    names = {s.name for s in patient_progression(service, pid, Code("http://loinc.org", "55284-4")).series}
    assert {"Systolic Blood Pressure", "Diastolic Blood Pressure"} <= names


def test_unknown_patient_is_404(service: ResourceService, aws) -> None:
    with pytest.raises(FhirError) as error:
        patient_progression(service, "nobody", LOINC_HBA1C)
    assert error.value.status == 404


@pytest.mark.parametrize(
    ("token", "system", "code"),
    [("http://loinc.org|4548-4", "http://loinc.org", "4548-4"), ("4548-4", None, "4548-4"), ("|x", "", "x")],
)
def test_code_tokens(token: str, system: str | None, code: str) -> None:
    assert Code.parse(token) == Code(system, code)
    with pytest.raises(FhirError):
        Code.parse("http://loinc.org|")


CHART = Chart(
    title="HbA1c for <Jane>",
    y_label="%",
    series=(
        Series(
            "HbA1c",
            "%",
            (
                Point(datetime(2019, 1, 5, tzinfo=UTC), 6.1),
                Point(datetime(2020, 2, 1, tzinfo=UTC), 7.25),
                Point(datetime(2021, 3, 9, tzinfo=UTC), 6.8),
            ),
        ),
    ),
    markers=(
        Marker(datetime(2019, 6, 1, tzinfo=UTC), "condition", "Diabetes"),
        Marker(datetime(2019, 7, 1, tzinfo=UTC), "medication", "Metformin 500 MG"),
    ),
)


def test_png_has_the_signature_and_the_requested_size() -> None:
    assert png_size(render_png(CHART, width=800, height=400)) == (800, 400)
    assert png_size(render_png(Chart("empty", "value"))) == (1000, 500)


def test_html_is_self_contained_with_every_point_and_marker() -> None:
    page = render_html(CHART)
    assert page.startswith("<!DOCTYPE html>")
    assert [float(v) for v in re.findall(r'data-value="([^"]+)"', page)] == [6.1, 7.25, 6.8]
    assert "Diabetes" in page and "Metformin 500 MG" in page
    assert "&lt;Jane&gt;" in page and "<Jane>" not in page  # text is escaped
    assert not re.search(r"https?://|\bsrc=|\bhref=|@import|url\(", page), "nothing is fetched"
    assert "mouseenter" in page  # the hover tooltips


def test_html_of_an_empty_chart_says_so() -> None:
    assert "no data" in render_html(Chart("nothing", "value"))
