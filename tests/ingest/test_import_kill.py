"""A real kill in the middle of a chunk: the import handler runs in a child process against a moto server and
is SIGKILLed after some of its batches are committed; the redelivered message then finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from fhirlake.ingest.bootstrap import build_import_service
from fhirlake.ingest.jobs import job_view
from fhirlake.local.moto_server import MotoServer
from fhirlake.local.provision import Provisioned, provision
from fhirlake.local.runtime import free_port

from .conftest import Importer, ndjson, patient

REPO = Path(__file__).resolve().parents[2]
LINES = 200  # 4 batches of 50

# The child: one invocation of the import on one message, announcing each committed batch on stdout.
CHILD = textwrap.dedent(
    """
    import sys
    from fhirlake.ingest.bootstrap import build_import_service

    service = build_import_service()
    store = service._core("strict").store
    put_many = store.put_many

    def announced(writes):
        put_many(writes)
        print("committed", len(writes), flush=True)

    store.put_many = announced
    print(service.handle_message(sys.stdin.read()), flush=True)
    """
)


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Provisioned]]:
    port = free_port()
    server = MotoServer("127.0.0.1", port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield url, provision(boto3.Session(region_name="us-east-1"), url)
    finally:
        server.stop()


def test_import_killed_mid_chunk_then_redelivered_loses_and_duplicates_nothing(moto_server) -> None:
    _, resources = moto_server
    env = {**os.environ, **resources.environment(), "PYTHONPATH": str(REPO / "functions")}
    importer = Importer(resources, build_import_service(env, boto3.Session(region_name="us-east-1")))
    job_id = importer.drop("kill.ndjson", ndjson([patient(i) for i in range(LINES)]))
    (event,) = importer.messages()

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(event["Body"])
    child.stdin.close()
    committed = 0
    while committed < 2 * 50:  # two batches stored, the third being prepared: kill it there
        line = child.stdout.readline()
        assert line.startswith("committed"), line
        committed += int(line.split()[1])
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL

    jobs = importer.service.jobs
    assert jobs.get(job_id)["status"] == "running" and not jobs.chunk(job_id, 0)["done"]
    store = importer.service._core("strict").store
    before = len(store.history("Patient", None, count=1000).versions)
    assert committed <= before < LINES  # stored up to the kill, not beyond the chunk

    # SQS delivers the message again once its visibility timeout expires
    outcome = importer.service.handle_message(event["Body"])
    assert outcome == [f"resumed: job {job_id}"], outcome
    importer.pump()
    view = job_view(jobs, job_id)
    assert view["status"] == "completed", view
    counts = view["counts"]
    assert (counts["read"], counts["stored"], counts["failed"]) == (LINES, LINES, 0)
    assert counts["unchanged"] == before  # what the killed invocation stored is not written again
    success = importer.result_lines(view, "success")
    assert sorted(r["line"] for r in success) == list(range(1, LINES + 1))  # every line exactly once
    history = store.history("Patient", None, count=1000).versions
    assert len(history) == LINES and {v.version_id for v in history} == {1}  # no duplicate version
    listed = importer.manifest(view)["files"]["success"]
    parts = importer.s3.list_objects_v2(Bucket="fhirlake-results", Prefix=f"{job_id}/SUCCESS/")["Contents"]
    assert len(parts) == len(listed) == 1
