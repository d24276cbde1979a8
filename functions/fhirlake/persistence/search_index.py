"""Search index entries in the resource table, and the queries that read them.

One item per (resource, parameter, indexed key):

    pk  = "{tenant}#{type}?{code}"       every value of one parameter of one type ('?' never occurs in
                                         ids or types, so these never collide with resource partitions)
          "{tenant}#{type}?{code}#{s}/{n}"  the same, write-sharded n ways (``SearchParameter.shards``):
                                         shard s = crc32(id) % n, so all entries of one resource for one
                                         parameter share a shard (docs/architecture.md, hot partitions)
    sk  = "{key}\\x1f{id}"                sorted by the normalized key, then the resource id
    vid = version that last wrote it      so a late cleanup never removes an entry a newer version re-put

Keys by type: string → normalized text; token → ``code\\x1esystem``; reference → ``Type/id`` (or the URL);
uri → the URI; date → the low bound instant; number/quantity → a sortable decimal; composite → its
components' keys joined by ``\\x1d`` (a search narrows on the first component). Index entries only
*narrow* a search: every candidate is re-checked against its current body (``fhirlake.search.query``), so
an entry written for a version that never committed, or left behind by an interrupted cleanup, can cost a
read but never produce a wrong result. Base-table queries are strongly consistent: a client always finds
what it has just written.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fhirlake.fhir.types import is_resource_type
from fhirlake.search.normalize import format_instant, normalize_string
from fhirlake.search.parameters import SearchParameter, parameters
from fhirlake.search.query import Criterion, SearchValue
from fhirlake.search.values import IndexValue

KEY_END = "\x1f"  # between the indexed key and the id: sorts below every printable character
PART = "\x1e"
COMPONENT = "\x1d"  # between the component keys of a composite entry
MAX_KEY_CHARS = 400  # DynamoDB sort keys are limited to 1 KB; long texts are indexed by their start
MAX_CODE_RANGES = 50  # a token :in/:below with more codes scans instead of reading one range per code
HIGHEST = "\U0010ffff"
_LITERAL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")  # as extract._LITERAL


def index_pk(tenant: str, resource_type: str, code: str) -> str:
    return f"{tenant}#{resource_type}?{code}"


def shard_of(resource_id: str, shards: int) -> int:
    # crc32 is stable across processes (unlike hash()): a resource's entries always land in one shard.
    return zlib.crc32(resource_id.encode()) % shards if shards > 1 else 0


def shard_pk(tenant: str, resource_type: str, code: str, shard: int, shards: int) -> str:
    """The partition of one shard; the shard count is part of the key, so partitions written under
    another count never mix with these (the re-index job deletes the old layout's partitions)."""
    base = index_pk(tenant, resource_type, code)
    return base if shards <= 1 else f"{base}#{shard}/{shards}"


def partition_keys(tenant: str, resource_type: str, code: str, shards: int) -> list[str]:
    """Every partition of a parameter's entries, in shard order (the order a search reads them)."""
    return [shard_pk(tenant, resource_type, code, s, shards) for s in range(max(shards, 1))]


def _sortable_number(value: Decimal) -> str:
    """Decimal → string whose lexicographic order is numeric order (for range narrowing later)."""
    sign, digits, exponent = value.normalize().as_tuple()
    if not digits or digits == (0,):
        return "1"
    magnitude = len(digits) + int(exponent)  # position of the decimal point
    mantissa = "".join(map(str, digits))
    if sign:  # negative: invert so that larger magnitudes sort first
        inverted = "".join(str(9 - int(d)) for d in mantissa)
        return f"0{999 - (magnitude + 500):03d}{inverted}~"
    return f"2{magnitude + 500:03d}{mantissa}"


def entry_key(value: IndexValue) -> str | None:
    kind = value.type
    key: str | None
    if kind == "token":  # the most common kinds first
        key = f"{value.code_value or ''}{PART}{value.system or ''}"
    elif kind == "reference":
        key = f"{value.ref_type}/{value.ref_id}" if value.ref_type and value.ref_id else value.reference
    elif kind == "string":
        key = value.text
    elif kind == "uri":
        key = value.uri
    elif kind == "date":
        key = value.low
    elif kind in ("number", "quantity"):
        number = value.number if value.number is not None else value.number_low
        key = _sortable_number(number) if number is not None else None
    else:  # composite: the components' keys in order, COMPONENT between them
        keys = [entry_key(c) for c in value.components]
        key = None if None in keys or not keys else COMPONENT.join(keys)  # type: ignore[arg-type]
    if key is None:
        return None
    return key[:MAX_KEY_CHARS].replace(KEY_END, " ")


def entries(
    tenant: str, resource_type: str, resource_id: str, values: Iterable[IndexValue]
) -> set[tuple[str, str]]:
    out = set()
    partitions = _partitions(tenant, resource_type)
    suffix = KEY_END + resource_id
    crc = zlib.crc32(resource_id.encode())  # the shard_of() hash, once per resource rather than per value
    for value in values:
        key = entry_key(value)
        if key is None:
            continue
        shard_pks = partitions.get(value.code)
        if shard_pks is None:  # a parameter outside the registry table (not written by index_values)
            shard_pks = (index_pk(tenant, resource_type, value.code),)
        out.add((shard_pks[crc % len(shard_pks)], key + suffix))
    return out


_PARTITIONS: dict[tuple[str, str], tuple[Mapping[str, SearchParameter], dict[str, tuple[str, ...]]]] = {}


def _partitions(tenant: str, resource_type: str) -> dict[str, tuple[str, ...]]:
    """code -> the partition keys of its shards, in shard order (``shard_pk`` of each; one for an unsharded
    parameter), so that shard ``crc32(id) % n`` is an index; built once per registry table (the registry
    caches its tables per deployment configuration: identity is the key)."""
    known = parameters(resource_type)
    cached = _PARTITIONS.get((tenant, resource_type))
    if cached is not None and cached[0] is known:
        return cached[1]
    table = {
        code: tuple(partition_keys(tenant, resource_type, code, sp.shards)) for code, sp in known.items()
    }
    _PARTITIONS[(tenant, resource_type)] = (known, table)
    return table


def driver_prefixes(criterion: Criterion) -> list[str] | None:
    """Sort-key prefixes whose entries include every match of ``criterion`` (one per OR value), or None
    when the criterion cannot narrow (negations, :missing, :contains, ranges)."""
    if criterion.modifier in ("not", "missing", "contains", "text", "of-type", "identifier", "above"):
        return None
    kind = criterion.param.type
    if kind == "composite":
        return _composite_prefixes(criterion)
    prefixes: list[str] = []
    for value in criterion.values:
        if kind == "string":
            prefixes.append(normalize_string(value.text or "")[:MAX_KEY_CHARS])
        elif kind == "token" and value.codes is not None:  # :in/:below/:above: one range per code
            if criterion.modifier == "not-in" or len(value.codes) > MAX_CODE_RANGES:
                return None
            prefixes += [f"{code}{PART}{system}{KEY_END}" for system, code in sorted(value.codes)]
        elif kind == "token":
            if value.code is None:
                return None
            prefix = f"{value.code}{PART}"
            if value.system is not None:
                prefix += f"{value.system}{KEY_END}"
            prefixes.append(prefix)
        elif kind == "reference":
            if value.ref_type and value.ref_id:
                prefixes.append(f"{value.ref_type}/{value.ref_id}{KEY_END}")
            elif value.ref_id and criterion.param.targets:
                prefixes += [f"{target}/{value.ref_id}{KEY_END}" for target in criterion.param.targets]
            elif value.reference:
                # Entries of references whose URL ends in Type/id are keyed Type/id (see entry_key).
                literal = _LITERAL.search(value.reference.split("|", 1)[0])
                if literal and is_resource_type(literal.group(1)):
                    prefixes.append(f"{literal.group(1)}/{literal.group(2)}{KEY_END}")
                else:
                    prefixes.append(f"{value.reference[:MAX_KEY_CHARS]}{KEY_END}")
            else:
                return None
        elif kind == "uri" and value.reference:
            suffix = "" if criterion.modifier == "below" else KEY_END
            prefixes.append(f"{value.reference[:MAX_KEY_CHARS]}{suffix}")
        else:
            return None
    return prefixes


def _composite_prefixes(criterion: Criterion) -> list[str] | None:
    """Composite entries start with their first component's key: narrow on it (token/reference/string/
    uri first components), the first component's key then ending at COMPONENT instead of KEY_END."""
    first = replace(criterion, param=_first_component(criterion.param), values=())
    prefixes: list[str] = []
    for value in criterion.values:
        found = driver_prefixes(replace(first, values=(value.components[0],)))
        if found is None:
            return None
        prefixes += [p[:-1] + COMPONENT if p.endswith(KEY_END) else p for p in found]
    return prefixes


def _first_component(param: SearchParameter) -> SearchParameter:
    return replace(param, code=param.components[0][0], type=param.component_types[0], components=())


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Sort keys ``low <= sk <= high`` of one index partition ("" = from the start)."""

    low: str
    high: str

    def __contains__(self, sort_key: str) -> bool:
        return self.low <= sort_key <= self.high


# The widest value an element of each type can cover (a dateTime of year precision spans a year; an instant
# written to the second, a second). Period and Timing are unbounded: an open-ended Period covers all time.
_MAX_DATE_SPAN = {
    "instant": timedelta(seconds=1),
    "date": timedelta(days=366),
    "dateTime": timedelta(days=366),
}


def driver_ranges(criterion: Criterion) -> list[KeyRange] | None:
    """Sort-key ranges whose entries include every match of ``criterion`` (one per OR value), or None
    when it cannot narrow. Equality-like criteria are sort-key prefixes (:func:`driver_prefixes`); date,
    number and quantity prefixes become bounds on the indexed low value, a superset of the spec's range
    semantics (every candidate is still checked with ``query.matches``)."""
    prefixes = driver_prefixes(criterion)
    if prefixes is not None:
        return [KeyRange(p, p + HIGHEST) for p in prefixes]
    if criterion.modifier is not None or criterion.param.type not in ("date", "number", "quantity"):
        return None
    ranges = []
    for value in criterion.values:
        bounds = (
            _date_range(criterion.param, value)
            if criterion.param.type == "date"
            else _number_range(criterion.param, value)
        )
        if bounds is None:
            return None
        ranges.append(bounds)
    return ranges


def _after(key: str) -> str:
    return f"{key}{KEY_END}{HIGHEST}"  # past every entry whose key is exactly ``key``


def _date_range(param: SearchParameter, value: SearchValue) -> KeyRange | None:
    """Bounds on an entry's key (the value's low instant) for a date criterion (search.html#date)."""
    low, high, prefix = value.low, value.high, value.prefix
    if low is None or high is None:
        return None
    if prefix == "eq":  # the value lies within [low, high]: it starts in it
        return KeyRange(low, _after(high))  # an entry 'low\\x1fid' sorts after 'low'
    if prefix in ("lt", "eb"):  # starts before the range (eb: ends before it, so starts before it too)
        return KeyRange("", low)
    if prefix == "le":  # starts before it, or lies within it
        return KeyRange("", _after(high))
    if prefix == "sa":
        return KeyRange(_after(high), HIGHEST)
    if prefix == "ap":  # starts before the range's end widened by 10% of its distance from now
        end = _instant(high)
        # 11%, not 10%: ``matches`` takes "now" a moment later, so the bound must not be tight.
        widened = _shifted(end, abs(datetime.now(UTC) - end) * 0.11)
        return KeyRange("", _after(widened)) if widened else None
    if prefix in ("gt", "ge"):  # ends after the range: starts no earlier than (range end - widest span)
        span = _widest_span(param)
        if span is None:
            return None
        start = _shifted(_instant(high), -span) or ""
        return KeyRange(min(start, low) if prefix == "ge" else start, HIGHEST)  # ge: or lies within
    return None  # ne


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _shifted(moment: datetime, delta: timedelta) -> str | None:
    """``moment + delta`` as an index key; None past the calendar's ends (years 1..9999)."""
    try:
        return format_instant(moment + delta)
    except OverflowError:
        return None


def _element_types(param: SearchParameter) -> list[str | None]:
    """The FHIR types a parameter's expression can reach (None where only fhirpathpy knows)."""
    return [
        t
        for part in param.parts
        for t in (
            [a.element_type for a in part.alternatives] if part.alternatives is not None else [part.hint]
        )
    ]


def _widest_span(param: SearchParameter) -> timedelta | None:
    spans = [_MAX_DATE_SPAN.get(t or "") for t in _element_types(param)]
    if not spans or None in spans:
        return None
    return max(s for s in spans if s is not None)


def _number_range(param: SearchParameter, value: SearchValue) -> KeyRange | None:
    """Bounds on an entry's key (the number, or a Range's low) for number/quantity (search.html#number)."""
    n, low, high, prefix = value.number, value.number_low, value.number_high, value.prefix
    if n is None or low is None or high is None:
        return None
    if prefix == "eq":
        return KeyRange(_sortable_number(low), _after(_sortable_number(high)))
    if prefix in ("lt", "eb"):
        return KeyRange("", _sortable_number(n))
    if prefix == "le":
        return KeyRange("", _after(_sortable_number(n)))
    if prefix == "ap":
        return KeyRange("", _after(_sortable_number(n + abs(n) * Decimal("0.1"))))
    if prefix in ("gt", "sa", "ge") and not _may_hold_range(param):  # a single number: its key is itself
        return KeyRange(_sortable_number(n), HIGHEST)
    return None  # ne; gt/ge where a Range's high end may match while its low (the key) does not


_SINGLE_NUMBER_TYPES = frozenset(
    {
        "decimal",
        "integer",
        "positiveInt",
        "unsignedInt",
        "Quantity",
        "SimpleQuantity",
        "Age",
        "Count",
        "Distance",
        "Duration",
        "Money",
    }
)


def _may_hold_range(param: SearchParameter) -> bool:
    types = _element_types(param)
    return not types or any(t not in _SINGLE_NUMBER_TYPES for t in types)
