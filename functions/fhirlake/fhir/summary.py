"""``_summary`` and ``_elements`` (search.html#summary, #elements): subsets of a resource, tagged
SUBSETTED so that nobody mistakes them for the whole resource (and updates with them)."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
ALWAYS = frozenset({"resourceType", "id", "meta"})
_CHOICE = re.compile(r"([a-z][A-Za-z0-9]*?)[A-Z][A-Za-z0-9]*$")


@cache
def _elements() -> dict[str, dict[str, frozenset[str]]]:
    data = json.loads((resources.files("fhirlake") / "data" / "r4" / "summary-elements.json").read_text())
    return {t: {k: frozenset(v) for k, v in d.items()} for t, d in data.items()}


def _element_name(key: str, known: frozenset[str]) -> str:
    """The element a JSON key belongs to: ``_birthDate`` → birthDate, ``valueQuantity`` → value."""
    name = key.removeprefix("_")
    if name in known:
        return name
    match = _CHOICE.match(name)
    return match.group(1) if match and match.group(1) in known else name


def _subset(resource: dict[str, Any], keep: frozenset[str] | set[str], tag: bool = True) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k in ALWAYS or _element_name(k, frozenset(keep)) in keep}
    if tag:
        meta = dict(out.get("meta") or {})
        meta["tag"] = [*meta.get("tag", []), SUBSETTED]
        out["meta"] = meta
    return out


def summarize(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """``_summary=true|text|data`` of one resource (top-level elements; ``false`` returns it whole)."""
    if mode == "false":
        return resource
    definition = _elements().get(resource.get("resourceType", ""), {})
    if mode == "true":
        return _subset(resource, definition.get("summary", frozenset()))
    if mode == "text":
        return _subset(resource, {"text", *definition.get("mandatory", frozenset())})
    if mode == "data":
        return _subset(resource, {k.removeprefix("_") for k in resource if k not in ("text", "_text")})
    raise ValueError(mode)


def only_elements(resource: dict[str, Any], elements: tuple[str, ...]) -> dict[str, Any]:
    """``_elements``: the listed top-level elements plus the mandatory ones."""
    definition = _elements().get(resource.get("resourceType", ""), {})
    return _subset(resource, {*elements, *definition.get("mandatory", frozenset())})
