"""Search index entries in the resource table, and the queries that read them.

One item per (resource, parameter, indexed key):

    pk  = "{tenant}#{type}?{code}"       every value of one parameter of one type ('?' never occurs in
                                         ids or types, so these never collide with resource partitions)
    sk  = "{key}\\x1f{id}"                sorted by the normalized key, then the resource id
    vid = version that last wrote it      so a late cleanup never removes an entry a newer version re-put

Keys by type: string → normalized text; token → ``code\\x1esystem``; reference → ``Type/id`` (or the URL);
uri → the URI; date → the low bound instant; number/quantity → a sortable decimal. Index entries only
*narrow* a search: every candidate is re-checked against its current body (``fhirlake.search.query``), so
an entry written for a version that never committed, or left behind by an interrupted cleanup, can cost a
read but never produce a wrong result. Base-table queries are strongly consistent: a client always finds
what it has just written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal

from fhirlake.fhir.types import is_resource_type
from fhirlake.search.normalize import normalize_string
from fhirlake.search.parameters import SearchParameter
from fhirlake.search.query import Criterion
from fhirlake.search.values import IndexValue

KEY_END = "\x1f"  # between the indexed key and the id: sorts below every printable character
PART = "\x1e"
COMPONENT = "\x1d"  # between the component keys of a composite entry
MAX_KEY_CHARS = 400  # DynamoDB sort keys are limited to 1 KB; long texts are indexed by their start
HIGHEST = "\U0010ffff"
_LITERAL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")  # as extract._LITERAL


def index_pk(tenant: str, resource_type: str, code: str) -> str:
    return f"{tenant}#{resource_type}?{code}"


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
    if kind == "string":
        key = value.text
    elif kind == "token":
        key = f"{value.code_value or ''}{PART}{value.system or ''}"
    elif kind == "reference":
        key = f"{value.ref_type}/{value.ref_id}" if value.ref_type and value.ref_id else value.reference
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
    for value in values:
        key = entry_key(value)
        if key is not None:
            out.add((index_pk(tenant, resource_type, value.code), f"{key}{KEY_END}{resource_id}"))
    return out


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
