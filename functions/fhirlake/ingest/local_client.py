"""The client side of a local import (``fhirlake import``): upload files to the landing bucket of a running
``fhirlake serve`` and follow their jobs. The endpoints come from the state file ``serve`` writes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from fhirlake import topology
from fhirlake.ingest.jobs import TERMINAL, JobStore, job_id_for, job_view

SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz", ".json", ".json.gz")
# Targets of conditional references (Synthea): imported (and waited for) before everything else.
REFERENCE_TARGETS = {"Organization", "Location", "Practitioner", "PractitionerRole"}


def expand(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.name.lower().endswith(SUFFIXES))
        else:
            files.append(path)
    return files


def tiers(files: list[Path]) -> list[list[Path]]:
    """Reference targets first: Synthea's ``_hospitalInformation``/``_practitionerInformation`` bundles and
    Bulk Data files named ``Organization.000.ndjson`` and the like."""
    first = [f for f in files if f.name.startswith("_") or f.name.split(".")[0] in REFERENCE_TARGETS]
    rest = [f for f in files if f not in first]
    return [tier for tier in (first, rest) if tier]


@dataclass
class LocalImport:
    endpoint: str
    landing: str = topology.LANDING_BUCKET.local_name
    table: str = topology.RESOURCE_TABLE.local_name
    results: str = topology.RESULTS_BUCKET.local_name
    tenant: str = "default"

    def __post_init__(self) -> None:
        session = boto3.Session(
            region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
        )
        self.s3 = session.client("s3", endpoint_url=self.endpoint)
        self.jobs = JobStore(session.client("dynamodb", endpoint_url=self.endpoint), self.table, self.tenant)

    def upload(
        self,
        path: Path,
        key: str,
        metadata: dict[str, str],
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Upload one file; returns its job id."""
        extra = {"Metadata": metadata} if metadata else None
        self.s3.upload_file(str(path), self.landing, key, ExtraArgs=extra, Callback=progress)
        head = self.s3.head_object(Bucket=self.landing, Key=key)
        return job_id_for(self.landing, key, head.get("VersionId"), head["ETag"].strip('"'))

    def wait(self, job_ids: list[str], timeout: float = 3600) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        views: dict[str, dict[str, Any]] = {}
        pending = list(job_ids)
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                job = self.jobs.get(job_id)
                if job is not None and job["status"] in TERMINAL:
                    views[job_id] = job_view(self.jobs, job_id) or job
                    pending.remove(job_id)
            if pending:
                time.sleep(0.2)
        for job_id in pending:
            views[job_id] = job_view(self.jobs, job_id) or {"id": job_id, "status": "unknown"}
        return views


def progress_bar(name: str, size: int, out: Any = sys.stderr) -> Callable[[int], None]:
    sent = [0]

    def update(chunk: int) -> None:
        sent[0] += chunk
        done = sent[0] / size if size else 1.0
        bar = "#" * int(done * 30)
        out.write(f"\r  {name[:40]:<40} [{bar:<30}] {done:4.0%}")
        if sent[0] >= size:
            out.write("\n")
        out.flush()

    return update
