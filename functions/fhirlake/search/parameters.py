"""The R4 search-parameter registry (http://hl7.org/fhir/R4/searchparameter-registry.html).

Tables: ``fhirlake/data/r4/search/<ResourceType>.json``, made by ``scripts/build_search_tables.py`` from the
official R4 SearchParameter bundle; loaded lazily, one resource type at a time.

Every parameter of a type includes the common ones (``_id``, ``_lastUpdated``, ``_tag``, ``_profile``,
``_security``, ``_source``); those without an expression (``_text``, ``_content``, ``_query``) and the
``special`` ones (``Location.near``) are listed by :func:`unsupported` with the reason instead.

:func:`parameters` is the single source of truth for what a deployment searches: it applies the
deployment's index configuration (``fhirlake.search.config``), so a parameter the configuration leaves out
is unknown to the parser (strict: 400; lenient: a warning), absent from ``/metadata`` and never written to
the index. :func:`all_parameters` is the unfiltered R4 registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from fhirlake.fhir.types import is_resource_type
from fhirlake.search.config import IndexConfig, active_config

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
    shards: int = 1  # index partitions its entries are spread over (``fhirlake.search.config``)


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


def all_parameters(resource_type: str) -> MappingProxyType[str, SearchParameter]:
    """code -> SearchParameter of every R4 parameter fhirlake can index for a resource type (including
    the common Resource/DomainResource ones), whatever this deployment's configuration.

    KeyError for a name that is not an R4 resource type.
    """
    return _table(resource_type)[0]


def parameters(resource_type: str) -> MappingProxyType[str, SearchParameter]:
    """code -> SearchParameter for the parameters this deployment indexes (and so supports) for a type.

    KeyError for a name that is not an R4 resource type.
    """
    return _configured(resource_type, active_config())


@cache
def _configured(resource_type: str, config: IndexConfig) -> MappingProxyType[str, SearchParameter]:
    def with_shards(sp: SearchParameter) -> SearchParameter:
        shards = config.shard_count(sp)
        return sp if shards == sp.shards else replace(sp, shards=shards)

    return MappingProxyType(
        {
            code: with_shards(sp)
            for code, sp in all_parameters(resource_type).items()
            if config.indexes(resource_type, code)
        }
    )


def parameter(resource_type: str, code: str) -> SearchParameter | None:
    """The parameter ``code`` of ``resource_type``; None if it has none (or it is unsupported, or this
    deployment does not index it)."""
    return parameters(resource_type).get(code)


def unsupported(resource_type: str) -> MappingProxyType[str, str]:
    """code -> reason for the defined parameters of the type that fhirlake does not index."""
    return _table(resource_type)[1]
