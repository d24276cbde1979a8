"""``_include`` and ``_revinclude`` (search.html#include): the resources a page of matches refers to,
and the resources that refer to them, added to the Bundle with ``search.mode = include``.

Forms: ``Type:param``, ``Type:param:TargetType``, ``*`` (every reference parameter), and the
``:iterate`` modifier (applied to the included resources too, up to MAX_ITERATIONS rounds).
Included resources are the referenced resources' *current* versions; deleted ones are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fhirlake.fhir.outcome import FhirError, Issue
from fhirlake.persistence import StoredVersion
from fhirlake.search.extract import parameter_values
from fhirlake.search.parameters import SearchParameter, parameters
from fhirlake.search.query import SearchRequest, parse_search

MAX_ITERATIONS = 3
MAX_INCLUDED = 1000  # per page; beyond it the Bundle carries a warning instead of a huge response
INCLUDE_PARAMETERS = (
    "_include",
    "_revinclude",
    "_include:iterate",
    "_revinclude:iterate",
    "_include:recurse",
    "_revinclude:recurse",
)


@dataclass(frozen=True, slots=True)
class IncludeSpec:
    source_type: str  # the type whose parameter is followed
    param: SearchParameter | None  # None: "*" (every reference parameter of source_type)
    target: str | None
    reverse: bool
    iterate: bool


def split_include_parameters(
    query: list[tuple[str, str]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(the search's own parameters, the _include/_revinclude ones)."""
    own = [(k, v) for k, v in query if k not in INCLUDE_PARAMETERS]
    return own, [(k, v) for k, v in query if k in INCLUDE_PARAMETERS]


def parse_includes(items: list[tuple[str, str]]) -> list[IncludeSpec]:
    specs = []
    for name, value in items:
        reverse = name.startswith("_revinclude")
        iterate = name.endswith((":iterate", ":recurse"))
        if value == "*":
            raise FhirError.of(400, "value", f"{name}=* needs a source type: use [type]:*")
        source, _, rest = value.partition(":")
        code, _, target = rest.partition(":")
        try:
            known = parameters(source)
        except KeyError:
            raise FhirError.of(400, "value", f"{name}: unknown resource type '{source}'") from None
        if code == "*":
            specs.append(IncludeSpec(source, None, target or None, reverse, iterate))
            continue
        param = known.get(code)
        if param is None or param.type != "reference":
            raise FhirError.of(400, "value", f"{name}: '{code}' is not a reference parameter of {source}")
        if target and target not in param.targets:
            raise FhirError.of(400, "value", f"{name}: {source}.{code} cannot refer to {target}")
        specs.append(IncludeSpec(source, param, target or None, reverse, iterate))
    return specs


class IncludeResolver:
    def __init__(
        self,
        load: Callable[[str, list[str]], dict[str, StoredVersion]],
        search: Callable[[SearchRequest], list[StoredVersion]],
    ) -> None:
        self._load = load  # (type, ids) -> current versions by id
        self._search = search  # every match of a search (all pages)

    def resolve(
        self, matches: list[StoredVersion], specs: list[IncludeSpec], base_url: str
    ) -> tuple[list[StoredVersion], list[Issue]]:
        seen = {(v.resource_type, v.id) for v in matches}
        included: list[StoredVersion] = []
        frontier = matches
        for round_number in range(MAX_ITERATIONS + 1):
            active = [s for s in specs if round_number == 0 or s.iterate]
            if not active or not frontier:
                break
            found: list[StoredVersion] = []
            for spec in active:
                step = (
                    self._reverse(spec, frontier, base_url) if spec.reverse else self._forward(spec, frontier)
                )
                for version in step:
                    key = (version.resource_type, version.id)
                    if key not in seen and version.resource is not None:
                        seen.add(key)
                        found.append(version)
            included += found
            frontier = found
            if len(included) > MAX_INCLUDED:
                warning = Issue("warning", "too-costly", f"Only the first {MAX_INCLUDED} included resources")
                return included[:MAX_INCLUDED], [warning]
        return included, []

    def _forward(self, spec: IncludeSpec, sources: list[StoredVersion]) -> list[StoredVersion]:
        wanted: dict[str, list[str]] = {}
        for source in sources:
            if source.resource_type != spec.source_type or source.resource is None:
                continue
            for param in self._reference_params(spec):
                for value in parameter_values(param, source.resource):
                    if value.ref_type and value.ref_id and (spec.target in (None, value.ref_type)):
                        wanted.setdefault(value.ref_type, []).append(value.ref_id)
        out: list[StoredVersion] = []
        for rtype, ids in wanted.items():
            try:
                current = self._load(rtype, ids)
            except KeyError:
                continue  # a reference to a type this server does not know
            out += [current[i] for i in dict.fromkeys(ids) if i in current]
        return out

    def _reverse(self, spec: IncludeSpec, targets: list[StoredVersion], base_url: str) -> list[StoredVersion]:
        refs = [f"{t.resource_type}/{t.id}" for t in targets if spec.target in (None, t.resource_type)]
        if not refs:
            return []
        out: list[StoredVersion] = []
        for param in self._reference_params(spec):
            for start in range(0, len(refs), 50):  # OR lists of moderate size
                value = ",".join(refs[start : start + 50])
                request = parse_search(spec.source_type, [(param.code, value)], base_url, strict=True)
                out += self._search(request)
        return out

    @staticmethod
    def _reference_params(spec: IncludeSpec) -> list[SearchParameter]:
        if spec.param is not None:
            return [spec.param]
        return [p for p in parameters(spec.source_type).values() if p.type == "reference"]
