"""Which search parameters a deployment indexes, and how their index partitions are write-sharded.

The configuration is a JSON document named by the environment variable ``FHIRLAKE_SEARCH_CONFIG``
(a file path, or the JSON text itself when it starts with ``{``); without it every R4 parameter of every
resource type is indexed::

    {
      "include": {"Patient": ["*"], "Observation": ["code", "subject", "date"]},   # optional: only these
      "exclude": {"*": ["_source"], "Patient": ["phonetic"]},                      # optional: minus these
      "shards":  {"Patient.gender": 16, "*._lastUpdated": 4, "Observation.code": 1} # optional overrides
    }

``"*"`` as a type means every type, as a code every parameter. ``_id`` is always indexed: it is the
driver of a search without an indexable criterion. Mistakes (an unknown type or parameter, a shard count
out of range) raise ``ValueError`` when the configuration loads, so a bad deployment fails on its first
request rather than silently indexing something else.

The registry (``fhirlake.search.parameters.parameters``) applies this configuration, so the search parser,
``/metadata``, the writer and the re-index job all see the same parameter set. Each indexed parameter has a
fingerprint over what determines its entries (type, expression, shard count, key layout version): the
re-index job compares fingerprints to find what changed (``fhirlake.service.reindex``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from fhirlake.fhir.types import is_resource_type
from fhirlake.topology import ENV_SEARCH_CONFIG

if TYPE_CHECKING:
    from fhirlake.search.parameters import SearchParameter

ALWAYS_INDEXED = frozenset({"_id"})
MAX_SHARDS = 64
# Write-sharding by default: parameters whose values come from a small fixed set (required-binding codes,
# booleans: Patient.gender, *.status) and _lastUpdated (every write appends at the end of its key range).
# Both put a whole type's writes on a few sort-key ranges: an appending range DynamoDB cannot split for
# heat at all, and a narrow one it splits only after it has throttled.
DEFAULT_HOT_SHARDS = 8
_ENUMERATED_ELEMENTS = frozenset({"code", "boolean"})
# What a table's index entries are written for: type -> code -> (fingerprint, shard count). The re-index
# job compares the applied layout with the target one (``fhirlake.service.reindex``).
Layout = dict[str, dict[str, tuple[str, int]]]
# Bump when entry_key / index_pk change meaning: every parameter's fingerprint changes, so the re-index
# job rebuilds every partition.
KEY_LAYOUT_VERSION = 1


@dataclass(frozen=True, eq=False)  # hashed by identity: the registry caches per configuration
class IndexConfig:
    include: Mapping[str, frozenset[str]] | None = None  # type or "*" -> codes or {"*"}; None = everything
    exclude: Mapping[str, frozenset[str]] = field(default_factory=dict)
    shards: Mapping[str, int] = field(default_factory=dict)  # "Type.code" / "*.code" -> shard count

    def indexes(self, resource_type: str, code: str) -> bool:
        if code in ALWAYS_INDEXED:
            return True
        if self.include is not None and not _listed(self.include, resource_type, code):
            return False
        return not _listed(self.exclude, resource_type, code)

    def shard_count(self, param: SearchParameter) -> int:
        for key in (f"{param.base}.{param.code}", f"*.{param.code}"):
            if key in self.shards:
                return self.shards[key]
        return DEFAULT_HOT_SHARDS if is_hot(param) else 1


def _listed(table: Mapping[str, frozenset[str]], resource_type: str, code: str) -> bool:
    return any(code in codes or "*" in codes for codes in (table.get(resource_type, ()), table.get("*", ())))


def is_hot(param: SearchParameter) -> bool:
    """Whether a parameter's entries concentrate writes on a few sort-key ranges of its partition."""
    if param.code == "_lastUpdated":
        return True
    if param.type != "token" or not param.parts:
        return False
    return all(
        part.alternatives is not None
        and all(alt.element_type in _ENUMERATED_ELEMENTS for alt in part.alternatives)
        for part in param.parts
    )


def fingerprint(param: SearchParameter, shards: int) -> str:
    """Changes whenever the entries of ``param`` would be written differently."""
    text = f"{KEY_LAYOUT_VERSION}|{param.type}|{param.expression}|{shards}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_config(doc: Any) -> IndexConfig:
    """An IndexConfig from its JSON form; ValueError naming the first mistake."""
    from fhirlake.search.parameters import all_parameters  # the registry imports this module

    if not isinstance(doc, dict) or set(doc) - {"include", "exclude", "shards"}:
        raise ValueError("search config: expected an object with 'include', 'exclude' and/or 'shards'")

    def code_table(name: str) -> dict[str, frozenset[str]]:
        raw = doc.get(name, {})
        if not isinstance(raw, dict):
            raise ValueError(f"search config: '{name}' must map resource types to lists of parameters")
        table: dict[str, frozenset[str]] = {}
        for rtype, codes in raw.items():
            if rtype != "*" and not is_resource_type(rtype):
                raise ValueError(f"search config: '{name}' names an unknown resource type {rtype!r}")
            if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                raise ValueError(f"search config: '{name}.{rtype}' must be a list of parameter codes")
            if rtype != "*":
                unknown = set(codes) - {"*"} - set(all_parameters(rtype))
                if unknown:
                    raise ValueError(f"search config: {rtype} has no parameter {sorted(unknown)[0]!r}")
            if name == "exclude" and ALWAYS_INDEXED & set(codes):
                raise ValueError("search config: _id is always indexed and cannot be excluded")
            table[rtype] = frozenset(codes)
        return table

    shards = doc.get("shards", {})
    if not isinstance(shards, dict):
        raise ValueError("search config: 'shards' must map 'Type.code' to a shard count")
    for key, count in shards.items():
        rtype, _, code = key.partition(".")
        known = rtype == "*" or (is_resource_type(rtype) and code in all_parameters(rtype))
        if not code or not known:
            raise ValueError(f"search config: 'shards' key {key!r} is not Type.code of an R4 parameter")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_SHARDS:
            raise ValueError(f"search config: shard count of {key!r} must be an integer 1..{MAX_SHARDS}")
    return IndexConfig(
        include=MappingProxyType(code_table("include")) if "include" in doc else None,
        exclude=MappingProxyType(code_table("exclude")),
        shards=MappingProxyType(dict(shards)),
    )


def load_config(source: str | None) -> IndexConfig:
    """The configuration named by ``source`` (a path or inline JSON); the default when empty."""
    if not source:
        return IndexConfig()
    text = source if source.lstrip().startswith("{") else Path(source).read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"search config is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return parse_config(doc)


_chosen: IndexConfig | None = None


def active_config() -> IndexConfig:
    """This deployment's configuration: the environment's (read once per process) unless
    :func:`use_config` chose another."""
    return _chosen if _chosen is not None else _from_environment()


@cache
def _from_environment() -> IndexConfig:
    return load_config(os.environ.get(ENV_SEARCH_CONFIG))


def use_config(config: IndexConfig | None) -> None:
    """Make ``config`` the active configuration (None: back to the environment's); for tools and tests
    that compare configurations in one process."""
    global _chosen
    _chosen = config
