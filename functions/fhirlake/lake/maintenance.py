"""Lake upkeep: compaction of small files, GDPR erasure of one patient, backfill from the table.

Compaction merges a table's small files into one, in bounded steps, and never loses a row to a crash or
a concurrent writer: a manifest naming the inputs and the output is written first, then the output, and
only then are the inputs deleted (a run that finds a manifest finishes or abandons that step). Until the
inputs are gone a row can be in two files: the current views pick one row per version, and the merged
file drops exact copies (same id and version).

Erasure rewrites only the files holding the patient's rows: each file's ``patient_id`` statistics rule
most files out without reading them, the rest are scanned on that one column. It covers every resource
and ViewDefinition table, history included. Erase the patient from the store first, or the stream (or a
backfill) brings the rows back. Erasure and compaction both run in the maintenance function so they
never race each other (a compaction merging a file that an erasure is rewriting would keep the rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fhirlake.lake.storage import (
    COMPACTION_PREFIX,
    PARQUET_SUFFIX,
    LakeFile,
    LakeFiles,
    digest,
    parquet_bytes,
    read_parquet,
)
from fhirlake.lake.viewdefs import BOOKKEEPING_FIELDS
from fhirlake.lake.writer import LakeWriter
from fhirlake.persistence import StoredVersion, keys
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.persistence.dynamodb import version_from_item

SMALL_FILE_BYTES = 64 * 1024 * 1024  # files below this are merged; Athena reads 64-512 MB files best
MAX_INPUT_BYTES = 256 * 1024 * 1024  # per step: bounds memory (decompressed nested rows are ~10x larger)
MAX_FILES_PER_STEP = 500
BACKFILL_BATCH = 1000  # versions per written file

_VIEW_KEYS = ("_resource_id", "_version_id", "_row")
_RESOURCE_KEYS = ("id", "version_id")
_VIEW_PATIENT = BOOKKEEPING_FIELDS[-1].name


def _row_keys(table: pa.Table) -> tuple[str, ...]:
    return _VIEW_KEYS if "_row" in table.column_names else _RESOURCE_KEYS


def _patient_column(schema: pa.Schema) -> str:
    return _VIEW_PATIENT if _VIEW_PATIENT in schema.names else "patient_id"


def distinct_rows(table: pa.Table) -> pa.Table:
    """One row per version (or view row): copies written twice are dropped, ordered by patient then key
    so a patient's rows cluster (tight ``patient_id`` statistics make erasure cheap)."""
    row_keys = list(_row_keys(table))
    indexed = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    first = indexed.group_by(row_keys, use_threads=False).aggregate([("_i", "min")])["_i_min"]
    unique = table.take(first)
    order = [(_patient_column(table.schema), "ascending"), *((k, "ascending") for k in row_keys)]
    return unique.sort_by(order)


@dataclass
class MaintenanceReport:
    compacted: dict[str, int] = field(default_factory=dict)  # table -> input files merged
    rewritten: dict[str, int] = field(default_factory=dict)  # table -> files rewritten by an erasure
    rows_erased: int = 0


