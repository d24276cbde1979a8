"""The re-index job on moto: a changed configuration is detected, rebuilt, and resumable."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fhirlake.persistence import search_index
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.persistence.dynamodb_reindex import DynamoReindexStore, applied_digest
from fhirlake.service.reindex import Reindexer, layout_digest, run_reindex, target_layout

BASE = "http://fhir.example/base"


@pytest.fixture
def adopted(index_settings) -> None:
    """A table that has been through the job once, while empty (from the layout of tables written
    before configurations existed: quick on an empty table, slow on moto's full-table Queries)."""
    assert run_reindex(index_settings).status == "done"


@pytest.fixture
def people(adopted, create_all) -> list[str]:
    return create_all(
        [
            {
                "resourceType": "Patient",
                "gender": ["male", "female"][n % 2],
                "birthDate": f"{1950 + n}-05-06",
                "name": [{"family": f"Family{n}"}],
            }
            for n in range(24)
        ]
    )


def partition_size(settings, pk: str) -> int:
    store_client = __import__("boto3").client("dynamodb")
    resp = store_client.query(
        TableName=settings.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        Select="COUNT",
    )
    return resp["Count"]


def entries_of(settings, rtype: str, code: str, shards: int) -> int:
    pks = search_index.partition_keys(settings.tenant, rtype, code, shards)
    return sum(partition_size(settings, pk) for pk in pks)


def born_in_the_1960s(service) -> set[str]:
    result = service.searching().search(
        "Patient", [("birthdate", "ge1960"), ("birthdate", "lt1970"), ("_count", "100")], BASE, strict=True
    )
    return {v.id for v in result.page.versions}


def test_a_new_configuration_is_rebuilt_and_removed_entries_are_gone(
    index_service, index_settings, use_index_config, create_all
) -> None:
    use_index_config('{"exclude": {"Patient": ["birthdate"]}}')
    assert run_reindex(index_settings, segments=2).status == "done"  # legacy layout -> this one
    ids = create_all(
        [
            {"resourceType": "Patient", "birthDate": f"{1950 + n}", "name": [{"family": f"F{n}"}]}
            for n in range(24)
        ]
    )
    assert entries_of(index_settings, "Patient", "birthdate", 1) == 0
    assert entries_of(index_settings, "Patient", "family", 1) == 24

    use_index_config('{"exclude": {"Patient": ["family"]}}')
    report = run_reindex(index_settings, segments=2)
    assert report.status == "done"
    assert report.cleared_partitions == 1 and report.deleted_entries == 24  # family
    assert report.reindexed_resources == 24 and report.written_entries == 24  # birthdate
    assert entries_of(index_settings, "Patient", "family", 1) == 0
    assert born_in_the_1960s(index_service) == set(ids[10:20])
    assert applied_digest(
        index_service.store.dynamodb, index_settings.table_name, "default"
    ) == layout_digest(target_layout())
    assert run_reindex(index_settings, segments=2).status == "up-to-date"


def test_a_changed_shard_count_moves_the_entries(
    index_service, index_settings, use_index_config, people
) -> None:
    assert entries_of(index_settings, "Patient", "gender", 8) == 24  # the default for a required code
    use_index_config('{"shards": {"Patient.gender": 3}}')
    assert run_reindex(index_settings).status == "done"
    assert entries_of(index_settings, "Patient", "gender", 8) == 0
    assert entries_of(index_settings, "Patient", "gender", 3) == 24
    found = index_service.searching().search("Patient", [("gender", "female")], BASE, strict=True)
    assert {v.id for v in found.page.versions} == set(people[1::2])


class Clock:
    """Time that passes one unit per reading: a deadline of n stops a run after n checks."""

    def __init__(self) -> None:
        self.ticks = itertools.count()

    def __call__(self) -> float:
        return next(self.ticks)


def reindex_store(client: Any, index_settings, blobs: S3BlobStore) -> DynamoReindexStore:
    return DynamoReindexStore(client, index_settings.table_name, index_settings.tenant, blobs)


def reindexer(index_settings, index_service, **kwargs: Any) -> Reindexer:
    store = index_service.store
    blobs = S3BlobStore(__import__("boto3").client("s3"), index_settings.blob_bucket)
    return Reindexer(reindex_store(store.dynamodb, index_settings, blobs), **kwargs)


def test_an_interrupted_job_resumes_where_it_stopped(
    index_service, index_settings, use_index_config, people
) -> None:
    use_index_config('{"exclude": {"Patient": ["family"]}, "shards": {"Patient.gender": 2}}')
    job = reindexer(index_settings, index_service, segments=2, page_size=5, clock=Clock())
    first = job.run(deadline=20)  # every partition cleared, then stopped part way through the Scan
    assert first.status == "in-progress" and first.cleared_partitions == 9  # family, gender's 8 old shards
    assert first.scan_pages > 0 and first.segments_left
    rest = reindexer(index_settings, index_service, segments=2, page_size=5).run()
    assert rest.status == "done"
    # Resumed, not restarted: nothing cleared twice, every current item scanned once over the two runs.
    assert rest.cleared_partitions == 0
    assert first.scanned_items + rest.scanned_items == 24
    assert entries_of(index_settings, "Patient", "family", 1) == 0
    assert entries_of(index_settings, "Patient", "gender", 2) == 24
    assert born_in_the_1960s(index_service) == set(people[10:20])


def test_a_job_that_crashed_mid_page_replays_it_harmlessly(
    index_service, index_settings, use_index_config, people
) -> None:
    use_index_config('{"shards": {"Patient.gender": 4}}')
    client = index_service.store.dynamodb

    class Crashing:
        writes = 0

        def batch_write_item(self, **kwargs: Any) -> Any:
            Crashing.writes += 1
            if Crashing.writes == 2:
                raise ConnectionError("the Lambda died")
            return client.batch_write_item(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

    blobs = S3BlobStore(__import__("boto3").client("s3"), index_settings.blob_bucket)
    crashing = Reindexer(reindex_store(Crashing(), index_settings, blobs), segments=1, page_size=10)
    with pytest.raises(ConnectionError):
        crashing.run()
    assert reindexer(index_settings, index_service, segments=1, page_size=10).run().status == "done"
    assert entries_of(index_settings, "Patient", "gender", 4) == 24
    found = index_service.searching().search("Patient", [("gender", "male"), ("_count", "100")], BASE, True)
    assert {v.id for v in found.page.versions} == set(people[::2])


def test_a_job_abandoned_for_another_configuration_leaves_nothing_behind(
    index_service, index_settings, use_index_config, people
) -> None:
    use_index_config('{"shards": {"Patient.gender": 5}}')
    half = reindexer(index_settings, index_service, segments=1, page_size=5, clock=Clock()).run(deadline=12)
    assert half.status == "in-progress" and entries_of(index_settings, "Patient", "gender", 5) > 0
    use_index_config('{"shards": {"Patient.gender": 6}}')
    assert run_reindex(index_settings).status == "done"
    assert entries_of(index_settings, "Patient", "gender", 5) == 0  # the abandoned layout's partitions
    assert entries_of(index_settings, "Patient", "gender", 6) == 24


def test_a_run_overtaken_by_a_newer_configuration_stops_without_moving_its_positions(
    index_service, index_settings, use_index_config, people
) -> None:
    client = index_service.store.dynamodb
    newer_reports = []

    class DeployDuringTheRun:
        scans = 0

        def scan(self, **kwargs: Any) -> Any:
            DeployDuringTheRun.scans += 1
            if DeployDuringTheRun.scans == 2:  # a deployment with another configuration starts its job
                use_index_config('{"shards": {"Patient.gender": 7}}')
                newer = reindexer(index_settings, index_service, segments=1, page_size=5, clock=Clock())
                newer_reports.append(newer.run(deadline=3))
                use_index_config('{"shards": {"Patient.gender": 3}}')  # the old run's own process
            return client.scan(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

    use_index_config('{"shards": {"Patient.gender": 3}}')
    blobs = S3BlobStore(__import__("boto3").client("s3"), index_settings.blob_bucket)
    old = Reindexer(reindex_store(DeployDuringTheRun(), index_settings, blobs), segments=1, page_size=5)
    assert old.run().status == "superseded"
    assert newer_reports[0].status == "in-progress"
    use_index_config('{"shards": {"Patient.gender": 7}}')
    assert run_reindex(index_settings, segments=4).status == "done"  # resumes with the job's 1 segment
    assert entries_of(index_settings, "Patient", "gender", 7) == 24


# -- the Lambda handler ---------------------------------------------------------------------------------
def test_the_handler_runs_the_job_and_continues_itself_until_done(
    aws, index_settings, use_index_config, people, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from botocore.stub import Stubber
    from fhirlake.local.lambda_context import LocalLambdaContext
    from handlers import reindex as handler_module

    for name, value in aws.environment().items():
        monkeypatch.setenv(name, value)
    lambda_client = boto3.client("lambda")
    invocations = Stubber(lambda_client)
    monkeypatch.setattr(handler_module, "aws_client", lambda service: lambda_client)
    use_index_config('{"shards": {"Patient.gender": 2}}')
    context = LocalLambdaContext(function_name="fhirlake-reindex", timeout_seconds=600)
    monkeypatch.setattr(handler_module, "SAFETY_MARGIN_S", 10_000)  # out of time at once: one step only

    expected = {
        "FunctionName": context.invoked_function_arn,
        "InvocationType": "Event",
        "Payload": b'{"segments":2}',
    }
    invocations.add_response("invoke", {"StatusCode": 202}, expected)
    with invocations:
        first = handler_module.handler({"segments": 2}, context)
    assert first["status"] == "in-progress"
    invocations.assert_no_pending_responses()  # it re-invoked itself with the same event

    monkeypatch.setattr(handler_module, "SAFETY_MARGIN_S", 60)
    with Stubber(lambda_client):  # no invoke expected: a call would fail the test
        done = handler_module.handler({"segments": 2}, context)
    assert done["status"] == "done"
    assert entries_of(index_settings, "Patient", "gender", 2) == 24
