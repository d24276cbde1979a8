"""The core interactions (create/read/vread/update/delete/history) on the DynamoDB store."""

from __future__ import annotations

import itertools

import pytest
from fhirlake.bootstrap import build_store
from fhirlake.config import Settings
from fhirlake.fhir.outcome import FhirError
from fhirlake.persistence import StoredVersion, VersionConflict
from fhirlake.service.crud import MAX_WRITE_ATTEMPTS, ResourceService
from fhirlake.validation import get_validator


def fixed_clock(*stamps: str):
    values = iter(stamps)
    return lambda: next(values)


@pytest.fixture
def store(settings: Settings):
    return build_store(settings)


@pytest.fixture
def service(store) -> ResourceService:
    ids = (f"id-{n}" for n in itertools.count(1))
    return ResourceService(store, get_validator("strict"), new_id=lambda: next(ids))


PATIENT = {"resourceType": "Patient", "meta": {"tag": [{"system": "urn:t", "code": "x"}]}, "active": True}


def test_create_stamps_meta_and_keeps_the_rest(service: ResourceService) -> None:
    result = service.create("Patient", {**PATIENT, "id": "ignored"})
    stored = result.version.resource
    assert result.created and stored["id"] == "id-1"
    assert stored["meta"]["versionId"] == "1"
    assert stored["meta"]["tag"] == PATIENT["meta"]["tag"]  # client meta survives
    assert list(stored)[:3] == ["resourceType", "id", "meta"]
    assert service.read("Patient", "id-1").resource == stored


def test_invalid_resource_is_rejected_with_every_issue(service: ResourceService) -> None:
    with pytest.raises(FhirError) as caught:
        service.create("Patient", {"resourceType": "Patient", "gender": "robot", "birthDate": "01/02/2003"})
    assert caught.value.status == 400
    paths = {e for issue in caught.value.issues for e in issue.expression}
    assert {"Patient.gender", "Patient.birthDate"} <= paths


def test_type_mismatch_and_unknown_type(service: ResourceService) -> None:
    with pytest.raises(FhirError) as caught:
        service.create("Observation", PATIENT)
    assert caught.value.status == 400
    with pytest.raises(FhirError) as caught:
        service.create("Patients", PATIENT)
    assert caught.value.status == 404


def test_update_versions_and_last_updated_never_go_backwards(store) -> None:
    # The second writer's clock is behind the first: lastUpdated still increases.
    service = ResourceService(
        store,
        get_validator("strict"),
        clock=fixed_clock("2026-01-01T00:00:05.000Z", "2026-01-01T00:00:01.000Z"),
    )
    first = service.update("Patient", "p1", {**PATIENT, "id": "p1"}, None)
    second = service.update("Patient", "p1", {**PATIENT, "id": "p1", "active": False}, None)
    assert first.created and not second.created
    assert second.version.version_id == 2
    assert second.version.last_updated == "2026-01-01T00:00:05.001Z"


def test_if_match_accepts_common_etag_spellings(service: ResourceService) -> None:
    service.update("Patient", "p2", {**PATIENT, "id": "p2"}, None)
    for n, etag in enumerate(['W/"1"', '"2"', "3"], start=2):
        assert service.update("Patient", "p2", {**PATIENT, "id": "p2"}, etag).version.version_id == n
    with pytest.raises(FhirError) as caught:
        service.update("Patient", "p2", {**PATIENT, "id": "p2"}, 'W/"1"')
    assert caught.value.status == 412
    with pytest.raises(FhirError) as caught:
        service.update("Patient", "never", {**PATIENT, "id": "never"}, 'W/"1"')
    assert caught.value.status == 412


class RacingStore:
    """Wraps a store; the first ``losses`` puts lose to a concurrent writer."""

    def __init__(self, inner, losses: int) -> None:
        self.inner, self.losses = inner, losses

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put(self, version: StoredVersion, previous: StoredVersion | None = None) -> None:
        if self.losses:
            self.losses -= 1
            rival = StoredVersion(
                version.resource_type,
                version.id,
                version.version_id,
                version.last_updated,
                "PUT",
                {**version.resource, "active": False},
            )
            self.inner.put(rival, previous)  # the concurrent writer's version lands first
        self.inner.put(version, previous)


