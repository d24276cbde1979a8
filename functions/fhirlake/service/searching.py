"""Search orchestration: parameters → the index search, then ``_sort``, compartments and includes.

The index search itself (``Searcher``: ``persistence.dynamodb_search``) answers one type with AND-ed
criteria in index order, page by page. This module adds what spans several index searches:

- ``_sort``: collect every match, order, page by position (``sorting``);
- compartment search ``GET /Patient/123/Observation?...`` (http.html / compartmentdefinition.html): the
  union of one search per compartment parameter (e.g. Observation ``subject`` and ``performer`` for the
  Patient compartment), ordered by id or ``_sort``, paged by position;
- ``_include`` / ``_revinclude`` (``includes``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Protocol

from fhirlake.fhir.outcome import FhirError, Issue
from fhirlake.fhir.types import is_valid_id
from fhirlake.persistence import ResourceStore, StoredVersion
from fhirlake.persistence.dynamodb_search import SearchPage
from fhirlake.search.query import MAX_COUNT, SearchRequest, parse_search
from fhirlake.service import sorting
from fhirlake.service.includes import MAX_INCLUDED, IncludeResolver, parse_includes, split_include_parameters
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
    @staticmethod
    def _parse(
        resource_type: str, query: list[tuple[str, str]], base_url: str, strict: bool
    ) -> tuple[SearchRequest, list[SortKey], list]:
        own, include_items = split_include_parameters(query)
        sort_value = next((v for k, v in reversed(own) if k == "_sort"), None)
        own = [(k, v) for k, v in own if k != "_sort"]
        specs = parse_includes(include_items)
        request = parse_search(resource_type, own, base_url, strict)
        request.link_params += include_items
        sort_keys: list[SortKey] = []
        if sort_value is not None:
            sort_keys = parse_sort(resource_type, sort_value)
            request.link_params.append(("_sort", sort_value))
        return request, sort_keys, specs

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
