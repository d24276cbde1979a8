from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhirlake.fhir.instant import after, format_instant, http_date, parse_instant
from fhirlake.fhir.references import bundle_resources


def test_instants_are_fixed_width_utc() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
    assert format_instant(moment) == "2026-03-04T05:06:07.891Z"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2026-03-04T06:06:07+01:00", "2026-03-04T05:06:07.000Z"),
        ("2026-03-04T05:06:07Z", "2026-03-04T05:06:07.000Z"),
        ("2026-03-04", "2026-03-04T00:00:00.000Z"),
    ],
)
def test_parse_instant_normalises(text: str, expected: str) -> None:
    assert format_instant(parse_instant(text)) == expected


def test_instant_without_zone_is_rejected() -> None:
    with pytest.raises(ValueError):
        parse_instant("2026-03-04T05:06:07")


def test_after_bumps_by_a_millisecond() -> None:
    assert after("2026-01-01T00:00:00.999Z", "2026-01-01T00:00:00.500Z") == "2026-01-01T00:00:01.000Z"
    assert after("2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z") == "2026-01-02T00:00:00.000Z"


def test_http_date() -> None:
    assert http_date("2026-11-29T10:00:00.000Z") == "Sun, 29 Nov 2026 10:00:00 GMT"


def test_bundle_references_resolve_to_type_and_uuid() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": {"resourceType": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
                "resource": {
                    "resourceType": "Observation",
                    "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                    "performer": [{"reference": "Practitioner/abc"}],
                },
            },
        ],
    }
    (_, pid, patient), (_, _, observation) = bundle_resources(bundle)
    assert pid == patient["id"] == "11111111-1111-1111-1111-111111111111"
    assert observation["subject"]["reference"] == f"Patient/{pid}"
    assert observation["performer"][0]["reference"] == "Practitioner/abc"  # not ours: untouched
