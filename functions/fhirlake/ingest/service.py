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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import unquote_plus

import orjson
from botocore.exceptions import ClientError

from fhirlake import topology
from fhirlake.config import Settings
from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.instant import now_instant
from fhirlake.fhir.outcome import FhirError, error
from fhirlake.ingest import jobs as J
from fhirlake.ingest.pipeline import LineImporter, import_document
from fhirlake.ingest.reader import (
    BLOCK_BYTES,
    MAX_LINE_BYTES,
    Line,
    PoisonInput,
    gunzip,
    lines,
    sniffed,
    split,
)
from fhirlake.ingest.results import ChunkResults, listed_parts, write_manifest
from fhirlake.validation import ValidationLevel

CHUNK_MESSAGE = "import-chunk"
EVENT_SOURCE = "fhirlake.import"
EVENT_DETAIL_TYPE = "Import Job Finished"
META_VALIDATION = "fhirlake-validation"  # x-amz-meta-fhirlake-validation
META_FORCE = "fhirlake-force"  # x-amz-meta-fhirlake-force: true
ENV_CHUNK_BYTES = "FHIRLAKE_IMPORT_CHUNK_BYTES"
ENV_TIME_MARGIN = "FHIRLAKE_IMPORT_TIME_MARGIN_SECONDS"
# Left for what follows the last line of a segment: its batch commit, writing its results, the checkpoint.
DEFAULT_TIME_MARGIN_SECONDS = 60.0
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024  # decompressed bytes per invocation (~45,000 Synthea resources)
GZIP_RATIO = 8  # a gzip object this many times smaller than a chunk is imported in one go
MAX_JSON_BYTES = 256 * 1024 * 1024
_LEVEL_SEGMENT = re.compile(r"(?:^|/)validation=([a-z-]+)/")
TimeLeft = Callable[[], float]  # seconds the current invocation has left (the Lambda context's)


