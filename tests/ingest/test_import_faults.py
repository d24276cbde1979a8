"""Faults inside a chunk, on moto in-process: an invocation running out of time, a message the queue gives
up on (its dead-letter queue), and the completion event on EventBridge."""

from __future__ import annotations

import gzip

import boto3
import orjson
import pytest
from fhirlake.ingest.jobs import job_view
from fhirlake.ingest.pipeline import LineImporter
from fhirlake.ingest.service import ENV_CHUNK_BYTES

from .conftest import RESULTS, Importer, make_importer, ndjson, patient

BAD_LINE = b'{"resourceType": "Patient", "id": "bad", "gender": 1}'


class Budget:
    """One invocation's clock: plenty of time for ``lines`` lines (the import asks once per line), then
    none (below any margin)."""

    def __init__(self, lines: int) -> None:
        self.left = lines

    def __call__(self) -> float:
        self.left -= 1
        return 900.0 if self.left >= 0 else 0.0


def forty_lines_one_bad() -> bytes:
    resources = [patient(i) for i in range(40)]
    return ndjson(resources).replace(orjson.dumps(resources[27]), BAD_LINE)


def assert_every_line_once(importer: Importer, job_id: str, lines: int) -> tuple[list[dict], list[dict]]:
    view = {"id": job_id}
    success, failure = importer.result_lines(view, "success"), importer.result_lines(view, "failure")
    assert sorted(r["line"] for r in success + failure) == list(range(1, lines + 1))
    listed = {
        url.split("/", 3)[3]
        for kind in ("success", "failure")
        for url in importer.manifest(view)["files"][kind]
    }
    stored = importer.s3.list_objects_v2(Bucket=RESULTS, Prefix=f"{job_id}/")["Contents"]
    parts = {o["Key"] for o in stored if "/SUCCESS/" in o["Key"] or "/FAILURE/" in o["Key"]}
    assert parts == listed  # no stray part beside the manifest's
    return success, failure


def only_first_versions(importer: Importer, ids: set[str]) -> bool:
    store = importer.service._core("strict").store
    return all(len(store.history("Patient", rid, count=10).versions) == 1 for rid in ids)


@pytest.mark.parametrize(
    ("gz", "chunk_bytes"),
    [(False, None), (True, None), (False, "1200"), (True, "1200")],
    ids=["whole", "whole-gzip", "byte-ranges", "staged-gzip"],
)
def test_chunk_out_of_time_continues_where_it_stopped(aws, gz: bool, chunk_bytes: str | None) -> None:
    importer = make_importer(aws, **({ENV_CHUNK_BYTES: chunk_bytes} if chunk_bytes else {}))
    body = forty_lines_one_bad()
    job_id = importer.drop("slow.ndjson.gz" if gz else "slow.ndjson", gzip.compress(body) if gz else body)
    outcomes = importer.pump(time_left=lambda: Budget(7))
    assert sum(o.startswith("paused") for o in outcomes) >= 4, outcomes
    view = job_view(importer.service.jobs, job_id)
    assert view["status"] == "completed-with-errors"
    assert (view["counts"]["read"], view["counts"]["stored"], view["counts"]["failed"]) == (40, 39, 1)
    success, failure = assert_every_line_once(importer, job_id, 40)
    assert [r["line"] for r in failure] == [28] and failure[0]["byteOffset"] == body.index(BAD_LINE)
    assert len(importer.manifest(view)["files"]["success"]) > view["chunks"]  # several segments per chunk
    assert {r["outcome"] for r in success} == {"created"}
    assert only_first_versions(importer, {r["id"] for r in success})


