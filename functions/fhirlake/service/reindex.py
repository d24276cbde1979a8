"""The re-index job: brings the search index in line with the deployment's index configuration.

What the table's entries were written for is recorded in one item, ``pk = "{tenant}#_search"``,
``sk = "config"``: per resource type and parameter, the fingerprint of its entries and its shard count
(``fhirlake.search.config.fingerprint``). A table without that item was written before the configuration
existed: every R4 parameter, unsharded. The job compares that *applied* layout with the *target* (what
``search.parameters.parameters`` indexes now); a parameter whose fingerprint differs is rebuilt:

1. **clear**: the partitions of parameters that are gone or changed are emptied, one Query + batched
   deletes per partition. A partition the target writes too (a changed expression, same shard count) is
   emptied as well and refilled by step 2.
2. **fill**: parallel ``Scan`` segments read every current-version item (``sk = "cur"``) of the tenant;
   for each live resource of a type with rebuilt parameters, the entries of just those parameters are
   written (with the version they describe, as the writer does).
3. the target becomes the applied layout; the checkpoint is removed.

Progress is checkpointed in ``sk = "reindex"`` of the same partition after each cleared partition and each
Scan page, so an interrupted job (a Lambda timeout, a crash) resumes where it stopped; every step is
idempotent (a put of an existing entry or a delete of a missing one changes nothing), so replaying the
last unfinished page is harmless. The checkpoint also records the layout it was building: a later job
for yet another configuration also clears what an abandoned one may have half written.

Live writes during a job are safe: API and import Lambdas already run with the new configuration and
write complete entries for what they store; a resource the job reads just before an update may keep a
stale entry, which search ignores (candidates are always checked against their current body) and the
next update of that resource removes. Run one job at a time per table (the Lambda has a reserved
concurrency of 1). Until it finishes, a search on a newly added parameter may miss resources stored
before the configuration changed.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

import orjson
from botocore.exceptions import ClientError

from fhirlake.aws import aws_client
from fhirlake.config import Settings
from fhirlake.fhir.types import resource_types
from fhirlake.persistence import keys, search_index
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.persistence.dynamodb import version_from_item
from fhirlake.search.config import fingerprint
from fhirlake.search.extract import parameter_values
from fhirlake.search.parameters import all_parameters, parameters

CONFIG_SK = "config"
CHECKPOINT_SK = "reindex"
DEFAULT_SEGMENTS = 4
SCAN_PAGE = 200  # items per Scan request (before the filter): a checkpoint at most this much work apart
_BATCH_WRITE = 25  # DynamoDB BatchWriteItem limit
_DONE = "done"
_CHECKPOINT_EVERY = 50  # empty partitions cleared between checkpoints

# type -> code -> (fingerprint, shard count)
Layout = dict[str, dict[str, tuple[str, int]]]


class Superseded(Exception):
    """The checkpoint now belongs to a job for another configuration."""


def target_layout() -> Layout:
    """What this deployment indexes now."""
    return {
        rtype: {code: (fingerprint(sp, sp.shards), sp.shards) for code, sp in parameters(rtype).items()}
        for rtype in sorted(resource_types())
    }


def legacy_layout() -> Layout:
    """What a table written before index configurations existed holds: every parameter, unsharded."""
    return {
        rtype: {code: (fingerprint(sp, 1), 1) for code, sp in all_parameters(rtype).items()}
        for rtype in sorted(resource_types())
    }


def layout_digest(layout: Layout) -> str:
    return hashlib.sha256(orjson.dumps(layout, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


@dataclass(frozen=True)
class ReindexPlan:
    target: Layout
    digest: str
    clear: list[str]  # partition keys to empty, in order
    fill: dict[str, list[str]]  # type -> parameter codes whose entries are rebuilt

    @property
    def needed(self) -> bool:
        return bool(self.clear or self.fill)


def plan(tenant: str, target: Layout, written: list[Layout]) -> ReindexPlan:
    """Clear and fill steps that turn tables holding any of the ``written`` layouts into ``target``."""
    target_pks = {
        pk
        for rtype, params in target.items()
        for code, (_, shards) in params.items()
        for pk in search_index.partition_keys(tenant, rtype, code, shards)
    }
    clear: set[str] = set()
    fill: dict[str, set[str]] = {}
    for layout in written:
        for rtype in sorted(set(layout) | set(target)):
            old, new = layout.get(rtype, {}), target.get(rtype, {})
            for code in sorted(set(old) | set(new)):
                if old.get(code, ("", 0))[0] == new.get(code, ("", 0))[0]:
                    continue
                if code in old:
                    clear.update(search_index.partition_keys(tenant, rtype, code, old[code][1]))
                if code in new:
                    fill.setdefault(rtype, set()).add(code)
    # Refilled partitions are cleared too (their entries were written under another definition), but a
    # partition the target keeps unchanged never is.
    unchanged = target_pks - {
        pk
        for rtype, codes in fill.items()
        for code in codes
        for pk in search_index.partition_keys(tenant, rtype, code, target[rtype][code][1])
    }
    return ReindexPlan(
        target,
        layout_digest(target),
        sorted(clear - unchanged),
        {rtype: sorted(codes) for rtype, codes in sorted(fill.items())},
    )


@dataclass
class ReindexReport:
    status: str  # "up-to-date" | "done" | "in-progress" | "superseded"
    cleared_partitions: int = 0
    deleted_entries: int = 0
    scanned_items: int = 0
    reindexed_resources: int = 0
    written_entries: int = 0
    scan_pages: int = 0
    segments_left: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Reindexer:
    """The job over one table and tenant. ``deadline`` (a ``clock()`` value) ends a run early, with the
    work done so far checkpointed: the caller runs it again (the Lambda re-invokes itself)."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        tenant: str,
        blobs: S3BlobStore,
        *,
        segments: int = DEFAULT_SEGMENTS,
        page_size: int = SCAN_PAGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ddb = dynamodb
        self._table = table
        self._tenant = tenant
        self._blobs = blobs
        self._segments = segments
        self._page_size = page_size
        self._clock = clock
        self._lock = Lock()  # the report's counters, shared by the Scan segment threads
        self._steps = 0  # partitions cleared and Scan pages done by this run

    # -- the job ----------------------------------------------------------------------------
    def run(self, deadline: float | None = None) -> ReindexReport:
        target = target_layout()
        applied = self._layout(CONFIG_SK)
        checkpoint = self._item(CHECKPOINT_SK)
        written = [applied if applied is not None else legacy_layout()]
        digest = layout_digest(target)
        if checkpoint is not None:
            # What the job being resumed set out to undo and build; or, if that job was for another
            # configuration and is abandoned, what it may have half written.
            written += _decode_layouts(checkpoint["layouts"]["B"])
            if checkpoint["digest"]["S"] != digest:
                checkpoint = None
        job = plan(self._tenant, target, written)
        if not job.needed and checkpoint is None:
            if applied is None:
                self._save_layout(CONFIG_SK, target, digest)
            return ReindexReport("up-to-date")
        if checkpoint is None:
            checkpoint = self._start(job, written)
        # A resumed job keeps the Scan segmentation it started with, whatever this run was asked for:
        # the positions saved are positions in those segments.
        self._segments = len(checkpoint["segments"]["M"])
        report = ReindexReport("in-progress")
        try:
            if not self._clear(job, int(checkpoint["cleared"]["N"]), report, deadline):
                return report
            segments = checkpoint["segments"]["M"]
            left = [int(s) for s, pos in segments.items() if pos["S"] != _DONE]
            with ThreadPoolExecutor(max_workers=max(1, len(left))) as pool:
                finished = list(
                    pool.map(lambda s: self._fill(job, s, segments[str(s)]["S"], report, deadline), left)
                )
        except Superseded:
            # A run for a newer configuration restarted the checkpoint (a deployment during this run):
            # it now owns the job, and this run must not move its positions.
            report.status = "superseded"
            return report
        report.segments_left = sorted(s for s, done in zip(left, finished, strict=True) if not done)
        if report.segments_left:
            return report
        self._save_layout(CONFIG_SK, target, digest)
        self._ddb.delete_item(TableName=self._table, Key=self._key(CHECKPOINT_SK))
        report.status = "done"
        return report

    def _start(self, job: ReindexPlan, written: list[Layout]) -> dict[str, Any]:
        """A fresh checkpoint. It keeps the layouts the plan was made from besides the applied one (which
        stays recorded until the job ends) and the target, so that a resumed run makes the same plan and a
        job for yet another configuration knows what this one may have written."""
        item = self._key(CHECKPOINT_SK) | {
            "digest": {"S": job.digest},
            "layouts": {"B": _encode_layouts([*written[1:], job.target])},
            "cleared": {"N": "0"},
            "segments": {"M": {str(s): {"S": ""} for s in range(self._segments)}},
        }
        self._ddb.put_item(TableName=self._table, Item=item)
        return item

    # -- step 1: clear ----------------------------------------------------------------------
    def _clear(self, job: ReindexPlan, done: int, report: ReindexReport, deadline: float | None) -> bool:
        for index in range(done, len(job.clear)):
            if self._out_of_time(deadline):
                return False
            deleted = 0
            for batch in self._partition_keys(job.clear[index]):
                self._write([{"DeleteRequest": {"Key": key}} for key in batch])
                deleted += len(batch)
            report.deleted_entries += deleted
            report.cleared_partitions += 1
            self._steps += 1
            if not deleted and (index + 1) % _CHECKPOINT_EVERY and index + 1 < len(job.clear):
                continue  # re-reading an empty partition after a crash costs one Query: save the write
            self._checkpoint(job, "SET cleared = :n", {}, {":n": {"N": str(index + 1)}})
        return True

    def _checkpoint(
        self, job: ReindexPlan, update: str, names: dict[str, str], values: dict[str, Any]
    ) -> None:
        """Record progress, only while the checkpoint is still this job's (same layout digest)."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(CHECKPOINT_SK),
                UpdateExpression=update,
                ConditionExpression="#digest = :digest",
                ExpressionAttributeNames={**names, "#digest": "digest"},
                ExpressionAttributeValues={**values, ":digest": {"S": job.digest}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise Superseded from None
            raise

    def _partition_keys(self, pk: str) -> Iterator[list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ProjectionExpression": "pk, sk",
        }
        while True:
            resp = self._ddb.query(**kwargs)
            if resp.get("Items"):
                yield resp["Items"]
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    # -- step 2: fill -----------------------------------------------------------------------
    def _fill(
        self, job: ReindexPlan, segment: int, position: str, report: ReindexReport, deadline: float | None
    ) -> bool:
        """One Scan segment from its checkpoint on; True when it reached its end."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Segment": segment,
            "TotalSegments": self._segments,
            "Limit": self._page_size,
            "ConsistentRead": True,
            "FilterExpression": "sk = :cur AND tenant = :tenant",
            "ExpressionAttributeValues": {":cur": {"S": keys.CURRENT_SK}, ":tenant": {"S": self._tenant}},
        }
        if position:
            kwargs["ExclusiveStartKey"] = orjson.loads(position)
        while True:
            if self._out_of_time(deadline):
                return False
            resp = self._ddb.scan(**kwargs)
            self._reindex_items(job, resp.get("Items", []), report)
            last = resp.get("LastEvaluatedKey")
            self._checkpoint(
                job,
                "SET #segments.#s = :p",
                {"#segments": "segments", "#s": str(segment)},
                {":p": {"S": orjson.dumps(last).decode() if last else _DONE}},
            )
            with self._lock:
                report.scan_pages += 1
                self._steps += 1
            if last is None:
                return True
            kwargs["ExclusiveStartKey"] = last

    def _reindex_items(self, job: ReindexPlan, items: list[dict[str, Any]], report: ReindexReport) -> None:
        requests: list[dict[str, Any]] = []
        reindexed = 0
        for item in items:
            codes = job.fill.get(item["type"]["S"])
            if not codes or item.get("deleted", {}).get("BOOL"):
                continue
            version = version_from_item(item, self._blobs)
            known = parameters(version.resource_type)
            values = [
                v for code in codes if code in known for v in parameter_values(known[code], version.resource)
            ]
            entries = search_index.entries(self._tenant, version.resource_type, version.id, values)
            requests += [
                {
                    "PutRequest": {
                        "Item": {"pk": {"S": pk}, "sk": {"S": sk}, "vid": {"N": str(version.version_id)}}
                    }
                }
                for pk, sk in sorted(entries)
            ]
            reindexed += 1
        self._write(requests)
        with self._lock:
            report.scanned_items += len(items)
            report.reindexed_resources += reindexed
            report.written_entries += len(requests)

    # -- table access -----------------------------------------------------------------------
    def _write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), _BATCH_WRITE):
            pending: dict[str, Any] = {self._table: requests[start : start + _BATCH_WRITE]}
            while pending:
                pending = self._ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def _key(self, sk: str) -> dict[str, Any]:
        return {"pk": {"S": f"{self._tenant}#_search"}, "sk": {"S": sk}}

    def _item(self, sk: str) -> dict[str, Any] | None:
        return self._ddb.get_item(TableName=self._table, Key=self._key(sk), ConsistentRead=True).get("Item")

    def _layout(self, sk: str) -> Layout | None:
        item = self._item(sk)
        return _decode_layouts(item["layouts"]["B"])[0] if item else None

    def _save_layout(self, sk: str, layout: Layout, digest: str) -> None:
        item = self._key(sk) | {"digest": {"S": digest}, "layouts": {"B": _encode_layouts([layout])}}
        self._ddb.put_item(TableName=self._table, Item=item)

    def _out_of_time(self, deadline: float | None) -> bool:
        """Past the deadline, once the run has done something: every run makes progress."""
        return deadline is not None and self._steps > 0 and self._clock() >= deadline


