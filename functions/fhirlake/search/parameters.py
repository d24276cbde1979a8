"""The R4 search-parameter registry (http://hl7.org/fhir/R4/searchparameter-registry.html).

Tables: ``fhirlake/data/r4/search/<ResourceType>.json``, made by ``scripts/build_search_tables.py`` from the
official R4 SearchParameter bundle; loaded lazily, one resource type at a time.

Every parameter of a type includes the common ones (``_id``, ``_lastUpdated``, ``_tag``, ``_profile``,
``_security``, ``_source``); those without an expression (``_text``, ``_content``, ``_query``) and the
``special`` ones (``Location.near``) are listed by :func:`unsupported` with the reason instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from fhirlake.fhir.types import is_resource_type

_TABLES = resources.files("fhirlake") / "data" / "r4" / "search"

# Modifiers search.html (R4) defines per parameter type; the registry entries carry none of their own.
MODIFIERS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "string": ("missing", "exact", "contains"),
        "token": ("missing", "text", "not", "above", "below", "in", "not-in", "of-type"),
        "reference": ("missing", "type", "identifier", "above", "below"),
        "date": ("missing",),
        "number": ("missing",),
        "quantity": ("missing",),
        "uri": ("missing", "above", "below"),
        "composite": ("missing",),
        "special": ("missing",),
    }
)


@dataclass(frozen=True, slots=True)
class PathAlternative:
    """One natively walkable path: JSON keys from the resource (or the composite's base element; a first key
    ``%resource`` restarts at the resource), the FHIR type of what it reaches, and the implicit code system of
    a ``code`` element bound to a single-system value set."""

    keys: tuple[str, ...]
    element_type: str
    implicit_system: str | None = None
    components: tuple[tuple[PathAlternative, ...], ...] = ()  # composites: per component, its alternatives


@dataclass(frozen=True, slots=True)
class ExpressionPart:
    """One top-level ``|`` branch of the expression and how ``extract`` evaluates it.

    ``alternatives`` is set for plain paths (evaluated natively over the dict); otherwise the part is
    evaluated with fhirpathpy and ``hint`` is the FHIR type of its results. ``resolve_type`` is the ``T`` of
    a trailing ``.where(resolve() is T)``: keep only references to ``T``.
    """

    expression: str
    alternatives: tuple[PathAlternative, ...] | None
    resolve_type: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class SearchParameter:
    code: str
    type: str  # token | reference | string | date | composite | uri | quantity | number
    url: str
    expression: str  # the official expression restricted to this base type ("|"-joined parts)
    base: str  # the resource type this view of the parameter is for
    targets: tuple[str, ...] = ()  # reference target types
    components: tuple[tuple[str, str], ...] = ()  # composite: (component parameter code, relative expression)
    component_types: tuple[str, ...] = ()  # composite: the component parameters' types, same order
    modifiers: tuple[str, ...] = ()  # allowed by search.html for this type
    comparators: tuple[str, ...] = ()  # prefixes the definition lists (date/number/quantity)
    multiple_or: bool = True
    parts: tuple[ExpressionPart, ...] = ()


def _alternative(raw: list[Any]) -> PathAlternative:
    comps: tuple[tuple[PathAlternative, ...], ...] = ()
    if len(raw) > 3:
        comps = tuple(tuple(_alternative(a) for a in comp) for comp in raw[3])
    return PathAlternative(tuple(raw[0]), raw[1], raw[2], comps)


def _parameter(base: str, code: str, raw: dict[str, Any]) -> SearchParameter:
    parts = tuple(
        ExpressionPart(
            p["expr"],
            None if p["alts"] is None else tuple(_alternative(a) for a in p["alts"]),
            p["resolve"],
            p["hint"],
        )
        for p in raw["parts"]
    )
    comps = raw.get("components", [])
    return SearchParameter(
        code=code,
        type=raw["type"],
        url=raw["url"],
        expression=raw["expression"],
        base=base,
        targets=tuple(raw["targets"]),
        components=tuple((c[0], c[2]) for c in comps),
        component_types=tuple(c[1] for c in comps),
        modifiers=MODIFIERS.get(raw["type"], ()),
        comparators=tuple(raw["comparators"]),
        multiple_or=bool(raw["multipleOr"]),
        parts=parts,
    )


@cache
def _table(resource_type: str) -> tuple[MappingProxyType[str, SearchParameter], MappingProxyType[str, str]]:
    if not is_resource_type(resource_type):
        raise KeyError(f"not an R4 resource type: {resource_type!r}")
    doc = json.loads((_TABLES / f"{resource_type}.json").read_text())
    params = {code: _parameter(resource_type, code, raw) for code, raw in doc["parameters"].items()}
    return MappingProxyType(params), MappingProxyType(doc["unsupported"])


def parameters(resource_type: str) -> MappingProxyType[str, SearchParameter]:
    """code -> SearchParameter for a resource type (incl. the common Resource/DomainResource ones).

    KeyError for a name that is not an R4 resource type.
    """
    return _table(resource_type)[0]


def parameter(resource_type: str, code: str) -> SearchParameter | None:
    """The parameter ``code`` of ``resource_type``; None if it has none (or the parameter is unsupported)."""
    return parameters(resource_type).get(code)


def unsupported(resource_type: str) -> MappingProxyType[str, str]:
    """code -> reason for the defined parameters of the type that fhirlake does not index."""
    return _table(resource_type)[1]
