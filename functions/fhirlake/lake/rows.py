"""Resource versions -> Arrow tables in the lake's shape (see ``schema``).

Every version becomes one row of its type's history table: the leading columns (``id``, ``version_id``,
``last_updated``, ``patient_id``, ``deleted``), the FHIR elements as nested columns, and
``resource_json``, the complete resource (lossless: what does not fit a column is still there).
A delete is a tombstone row: ``deleted`` true, no elements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from fhirlake.fhir import json as fhir_json
from fhirlake.lake.schema import LEADING_FIELDS, RESOURCE_JSON, conformer, resource_schema
from fhirlake.persistence import StoredVersion
from fhirlake.search.extract import parameter_values
from fhirlake.search.parameters import all_parameters
from fhirlake.service.searching import compartments

PATIENT = "Patient"
LEADING_NAMES = tuple(f.name for f in (*LEADING_FIELDS, RESOURCE_JSON))  # in every data file


def patient_id(resource: dict[str, Any]) -> str | None:
    """The Patient a resource belongs to through the R4 Patient compartment: a Patient is its own, else
    the first Patient reference among the compartment's parameters in definition order (Observation:
    ``subject`` before ``performer``); None when there is none."""
    resource_type = resource.get("resourceType")
    if resource_type == PATIENT:
        return resource.get("id")
    links = compartments()[PATIENT].get(resource_type, ())
    if not links:
        return None
    params = all_parameters(resource_type)
    for code in links:
        sp = params.get(code)
        if sp is None:
            continue
        for value in parameter_values(sp, resource):
            if value.ref_type == PATIENT and value.ref_id:
                return value.ref_id
    return None


def last_updated(instant: str) -> datetime:
    """A stored ``lastUpdated`` (UTC, ms) as a naive UTC datetime: Athena's ``timestamp`` has no zone."""
    return datetime.fromisoformat(instant).replace(tzinfo=None)


def history_rows(versions: Iterable[StoredVersion]) -> list[dict[str, Any]]:
    """One row per version, elements as parsed (``history_table`` conforms them if needed)."""
    rows = []
    for v in versions:
        resource = v.resource
        row: dict[str, Any] = dict(resource) if resource is not None else {}
        row["id"] = v.id
        row["version_id"] = v.version_id
        row["last_updated"] = last_updated(v.last_updated)
        row["patient_id"] = patient_id(resource) if resource is not None else None
        row["deleted"] = resource is None
        row["resource_json"] = fhir_json.dumps(resource).decode() if resource is not None else None
        rows.append(row)
    return rows


def history_table(resource_type: str, versions: Sequence[StoredVersion]) -> pa.Table:
    """The history rows of versions of one type, in the type's schema *narrowed to the elements these
    versions have*: readers map Parquet columns by name (Athena's default; DuckDB with ``union_by_name``)
    and read a missing column as null, while writing hundreds of all-null nested columns would cost
    most of a small file's time and bytes. Every column present has exactly the declared type."""
    rows = history_rows(versions)
    present = set(LEADING_NAMES).union(*(row.keys() for row in rows))
    schema = resource_schema(resource_type).history
    return to_table(rows, pa.schema([f for f in schema if f.name in present]))


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows as a table of ``schema``. Parsed FHIR JSON nearly always fits its schema, so Arrow converts it
    directly; when a value does not (an exact decimal, a wrong type), every row is conformed first."""
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        conform = conformer(pa.struct(list(schema)))
        return pa.Table.from_pylist([conform(row) for row in rows], schema=schema)
