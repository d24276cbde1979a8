"""The local runtime delivers S3 drops (via SQS) and table stream records as Lambda would."""

from __future__ import annotations

import json
import time
from urllib.parse import unquote_plus

import pytest
from fhirlake.local.dispatcher import SqsPoller, StreamPoller

from tests.integration.fhir_http import FhirHttp

pytestmark = pytest.mark.http


class Recorder:
    def __init__(self, fail_first: bool = False) -> None:
        self.events: list[dict] = []
        self.fail_first = fail_first

    def __call__(self, event: dict, context) -> dict:
        self.events.append(event)
        if self.fail_first and len(self.events) == 1:
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
        return {"batchItemFailures": []}


def import_queue_poller(runtime, handler) -> SqsPoller:
    sqs = runtime.client("sqs")
    url = runtime.resources.queue_urls["import"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return SqsPoller(sqs, url, arn, handler, "import")


def drain(poller: SqsPoller, want: int, recorder: Recorder, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sum(len(e["Records"]) for e in recorder.events) < want:
        poller.poll_once(wait_seconds=1)


@pytest.mark.xdist_group("import-queue")
def test_landing_drop_reaches_the_import_handler_as_an_sqs_event(runtime) -> None:
    recorder = Recorder(fail_first=True)
    poller = import_queue_poller(runtime, recorder)
    runtime.client("s3").put_object(
        Bucket=runtime.resources.buckets["landing"], Key="in/Patient 1.ndjson", Body=b"{}"
    )
    drain(poller, 2, recorder)  # the failed record comes back (partial batch failure), then succeeds
    records = [r for e in recorder.events for r in e["Records"]]
    assert len(records) >= 2
    record = records[-1]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"].endswith(":fhirlake-import")
    s3_event = json.loads(record["body"])
    keys = [unquote_plus(r["s3"]["object"]["key"]) for r in s3_event["Records"]]
    assert keys == ["in/Patient 1.ndjson"]  # S3 URL-encodes keys in notifications
    poller.poll_once(wait_seconds=1)
    assert sum(len(e["Records"]) for e in recorder.events) == len(records)  # acknowledged: not redelivered


def test_table_stream_records_reach_a_stream_handler(runtime, api_url: str) -> None:
    seen: list[dict] = []
    poller = StreamPoller(
        runtime.client("dynamodbstreams"),
        runtime.resources.table_stream_arn,
        lambda event, _ctx: seen.extend(event["Records"]),
        "lake",
    )
    rid = (
        FhirHttp(api_url)
        .put("Basic/stream-probe", {"resourceType": "Basic", "id": "stream-probe", "code": {"text": "probe"}})
        .json()["id"]
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(
        r["dynamodb"]["Keys"]["pk"]["S"] == f"default#Basic#{rid}" for r in seen
    ):
        poller.poll_once()
    record = next(r for r in seen if r["dynamodb"]["Keys"]["pk"]["S"] == f"default#Basic#{rid}")
    assert record["eventSource"] == "aws:dynamodb" and record["eventName"] == "INSERT"
    assert record["dynamodb"]["NewImage"]["type"]["S"] == "Basic"
