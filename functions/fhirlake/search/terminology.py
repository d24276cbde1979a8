"""The terminology token search needs, from the R4 core package (no terminology server):

- :func:`value_set_codes` - ``:in`` / ``:not-in`` (search.html#token): the (system, code) pairs of a value
  set the package enumerates (``validation/valuesets.json``, the validator's, plus
  ``terminology/valuesets.json``, every other one);
- :func:`subsumption` - ``:below`` / ``:above``: a code with the codes it subsumes, or that subsume it, in a
  complete code system of the package (``terminology/codesystems.json``).

Both raise :class:`FhirError`: 400 for a value set or code the server does not know, 501 for one that needs
a terminology service (filters, SNOMED CT, LOINC), with the reason.
Tables: ``scripts/build_terminology_tables.py``.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources

import orjson

from fhirlake.fhir.outcome import FhirError

_DATA = resources.files("fhirlake") / "data" / "r4"

Codes = frozenset[tuple[str, str]]


@cache
def _value_sets() -> dict[str, dict[str, list[str]]]:
    found: dict[str, dict[str, list[str]]] = orjson.loads(
        (_DATA / "validation" / "valuesets.json").read_bytes()
    )
    found.update(orjson.loads((_DATA / "terminology" / "valuesets.json").read_bytes()))
    return found


@cache
def _gaps() -> dict[str, str]:
    gaps: dict[str, str] = orjson.loads((_DATA / "terminology" / "valueset-gaps.json").read_bytes())
    gaps.update(orjson.loads((_DATA / "validation" / "skipped-valuesets.json").read_bytes()))
    return gaps


@lru_cache(maxsize=256)
def value_set_codes(url: str) -> Codes:
    """The (system, code) pairs of the value set with canonical ``url`` (a ``|version`` is ignored: the
    package holds one version of each)."""
    canonical = url.split("|", 1)[0]
    expansion = _value_sets().get(canonical)
    if expansion is not None:
        return frozenset((system, code) for system, codes in expansion.items() for code in codes)
    reason = _gaps().get(canonical)
    if reason is not None:
        raise FhirError.of(
            501,
            "not-supported",
            f"Value set {canonical} cannot be expanded without a terminology service: {reason}",
        )
    raise FhirError.of(
        400,
        "not-found",
        f"Unknown value set {canonical}: :in/:not-in take the canonical URL of an R4 value set",
    )


@cache
def _code_systems() -> tuple[dict[str, dict[str, list[str]]], frozenset[str]]:
    raw = orjson.loads((_DATA / "terminology" / "codesystems.json").read_bytes())
    return raw["parents"], frozenset(raw["flat"])


@cache
def _children(system: str) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for code, parents in _code_systems()[0].get(system, {}).items():
        for parent in parents:
            children.setdefault(parent, []).append(code)
    return children


def _closure(start: str, step: dict[str, list[str]]) -> set[str]:
    found = {start}
    stack = [start]
    while stack:
        for nxt in step.get(stack.pop(), ()):
            if nxt not in found:
                found.add(nxt)
                stack.append(nxt)
    return found


def _known_code(system: str, code: str) -> bool:
    parents = _code_systems()[0].get(system)
    if parents is not None:
        return code in parents or code in _children(system)
    return system in _code_systems()[1]


@lru_cache(maxsize=1024)
def subsumption(system: str | None, code: str, below: bool) -> Codes:
    """``code`` and the codes it subsumes (``below``) or that subsume it (``above``), as (system, code).

    Without a system, every package code system whose hierarchy holds the code is used."""
    hierarchies, flat = _code_systems()
    if system is None:
        systems = [s for s in hierarchies if _known_code(s, code)]
        if not systems:
            raise FhirError.of(
                400,
                "value",
                f"Code '{code}' is in no hierarchical code system known here: "
                "give system|code for :above/:below",
            )
    elif system in hierarchies:
        systems = [system]
    elif system in flat:  # no hierarchy: a code subsumes only itself
        return frozenset({(system, code)})
    else:
        raise FhirError.of(
            501,
            "not-supported",
            f"Subsumption in code system {system} needs a terminology service: only the R4 core code systems "
            "are known",
        )
    found: set[tuple[str, str]] = set()
    for s in systems:
        step = _children(s) if below else hierarchies[s]
        found.update((s, c) for c in _closure(code, step))
    return frozenset(found)