def test_losing_writer_retries_on_top_of_the_winner(store) -> None:
    service = ResourceService(store, get_validator("strict"))
    service.update("Patient", "p3", {**PATIENT, "id": "p3"}, None)
    racing = ResourceService(RacingStore(store, losses=1), get_validator("strict"))
    result = racing.update("Patient", "p3", {**PATIENT, "id": "p3", "gender": "female"}, None)
    assert result.version.version_id == 3  # v2 is the rival's, kept in history
    assert service.vread("Patient", "p3", "2").resource["active"] is False


def test_losing_writer_with_if_match_gets_412(store) -> None:
    ResourceService(store, get_validator("strict")).update("Patient", "p4", {**PATIENT, "id": "p4"}, None)
    racing = ResourceService(RacingStore(store, losses=1), get_validator("strict"))
    with pytest.raises(FhirError) as caught:
        racing.update("Patient", "p4", {**PATIENT, "id": "p4"}, 'W/"1"')
    assert caught.value.status == 412


def test_endless_contention_gives_409(store) -> None:
    ResourceService(store, get_validator("strict")).update("Patient", "p5", {**PATIENT, "id": "p5"}, None)
    racing = ResourceService(RacingStore(store, losses=MAX_WRITE_ATTEMPTS), get_validator("strict"))
    with pytest.raises(FhirError) as caught:
        racing.update("Patient", "p5", {**PATIENT, "id": "p5"}, None)
    assert caught.value.status == 409


def test_store_put_is_conditional(store) -> None:
    version = StoredVersion(
        "Patient", "p6", 1, "2026-01-01T00:00:00.000Z", "PUT", {"resourceType": "Patient"}
    )
    store.put(version)
    with pytest.raises(VersionConflict):
        store.put(version)


def test_delete_semantics(service: ResourceService) -> None:
    assert service.delete("Patient", "nobody", None) is None
    service.update("Patient", "p7", {**PATIENT, "id": "p7"}, None)
    tombstone = service.delete("Patient", "p7", None)
    assert tombstone is not None and tombstone.deleted and tombstone.version_id == 2
    assert service.delete("Patient", "p7", None) == tombstone  # idempotent, no new version
    with pytest.raises(FhirError) as caught:
        service.read("Patient", "p7")
    assert caught.value.status == 410 and caught.value.headers["ETag"] == 'W/"2"'
    assert service.vread("Patient", "p7", "1").resource["id"] == "p7"


def test_large_bodies_go_to_s3_transparently(service: ResourceService, store, aws) -> None:
    import base64
    import os

    import boto3

    data = base64.b64encode(os.urandom(500_000)).decode()
    binary = {"resourceType": "Binary", "id": "big", "contentType": "application/octet-stream", "data": data}
    service.update("Binary", "big", binary, None)
    assert service.read("Binary", "big").resource["data"] == data
    keys = boto3.client("s3").list_objects_v2(Bucket=aws.buckets["blobs"])["Contents"]
    assert [k["Key"] for k in keys] == ["default/Binary/big/1.json.z"]


def test_history_levels_and_paging(service: ResourceService) -> None:
    for n in range(3):
        service.update("Patient", f"h{n}", {**PATIENT, "id": f"h{n}"}, None)
        service.update(
            "Observation",
            f"o{n}",
            {"resourceType": "Observation", "id": f"o{n}", "status": "final", "code": {"text": "t"}},
            None,
        )
    service.delete("Patient", "h0", None)
    page = service.history("Patient", None, count=2, since=None, cursor=None)
    assert [(v.id, v.version_id) for v in page.versions] == [("h0", 2), ("h2", 1)]
    rest = service.history("Patient", None, count=10, since=None, cursor=page.next_cursor)
    assert [(v.id, v.version_id) for v in rest.versions] == [("h1", 1), ("h0", 1)]
    assert rest.next_cursor is None
    everything = service.history(None, None, count=100, since=None, cursor=None).versions
    assert len(everything) == 7
    stamps = [v.last_updated for v in everything]
    assert stamps == sorted(stamps, reverse=True)
    with pytest.raises(ValueError):  # a cursor from another scope is refused
        service.history("Observation", None, count=2, since=None, cursor=page.next_cursor)
