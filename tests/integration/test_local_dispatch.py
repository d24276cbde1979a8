"""The local runtime's dispatchers deliver queue messages and table stream records as Lambda would.

(The landing bucket → import queue → import function path is exercised end to end by the import tests.)
"""

from __future__ import annotations

import time
import uuid

import pytest
from fhirlake.local.dispatcher import SqsPoller, StreamPoller

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http


class Recorder:
    """A handler that fails the first record it ever sees once (a partial batch failure)."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.failed_once: set[str] = set()

    def __call__(self, event: dict, context) -> dict:
        failures = []
        for record in event["Records"]:
            self.records.append(record)
            if not self.failed_once:
                self.failed_once.add(record["body"])
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}


def test_sqs_poller_delivers_batches_and_honours_partial_failures(runtime) -> None:
    sqs = runtime.client("sqs")
    url = sqs.create_queue(
        QueueName=f"dispatch-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "0"}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    recorder = Recorder()
    poller = SqsPoller(sqs, url, arn, recorder, "probe")
    for body in ("one", "two"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    deadline = time.monotonic() + 15
    while len(recorder.records) < 3 and time.monotonic() < deadline:
        poller.poll_once(wait_seconds=1)
    bodies = [r["body"] for r in recorder.records]
    failed = next(iter(recorder.failed_once))
    assert (
        bodies.count(failed) == 2 and len(bodies) == 3
    )  # the failed record came back once, the other did not
    record = recorder.records[0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn
    assert poller.poll_once(wait_seconds=1) == 0  # both acknowledged


def test_table_stream_records_reach_a_stream_handler(runtime, api_url: str) -> None:
    seen: list[dict] = []
    poller = StreamPoller(
        runtime.client("dynamodbstreams"),
        runtime.resources.table_stream_arn,
        lambda event, _ctx: seen.extend(event["Records"]),
        "lake",
        starting_position="LATEST",
    )
    poller.poll_once()  # positions the shard iterators before the write
    rid = uuid.uuid4().hex
    FhirHttp(api_url).put(f"Basic/{rid}", {"resourceType": "Basic", "id": rid, "code": {"text": "probe"}})
    key = f"default#Basic#{rid}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(r["dynamodb"]["Keys"]["pk"]["S"] == key for r in seen):
        poller.poll_once()
    versions = [
        r
        for r in seen
        if r["dynamodb"]["Keys"]["pk"]["S"] == key and r["dynamodb"]["Keys"]["sk"]["S"].startswith("v#")
    ]
    assert versions and versions[0]["eventSource"] == "aws:dynamodb" and versions[0]["eventName"] == "INSERT"
    assert versions[0]["dynamodb"]["NewImage"]["type"]["S"] == "Basic"
