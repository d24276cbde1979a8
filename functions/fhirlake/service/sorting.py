"""``_sort`` (search.html#sort): several keys, ``-`` for descending, on any date, string, token, number,
quantity, reference or uri parameter (``_id`` and ``_lastUpdated`` included).

The matches are collected (up to MAX_SORTED), ordered by the sort keys and then by id, and paged by
position: the cursor holds the last returned (keys, id), so a page never repeats or skips a resource
whose sort values did not change between page fetches.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from fhirlake.fhir.outcome import FhirError
from fhirlake.persistence import StoredVersion
from fhirlake.persistence.dynamodb import InvalidCursor
from fhirlake.search.extract import parameter_values
from fhirlake.search.parameters import SearchParameter, parameters
from fhirlake.search.values import IndexValue

MAX_SORTED = 10_000
_SORTABLE = {"date", "string", "token", "number", "quantity", "reference", "uri"}


@dataclass(frozen=True, slots=True)
class SortKey:
    param: SearchParameter
    descending: bool


def parse_sort(resource_type: str, value: str) -> list[SortKey]:
    keys = []
    known = parameters(resource_type)
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        descending = part.startswith("-")
        code = part.removeprefix("-")
        param = known.get(code)
        if param is None or param.type not in _SORTABLE:
            raise FhirError.of(
                400, "value", f"_sort: '{code}' is not a sortable parameter of {resource_type}"
            )
        keys.append(SortKey(param, descending))
    if not keys:
        raise FhirError.of(400, "value", "_sort needs at least one parameter")
    return keys


def _scalar(value: IndexValue, descending: bool) -> Any:
    kind = value.type
    if kind == "date":
        return value.high if descending else value.low
    if kind in ("number", "quantity"):
        return value.number if value.number is not None else value.number_low
    if kind == "string":
        return value.text
    if kind == "token":
        return value.code_value
    if kind == "reference":
        return value.reference or (f"{value.ref_type}/{value.ref_id}" if value.ref_id else None)
    return value.uri


def _json_safe(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def sort_tuple(resource: dict[str, Any], keys: list[SortKey]) -> tuple[Any, ...]:
    """Comparable key: per sort key (missing-flag, value) with missing values last in both directions;
    the lowest value leads ascending, the highest descending."""
    out: list[Any] = []
    rtype = resource["resourceType"]
    for key in keys:
        # System search sorts several types: each resource by its own type's view of the parameter.
        param = key.param if key.param.base == rtype else parameters(rtype)[key.param.code]
        values = [
            v
            for v in (_scalar(x, key.descending) for x in parameter_values(param, resource))
            if v is not None
        ]
        if not values:
            out.append((1, ""))
            continue
        chosen = max(values) if key.descending else min(values)
        out.append((0, _Reversed(chosen) if key.descending else chosen))
    out.append(f"{rtype}/{resource['id']}")  # unique across types too: the last tie-breaker
    return tuple(out)


class _Reversed:
    """Inverts the order of a value (descending sort inside an ascending tuple comparison)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def _encodable(key: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for item in key:
        if isinstance(item, tuple):
            flag, value = item
            out.append([flag, _json_safe(value.value if isinstance(value, _Reversed) else value)])
        else:
            out.append(item)
    return out


def page(
    matches: list[StoredVersion], keys: list[SortKey], count: int, cursor: str | None, scope: str
) -> tuple[list[StoredVersion], str | None]:
    if len(matches) > MAX_SORTED:
        raise FhirError.of(400, "too-costly", f"_sort is limited to {MAX_SORTED} matches: narrow the search")
    ordered = sorted(
        ((sort_tuple(v.resource, keys), v) for v in matches if v.resource is not None), key=lambda kv: kv[0]
    )
    start = 0
    if cursor:
        position = decode_cursor(cursor, scope)
        # Resume after the cursor's slot, even if that resource has since changed or gone.
        after = _from_position(position, keys)
        start = next((i for i, (k, _) in enumerate(ordered) if after < k), len(ordered))
    chosen = ordered[start : start + count]
    more = start + count < len(ordered)
    next_cursor = encode_cursor(_encodable(chosen[-1][0]), scope) if more and chosen else None
    return [v for _, v in chosen], next_cursor


def _from_position(position: list[Any], keys: list[SortKey]) -> tuple[Any, ...]:
    """The comparable key a cursor was made from (the inverse of ``_encodable``)."""
    if len(position) != len(keys) + 1:
        raise InvalidCursor
    out: list[Any] = []
    for (flag, value), key in zip(position[:-1], keys, strict=True):
        if key.param.type in ("number", "quantity") and flag == 0:
            value = Decimal(value)
        out.append((flag, _Reversed(value) if key.descending and flag == 0 else value))
    out.append(position[-1])
    return tuple(out)


def encode_cursor(position: list[Any], scope: str) -> str:
    """An opaque cursor holding ``position``, valid only for the search ``scope`` it was made for."""
    return base64.urlsafe_b64encode(orjson.dumps({"scope": scope, "sorted": position})).decode().rstrip("=")


def decode_cursor(cursor: str, scope: str) -> list[Any]:
    """The position of a cursor made by :func:`encode_cursor` for ``scope``, else InvalidCursor."""
    try:
        token = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidCursor from None
    if (
        not isinstance(token, dict)
        or token.get("scope") != scope
        or not isinstance(token.get("sorted"), list)
    ):
        raise InvalidCursor
    return token["sorted"]
