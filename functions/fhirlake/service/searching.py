"""Search orchestration: parameters → the index search, then ``_sort``, compartments and includes.

The index search itself (``Searcher``: ``persistence.dynamodb_search``) answers one type with AND-ed
criteria in index order, page by page. This module adds what spans several index searches:

- ``_sort``: collect every match, order, page by position (``sorting``);
- compartment search ``GET /Patient/123/Observation?...`` (http.html / compartmentdefinition.html): the
  union of one search per compartment parameter (e.g. Observation ``subject`` and ``performer`` for the
  Patient compartment), ordered by id or ``_sort``, paged by position;
- ``_include`` / ``_revinclude`` (``includes``);
- system search ``GET [base]?_type=Patient,Observation&...`` (search.html#all): one type-level search per
  listed type (every type without ``_type``) with the parameters all of them share, the types in
  alphabetical order, each paged by its own cursor; with ``_sort`` every match is collected and ordered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Protocol

from fhirlake.fhir.outcome import FhirError, Issue
from fhirlake.fhir.types import is_valid_id, resource_types
from fhirlake.persistence import ResourceStore, StoredVersion
from fhirlake.persistence.dynamodb import InvalidCursor
from fhirlake.persistence.dynamodb_search import SearchPage
from fhirlake.search.extract import parameter_values
from fhirlake.search.parameters import parameters
from fhirlake.search.query import MAX_COUNT, RESULT_PARAMETERS, SearchRequest, common_parameters, parse_search
from fhirlake.service import sorting
from fhirlake.service.includes import (
    INCLUDE_PARAMETERS,
    MAX_INCLUDED,
    IncludeResolver,
    parse_includes,
    split_include_parameters,
)
from fhirlake.service.sorting import SortKey, parse_sort


class Searcher(Protocol):
    def search(self, request: SearchRequest) -> SearchPage: ...


@dataclass(frozen=True, slots=True)
class SearchResult:
    request: SearchRequest
    page: SearchPage
    included: list[StoredVersion]  # _include / _revinclude
    warnings: list[Issue]


@cache
def compartments() -> dict[str, dict[str, list[str]]]:
    """Compartment type → member resource type → the parameters that link it (R4 CompartmentDefinitions)."""
    return json.loads((resources.files("fhirlake") / "data" / "r4" / "compartments.json").read_text())


class SearchService:
    def __init__(self, store: ResourceStore, searcher: Searcher) -> None:
        self._store = store
        self._searcher = searcher

    def search(
        self, resource_type: str, query: list[tuple[str, str]], base_url: str, strict: bool
    ) -> SearchResult:
        request, sort_keys, specs = self._parse(resource_type, query, base_url, strict)
        page = self._sorted(request, sort_keys) if sort_keys else self._searcher.search(request)
        return self._with_includes(request, page, specs, base_url)

    def system_search(self, query: list[tuple[str, str]], base_url: str, strict: bool) -> SearchResult:
        types, own, warnings = self._system_query(query, strict)
        cursor = next((v for k, v in reversed(own) if k == "_cursor"), None)
        own = [(k, v) for k, v in own if k != "_cursor"]
        parsed = [self._parse(rtype, own, base_url, strict) for rtype in types]
        first, sort_keys, specs = parsed[0]
        type_value = [(k, v) for k, v in query if k == "_type"]  # the link repeats what the client sent
        request = SearchRequest("", [], first.count, first.total, None, first.summary, first.elements)
        request.warnings = warnings + first.warnings
        request.link_params = type_value + first.link_params
        scope = "?" + "&".join(f"{k}={v}" for k, v in request.link_params)
        requests = [r for r, _, _ in parsed]
        if sort_keys:
            found = [v for r in requests for v in self._all_matches(r, sorting.MAX_SORTED + 1)]
            versions, next_cursor = sorting.page(found, sort_keys, request.count, cursor, scope)
            total: int | None = len(found)
        else:
            versions, next_cursor = self._by_type(requests, request.count, cursor, scope)
            total = None
            if request.total == "accurate" or request.summary == "count":
                total = sum(self._searcher.search(replace(r, summary="count")).total or 0 for r in requests)
        if request.summary == "count":
            versions, next_cursor = [], None
        elif request.total != "accurate":
            total = None
        return self._with_includes(request, SearchPage(versions, next_cursor, total), specs, base_url)

    def _system_query(
        self, query: list[tuple[str, str]], strict: bool
    ) -> tuple[list[str], list[tuple[str, str]], list[Issue]]:
        """The types searched and the parameters kept: those every type has (others are an error with
        ``handling=strict``, ignored with a warning otherwise)."""
        listed = [t.strip() for k, v in query if k == "_type" for t in v.split(",") if t.strip()]
        unknown = [t for t in listed if t not in resource_types()]
        if unknown:
            raise FhirError.of(400, "value", f"_type: '{unknown[0]}' is not an R4 resource type")
        types = sorted(set(listed)) or sorted(resource_types())
        common = common_parameters(types)
        kept: list[tuple[str, str]] = []
        warnings: list[Issue] = []
        for name, value in query:
            code = name.split(":")[0].split(".")[0]
            if name == "_type":
                continue
            if code in common or code in _SYSTEM_RESULT_PARAMETERS or name.startswith("_has:"):
                kept.append((name, value))
                continue
            which = "the types in _type share" if listed else "all types share (or list types in _type)"
            message = f"'{code}' is not a search parameter {which}"
            if strict:
                raise FhirError.of(400, "not-supported", message)
            warnings.append(Issue("warning", "not-supported", message + " (ignored)"))
        return types, kept, warnings

    def _by_type(
        self, requests: list[SearchRequest], count: int, cursor: str | None, scope: str
    ) -> tuple[list[StoredVersion], str | None]:
        """A page of matches, type after type; the cursor is (type index, that type's own cursor)."""
        index, inner = step_position(cursor, scope, len(requests))
        found: list[StoredVersion] = []
        if count == 0:
            return found, None
        for i in range(index, len(requests)):
            if len(found) == count:  # full: the next page starts with this type
                return found, sorting.encode_cursor([i, None], scope)
            request = replace(requests[i], count=count - len(found), cursor=inner if i == index else None)
            page = self._searcher.search(request)
            found += page.versions
            if page.next_cursor is not None:
                return found, sorting.encode_cursor([i, page.next_cursor], scope)
        return found, None

    def compartment_search(
        self,
        compartment: str,
        compartment_id: str,
        resource_type: str,
        query: list[tuple[str, str]],
        base_url: str,
        strict: bool,
    ) -> SearchResult:
        members = compartments().get(compartment)
        if members is None:
            raise FhirError.of(400, "not-supported", f"{compartment} is not a compartment type")
        links = members.get(resource_type, [])
        if not links and resource_type != compartment:
            raise FhirError.of(400, "value", f"{resource_type} is not part of the {compartment} compartment")
        if not is_valid_id(compartment_id):
            raise FhirError.of(404, "not-found", f"{compartment}/{compartment_id} is not known")
        request, sort_keys, specs = self._parse(resource_type, query, base_url, strict)
        count, cursor = request.count, request.cursor
        member = f"{compartment}/{compartment_id}"
        found: dict[str, StoredVersion] = {}
        extra = [(code, member) for code in links]
        if resource_type == compartment:
            extra.append(("_id", compartment_id))  # the compartment's own resource belongs to it
        for code, value in extra:
            own = [(k, v) for k, v in request.link_params if k not in _RESULT_PARAMETERS]
            part = parse_search(resource_type, [*own, (code, value)], base_url, strict)
            for version in self._all_matches(part, sorting.MAX_SORTED + 1):
                found.setdefault(version.id, version)
        scope = f"{member}/{resource_type}?" + "&".join(f"{k}={v}" for k, v in request.link_params)
        versions, next_cursor = sorting.page(list(found.values()), sort_keys, count, cursor, scope)
        total = len(found) if request.total == "accurate" or request.summary == "count" else None
        page = SearchPage([] if request.summary == "count" else versions, next_cursor, total)
        return self._with_includes(request, page, specs, base_url)

    # -- pieces -------------------------------------------------------------------------------
    def _parse(
        self, resource_type: str, query: list[tuple[str, str]], base_url: str, strict: bool
    ) -> tuple[SearchRequest, list[SortKey], list]:
        own, include_items = split_include_parameters(query)
        sort_value = next((v for k, v in reversed(own) if k == "_sort"), None)
        own = [(k, v) for k, v in own if k != "_sort"]
        specs = parse_includes(include_items)
        own, rewritten = self._expand(resource_type, own, base_url, strict)
        request = parse_search(resource_type, own, base_url, strict)
        # Paging links repeat what the client asked, not the expanded id lists.
        request.link_params = [rewritten.get(p, p) for p in request.link_params]
        request.link_params += include_items
        sort_keys: list[SortKey] = []
        if sort_value is not None:
            sort_keys = parse_sort(resource_type, sort_value)
            request.link_params.append(("_sort", sort_value))
        return request, sort_keys, specs

    # -- chained parameters and _has (search.html#chaining, #has) ------------------------------
    def _expand(
        self, resource_type: str, query: list[tuple[str, str]], base_url: str, strict: bool
    ) -> tuple[list[tuple[str, str]], dict[tuple[str, str], tuple[str, str]]]:
        """Rewrite ``subject:Patient.name=x`` and ``_has:Observation:patient:code=y`` into plain
        reference / ``_id`` criteria by running the inner searches.

        Returns the rewritten query and, for each rewritten pair, the pair the client sent."""
        out: list[tuple[str, str]] = []
        rewritten: dict[tuple[str, str], tuple[str, str]] = {}
        for name, value in query:
            if name.startswith("_has:"):
                pair = ("_id", self._reverse_chain(resource_type, name, value, base_url, strict))
            elif "." in name and not name.startswith("_"):
                pair = self._chain(resource_type, name, value, base_url, strict)
            else:
                out.append((name, value))
                continue
            out.append(pair)
            rewritten[pair] = (name, value)
        return out, rewritten

    def _chain(
        self, resource_type: str, name: str, value: str, base_url: str, strict: bool
    ) -> tuple[str, str]:
        head, _, rest = name.partition(".")
        code, _, type_modifier = head.partition(":")
        param = parameters(resource_type).get(code)
        if param is None or param.type != "reference":
            raise FhirError.of(
                400, "value", f"'{code}' is not a reference parameter of {resource_type}: cannot chain"
            )
        targets = [type_modifier] if type_modifier else list(param.targets)
        inner_code = rest.split(".")[0].split(":")[0]
        usable = [t for t in targets if t in resource_types() and inner_code in parameters(t)]
        if not usable:
            raise FhirError.of(
                400, "value", f"No target of {resource_type}.{code} has a parameter '{inner_code}'"
            )
        refs = [f"{t}/{v.id}" for t in usable for v in self._inner(t, [(rest, value)], base_url, strict)]
        return code, ",".join(refs) or f"{usable[0]}/{NO_MATCH}"

    def _reverse_chain(self, resource_type: str, name: str, value: str, base_url: str, strict: bool) -> str:
        parts = name.split(":", 3)
        if len(parts) != 4:
            raise FhirError.of(
                400, "value", "_has takes _has:[type]:[reference parameter]:[parameter]=[value]"
            )
        _, source, link, rest = parts
        if source not in resource_types():
            raise FhirError.of(400, "value", f"_has: unknown resource type '{source}'")
        param = parameters(source).get(link)
        if param is None or param.type != "reference":
            raise FhirError.of(400, "value", f"_has: '{link}' is not a reference parameter of {source}")
        ids: dict[str, None] = {}
        for version in self._inner(source, [(rest, value)], base_url, strict):
            for ref in parameter_values(param, version.resource or {}):
                if ref.ref_type == resource_type and ref.ref_id:
                    ids[ref.ref_id] = None
        return ",".join(ids) or NO_MATCH

    def _inner(
        self, resource_type: str, query: list[tuple[str, str]], base_url: str, strict: bool
    ) -> list[StoredVersion]:
        request, _, _ = self._parse(resource_type, query, base_url, strict)
        found = self._all_matches(request, MAX_CHAIN_MATCHES + 1)
        if len(found) > MAX_CHAIN_MATCHES:
            raise FhirError.of(
                400,
                "too-costly",
                f"A chained or _has search matches over {MAX_CHAIN_MATCHES} {resource_type}: narrow it",
            )
        return found

    def _with_includes(
        self, request: SearchRequest, page: SearchPage, specs: list, base_url: str
    ) -> SearchResult:
        included: list[StoredVersion] = []
        warnings = list(request.warnings)
        if specs and request.summary != "count":
            resolver = IncludeResolver(self._store.current_many, self._all_matches)
            included, include_warnings = resolver.resolve(page.versions, specs, base_url)
            warnings += include_warnings
        return SearchResult(request, page, included, warnings)

    # -- for operations built on search (service.everything) ------------------------------------
    def page(self, request: SearchRequest) -> SearchPage:
        """One page of a plain index search (no _sort, no includes), from ``request.cursor``."""
        return self._searcher.search(request)

    def _sorted(self, request: SearchRequest, keys: list[SortKey]) -> SearchPage:
        count, cursor = request.count, request.cursor
        request.cursor = None
        matches = self._all_matches(request, limit=sorting.MAX_SORTED + 1)
        scope = f"{request.resource_type}?" + "&".join(f"{k}={v}" for k, v in request.link_params)
        versions, next_cursor = sorting.page(matches, keys, count, cursor, scope)
        total = len(matches) if request.total == "accurate" or request.summary == "count" else None
        return SearchPage([] if request.summary == "count" else versions, next_cursor, total)

    def _all_matches(self, request: SearchRequest, limit: int = MAX_INCLUDED) -> list[StoredVersion]:
        """Every match of a search, page after page, up to ``limit``."""
        request.count = MAX_COUNT
        request.cursor = None
        found: list[StoredVersion] = []
        while True:
            page = self._searcher.search(request)
            found += page.versions
            if page.next_cursor is None or len(found) >= limit:
                return found
            request.cursor = page.next_cursor


def step_position(cursor: str | None, scope: str, steps: int) -> tuple[int, str | None]:
    """(step index, that step's own cursor) from a cursor of a search paged step after step (system
    search: a step per type); (0, None) without cursor, InvalidCursor if it is not one for ``scope``."""
    if not cursor:
        return 0, None
    position = sorting.decode_cursor(cursor, scope)
    if (
        len(position) != 2
        or not isinstance(position[0], int)
        or not 0 <= position[0] < steps
        or not isinstance(position[1], str | None)
    ):
        raise InvalidCursor
    return position[0], position[1]


# The most resources an inner (chained / _has) search may contribute to the outer one.
MAX_CHAIN_MATCHES = 1000
# Not a valid FHIR id ('_' is not allowed), so a criterion holding it matches nothing.
NO_MATCH = "__none__"


# Parameters that shape results rather than select them: not repeated in per-link sub-searches.
_RESULT_PARAMETERS = {
    "_count",
    "_total",
    "_summary",
    "_elements",
    "_sort",
    "_format",
    "_pretty",
    "_cursor",
    "_include",
    "_revinclude",
    "_include:iterate",
    "_revinclude:iterate",
}
# What a system search keeps whatever the types: result parameters, includes and _sort.
_SYSTEM_RESULT_PARAMETERS = {*RESULT_PARAMETERS, *INCLUDE_PARAMETERS, "_sort"}
