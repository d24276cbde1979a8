"""SQL on FHIR ViewDefinitions materialized in the lake, version by version.

For a view N over resource type T, every new version of a T adds its rows (``compile_view(..).rows``) to
the table ``{n}_history`` with bookkeeping columns; the view ``{n}`` keeps the rows of each resource's
newest version. So that the newest version is always visible, even when it has no rows (a delete, or a
``where`` that no longer matches), a version without rows writes one *marker* row: ``_row`` 0, view
columns null. Real rows are numbered from 1, which also lets the view drop copies of a redelivered batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa

from fhirlake import topology
from fhirlake.fhir.types import resource_types
from fhirlake.lake.rows import last_updated, patient_id, to_table
from fhirlake.lake.schema import LAST_UPDATED_TYPE
from fhirlake.persistence import StoredVersion

_log = logging.getLogger(__name__)

# ViewDefinition column types (FHIR type codes) -> Arrow; anything else (dates included) is a string.
_COLUMN_TYPES: dict[str | None, pa.DataType] = {
    "boolean": pa.bool_(),
    "decimal": pa.float64(),
    "integer": pa.int64(),
    "positiveInt": pa.int64(),
    "unsignedInt": pa.int64(),
    "integer64": pa.int64(),
}
BOOKKEEPING_FIELDS = (
    pa.field("_resource_id", pa.string(), nullable=False),
    pa.field("_version_id", pa.int64(), nullable=False),
    pa.field("_last_updated", LAST_UPDATED_TYPE, nullable=False),
    pa.field("_deleted", pa.bool_(), nullable=False),
    pa.field("_row", pa.int32(), nullable=False),  # 1.. for rows; 0 for the marker of a row-less version
    pa.field("_patient_id", pa.string()),  # the source resource's patient: what GDPR erasure matches
)


class ViewColumn(Protocol):
    name: str
    type: str | None
    collection: bool


class CompiledView(Protocol):
    """What ``fhirlake.views.compile_view`` returns (see docs: analytics contract)."""

    name: str
    resource: str
    columns: Sequence[ViewColumn]

    def rows(self, resource: dict[str, Any]) -> list[dict[str, Any]]: ...


def column_type(column: ViewColumn) -> pa.DataType:
    value_type = _COLUMN_TYPES.get(column.type, pa.string())
    return pa.list_(value_type) if column.collection else value_type


def view_schema(view: CompiledView) -> pa.Schema:
    """The columns of ``{n}``: the view's own, in order."""
    return pa.schema([pa.field(c.name, column_type(c)) for c in view.columns])


def view_history_schema(view: CompiledView) -> pa.Schema:
    return pa.schema([*view_schema(view), *BOOKKEEPING_FIELDS])


def view_history_table(view: CompiledView, versions: Iterable[StoredVersion]) -> pa.Table:
    """The ``{n}_history`` rows of some versions of the view's resource type."""
    rows: list[dict[str, Any]] = []
    for v in versions:
        own: list[dict[str, Any]] = []
        pid = None
        if v.resource is not None:
            pid = patient_id(v.resource)
            try:
                own = view.rows(v.resource)
            except Exception as exc:  # one odd resource must not stall the stream: it gets a marker row
                _log.error("view %s failed on a version: %s", view.name, type(exc).__name__)
        keep = {
            "_resource_id": v.id,
            "_version_id": v.version_id,
            "_last_updated": last_updated(v.last_updated),
            "_deleted": v.resource is None,
            "_patient_id": pid,
        }
        if not own:
            rows.append({**keep, "_row": 0})
        rows.extend({**row, **keep, "_row": n} for n, row in enumerate(own, start=1))
    return to_table(rows, view_history_schema(view))


def reserved_view_names() -> frozenset[str]:
    """Names a ViewDefinition cannot take: the resource types' tables and views."""
    types = resource_types()
    return frozenset({t.lower() for t in types} | {f"{t.lower()}_history" for t in types})


def load_views(views_dir: str | None = None) -> list[CompiledView]:
    """The shipped ViewDefinitions plus those of ``views_dir`` (env FHIRLAKE_VIEWS_DIR; a file there
    replaces a shipped view of the same name), compiled. A file that is not JSON, a view that does not
    compile or has no name, or whose name would take a resource type's table or view, is logged and left
    out: one bad deployment file must not stop the whole lake (the CDK app refuses them at synth)."""
    from fhirlake.views import ViewDefinitionError, compile_view, default_views  # optional for the lake

    definitions = {v.get("name"): v for v in default_views()}
    folder = views_dir if views_dir is not None else os.environ.get(topology.ENV_VIEWS_DIR)
    if folder:
        for path in sorted(Path(folder).glob("*.json")):
            try:
                view = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                _log.error("ViewDefinition file %s is unreadable and not materialized: %s", path.name, exc)
                continue
            definitions[view.get("name") if isinstance(view, dict) else None] = view
    taken = reserved_view_names()
    compiled = []
    for name, definition in definitions.items():
        if not isinstance(name, str) or not name:
            _log.error("A ViewDefinition without a name is not materialized")
            continue
        try:
            view = compile_view(definition)
        except ViewDefinitionError as exc:
            _log.error("ViewDefinition %s is invalid and not materialized: %s", name, exc)
            continue
        if view.name in taken:
            _log.error("ViewDefinition %s would replace a resource table; not materialized", view.name)
            continue
        compiled.append(view)
    return compiled


@cache
def deployed_views() -> tuple[CompiledView, ...]:
    """``load_views()`` once per process."""
    return tuple(load_views())
