"""Import results in the results bucket, HealthLake-style: every input line in exactly one place.

    {job}/manifest.json                  the job: source, status, counts, timings, the files below
    {job}/SUCCESS/part-{chunk:05d}-{segment:03d}-{attempt}.ndjson
                      one line per stored input line: line, resourceType, id, versionId, outcome
                      (created | updated | unchanged)
    {job}/FAILURE/part-{chunk:05d}-{segment:03d}-{attempt}.ndjson
                      one line per rejected input line: line, byteOffset, the original line (or a pointer
                      to it when over 256 KiB) and an OperationOutcome with every problem found

A chunk runs in one segment, or in several when an invocation runs short of time (each continues where
the previous one stopped). A segment's parts are written whole when it ends, under a name unique to the
invocation; the chunk record lists the parts of the segments that were recorded, and only those reach the
manifest. Parts of an invocation that lost a race or died before recording its segment are deleted (by
itself, or as strays when the job finishes), so every input line is in exactly one listed part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from fhirlake.fhir.outcome import Issue, operation_outcome
from fhirlake.ingest.jobs import empty_counts

MAX_ECHO_BYTES = 256 * 1024  # longer original lines are reported by a pointer, not copied


@dataclass
class ChunkResults:
    source: dict[str, Any]  # bucket, key, versionId: where the pointers point
    success: list[bytes] = field(default_factory=list)
    failure: list[bytes] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=empty_counts)

    def _type(self, rtype: str | None) -> dict[str, int]:
        return self.counts["byType"].setdefault(rtype or "(unknown)", {"stored": 0, "failed": 0})

    def stored(self, where: dict[str, Any], rtype: str, rid: str, version: int, outcome: str) -> None:
        self.counts["read"] += 1
        self.counts["stored"] += 1
        if outcome == "unchanged":
            self.counts["unchanged"] += 1
        self._type(rtype)["stored"] += 1
        record = {**where, "resourceType": rtype, "id": rid, "versionId": str(version), "outcome": outcome}
        self.success.append(orjson.dumps(record))

    def failed(
        self,
        where: dict[str, Any],
        issues: list[Issue],
        original: bytes | None = None,
        rtype: str | None = None,
        rid: str | None = None,
    ) -> None:
        self.counts["read"] += 1
        self.counts["failed"] += 1
        self._type(rtype)["failed"] += 1
        record: dict[str, Any] = dict(where)
        if rtype:
            record["resourceType"] = rtype
        if rid:
            record["id"] = rid
        if original is not None and len(original) <= MAX_ECHO_BYTES:
            record["original"] = original.decode("utf-8", "replace")
        elif original is not None or "line" in where:
            pointer = {"bucket": self.source["bucket"], "key": self.source["key"]}
            if self.source.get("versionId"):
                pointer["versionId"] = self.source["versionId"]
            if "byteOffset" in where and original is not None:
                # decompressed bytes, for .gz sources
                pointer["byteRange"] = [where["byteOffset"], where["byteOffset"] + len(original)]
            record["pointer"] = pointer
        record["outcome"] = operation_outcome(issues)
        self.failure.append(orjson.dumps(record))

    def write(self, s3: Any, bucket: str, job_id: str, index: int, attempt: str) -> dict[str, list[str]]:
        """Upload the non-empty parts; returns {"success": [key] or [], "failure": [key] or []}."""
        written: dict[str, list[str]] = {"success": [], "failure": []}
        for kind, lines in (("success", self.success), ("failure", self.failure)):
            if lines:
                key = f"{job_id}/{kind.upper()}/part-{index:05d}-{attempt}.ndjson"
                s3.put_object(
                    Bucket=bucket, Key=key, Body=b"\n".join(lines) + b"\n", ContentType="application/x-ndjson"
                )
                written[kind].append(key)
        return written


def listed_parts(chunk: dict[str, Any]) -> dict[str, list[str]]:
    """The result parts a done chunk recorded (a single key per kind in records written before chunks
    could run in segments)."""
    written = (chunk.get("counts") or {}).get("results") or {}
    parts: dict[str, list[str]] = {}
    for kind in ("success", "failure"):
        found = written.get(kind) or []
        parts[kind] = [found] if isinstance(found, str) else list(found)
    return parts


def write_manifest(s3: Any, bucket: str, job: dict[str, Any], chunks: list[dict[str, Any]]) -> str:
    key = f"{job['id']}/manifest.json"
    manifest = {
        **job,
        "files": {
            kind: [f"s3://{bucket}/{key}" for c in chunks for key in listed_parts(c)[kind]]
            for kind in ("success", "failure")
        },
    }
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=orjson.dumps(manifest, option=orjson.OPT_INDENT_2),
        ContentType="application/json",
    )
    return key
