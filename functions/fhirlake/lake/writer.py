"""Writes resource versions into the lake: one Parquet file per table and call, then the catalog.

A call (one stream batch, or one backfill page) groups the versions by resource type; each type's rows go
to one file of ``{type}_history`` and each ViewDefinition over that type gets one file of ``{n}_history``.
File names derive from the versions they hold, so writing the same batch again replaces the same objects
instead of adding rows. Rows can still repeat across files (a redelivered batch after compaction merged
the first copy, a backfill over a streamed lake): the current views pick one row per version, so they
never show a copy; history queries should count ``DISTINCT id, version_id``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from fhirlake.lake.rows import history_table
from fhirlake.lake.schema import resource_schema
from fhirlake.lake.storage import (
    PARQUET_SUFFIX,
    SCHEMA_FILE,
    GlueCatalog,
    LakeFiles,
    digest,
    parquet_bytes,
)
from fhirlake.lake.viewdefs import CompiledView, view_history_schema, view_history_table, view_schema
from fhirlake.persistence import StoredVersion

HISTORY_SUFFIX = "_history"


def history_name(name: str) -> str:
    return f"{name.lower()}{HISTORY_SUFFIX}"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def resource_view_sql(resource_type: str) -> str:
    """Trino SQL of the current state of a type: each resource's newest version, deleted ones left out.
    ``row_number`` keeps exactly one row per resource, so copies of a version never show."""
    columns = ", ".join(_quoted(f.name) for f in resource_schema(resource_type).current)
    return (
        f"SELECT {columns} FROM (SELECT *, row_number() OVER "
        f"(PARTITION BY id ORDER BY version_id DESC) AS _rank FROM {history_name(resource_type)}) "
        "WHERE _rank = 1 AND NOT deleted"
    )


def view_sql(view: CompiledView) -> str:
    """Trino SQL of a ViewDefinition's current rows: the rows of each resource's newest version (marker
    rows, ``_row`` 0, excluded), one copy each."""
    columns = ", ".join(_quoted(c.name) for c in view.columns)
    table = history_name(view.name)
    return (
        f"SELECT {columns} FROM (SELECT *, "
        "max(_version_id) OVER (PARTITION BY _resource_id) AS _newest, "
        "row_number() OVER (PARTITION BY _resource_id, _version_id, _row) AS _copy "
        f"FROM {table}) WHERE _version_id = _newest AND _copy = 1 AND _row > 0"
    )


@dataclass
class WriteSummary:
    versions: int = 0
    files: dict[str, str] = field(default_factory=dict)  # table -> key written
    bytes_written: int = 0


class LakeWriter:
    """Writes versions to the lake and, once per table and process, declares the table in the catalog and
    writes its schema file: a Parquet file with no rows and every column, so a reader that derives
    columns from the files (DuckDB) knows all of them although data files hold only the elements their
    resources have (``rows.history_table``)."""

    def __init__(
        self, files: LakeFiles, catalog: GlueCatalog | None, views: Sequence[CompiledView] = ()
    ) -> None:
        self.files = files
        self.catalog = catalog  # None: data files only (benchmarks)
        self._views_by_type: dict[str, list[CompiledView]] = defaultdict(list)
        for view in views:
            self._views_by_type[view.resource].append(view)
        self._registered: set[str] = set()

    def write(self, versions: Iterable[StoredVersion]) -> WriteSummary:
        by_type: dict[str, list[StoredVersion]] = defaultdict(list)
        for v in versions:
            by_type[v.resource_type].append(v)
        summary = WriteSummary()
        for resource_type, group in sorted(by_type.items()):
            group.sort(key=lambda v: (v.id, v.version_id))
            name = digest(*(f"{v.id}/{v.version_id}" for v in group))
            schema = resource_schema(resource_type)
            self._put(history_name(resource_type), name, history_table(resource_type, group), summary)
            self._register(
                history_name(resource_type),
                schema.history,
                (resource_type.lower(), resource_view_sql(resource_type), schema.current),
            )
            for view in self._views_by_type.get(resource_type, ()):
                self._put(history_name(view.name), name, view_history_table(view, group), summary)
                self._register(
                    history_name(view.name),
                    view_history_schema(view),
                    (view.name, view_sql(view), view_schema(view)),
                )
            summary.versions += len(group)
        return summary

    def _put(self, table: str, name: str, rows: pa.Table, summary: WriteSummary) -> None:
        key = f"{self.files.table_prefix(table)}{name}{PARQUET_SUFFIX}"
        data = parquet_bytes(rows)
        self.files.put(key, data)
        summary.files[table] = key
        summary.bytes_written += len(data)

    def _register(self, table: str, schema: pa.Schema, view: tuple[str, str, pa.Schema]) -> None:
        if table in self._registered:
            return
        self.files.put(self.files.table_prefix(table) + SCHEMA_FILE, parquet_bytes(schema.empty_table()))
        if self.catalog is not None:
            self.catalog.ensure_table(table, schema, self.files.location(table))
            self.catalog.ensure_view(*view)
        self._registered.add(table)