def test_chunk_in_the_dead_letter_queue_reports_its_lines_and_finishes_the_job(aws) -> None:
    importer = make_importer(aws, **{ENV_CHUNK_BYTES: "1200"})
    body = forty_lines_one_bad()
    job_id = importer.drop("dead.ndjson", body)
    (event,) = importer.messages()
    assert importer.service.handle_message(event["Body"])[0].startswith("planned")
    chunk_messages = importer.messages()
    dying = next(m for m in chunk_messages if orjson.loads(m["Body"])["chunk"] == 1)
    for message in chunk_messages:
        if message is not dying:
            importer.service.handle_message(message["Body"])
    # chunk 1 gets through two lines, then the invocations on it keep dying: its message ends in the DLQ
    assert importer.service.handle_message(dying["Body"], Budget(2))[0].startswith("paused")
    (continuation,) = importer.messages()
    assert importer.service.jobs.get(job_id)["status"] == "running"
    outcome = importer.service.handle_dead_letter(continuation["Body"])
    assert outcome[0].startswith("gave up: chunk 1") and importer.messages() == []
    view = job_view(importer.service.jobs, job_id)
    assert view["status"] == "completed-with-errors" and "dead-letter queue" in view["reason"]
    success, failure = assert_every_line_once(importer, job_id, 40)
    chunk = importer.service.jobs.chunk(job_id, 1)
    first = chunk["firstLine"]
    lost = sorted(r["line"] for r in failure if r["line"] != 28)
    assert lost and lost[0] == first + 2  # the two lines imported before are in SUCCESS
    assert {first, first + 1} <= {r["line"] for r in success}
    dead = next(r for r in failure if r["line"] == lost[0])
    assert "dead-letter queue" in dead["outcome"]["issue"][0]["diagnostics"]
    assert orjson.loads(dead["original"])["id"] == f"p{lost[0] - 1}"  # the line itself, to retry it
    assert view["counts"]["read"] == 40
    again = importer.service.handle_dead_letter(continuation["Body"])  # delivered twice: nothing changes
    assert (
        again[0].startswith("ignored") and job_view(importer.service.jobs, job_id)["counts"] == view["counts"]
    )


def test_small_object_whose_chunk_keeps_crashing_ends_in_failure_not_lost(
    importer: Importer, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = importer.drop("crash.ndjson", ndjson([patient(i) for i in range(3)]))
    (event,) = importer.messages()

    def crash(*args, **kwargs):
        raise MemoryError("the Lambda ran out of memory")

    monkeypatch.setattr(LineImporter, "run", crash)
    with pytest.raises(MemoryError):  # imported inline with the event: the event returns to the queue
        importer.service.handle_message(event["Body"])
    assert importer.service.handle_message(event["Body"]) == [f"resumed: job {job_id}"]
    (chunk_message,) = importer.messages()
    for _ in range(3):  # maxReceiveCount attempts, each one dying
        with pytest.raises(MemoryError):
            importer.service.handle_message(chunk_message["Body"])
    monkeypatch.undo()
    assert importer.service.handle_dead_letter(chunk_message["Body"])[0].startswith("gave up: chunk 0")
    view = job_view(importer.service.jobs, job_id)
    assert view["status"] == "completed-with-errors" and view["counts"]["failed"] == 3
    _, failure = assert_every_line_once(importer, job_id, 3)
    assert all("dead-letter queue" in r["outcome"]["issue"][0]["diagnostics"] for r in failure)


def test_completion_event_on_eventbridge_carries_job_status_and_counts(importer: Importer) -> None:
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    target = sqs.create_queue(QueueName="import-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="imports", EventPattern=orjson.dumps({"source": ["fhirlake.import"]}).decode())
    events.put_targets(Rule="imports", Targets=[{"Id": "queue", "Arn": arn}])
    view = importer.run("evented.ndjson", ndjson([patient(1), patient(2)]) + BAD_LINE + b"\n")
    (message,) = sqs.receive_message(QueueUrl=target, MaxNumberOfMessages=10)["Messages"]
    event = orjson.loads(message["Body"])
    assert event["source"] == "fhirlake.import" and event["detail-type"] == "Import Job Finished"
    detail = event["detail"]
    assert detail["jobId"] == view["id"] and detail["status"] == "completed-with-errors"
    assert detail["counts"] == {"read": 3, "stored": 2, "unchanged": 0, "failed": 1}
    assert detail["manifest"] == f"s3://{RESULTS}/{view['id']}/manifest.json"
    assert detail["source"]["key"] == "evented.ndjson" and detail["source"]["etag"]
