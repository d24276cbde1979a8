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

The records and the table access live in ``fhirlake.persistence.dynamodb_reindex``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

import orjson

from fhirlake.aws import aws_client
from fhirlake.config import Settings
from fhirlake.fhir.types import resource_types
from fhirlake.persistence import search_index
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.persistence.dynamodb_reindex import (
    SEGMENT_DONE,
    Checkpoint,
    DynamoReindexStore,
    Superseded,
)
from fhirlake.search.config import Layout, fingerprint
from fhirlake.search.extract import parameter_values
from fhirlake.search.parameters import all_parameters, parameters

DEFAULT_SEGMENTS = 4
SCAN_PAGE = 200  # items per Scan request (before the filter): a checkpoint at most this much work apart
_CHECKPOINT_EVERY = 50  # empty partitions cleared between checkpoints


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
    """The job over one table and tenant (``store``: its table access). ``deadline`` (a ``clock()`` value)
    ends a run early, with the work done so far checkpointed: the caller runs it again (the Lambda
    re-invokes itself)."""

    def __init__(
        self,
        store: DynamoReindexStore,
        *,
        segments: int = DEFAULT_SEGMENTS,
        page_size: int = SCAN_PAGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._segments = segments
        self._page_size = page_size
        self._clock = clock
        self._lock = Lock()  # the report's counters, shared by the Scan segment threads
        self._steps = 0  # partitions cleared and Scan pages done by this run

    # -- the job ----------------------------------------------------------------------------
    def run(self, deadline: float | None = None) -> ReindexReport:
        target = target_layout()
        applied = self._store.applied_layout()
        checkpoint = self._store.checkpoint()
        written = [applied if applied is not None else legacy_layout()]
        digest = layout_digest(target)
        if checkpoint is not None:
            # What the job being resumed set out to undo and build; or, if that job was for another
            # configuration and is abandoned, what it may have half written.
            written += checkpoint.layouts
            if checkpoint.digest != digest:
                checkpoint = None
        job = plan(self._store.tenant, target, written)
        if not job.needed and checkpoint is None:
            if applied is None:
                self._store.save_applied(target, digest)
            return ReindexReport("up-to-date")
        if checkpoint is None:
            # The layouts the plan was made from besides the applied one (which stays recorded until the
            # job ends) and the target: a resumed run makes the same plan, and a job for yet another
            # configuration knows what this one may have written.
            checkpoint = Checkpoint(
                job.digest, [*written[1:], target], 0, dict.fromkeys(range(self._segments), "")
            )
            self._store.start(checkpoint)
        # A resumed job keeps the Scan segmentation it started with, whatever this run was asked for:
        # the positions saved are positions in those segments.
        self._segments = len(checkpoint.segments)
        report = ReindexReport("in-progress")
        try:
            if not self._clear(job, checkpoint.cleared, report, deadline):
                return report
            left = [s for s, position in sorted(checkpoint.segments.items()) if position != SEGMENT_DONE]
            with ThreadPoolExecutor(max_workers=max(1, len(left))) as pool:
                finished = list(
                    pool.map(lambda s: self._fill(job, s, checkpoint.segments[s], report, deadline), left)
                )
        except Superseded:
            # A run for a newer configuration restarted the checkpoint (a deployment during this run):
            # it now owns the job, and this run must not move its positions.
            report.status = "superseded"
            return report
        report.segments_left = sorted(s for s, done in zip(left, finished, strict=True) if not done)
        if report.segments_left:
            return report
        self._store.finish(target, digest)
        report.status = "done"
        return report

    # -- step 1: clear ----------------------------------------------------------------------
    def _clear(self, job: ReindexPlan, done: int, report: ReindexReport, deadline: float | None) -> bool:
        for index in range(done, len(job.clear)):
            if self._out_of_time(deadline):
                return False
            deleted = self._store.clear_partition(job.clear[index])
            report.deleted_entries += deleted
            report.cleared_partitions += 1
            self._steps += 1
            if not deleted and (index + 1) % _CHECKPOINT_EVERY and index + 1 < len(job.clear):
                continue  # re-reading an empty partition after a crash costs one Query: save the write
            self._store.save_cleared(job.digest, index + 1)
        return True

    # -- step 2: fill -----------------------------------------------------------------------
    def _fill(
        self, job: ReindexPlan, segment: int, position: str, report: ReindexReport, deadline: float | None
    ) -> bool:
        """One Scan segment from its checkpoint on; True when it reached its end."""
        while True:
            if self._out_of_time(deadline):
                return False
            page = self._store.scan_current(segment, self._segments, position, self._page_size, job.fill)
            written = self._store.put_entries(
                [
                    (self._entries_to_rebuild(job, version.resource_type, version.id, version.resource),
                     version.version_id)
                    for version in page.versions
                ]
            )  # fmt: skip
            self._store.save_position(job.digest, segment, page.position)
            with self._lock:
                report.scanned_items += page.scanned
                report.reindexed_resources += len(page.versions)
                report.written_entries += written
                report.scan_pages += 1
                self._steps += 1
            if page.position == SEGMENT_DONE:
                return True
            position = page.position

    def _entries_to_rebuild(
        self, job: ReindexPlan, resource_type: str, resource_id: str, resource: dict[str, Any]
    ) -> set[tuple[str, str]]:
        known = parameters(resource_type)
        values = [
            v
            for code in job.fill[resource_type]
            if code in known
            for v in parameter_values(known[code], resource)
        ]
        return search_index.entries(self._store.tenant, resource_type, resource_id, values)

    def _out_of_time(self, deadline: float | None) -> bool:
        """Past the deadline, once the run has done something: every run makes progress."""
        return deadline is not None and self._steps > 0 and self._clock() >= deadline


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
    store = DynamoReindexStore(aws_client("dynamodb", session), settings.table_name, settings.tenant, blobs)
    return Reindexer(store, segments=segments).run(deadline)
