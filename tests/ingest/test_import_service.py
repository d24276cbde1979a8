"""The import use case on moto in-process: jobs, results, idempotency, chunking, poison input."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import boto3
import orjson
import pytest
from fhirlake.ingest.jobs import jobs_list_view

from .conftest import Importer, ndjson, patient

REPO = Path(__file__).resolve().parents[2]


def versions(importer: Importer, rtype: str, rid: str) -> list[int]:
    store = importer.service._core("strict").store
    page = store.history(rtype, rid, count=100)
    return sorted(v.version_id for v in page.versions)


def test_ndjson_with_bad_lines_every_line_in_exactly_one_report(importer: Importer) -> None:
    good = [patient(i) for i in range(5)]
    body = b"\n".join(
        [
            orjson.dumps(good[0]),
            b'{"resourceType": "Patient", "id": "bad1", "gender": "bogus"}',  # 2: invalid code
            orjson.dumps(good[1]),
            b'{"resourceType": "Patient", "id": ',  # 4: syntax error
            b"",  # 5: blank, ignored
            b'{"resourceType": "NoSuchType", "id": "x"}',  # 6
            orjson.dumps(good[2]),
            b'{"resourceType": "Patient", "id": "has space"}',  # 8: bad id
            b'["not", "a", "resource"]',  # 9
            orjson.dumps(good[3]),
            orjson.dumps(good[4]),
        ]
    )
    view = importer.run("mixed.ndjson", body)
    assert view["status"] == "completed-with-errors"
    counts = view["counts"]
    assert (counts["read"], counts["stored"], counts["failed"]) == (10, 5, 5)
    assert counts["byType"]["Patient"] == {"stored": 5, "failed": 2}
    success = importer.result_lines(view, "success")
    failure = importer.result_lines(view, "failure")
    assert sorted(r["line"] for r in success) == [1, 3, 7, 10, 11]
    assert {r["id"] for r in success} == {f"p{i}" for i in range(5)}
    assert all(r["versionId"] == "1" and r["outcome"] == "created" for r in success)
    assert sorted(r["line"] for r in failure) == [2, 4, 6, 8, 9]
    by_line = {r["line"]: r for r in failure}
    assert by_line[2]["outcome"]["issue"][0]["expression"] == ["Patient.gender"]
    assert "line 1" in by_line[4]["outcome"]["issue"][0]["diagnostics"].lower()
    assert by_line[4]["original"] == '{"resourceType": "Patient", "id": '
    assert by_line[8]["outcome"]["issue"][0]["expression"] == ["Patient.id"]
    manifest = importer.manifest(view)
    assert manifest["status"] == "completed-with-errors" and manifest["counts"]["failed"] == 5
    assert manifest["source"]["key"] == "mixed.ndjson" and manifest["source"]["etag"]
    assert manifest["createdAt"] <= manifest["startedAt"] <= manifest["finishedAt"]


def test_redelivered_event_and_retried_chunk_create_no_new_versions(importer: Importer) -> None:
    job_id = importer.drop("p.ndjson", ndjson([patient(i) for i in range(3)]))
    (event,) = importer.messages()
    assert importer.service.handle_message(event["Body"])[0].startswith("chunk 0")
    again = importer.service.handle_message(event["Body"])  # the same S3 event delivered twice
    assert again == [f"redelivered: job {job_id} is already completed"]
    assert importer.service.jobs.get(job_id)["redeliveries"] == 1
    # a chunk killed after writing, before being marked done: its retry stores nothing new
    chunk_message = orjson.dumps({"fhirlake": "import-chunk", "job": job_id, "chunk": 0}).decode()
    assert "is completed" in importer.service.handle_message(chunk_message)[0]
    assert versions(importer, "Patient", "p1") == [1]


def test_chunk_interrupted_before_completion_is_retried_idempotently(
    importer: Importer, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = importer.service.jobs
    original = jobs.complete_chunk
    calls = []

    def crash_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Lambda killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(jobs, "complete_chunk", crash_once)
    job_id = importer.drop("crash.ndjson", ndjson([patient(i) for i in range(4)]))
    (event,) = importer.messages()
    with pytest.raises(RuntimeError):
        importer.service.handle_message(event["Body"])  # the message returns to the queue
    assert jobs.get(job_id)["status"] == "running"
    outcome = importer.service.handle_message(event["Body"])  # redelivery resumes the job
    assert outcome == [f"resumed: job {job_id}"] or outcome[0].startswith("chunk 0")
    importer.pump()
    view = importer.service.jobs.get(job_id)
    assert view["status"] == "completed"
    success = importer.result_lines({"id": job_id}, "success")
    assert len(success) == 4 and {r["outcome"] for r in success} == {"unchanged"}
    assert versions(importer, "Patient", "p2") == [1]


def test_same_file_dropped_again_is_skipped_unless_forced(importer: Importer) -> None:
    body = ndjson([patient(1)])
    first = importer.run("again.ndjson", body)
    second = importer.run("again.ndjson", body)
    assert second["status"] == "skipped" and second["duplicateOf"] == first["id"]
    assert "already imported" in second["reason"]
    assert importer.manifest(second)["status"] == "skipped"
    forced = importer.run("again.ndjson", body, **{"fhirlake-force": "true"})
    assert forced["status"] == "completed" and forced["counts"]["unchanged"] == 1
    changed = importer.run("again.ndjson", ndjson([patient(1, gender="male")]))
    assert changed["status"] == "completed" and changed["counts"]["stored"] == 1
    assert versions(importer, "Patient", "p1") == [1, 2]
    listed = jobs_list_view(importer.service.jobs)["jobs"]
    assert [j["id"] for j in listed] == [changed["id"], forced["id"], second["id"], first["id"]]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_large_file_is_split_into_parallel_chunks(chunked: Importer, gz: bool) -> None:
    resources = [patient(i) for i in range(40)]
    body = ndjson(resources, gz=False)
    body = body.replace(orjson.dumps(resources[27]), b'{"resourceType": "Patient", "id": "bad", "gender": 1}')
    name = "big.ndjson.gz" if gz else "big.ndjson"
    job_id = chunked.drop(name, gzip.compress(body) if gz else body)
    outcomes = chunked.pump()
    planned = next(o for o in outcomes if o.startswith("planned"))
    chunks = int(planned.split(" in ")[1].split()[0])
    assert chunks >= (2 if gz else 4)
    view = chunked.service.jobs.get(job_id)
    assert view["status"] == "completed-with-errors" and view["chunksDone"] == chunks
    success = chunked.result_lines(view, "success")
    failure = chunked.result_lines(view, "failure")
    assert sorted(r["line"] for r in success + failure) == list(range(1, 41))
    assert [r["line"] for r in failure] == [28]
    assert failure[0]["byteOffset"] == body.index(b'{"resourceType": "Patient", "id": "bad"')
    assert {r["id"] for r in success} == {f"p{i}" for i in range(40)} - {"p27"}
    staged = chunked.s3.list_objects_v2(Bucket="fhirlake-results", Prefix=f"{job_id}/_staged/")
    assert staged.get("KeyCount", 0) == 0  # staged gzip parts are removed at the end


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("garbage.ndjson", bytes(range(256)) * 40, "not text"),
        ("broken.ndjson.gz", gzip.compress(b'{"a":1}\n' * 100, mtime=0)[:-20], "truncated"),
        ("notgz.ndjson.gz", b'{"resourceType":"Patient"}\n', "not a valid gzip stream"),
        ("file.csv", b"a,b\n1,2\n", "Unsupported file type"),
    ],
    ids=["garbage", "truncated-gzip", "not-gzip", "csv"],  # stable across xdist workers
)
def test_poison_input_fails_its_job_with_a_reason(
    importer: Importer, key: str, body: bytes, reason: str
) -> None:
    view = importer.run(key, body)
    assert view["status"] == "failed" and reason in view["reason"]
    assert importer.messages() == []  # acknowledged: nothing returns to the queue


def test_absurdly_long_line_fails_the_job(aws) -> None:
    from fhirlake.ingest.reader import PoisonInput  # noqa: F401 - documents what is raised inside

    from .conftest import make_importer

    importer = make_importer(aws)
    importer.service._settings = type(importer.service._settings)(
        **{**importer.service._settings.__dict__, "max_line_bytes": 10_000}
    )
    body = ndjson([patient(1)]) + b'{"resourceType":"Patient","id":"p2","text":"' + b"x" * 50_000 + b'"}\n'
    view = importer.run("long.ndjson", body)
    assert view["status"] == "failed" and "Line 2" in view["reason"] and "line limit" in view["reason"]
    assert view["counts"]["stored"] == 1  # what was read before is kept and reported


def test_validation_level_from_metadata_or_key(importer: Importer) -> None:
    body = b'{"resourceType": "Patient", "id": "lvl", "gender": "bogus"}\n'
    assert importer.run("strict.ndjson", body)["status"] == "completed-with-errors"
    assert importer.run("validation=minimal/a.ndjson", body)["counts"]["stored"] == 1
    lenient = importer.run("b.ndjson", body, **{"fhirlake-validation": "structure-only"})
    assert lenient["validationLevel"] == "structure-only" and lenient["counts"]["stored"] == 1
    bad = importer.run("c.ndjson", body, **{"fhirlake-validation": "sloppy"})
    assert bad["status"] == "failed" and "Unknown validation level" in bad["reason"]


def test_unresolvable_conditional_reference_goes_to_failure(importer: Importer) -> None:
    org = {"resourceType": "Organization", "id": "o1", "identifier": [{"system": "urn:s", "value": "1"}]}
    assert importer.run("org.ndjson", ndjson([org]))["status"] == "completed"
    enc = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "serviceProvider": {"reference": "Organization?identifier=urn:s|1"},
    }
    missing = {**enc, "id": "e2", "serviceProvider": {"reference": "Organization?identifier=urn:s|2"}}
    view = importer.run("enc.ndjson", ndjson([enc, missing]))
    assert view["counts"]["stored"] == 1 and view["counts"]["failed"] == 1
    (failed,) = importer.result_lines(view, "failure")
    issue = failed["outcome"]["issue"][0]
    assert failed["line"] == 2 and issue["code"] == "not-found"
    assert issue["expression"] == ["Encounter.serviceProvider.reference"]
    store = importer.service._core("strict").store
    assert store.current("Encounter", "e1").resource["serviceProvider"]["reference"] == "Organization/o1"


def small_synthea_bundle(limit: int = 20) -> dict:
    """The first entries of a Synthea transaction whose urn:uuid references stay inside the Bundle (a whole
    patient takes ~10 s on moto in-process, which copies its table for every transaction)."""
    path = sorted((REPO / "samples" / "synthea").glob("*.json.gz"))[0]
    bundle = orjson.loads(gzip.decompress(path.read_bytes()))
    kept, urls = [], set()
    for entry in bundle["entry"]:
        refs = set(re.findall(r'"reference":"(urn:uuid:[^"]+)"', orjson.dumps(entry["resource"]).decode()))
        if refs <= urls | {entry["fullUrl"]} and len(kept) < limit:
            kept.append(entry)
            urls.add(entry["fullUrl"])
    assert len({e["resource"]["resourceType"] for e in kept}) >= 4
    return {**bundle, "entry": kept}


def test_transaction_bundle_keeps_urn_uuid_ids_and_reimport_adds_no_versions(importer: Importer) -> None:
    bundle = small_synthea_bundle()
    entries = len(bundle["entry"])
    patient_id = next(e["fullUrl"][9:] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    data = gzip.compress(orjson.dumps(bundle))
    view = importer.run("bundles/one.json.gz", data)
    assert view["status"] == "completed", importer.result_lines(view, "failure")[:1]
    assert view["counts"]["stored"] == entries
    success = importer.result_lines(view, "success")
    assert sorted(r["entry"] for r in success) == list(range(entries))
    store = importer.service._core("strict").store
    stored = store.current("Patient", patient_id)
    assert stored is not None and stored.version_id == 1
    again = importer.run("bundles/copy.json.gz", data)
    assert again["status"] == "completed" and again["counts"]["unchanged"] == entries
    assert store.current("Patient", patient_id).version_id == 1


def test_single_resource_json_and_failed_transaction(importer: Importer) -> None:
    one = importer.run("one.json", orjson.dumps(patient(9)))
    assert one["counts"]["stored"] == 1
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(10), "request": {"method": "PUT", "url": "Patient/p10"}},
            {"resource": {"resourceType": "Patient", "id": "p11", "gender": "bogus"},
             "request": {"method": "PUT", "url": "Patient/p11"}},
        ],
    }  # fmt: skip
    view = importer.run("tx.json", orjson.dumps(tx))
    assert view["status"] == "completed-with-errors" and view["counts"]["failed"] == 2
    failure = importer.result_lines(view, "failure")
    assert [r["entry"] for r in failure] == [0, 1]
    assert "Bundle.entry[1]" in str(failure[0]["outcome"])
    assert importer.service._core("strict").store.current("Patient", "p10") is None  # all or nothing


def test_test_events_and_other_buckets_are_ignored(importer: Importer) -> None:
    assert importer.service.handle_message('{"Event": "s3:TestEvent"}') == ["ignored: s3:TestEvent"]
    record = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
              "s3": {"bucket": {"name": "elsewhere"}, "object": {"key": "x.ndjson"}}}  # fmt: skip
    assert importer.service.handle_message(orjson.dumps({"Records": [record]}).decode()) == [
        "ignored: not the landing bucket"
    ]
    assert importer.service.handle_message("not json") == ["ignored: not JSON"]
    boto3.client("s3", region_name="us-east-1")  # the mock is still active


def test_import_jobs_are_readable_through_the_api(importer: Importer) -> None:
    from fhirlake.api.app import FhirApi
    from fhirlake.api.http import Request
    from fhirlake.validation import get_validator

    view = importer.run("route.ndjson", ndjson([patient(1)]))
    api = FhirApi(importer.service._core("strict"), get_validator("strict"), 1 << 20)
    one = api.handle(Request("GET", f"/_import/{view['id']}"))
    assert one.status == 200 and orjson.loads(one.body)["counts"]["stored"] == 1
    listed = api.handle(Request("GET", "/_import", [("_count", "1")]))
    body = orjson.loads(listed.body)
    assert [j["id"] for j in body["jobs"]] == [view["id"]] and body["next"]
    missing = api.handle(Request("GET", "/_import/nope"))
    assert missing.status == 404 and orjson.loads(missing.body)["resourceType"] == "OperationOutcome"