@dataclass(frozen=True, kw_only=True)
class ImportSettings(Settings):
    """The deployment's settings (the store, tenant, validation level without a per-object choice) plus
    the import's own buckets, queue and limits."""

    landing_bucket: str
    results_bucket: str
    queue_url: str
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    max_line_bytes: int = MAX_LINE_BYTES
    time_margin_seconds: float = DEFAULT_TIME_MARGIN_SECONDS

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ImportSettings:
        env = dict(os.environ if env is None else env)
        shared = Settings.from_env(env)
        return cls(
            **{f.name: getattr(shared, f.name) for f in fields(Settings)},
            landing_bucket=env[topology.LANDING_BUCKET.env_var],
            results_bucket=env[topology.RESULTS_BUCKET.env_var],
            queue_url=env[topology.IMPORT_QUEUE.env_var],
            chunk_bytes=int(env.get(ENV_CHUNK_BYTES, DEFAULT_CHUNK_BYTES)),
            time_margin_seconds=float(env.get(ENV_TIME_MARGIN, DEFAULT_TIME_MARGIN_SECONDS)),
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
    def handle_message(self, body: str, time_left: TimeLeft | None = None) -> list[str]:
        """Process one queue message; returns what happened (for logs and tests: no PHI). ``time_left``:
        the seconds the invocation has left (a chunk stops in time and continues in another one)."""
        message = _message(body)
        if isinstance(message, str):
            return [message]
        if message.get("Event") == "s3:TestEvent":
            return ["ignored: s3:TestEvent"]
        if message.get("fhirlake") == CHUNK_MESSAGE:
            return [self.run_chunk(str(message["job"]), int(message["chunk"]), time_left)]
        outcomes = []
        for record in message.get("Records") or []:
            if record.get("eventSource") == "aws:s3" and str(record.get("eventName", "")).startswith(
                "ObjectCreated"
            ):
                outcomes.append(self.start(record, time_left))
            else:
                outcomes.append("ignored: not an S3 ObjectCreated record")
        return outcomes or ["ignored: no records"]

    # -- a new object -----------------------------------------------------------------------
    def start(self, record: dict[str, Any], time_left: TimeLeft | None = None) -> str:
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
            job["validationLevel"] = validation_level(key, metadata, self._settings.validation_level)
        except ValueError:
            levels = ", ".join(v.value for v in ValidationLevel)
            return self._fail(job, f"Unknown validation level (expected one of {levels})")
        job |= {"status": J.RUNNING, "startedAt": self._clock()}
        return self._plan(job, time_left)

    def _plan(self, job: dict[str, Any], time_left: TimeLeft | None = None) -> str:
        size, gz = job["source"]["size"], job["compression"] == "gzip"
        limit = self._settings.chunk_bytes
        if job["format"] == "json" or size <= (limit // GZIP_RATIO if gz else limit):
            chunks = [{"index": 0, "whole": True}]
            self.jobs.put_chunks(job["id"], chunks)
            self.jobs.update(job["id"], {**job, "chunks": 1})
            return self.run_chunk(job["id"], 0, time_left)
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
    def run_chunk(self, job_id: str, index: int, time_left: TimeLeft | None = None) -> str:
        """Import one chunk, or its next segment: with ``time_left`` (seconds this invocation has left),
        an NDJSON chunk stops ``time_margin_seconds`` before the deadline, records where it stopped and
        queues itself again, so a slow chunk is never killed by the Lambda timeout."""
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
        poison, rest = None, None
        try:
            if job["format"] == "json":
                self._import_json(job, importer, core, results)
            else:
                rest = importer.run(self._chunk_lines(job, chunk), results, self._out_of_time(time_left))
        except PoisonInput as exc:
            poison = exc.reason  # what was read before is reported; the job fails with the reason
        settled = self._record_segment(job_id, index, chunk, results, None if poison else rest)
        if settled is not None:
            return settled
        if poison:
            return self._fail(self.jobs.get(job_id) or job, poison)
        self._maybe_finish(job_id)
        stored, failed = results.counts["stored"], results.counts["failed"]
        return f"chunk {index} of job {job_id}: {stored} stored, {failed} failed"

    def _record_segment(
        self,
        job_id: str,
        index: int,
        chunk: dict[str, Any],
        results: ChunkResults,
        rest: Line | None,
        attempt: str | None = None,
    ) -> str | None:
        """Write what this invocation did with the chunk and record it: a checkpoint at ``rest`` (the
        chunk is queued again to go on from there), or the chunk done. None when the chunk is done here;
        else the outcome (paused, or another invocation got there first: these parts are then deleted)."""
        segment, progress = chunk["segment"], chunk.get("progress") or {}
        attempt = f"{segment:03d}-{attempt or uuid.uuid4().hex[:8]}"
        written = results.write(self._s3, self._settings.results_bucket, job_id, index, attempt)
        counts = J.add_counts(J.add_counts(J.empty_counts(), progress.get("counts") or {}), results.counts)
        earlier = progress.get("files") or {}
        files = {kind: [*earlier.get(kind, []), *written[kind]] for kind in ("success", "failure")}
        if rest is not None:
            resume = {"offset": rest.offset, "line": rest.number, "counts": counts, "files": files}
            if not self.jobs.save_progress(job_id, index, segment, resume):
                self._discard(written)
                return f"superseded: chunk {index} of job {job_id} went on in another invocation"
            self._send_chunks(job_id, [index])
            return f"paused: chunk {index} of job {job_id} at line {rest.number} (time budget)"
        if not self.jobs.complete_chunk(job_id, index, {**counts, "results": files}, segment):
            self._discard(written)  # another invocation finished the chunk: its parts are the listed ones
            self._maybe_finish(job_id)
            return f"redelivered: chunk {index} of job {job_id} was done by another invocation"
        return None

    # -- messages the queue gave up on (its dead-letter queue) ------------------------------
    def handle_dead_letter(self, body: str) -> list[str]:
        """A message that failed ``maxReceiveCount`` times (the Lambda crashed or timed out on it): the
        lines it was to import are reported in FAILURE and its job finishes with a reason, rather than
        staying ``running`` with lines silently lost."""
        message = _message(body)
        if isinstance(message, str):
            return [message]
        if message.get("fhirlake") == CHUNK_MESSAGE:
            return [self.give_up_chunk(str(message["job"]), int(message["chunk"]))]
        outcomes = []
        for record in message.get("Records") or []:
            if (
                record.get("eventSource") != "aws:s3"
                or record["s3"]["bucket"]["name"] != self._settings.landing_bucket
            ):
                outcomes.append("ignored: not an S3 record of the landing bucket")
                continue
            obj = record["s3"]["object"]
            job_id = J.job_id_for(
                record["s3"]["bucket"]["name"],
                unquote_plus(obj["key"]),
                obj.get("versionId"),
                str(obj.get("eTag", "")).strip('"'),
                obj.get("sequencer"),
            )
            outcomes.append(self._give_up_job(job_id))
        return outcomes or ["ignored: no records"]

    def _give_up_job(self, job_id: str) -> str:
        job = self.jobs.get(job_id)
        if job is None or job["status"] in J.TERMINAL:
            return f"ignored: job {job_id} is {job['status'] if job else 'unknown'}"
        chunks = self.jobs.chunks(job_id)
        if not chunks:  # it died while planning: nothing was imported
            return self._fail(job, "The import failed repeatedly before it was planned (dead-letter queue)")
        if len(chunks) == 1 and chunks[0].get("whole"):  # imported inline with the event: no chunk message
            return self.give_up_chunk(job_id, 0)
        return f"ignored: the chunks of job {job_id} have their own messages"

    def give_up_chunk(self, job_id: str, index: int) -> str:
        job = self.jobs.get(job_id)
        chunk = self.jobs.chunk(job_id, index) if job is not None else None
        if job is None or chunk is None or job["status"] in J.TERMINAL:
            return f"ignored: no running job {job_id} with chunk {index}"
        if chunk["done"]:
            self._maybe_finish(job_id)
            return f"ignored: chunk {index} of job {job_id} is done"
        reason = (
            f"Chunk {index} failed repeatedly (the import crashed or ran out of time on it) and went to the "
            "dead-letter queue: its lines not imported are reported in FAILURE"
        )
        results = ChunkResults(job["source"])
        issue = [error("exception", f"Not imported. {reason}.")]
        progress = chunk.get("progress") or {}
        if job["format"] == "json":
            results.failed({"line": 1}, issue)
        else:
            line = progress.get("line", chunk.get("firstLine", 1))
            try:
                for found in self._chunk_lines(job, chunk):
                    line = found.number + 1
                    if found.data.strip():
                        results.failed({"line": found.number, "byteOffset": found.offset}, issue, found.data)
            except PoisonInput as exc:  # the rest of the chunk cannot be read line by line
                results.failed(
                    {"line": line},
                    [*issue, error("structure", exc.reason)],
                )
        settled = self._record_segment(job_id, index, chunk, results, None, "dlq")
        if settled is not None:
            return settled
        current = self.jobs.get(job_id)
        if current is not None:
            self.jobs.update(job_id, {**current, "reason": reason}, expect=frozenset({J.QUEUED, J.RUNNING}))
        self._maybe_finish(job_id)
        return f"gave up: chunk {index} of job {job_id}: {results.counts['failed']} lines reported in FAILURE"

    def _out_of_time(self, time_left: TimeLeft | None) -> Callable[[], bool] | None:
        if time_left is None:
            return None
        margin = self._settings.time_margin_seconds
        return lambda: time_left() < margin

    def _discard(self, written: dict[str, list[str]]) -> None:
        for key in (*written["success"], *written["failure"]):
            self._s3.delete_object(Bucket=self._settings.results_bucket, Key=key)

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
        """The object's bytes (of ``byte_range``, an HTTP Range value), block by block."""
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

    def _chunk_lines(self, job: dict[str, Any], chunk: dict[str, Any]) -> Iterator[Line]:
        """The lines of a chunk from where it stopped last (``progress``) or its start."""
        progress = chunk.get("progress") or {}
        start = progress.get("offset", chunk.get("start", 0))
        end = chunk.get("end")
        if chunk.get("staged"):  # the staged object holds [chunk start, chunk end) of the decompressed stream
            staged = {"bucket": self._settings.results_bucket, "key": chunk["staged"]}
            blocks: Iterator[bytes] = self._object_blocks(staged, _byte_range(start - chunk["start"], None))
        elif job["compression"] == "gzip":  # a whole small gzip object: cannot be read from the middle
            blocks = _skipped(self._blocks(job), start)
        else:
            blocks = self._object_blocks(job["source"], _byte_range(start, end))
        return lines(
            sniffed(blocks),
            first_line=progress.get("line", chunk.get("firstLine", 1)),
            first_offset=start,
            max_line_bytes=self._settings.max_line_bytes,
        )

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
        self._delete_strays(job["id"], chunks)
        self._emit(job)
        self._log("import job finished", job=job["id"], status=job["status"], counts=_summary(job["counts"]))

    def _delete_strays(self, job_id: str, chunks: list[dict[str, Any]]) -> None:
        """Remove result parts no chunk lists (written by an invocation that died before recording them),
        so the results prefix holds every input line exactly once, as the manifest does."""
        listed = {key for chunk in chunks for keys_ in listed_parts(chunk).values() for key in keys_}
        bucket = self._settings.results_bucket
        for kind in ("SUCCESS", "FAILURE"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{job_id}/{kind}/"
            )
            for page in pages:
                for found in page.get("Contents", []):
                    if found["Key"] not in listed:
                        self._s3.delete_object(Bucket=bucket, Key=found["Key"])

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


def _message(body: str) -> dict[str, Any] | str:
    """A queue message as an object, or why it is ignored."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "ignored: not JSON"
    return message if isinstance(message, dict) else "ignored: not an object"


def _byte_range(start: int, end: int | None) -> str | None:
    """An HTTP Range value for ``[start, end)`` (None: the whole object)."""
    if start == 0 and end is None:
        return None
    return f"bytes={start}-{'' if end is None else end - 1}"


def _skipped(blocks: Iterator[bytes], count: int) -> Iterator[bytes]:
    """The stream without its first ``count`` bytes."""
    for block in blocks:
        if count >= len(block):
            count -= len(block)
            continue
        yield block[count:] if count else block
        count = 0


def _total(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    counts = J.empty_counts()
    for chunk in chunks:
        if chunk.get("done"):
            J.add_counts(counts, chunk.get("counts") or {})
    return counts


def _summary(counts: dict[str, Any]) -> dict[str, int]:
    return {k: counts.get(k, 0) for k in ("read", "stored", "unchanged", "failed")}
