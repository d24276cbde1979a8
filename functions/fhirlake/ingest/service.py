"""The import use case: S3 notifications and chunk messages in, jobs, stored resources and results out.

One queue carries two message kinds (``handle_message``):

- an S3 ``ObjectCreated`` notification of the landing bucket (anything else is acknowledged and
  ignored: ``s3:TestEvent``, other buckets): the object gets a job (deterministic id per object
  version, so a redelivered event finds its job); an object already imported with the same ETag is
  ``skipped`` unless its metadata says ``fhirlake-force: true``. A small object is imported right
  there as one chunk; a larger NDJSON object is cut into line-aligned parts of ``chunk_bytes``
  (byte ranges of the object, or staged decompressed parts for gzip, which cannot be read from the
  middle), one chunk message each, so many invocations import one file in parallel;
- a chunk message ``{"fhirlake": "import-chunk", "job": id, "chunk": n}``.

A chunk writes its SUCCESS/FAILURE parts, then is marked done and counted on the job atomically; the
invocation that completes the last chunk writes the manifest, sets the final status and emits an
EventBridge event (source ``fhirlake.import``). Poison input fails its job with a reason and is
acknowledged: it never returns to the queue.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import orjson
from botocore.exceptions import ClientError

from fhirlake import topology
from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.instant import now_instant
from fhirlake.fhir.outcome import FhirError
from fhirlake.ingest import jobs as J
from fhirlake.ingest.pipeline import LineImporter, import_document
from fhirlake.ingest.reader import BLOCK_BYTES, MAX_LINE_BYTES, PoisonInput, gunzip, lines, sniffed, split
from fhirlake.ingest.results import ChunkResults, write_manifest
from fhirlake.validation import ValidationLevel

CHUNK_MESSAGE = "import-chunk"
EVENT_SOURCE = "fhirlake.import"
EVENT_DETAIL_TYPE = "Import Job Finished"
META_VALIDATION = "fhirlake-validation"  # x-amz-meta-fhirlake-validation
META_FORCE = "fhirlake-force"  # x-amz-meta-fhirlake-force: true
ENV_CHUNK_BYTES = "FHIRLAKE_IMPORT_CHUNK_BYTES"
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024  # decompressed bytes per invocation (~45,000 Synthea resources)
GZIP_RATIO = 8  # a gzip object this many times smaller than a chunk is imported in one go
MAX_JSON_BYTES = 256 * 1024 * 1024
_LEVEL_SEGMENT = re.compile(r"(?:^|/)validation=([a-z-]+)/")


@dataclass(frozen=True)
class ImportSettings:
    landing_bucket: str
    results_bucket: str
    queue_url: str
    default_level: str = "strict"
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    max_line_bytes: int = MAX_LINE_BYTES

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ImportSettings:
        env = dict(os.environ if env is None else env)
        return cls(
            landing_bucket=env[topology.LANDING_BUCKET.env_var],
            results_bucket=env[topology.RESULTS_BUCKET.env_var],
            queue_url=env[topology.IMPORT_QUEUE.env_var],
            default_level=env.get(topology.ENV_VALIDATION_LEVEL, "strict"),
            chunk_bytes=int(env.get(ENV_CHUNK_BYTES, DEFAULT_CHUNK_BYTES)),
        )


@dataclass(frozen=True)
class Core:
    """What one validation level needs: the service, its store and validator, and the FHIR API's
    request handler (batch Bundle entries run through it)."""

    service: Any
    store: Any
    validator: Any
    handle: Callable[[Any], Any]


def file_format(key: str) -> tuple[str | None, bool]:
    """("ndjson" | "json" | None, gzip?) from the key's suffix."""
    name = key.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson", gz
    if name.endswith(".json"):
        return "json", gz
    return None, gz


def validation_level(key: str, metadata: dict[str, str], default: str) -> str:
    """Object metadata ``fhirlake-validation`` wins over a ``validation=<level>/`` key segment."""
    found = _LEVEL_SEGMENT.search(key)
    level = metadata.get(META_VALIDATION) or (found.group(1) if found else None) or default
    return ValidationLevel(level.strip().lower()).value  # ValueError names a bad level


