"""Import tests on moto in-process: the real ImportService, its queue pumped by hand."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import orjson
import pytest
from fhirlake.ingest.bootstrap import build_import_service
from fhirlake.ingest.jobs import TERMINAL, job_id_for, job_view
from fhirlake.ingest.service import ENV_CHUNK_BYTES, ImportService
from fhirlake.local.provision import Provisioned

LANDING = "fhirlake-landing"
RESULTS = "fhirlake-results"


@dataclass
class Importer:
    """Drop objects, pump the import queue into the service (as the event source mapping would)."""

    aws: Provisioned
    service: ImportService
    s3: Any = field(default_factory=lambda: boto3.client("s3", region_name="us-east-1"))
    sqs: Any = field(default_factory=lambda: boto3.client("sqs", region_name="us-east-1"))

    @property
    def queue(self) -> str:
        return self.aws.queue_urls["import"]

    def drop(self, key: str, body: bytes, **metadata: str) -> str:
        put = self.s3.put_object(Bucket=LANDING, Key=key, Body=body, Metadata=metadata)
        return job_id_for(LANDING, key, put.get("VersionId"), put["ETag"].strip('"'))

    def messages(self) -> list[dict[str, Any]]:
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for message in got:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            out += [m for m in got if "s3:TestEvent" not in m["Body"]]  # sent when provisioned

    def pump(self, time_left: Callable[[], Callable[[], float]] | None = None) -> list[str]:
        """Handle queued messages until none is left; ``time_left`` makes each invocation's clock."""
        outcomes: list[str] = []
        while batch := self.messages():
            for message in batch:
                outcomes += self.service.handle_message(message["Body"], time_left() if time_left else None)
        return outcomes

    def run(self, key: str, body: bytes, **metadata: str) -> dict[str, Any]:
        job_id = self.drop(key, body, **metadata)
        self.pump()
        view = job_view(self.service.jobs, job_id)
        assert view is not None and view["status"] in TERMINAL, view
        return view

    def result_lines(self, view: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        lines = []
        for url in self.manifest(view)["files"][kind]:
            key = url.split("/", 3)[3]
            body = self.s3.get_object(Bucket=RESULTS, Key=key)["Body"].read()
            lines += [orjson.loads(line) for line in body.splitlines()]
        return lines

    def manifest(self, view: dict[str, Any]) -> dict[str, Any]:
        return orjson.loads(
            self.s3.get_object(Bucket=RESULTS, Key=f"{view['id']}/manifest.json")["Body"].read()
        )


def make_importer(aws: Provisioned, **env: str) -> Importer:
    service = build_import_service({**aws.environment(), **env}, boto3.Session(region_name="us-east-1"))
    return Importer(aws, service)


@pytest.fixture
def importer(aws: Provisioned) -> Importer:
    return make_importer(aws)


@pytest.fixture
def chunked(aws: Provisioned) -> Importer:
    return make_importer(aws, **{ENV_CHUNK_BYTES: "1200"})


def ndjson(resources: list[dict[str, Any]], gz: bool = False) -> bytes:
    data = b"".join(orjson.dumps(r) + b"\n" for r in resources)
    return gzip.compress(data) if gz else data


def patient(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p{n}",
        "name": [{"family": f"Family{n}", "given": ["Given"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
        **extra,
    }
