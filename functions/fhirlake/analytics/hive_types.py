"""Glue (Hive) column types -> Arrow types, and Arrow data conformed to them, for the local engine.

Athena reads a Parquet table through its Glue schema: columns and struct fields are matched by name
(case-insensitively),
those a file lacks read as NULL, those the schema lacks are not visible. Files written before a new
element appeared (schema evolution) therefore still read. ``conform`` gives DuckDB the same view.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "varchar": pa.string(),
    "char": pa.string(),
    "bigint": pa.int64(),
    "int": pa.int32(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "tinyint": pa.int8(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
    # Athena's Parquet timestamps are UTC instants without a zone: so are DuckDB's TIMESTAMPs.
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "binary": pa.binary(),
}
_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|`[^`]+`|\d+|[<>(),:])")


class HiveTypeError(ValueError):
    pass


def arrow_type(hive: str) -> pa.DataType:
    """``array<struct<system:string,code:string>>`` -> the Arrow type."""
    tokens = [t.strip("`") for t in _TOKEN.findall(hive)]
    if "".join(tokens).replace(" ", "") != re.sub(r"[\s`]", "", hive):
        raise HiveTypeError(f"Unsupported Glue column type: {hive}")
    parsed, position = _parse(tokens, 0)
    if position != len(tokens):
        raise HiveTypeError(f"Unsupported Glue column type: {hive}")
    return parsed


def _expect(tokens: list[str], position: int, token: str) -> int:
    if position >= len(tokens) or tokens[position] != token:
        raise HiveTypeError(f"Expected {token!r} in a Glue column type")
    return position + 1


def _parse(tokens: list[str], position: int) -> tuple[pa.DataType, int]:
    if position >= len(tokens):
        raise HiveTypeError("Truncated Glue column type")
    name = tokens[position].lower()
    position += 1
    if name == "array":
        position = _expect(tokens, position, "<")
        item, position = _parse(tokens, position)
        return pa.list_(item), _expect(tokens, position, ">")
    if name == "map":
        position = _expect(tokens, position, "<")
        key, position = _parse(tokens, position)
        position = _expect(tokens, position, ",")
        value, position = _parse(tokens, position)
        return pa.map_(key, value), _expect(tokens, position, ">")
    if name == "struct":
        position = _expect(tokens, position, "<")
        fields = []
        while tokens[position] != ">":
            field_name = tokens[position]
            position = _expect(tokens, position + 1, ":")
            field_type, position = _parse(tokens, position)
            fields.append(pa.field(field_name, field_type))
            if tokens[position] == ",":
                position += 1
        return pa.struct(fields), position + 1
    if name == "decimal":
        precision, scale = 10, 0
        if position < len(tokens) and tokens[position] == "(":
            precision = int(tokens[position + 1])
            position += 2
            if tokens[position] == ",":
                scale = int(tokens[position + 1])
                position += 2
            position = _expect(tokens, position, ")")
        return pa.decimal128(precision, scale), position
    if name in ("varchar", "char") and position < len(tokens) and tokens[position] == "(":
        return pa.string(), _expect(tokens, position + 2, ")")
    if name not in _SCALARS:
        raise HiveTypeError(f"Unsupported Glue column type: {name}")
    return _SCALARS[name], position


def schema(columns: list[dict[str, str]]) -> pa.Schema:
    """The Arrow schema of Glue ``Columns`` (+ ``PartitionKeys``) entries."""
    return pa.schema([pa.field(column["Name"], arrow_type(column["Type"])) for column in columns])


def conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """``table`` read through ``target``: columns and struct fields by name (any case), missing ones NULL."""
    arrays = []
    # Hive (and Athena) match Parquet columns and struct fields by name, ignoring case: Glue keeps column
    # names in lower case while the files keep FHIR's camelCase (effectiveDateTime).
    present = {name.lower(): index for index, name in enumerate(table.column_names)}
    for field in target:
        if field.name.lower() in present:
            column = table.column(present[field.name.lower()])
            arrays.append(pa.chunked_array([_conform(c, field.type) for c in column.chunks], field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=target)


def _conform(array: pa.Array, target: pa.DataType) -> pa.Array:
    if array.type == target:
        return array
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), target)
    if pa.types.is_struct(target) and pa.types.is_struct(array.type):
        fields = {array.type.field(i).name.lower(): i for i in range(array.type.num_fields)}
        children = [
            _conform(array.field(fields[f.name.lower()]), f.type)
            if f.name.lower() in fields
            else pa.nulls(len(array), f.type)
            for f in target
        ]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=array.is_null())
    if pa.types.is_list(target) and (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        if array.offset:  # from_arrays cannot take a null bitmap with sliced offsets: copy the slice
            array = pa.concat_arrays([array])
        values = _conform(array.values, target.value_type)
        offsets = pc.cast(array.offsets, pa.int32())
        return pa.ListArray.from_arrays(offsets, values, type=target, mask=array.is_null())
    try:
        return pc.cast(array, target, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise HiveTypeError(f"Cannot read a {array.type} column as {target}") from exc