class ImportService:
    def __init__(
        self,
        settings: ImportSettings,
        *,
        s3: Any,
        sqs: Any,
        events: Any,
        jobs: J.JobStore,
        core: Callable[[str], Core],
        clock: Callable[[], str] = now_instant,
        log: Callable[..., None] | None = None,
    ) -> None:
        self._settings, self._s3, self._sqs, self._events = settings, s3, sqs, events
        self.jobs, self._core, self._clock = jobs, core, clock
        self._log = log or (lambda message, **fields: None)

    # -- messages ---------------------------------------------------------------------------
    def handle_message(self, body: str) -> list[str]:
        """Process one queue message; returns what happened (for logs and tests: no PHI)."""
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ["ignored: not JSON"]
        if not isinstance(message, dict):
            return ["ignored: not an object"]
        if message.get("Event") == "s3:TestEvent":
            return ["ignored: s3:TestEvent"]
        if message.get("fhirlake") == CHUNK_MESSAGE:
            return [self.run_chunk(str(message["job"]), int(message["chunk"]))]
        outcomes = []
        for record in message.get("Records") or []:
            if record.get("eventSource") == "aws:s3" and str(record.get("eventName", "")).startswith(
                "ObjectCreated"
            ):
                outcomes.append(self.start(record))
            else:
                outcomes.append("ignored: not an S3 ObjectCreated record")
        return outcomes or ["ignored: no records"]

    # -- a new object -----------------------------------------------------------------------
    def start(self, record: dict[str, Any]) -> str:
        bucket = record["s3"]["bucket"]["name"]
        if bucket != self._settings.landing_bucket:
            return "ignored: not the landing bucket"
        obj = record["s3"]["object"]
        key = unquote_plus(obj["key"])
        version = obj.get("versionId")
        try:
            head = self._s3.head_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
                return "ignored: the object no longer exists"
            raise
        etag = head["ETag"].strip('"')
        version = version or head.get("VersionId")
        if version == "null":
            version = None
        job_id = J.job_id_for(bucket, key, version, etag, obj.get("sequencer"))
        metadata = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        fmt, gz = file_format(key)
        job: dict[str, Any] = {
            "id": job_id,
            "status": J.QUEUED,
            "source": {
                "bucket": bucket,
                "key": key,
                "versionId": version,
                "etag": etag,
                "size": head["ContentLength"],
            },
            "format": fmt,
            "compression": "gzip" if gz else None,
            "force": metadata.get(META_FORCE, "").strip().lower() == "true",
            "createdAt": self._clock(),
            "results": {"bucket": self._settings.results_bucket, "prefix": f"{job_id}/"},
        }
        if not self.jobs.create(job):
            existing = self.jobs.get(job_id)
            assert existing is not None
            if existing["status"] in J.TERMINAL:
                self.jobs.count_redelivery(job_id)
                return f"redelivered: job {job_id} is already {existing['status']}"
            job = existing  # an earlier invocation died: carry on where it stopped
            if job.get("chunks"):
                self._send_chunks(job_id, [c["index"] for c in self.jobs.chunks(job_id) if not c["done"]])
                self._maybe_finish(job_id)
                return f"resumed: job {job_id}"
        duplicate = self.jobs.claim_source(bucket, key, etag, job_id, force=job["force"])
        if duplicate:
            job |= {
                "status": J.SKIPPED,
                "duplicateOf": duplicate,
                "reason": f"The same object (same key and ETag) was already imported by job {duplicate}; "
                "set the object metadata fhirlake-force=true to import it again",
            }
            self._finish(job, [])
            return f"skipped: job {job_id} duplicates {duplicate}"
        if fmt is None:
            return self._fail(job, "Unsupported file type: expected .ndjson, .ndjson.gz, .json or .json.gz")
        try:
            job["validationLevel"] = validation_level(key, metadata, self._settings.default_level)
        except ValueError:
            levels = ", ".join(v.value for v in ValidationLevel)
            return self._fail(job, f"Unknown validation level (expected one of {levels})")
        job |= {"status": J.RUNNING, "startedAt": self._clock()}
        return self._plan(job)

    def _plan(self, job: dict[str, Any]) -> str:
        size, gz = job["source"]["size"], job["compression"] == "gzip"
        limit = self._settings.chunk_bytes
        if job["format"] == "json" or size <= (limit // GZIP_RATIO if gz else limit):
            chunks = [{"index": 0, "whole": True}]
            self.jobs.put_chunks(job["id"], chunks)
            self.jobs.update(job["id"], {**job, "chunks": 1})
            return self.run_chunk(job["id"], 0)
        try:
            chunks = []
            for part in split(
                self._blocks(job), limit, keep_data=gz, max_line_bytes=self._settings.max_line_bytes
            ):
                chunk: dict[str, Any] = {
                    "index": part.index,
                    "start": part.start,
                    "end": part.end,
                    "firstLine": part.first_line,
                }
                if part.data is not None:  # gzip: stage the decompressed part for its invocation
                    chunk["staged"] = f"{job['id']}/_staged/part-{part.index:05d}.ndjson"
                    self._s3.put_object(
                        Bucket=self._settings.results_bucket, Key=chunk["staged"], Body=part.data
                    )
                chunks.append(chunk)
        except PoisonInput as exc:
            return self._fail(job, exc.reason)
        if not chunks:
            chunks = [{"index": 0, "whole": True}]
        self.jobs.put_chunks(job["id"], chunks)
        self.jobs.update(job["id"], {**job, "chunks": len(chunks)})
        self._send_chunks(job["id"], [c["index"] for c in chunks])
        return f"planned: job {job['id']} in {len(chunks)} chunks"

    def _send_chunks(self, job_id: str, indexes: list[int]) -> None:
        for start in range(0, len(indexes), 10):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": orjson.dumps(
                        {"fhirlake": CHUNK_MESSAGE, "job": job_id, "chunk": i}
                    ).decode(),
                }
                for i in indexes[start : start + 10]
            ]
            failed = self._sqs.send_message_batch(QueueUrl=self._settings.queue_url, Entries=entries).get(
                "Failed"
            )
            if failed:
                raise RuntimeError(f"could not queue {len(failed)} chunk messages of job {job_id}")

    # -- a chunk ----------------------------------------------------------------------------
    def run_chunk(self, job_id: str, index: int) -> str:
        job = self.jobs.get(job_id)
        if job is None:
            return f"ignored: unknown job {job_id}"
        if job["status"] in J.TERMINAL:
            return f"ignored: job {job_id} is {job['status']}"
        chunk = self.jobs.chunk(job_id, index)
        if chunk is None:
            return f"ignored: job {job_id} has no chunk {index}"
        if chunk["done"]:
            self._maybe_finish(job_id)
            return f"redelivered: chunk {index} of job {job_id} is done"
        core = self._core(job["validationLevel"])
        results = ChunkResults(job["source"])
        importer = LineImporter(core.service, core.store, core.validator, id_seed=job_id, clock=self._clock)
        poison = None
        try:
            if job["format"] == "json":
                self._import_json(job, importer, core, results)
            else:
                blocks, first_line, first_offset = self._chunk_blocks(job, chunk)
                importer.run(
                    lines(
                        sniffed(blocks),
                        first_line=first_line,
                        first_offset=first_offset,
                        max_line_bytes=self._settings.max_line_bytes,
                    ),
                    results,
                )
        except PoisonInput as exc:
            poison = exc.reason  # what was read before is reported; the job fails with the reason
        written = results.write(self._s3, self._settings.results_bucket, job_id, index)
        self.jobs.complete_chunk(job_id, index, {**results.counts, "results": written})
        if poison:
            return self._fail(self.jobs.get(job_id) or job, poison)
        self._maybe_finish(job_id)
        stored, failed = results.counts["stored"], results.counts["failed"]
        return f"chunk {index} of job {job_id}: {stored} stored, {failed} failed"

    def _import_json(
        self, job: dict[str, Any], importer: LineImporter, core: Core, results: ChunkResults
    ) -> None:
        data = bytearray()
        for block in sniffed(self._blocks(job)):
            data += block
            if len(data) > MAX_JSON_BYTES:
                raise PoisonInput(
                    f"The JSON document is larger than {MAX_JSON_BYTES // (1024 * 1024)} MiB: "
                    "split it, or use NDJSON (one resource per line)"
                )
        try:
            document = fhir_json.loads(bytes(data))
        except FhirError as exc:
            results.failed({"line": 1}, exc.issues, None)
            return
        import_document(document, importer, core.service, core.handle, results)

    def _blocks(self, job: dict[str, Any]) -> Iterator[bytes]:
        blocks = self._object_blocks(job["source"])
        return gunzip(blocks) if job["compression"] == "gzip" else blocks

    def _object_blocks(self, source: dict[str, Any], byte_range: str | None = None) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": source["bucket"], "Key": source["key"]}
        if source.get("versionId"):
            kwargs["VersionId"] = source["versionId"]
        if byte_range:
            kwargs["Range"] = byte_range
        body = self._s3.get_object(**kwargs)["Body"]
        try:
            yield from body.iter_chunks(BLOCK_BYTES)
        finally:
            body.close()

    def _chunk_blocks(self, job: dict[str, Any], chunk: dict[str, Any]) -> tuple[Iterator[bytes], int, int]:
        if chunk.get("whole"):
            return self._blocks(job), 1, 0
        if chunk.get("staged"):
            staged = {"bucket": self._settings.results_bucket, "key": chunk["staged"]}
            return self._object_blocks(staged), chunk["firstLine"], chunk["start"]
        byte_range = f"bytes={chunk['start']}-{chunk['end'] - 1}"
        return self._object_blocks(job["source"], byte_range), chunk["firstLine"], chunk["start"]

    # -- the end of a job -------------------------------------------------------------------
    def _maybe_finish(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job["status"] in J.TERMINAL or job["chunksDone"] < job.get("chunks", 1 << 62):
            return
        chunks = self.jobs.chunks(job_id)
        counts = _total(chunks)
        job["status"] = J.COMPLETED if counts["failed"] == 0 else J.COMPLETED_WITH_ERRORS
        self._finish(job, chunks)

    def _fail(self, job: dict[str, Any], reason: str) -> str:
        job |= {"status": J.FAILED, "reason": reason}
        self._finish(job, self.jobs.chunks(job["id"]))
        return f"failed: job {job['id']}: {reason}"

    def _finish(self, job: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
        job.pop("chunksDone", None)
        job.pop("redeliveries", None)
        finished = self._clock()
        job |= {"finishedAt": finished, "counts": _total(chunks)}
        job["results"] = {**job["results"], "manifest": f"{job['id']}/manifest.json"}
        write_manifest(self._s3, self._settings.results_bucket, job, chunks)
        if not self.jobs.update(job["id"], job, expect=frozenset({J.QUEUED, J.RUNNING})):
            return  # another invocation finished it first
        for chunk in chunks:
            if chunk.get("staged"):
                self._s3.delete_object(Bucket=self._settings.results_bucket, Key=chunk["staged"])
        self._emit(job)
        self._log("import job finished", job=job["id"], status=job["status"], counts=_summary(job["counts"]))

    def _emit(self, job: dict[str, Any]) -> None:
        detail = {
            "jobId": job["id"],
            "status": job["status"],
            "source": {k: job["source"][k] for k in ("bucket", "key", "versionId", "etag")},
            "counts": _summary(job["counts"]),
            "manifest": f"s3://{self._settings.results_bucket}/{job['results']['manifest']}",
            "reason": job.get("reason"),
        }
        try:
            self._events.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": EVENT_DETAIL_TYPE,
                        "Detail": orjson.dumps(detail).decode(),
                    }
                ]
            )
        except ClientError as exc:  # the job is done and recorded; a lost notification is logged
            self._log("import event not delivered", job=job["id"], error=exc.response["Error"]["Code"])


def _total(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    counts = J.empty_counts()
    for chunk in chunks:
        if chunk.get("done"):
            J.add_counts(counts, chunk.get("counts") or {})
    return counts


def _summary(counts: dict[str, Any]) -> dict[str, int]:
    return {k: counts.get(k, 0) for k in ("read", "stored", "unchanged", "failed")}