def _encode_layouts(layouts: list[Layout]) -> bytes:
    return zlib.compress(orjson.dumps(layouts, option=orjson.OPT_SORT_KEYS), 9)


def _decode_layouts(blob: bytes) -> list[Layout]:
    return [
        {rtype: {code: (fp, int(n)) for code, (fp, n) in params.items()} for rtype, params in raw.items()}
        for raw in orjson.loads(zlib.decompress(blob))
    ]


def applied_digest(dynamodb: Any, table: str, tenant: str) -> str | None:
    """The digest of the layout the table's index holds (None: never re-indexed); compare it with
    ``layout_digest(target_layout())`` to tell whether a re-index is due."""
    item = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": f"{tenant}#_search"}, "sk": {"S": CONFIG_SK}}, ConsistentRead=True
    ).get("Item")
    return item["digest"]["S"] if item else None


def run_reindex(
    settings: Settings | None = None,
    *,
    segments: int = DEFAULT_SEGMENTS,
    deadline: float | None = None,
    session: Any = None,
) -> ReindexReport:
    """Run (or resume) the re-index job of the deployment ``settings`` describe (default: the
    environment's) until it is done or ``deadline`` (a ``time.monotonic()`` value) passes."""

    settings = settings or Settings.from_env()
    blobs = S3BlobStore(aws_client("s3", session), settings.blob_bucket)
    reindexer = Reindexer(
        aws_client("dynamodb", session), settings.table_name, settings.tenant, blobs, segments=segments
    )
    return reindexer.run(deadline)
