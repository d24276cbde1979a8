"""One deterministic Arrow schema per resource type, derived from the R4 StructureDefinitions.

The element tables precomputed for the validator (``fhirlake/data/r4/validation/*.json``: per element
path the list ``[name, min, max, type, binding, choice]``, complex datatypes in ``datatypes.json``) are
turned into nested Arrow types, so every Parquet file of a type agrees whenever it was written and the
Glue table (Hive types) and the Presto views (Trino types) are declared from the same object.

Mapping (the JSON nesting is kept: structs for objects, lists for repeating elements):

- ``boolean`` -> bool; ``integer``/``positiveInt``/``unsignedInt`` -> int32; ``decimal`` -> double;
  every other primitive, *including all dates and times*, -> string (FHIR partial precision such as
  ``2020-03`` cannot be a SQL date; compare ISO strings or parse in SQL).
- Choice elements appear under their JSON names (``valueQuantity``, ``valueString``, ...).
- What is cut, so the schema stays finite and small enough for Glue (still lossless through
  ``resource_json``):
  - recursion: a datatype or backbone element is not expanded inside itself (``Identifier.assigner``
    inside ``Reference.identifier``, ``Questionnaire.item.item``), also capped at ``MAX_DEPTH`` levels;
  - ``contained`` and any other inline ``Resource`` (``Bundle.entry.resource``);
  - ``Element.id`` (the resource ``id`` is a leading column), primitive extensions (``_birthDate``),
    every ``modifierExtension``, and ``extension`` anywhere but on the resource itself: Parquet stores
    one column per leaf, and extensions on every backbone element and datatype would multiply the
    leaves (Observation: over 3x) and every file's footer with them;
  - the resource's extensions keep ``url``, one nested level of ``extension`` (US Core race and
    ethnicity) and their value in the primitive types and ``OPEN_CHOICE_TYPES`` only; the same
    restriction applies to every other open choice (``*`` types: ``Task.input.value[x]``...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import orjson
import pyarrow as pa

_TABLES = resources.files("fhirlake") / "data" / "r4" / "validation"

MAX_DEPTH = 8
# A choice with more types than this is an open ("*") choice: only OPEN_CHOICE_TYPES are kept.
_OPEN_CHOICE_MIN_TYPES = 20
OPEN_CHOICE_TYPES = frozenset({"Address", "CodeableConcept", "Coding", "Period", "Quantity", "Reference"})
EXTENSION_LEVELS = 2  # an extension and the extensions inside it

_INT32 = ("integer", "positiveInt", "unsignedInt")
PRIMITIVE_TYPES: dict[str, pa.DataType] = {"boolean": pa.bool_(), "decimal": pa.float64()}
PRIMITIVE_TYPES |= dict.fromkeys(_INT32, pa.int32())
PRIMITIVE_TYPES |= dict.fromkeys(
    (
        "string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid", "date", "dateTime",
        "instant", "time", "base64Binary", "xhtml",
    ),
    pa.string(),
)  # fmt: skip

# Naive UTC: Athena's (Hive) `timestamp` carries no zone, and DuckDB then reads a plain TIMESTAMP too.
LAST_UPDATED_TYPE = pa.timestamp("ms")
# Leading columns of every resource table, in the contract's order; ``deleted`` only in history tables.
LEADING_FIELDS = (
    pa.field("id", pa.string(), nullable=False),
    pa.field("version_id", pa.int64(), nullable=False),
    pa.field("last_updated", LAST_UPDATED_TYPE, nullable=False),
    pa.field("patient_id", pa.string()),
    pa.field("deleted", pa.bool_(), nullable=False),
)
RESOURCE_JSON = pa.field("resource_json", pa.string())

Props = list[list[Any]]


@cache
def _datatype_nodes() -> dict[str, Props]:
    tables = orjson.loads((_TABLES / "datatypes.json").read_bytes())
    return {path: props for table in tables.values() for path, props in table["nodes"].items()}


@cache
def _resource_nodes(resource_type: str) -> dict[str, Props]:
    return orjson.loads((_TABLES / f"{resource_type}.json").read_bytes())["nodes"]


def _nodes_for(path: str) -> dict[str, Props]:
    root = path.split(".", 1)[0]
    return _datatype_nodes() if path in _datatype_nodes() else _resource_nodes(root)


def _struct(path: str, stack: tuple[str, ...], extension_levels: int) -> pa.StructType:
    """The struct of an element (a type root or backbone element); ``extension_levels`` > 0 only for the
    resource itself and its extensions."""
    props = _nodes_for(path)[path]
    choice_sizes: dict[str, int] = {}
    for prop in props:
        if prop[5]:
            choice_sizes[prop[5]] = choice_sizes.get(prop[5], 0) + 1
    fields: list[pa.Field] = []
    for name, _min, max_, type_, _binding, choice in props:
        if name == "id" or type_ == "Resource":
            continue
        open_choice = bool(choice) and choice_sizes[choice] > _OPEN_CHOICE_MIN_TYPES
        if open_choice and type_ not in PRIMITIVE_TYPES and type_ not in OPEN_CHOICE_TYPES:
            continue
        arrow_type = _element_type(name, type_, stack, extension_levels)
        if arrow_type is not None:
            fields.append(pa.field(name, pa.list_(arrow_type) if max_ != 1 else arrow_type))
    return pa.struct(fields)


def _element_type(name: str, type_: str, stack: tuple[str, ...], extension_levels: int) -> pa.DataType | None:
    if type_ in PRIMITIVE_TYPES:
        return PRIMITIVE_TYPES[type_]
    if type_ == "Extension":
        # Only the resource's own extensions (and those nested in them) get columns: one Parquet column
        # per leaf, so extensions on every backbone element would multiply each file's footer.
        if name != "extension" or extension_levels == 0:
            return None
        return _struct("Extension", (*stack, "Extension"), extension_levels - 1)
    target = type_[1:] if type_.startswith("#") else type_
    if target in stack or len(stack) >= MAX_DEPTH:
        return None
    return _struct(target, (*stack, target), 0)


@dataclass(frozen=True)
class ResourceSchema:
    """The columns of one resource type's lake table."""

    resource_type: str
    elements: pa.StructType  # the FHIR elements, one field per top-level JSON property kept

    @property
    def history(self) -> pa.Schema:
        return pa.schema([*LEADING_FIELDS, *self.elements, RESOURCE_JSON])

    @property
    def current(self) -> pa.Schema:
        """The columns of the current-state view: the history's without ``deleted``."""
        return pa.schema([f for f in self.history if f.name != "deleted"])