class LakeMaintenance:
    def __init__(self, files: LakeFiles) -> None:
        self.files = files

    # -- compaction -----------------------------------------------------------------------------------
    def compact(
        self,
        tables: Iterable[str] | None = None,
        *,
        small_file_bytes: int = SMALL_FILE_BYTES,
        max_files: int = MAX_FILES_PER_STEP,
        time_left: Callable[[], float] = lambda: float("inf"),
    ) -> MaintenanceReport:
        """At most one merge step per table and run, while ``time_left()`` (seconds) allows."""
        report = MaintenanceReport()
        for table in tables if tables is not None else self.files.tables():
            if time_left() < 60:
                break
            self._finish_interrupted(table)
            small = [f for f in self.files.data_files(table) if f.size < small_file_bytes]
            step = _bounded(sorted(small, key=lambda f: f.key), max_files)
            if len(step) > 1:
                self._merge(table, step)
                report.compacted[table] = len(step)
        return report

    def _merge(self, table: str, inputs: list[LakeFile]) -> None:
        input_keys = [f.key for f in inputs]
        name = digest(*input_keys)
        output = f"{self.files.table_prefix(table)}c-{name}{PARQUET_SUFFIX}"
        manifest = f"{COMPACTION_PREFIX}{table}/{name}.json"
        self.files.put(manifest, orjson.dumps({"output": output, "inputs": input_keys}))
        merged = pa.concat_tables(
            [read_parquet(self.files.get(k)) for k in input_keys], promote_options="permissive"
        )
        self.files.put(output, parquet_bytes(distinct_rows(merged)))
        self.files.delete(input_keys)  # only now: every row is in the output
        self.files.delete([manifest])

    def _finish_interrupted(self, table: str) -> None:
        for entry in list(self.files.list(f"{COMPACTION_PREFIX}{table}/")):
            manifest = orjson.loads(self.files.get(entry.key))
            if self.files.exists(manifest["output"]):  # merged, not yet cleaned up: drop the inputs
                self.files.delete(manifest["inputs"])
            self.files.delete([entry.key])  # else the inputs are intact and the step is simply redone

    # -- GDPR erasure -------------------------------------------------------------------------------------
    def erase_patient(self, patient_id: str) -> MaintenanceReport:
        """Remove every row of one patient (their resources' versions and view rows) from the lake,
        including the old object versions a versioned bucket keeps (compacted or rewritten files)."""
        report = MaintenanceReport()
        for table in self.files.tables():
            prefix = self.files.table_prefix(table)
            for file in self.files.data_files(table):
                kept, erased = self._without_patient(file.key, None, patient_id)
                if not erased:
                    continue
                # Overwrite in place (an S3 PUT is atomic); the old bytes are swept just below.
                if kept is not None:
                    self.files.put(file.key, parquet_bytes(kept))
                else:
                    self.files.delete([file.key])
                report.rewritten[table] = report.rewritten.get(table, 0) + 1
                report.rows_erased += erased
            for key, version_id in list(self.files.old_versions(prefix)):
                if self._without_patient(key, version_id, patient_id)[1]:
                    self.files.delete_version(key, version_id)
        return report

    def _without_patient(
        self, key: str, version_id: str | None, patient_id: str
    ) -> tuple[pa.Table | None, int]:
        """The file's rows without the patient's (None when none is left), and how many were dropped."""
        if not _may_contain(self.files.metadata(key, version_id), patient_id):
            return None, 0
        rows = read_parquet(self.files.get(key, version_id))
        theirs = pc.fill_null(pc.equal(rows[_patient_column(rows.schema)], patient_id), False)
        kept = rows.filter(pc.invert(theirs))
        return (kept if kept.num_rows else None), rows.num_rows - kept.num_rows

    # -- backfill ---------------------------------------------------------------------------------------
    def backfill(
        self,
        versions: Iterable[list[StoredVersion]],
        writer: LakeWriter,
        *,
        replace: bool = True,
    ) -> int:
        """Write every version (in batches) through ``writer``; with ``replace``, then delete the files
        that were there before and were not rewritten, so the lake equals the table (no gap meanwhile)."""
        before = {f.key for table in self.files.tables() for f in self.files.data_files(table)}
        written: set[str] = set()
        count = 0
        for batch in versions:
            summary = writer.write(batch)
            written |= set(summary.files.values())
            count += summary.versions
        if replace:
            self.files.delete(sorted(before - written))
        return count


def _bounded(files: list[LakeFile], max_files: int) -> list[LakeFile]:
    step: list[LakeFile] = []
    size = 0
    for f in files[:max_files]:
        if step and size + f.size > MAX_INPUT_BYTES:
            break
        step.append(f)
        size += f.size
    return step


def _may_contain(metadata: pq.FileMetaData, patient_id: str) -> bool:
    """False when every row group's patient statistics exclude the patient."""
    paths = [metadata.schema.column(i).path for i in range(metadata.num_columns)]  # leaf columns
    column = paths.index(_VIEW_PATIENT) if _VIEW_PATIENT in paths else paths.index("patient_id")
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(column).statistics
        if stats is None or not stats.has_min_max or stats.min <= patient_id <= stats.max:
            return True
    return False


def table_versions(
    dynamodb: Any, table_name: str, blobs: S3BlobStore, tenant: str
) -> Iterator[list[StoredVersion]]:
    """Every version item of a tenant in the resource table, in pages of ``BACKFILL_BATCH`` (a Scan)."""
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table_name,
        FilterExpression="begins_with(sk, :v) AND tenant = :t",
        ExpressionAttributeValues={":v": {"S": keys.VERSION_PREFIX}, ":t": {"S": tenant}},
    )
    batch: list[StoredVersion] = []
    for page in pages:
        for item in page.get("Items", []):
            batch.append(version_from_item(item, blobs))
            if len(batch) >= BACKFILL_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch
