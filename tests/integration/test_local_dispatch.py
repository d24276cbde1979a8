"""The local runtime's dispatchers deliver queue messages and table stream records as Lambda would.

(The landing bucket → import queue → import function path is exercised end to end by the import tests.)
"""

from __future__ import annotations

import time
import uuid

import pytest
from fhirlake import topology
from fhirlake.local.dispatcher import ScheduledInvoker, SqsPoller, StreamPoller, matches, rate_seconds
from fhirlake.local.http_front import HttpFront, Route

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
    # The lake's event filter keeps exactly the version inserts: no current-version or index items.
    lake_view = [r for r in seen if matches(topology.LAKE_STREAM_FILTER, r)]
    assert [r for r in lake_view if r["dynamodb"]["Keys"]["pk"]["S"] == key] == versions
    keys_seen = [r["dynamodb"]["Keys"] for r in seen]
    assert {"pk": {"S": key}, "sk": {"S": "cur"}} in keys_seen


def test_event_filter_rules_follow_lambda_semantics() -> None:
    record = {"eventName": "MODIFY", "dynamodb": {"Keys": {"sk": {"S": "v#0000000002"}}}}
    assert matches({"dynamodb": {"Keys": {"sk": {"S": [{"prefix": "v#"}]}}}}, record)
    assert not matches(topology.LAKE_STREAM_FILTER, record)  # every key must match (MODIFY is not INSERT)
    assert matches({"eventName": ["REMOVE", "MODIFY"]}, record)  # any value of a list
    assert matches({"dynamodb": {"NewImage": [{"exists": False}]}}, record)
    assert not matches({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "v#"}]}}}}, record)


def test_schedule_rates_and_scheduled_events() -> None:
    assert rate_seconds("rate(15 minutes)") == 900 and rate_seconds("rate(1 day)") == 86400
    with pytest.raises(ValueError, match="cron"):
        rate_seconds("cron(0 12 * * ? *)")
    events: list[dict] = []
    invoker = ScheduledInvoker(
        lambda event, _ctx: events.append(event), "maintenance", "rate(1 hour)", "eu-west-1"
    )
    invoker.invoke_now()
    assert events[0]["detail-type"] == "Scheduled Event" and events[0]["source"] == "aws.events"
    assert events[0]["region"] == "eu-west-1"


def test_http_front_routes_paths_to_the_function_that_claims_them() -> None:
    calls: list[tuple[str, dict]] = []

    def function(name: str):
        def handler(event: dict, context) -> dict:
            calls.append((context.function_name, event))
            return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": name}

        return handler

    front = HttpFront(
        [
            Route("", function("api"), "fhirlake-api"),
            Route("/_analytics", function("analytics"), "fhirlake-analytics"),
        ],
        port=0,
    )
    front.start()
    try:
        client = FhirHttp(front.url)
        for path, expected in (
            ("/_analytics/trend?code=x", "analytics"),
            ("/_analyticsX", "api"),
            ("/Patient", "api"),
        ):
            assert client.get(path).text == expected
    finally:
        front.stop()
    name, event = calls[0]
    assert name == "fhirlake-analytics" and event["resource"] == "/_analytics/{proxy+}"
    assert event["pathParameters"] == {"proxy": "trend"} and event["path"] == "/_analytics/trend"