@cache
def resource_schema(resource_type: str) -> ResourceSchema:
    """The lake schema of an R4 resource type (KeyError for an unknown type)."""
    try:
        _resource_nodes(resource_type)
    except FileNotFoundError:
        raise KeyError(f"not an R4 resource type: {resource_type!r}") from None
    return ResourceSchema(resource_type, _struct(resource_type, (resource_type,), EXTENSION_LEVELS))


# -- type strings for the catalog --------------------------------------------------------------------
def hive_type(t: pa.DataType) -> str:
    """The Glue (Hive) column type of an Arrow type."""
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{hive_type(f.type)}" for f in t) + ">"
    if pa.types.is_list(t):
        return f"array<{hive_type(t.value_type)}>"
    return _SCALAR_NAMES[t][0]


def trino_type(t: pa.DataType) -> str:
    """The Trino type of an Arrow type, as Athena reports it for a Glue column (field names lowercased,
    as Trino's Hive connector does; quoted, since FHIR uses reserved words such as ``end``)."""
    if pa.types.is_struct(t):
        return "row(" + ", ".join(f'"{f.name.lower()}" {trino_type(f.type)}' for f in t) + ")"
    if pa.types.is_list(t):
        return f"array({trino_type(t.value_type)})"
    return _SCALAR_NAMES[t][1]


_SCALAR_NAMES: dict[pa.DataType, tuple[str, str]] = {
    pa.string(): ("string", "varchar"),
    pa.bool_(): ("boolean", "boolean"),
    pa.int32(): ("int", "integer"),
    pa.int64(): ("bigint", "bigint"),
    pa.float64(): ("double", "double"),
    LAST_UPDATED_TYPE: ("timestamp", "timestamp(3)"),
}


# -- values that do not fit ----------------------------------------------------------------------------
Conform = Callable[[Any], Any]


def conformer(t: pa.DataType) -> Conform:
    """A function mapping a parsed JSON value onto ``t``: what does not fit (a string where a number is
    declared, an object where a list is) becomes null instead of failing the file; the row keeps the
    complete resource in ``resource_json``."""
    return _conformer(t)


@cache
def _conformer(t: pa.DataType) -> Conform:
    if pa.types.is_struct(t):
        fields = {f.name: _conformer(f.type) for f in t}

        def struct(v: Any) -> Any:
            if type(v) is not dict:
                return None
            return {k: fields[k](x) for k, x in v.items() if k in fields}

        return struct
    if pa.types.is_list(t):
        item = _conformer(t.value_type)
        return lambda v: [item(x) for x in v] if type(v) is list else None
    if t == pa.string():
        return lambda v: v if type(v) is str else None
    if t == pa.bool_():
        return lambda v: v if type(v) is bool else None
    if t == pa.int32():
        return lambda v: v if type(v) is int and -(2**31) <= v < 2**31 else None
    if t == pa.int64():
        return lambda v: v if type(v) is int and -(2**63) <= v < 2**63 else None
    if pa.types.is_timestamp(t):
        return lambda v: v if isinstance(v, datetime) else None
    if t == pa.float64():
        return _double
    raise TypeError(f"no conformer for {t}")


def _double(v: Any) -> float | None:
    if type(v) is bool or not isinstance(v, int | float | Decimal):  # exact decimals parse as Decimal
        return None
    try:
        return float(v)
    except (OverflowError, ValueError):  # an integer beyond a double's range
        return None
