"""Search over the index entries of the resource table (see ``search_index`` for the item layout).

A search walks one *driver*: the index partition of the most selective criterion (or of ``_id``, which
every resource has), reading sort-key ranges that contain every possible match in a fixed order. Each
candidate's current version is fetched (``BatchGetItem``) and kept only if every criterion matches its
current body. A resource is emitted at exactly one driver position — its smallest key in the range — so
pages never repeat it; the cursor is that position, so writes made while a client pages cannot shift
what later pages hold.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from fhirlake.persistence import StoredVersion, search_index
from fhirlake.persistence.dynamodb import InvalidCursor
from fhirlake.search.extract import parameter_values
from fhirlake.search.parameters import parameters
from fhirlake.search.query import Criterion, SearchRequest, matches
from fhirlake.search.values import IndexValue

_PAGE_READ = 100  # index entries per Query while filling a page (the first Query reads just a page's worth)


@dataclass(frozen=True, slots=True)
class SearchPage:
    versions: list[StoredVersion]
    next_cursor: str | None
    total: int | None


@dataclass(frozen=True, slots=True)
class _Driver:
    code: str
    prefixes: list[str]  # one key range per OR value ("" = the whole partition)
    criterion: Criterion | None


class DynamoSearch:
    def __init__(
        self, store: Any, indexer: Callable[[dict[str, Any]], list[IndexValue]] | None = None
    ) -> None:
        """``indexer`` is accepted for symmetry with the store; candidates are checked by extracting only
        the parameters the search uses (``extract.parameter_values``), not every parameter of the type."""
        self._store = store  # DynamoResourceStore: table access and current versions

    def search(self, request: SearchRequest) -> SearchPage:
        driver = self._driver(request)
        scope = self._scope(request)
        start = self._decode(scope, request.cursor) if request.cursor else (0, None)
        if request.summary == "count":
            return SearchPage([], None, self._count(request, driver))
        found: list[StoredVersion] = []
        last: tuple[int, str] | None = None
        more = False
        for position, version in self._matches(request, driver, start):
            if len(found) == request.count:
                more = True
                break
            found.append(version)
            last = position
        total = self._count(request, driver) if request.total == "accurate" else None
        if request.count == 0:
            more = False
        cursor = self._encode(scope, last) if more and last else None
        return SearchPage(found, cursor, total)

    # -- planning ---------------------------------------------------------------------------
    def _driver(self, request: SearchRequest) -> _Driver:
        best: _Driver | None = None
        for criterion in request.criteria:
            prefixes = search_index.driver_prefixes(criterion)
            if prefixes is not None and (best is None or len(prefixes) < len(best.prefixes)):
                best = _Driver(criterion.code, prefixes, criterion)
        return best or _Driver("_id", [""], None)

    # -- execution --------------------------------------------------------------------------
    def _matches(
        self, request: SearchRequest, driver: _Driver, start: tuple[int, str | None]
    ) -> Iterator[tuple[tuple[int, str], StoredVersion]]:
        pk = search_index.index_pk(self._store.tenant, request.resource_type, driver.code)
        known = parameters(request.resource_type)
        used = [known[code] for code in dict.fromkeys([driver.code, *(c.code for c in request.criteria)])]
        first_range, after = start
        for index in range(first_range, len(driver.prefixes)):
            prefix = driver.prefixes[index]
            first = after if index == first_range else None
            for batch in self._entries(pk, prefix, first, request.count + 1):
                ids = [sk.rpartition(search_index.KEY_END)[2] for sk in batch]
                current = self._store.current_many(request.resource_type, ids)
                for sk, rid in zip(batch, ids, strict=True):
                    version = current.get(rid)
                    if version is None or version.resource is None:
                        continue  # an entry of a deleted resource or of a write that never committed
                    # Only the parameters this search uses are extracted (not all ~30 of the type).
                    values = [v for sp in used for v in parameter_values(sp, version.resource)]
                    if self._emitted_here(sk, rid, index, driver, values) and all(
                        matches(c, [v for v in values if v.code == c.code]) for c in request.criteria
                    ):
                        yield (index, sk), version

    @staticmethod
    def _emitted_here(sk: str, rid: str, index: int, driver: _Driver, values: list[IndexValue]) -> bool:
        """True at the one position where this resource is emitted: its smallest current key in this
        range, provided no earlier range holds one of its keys (it was emitted there)."""
        own = sorted(
            f"{key}{search_index.KEY_END}{rid}"
            for v in values
            if v.code == driver.code and (key := search_index.entry_key(v)) is not None
        )
        in_range = [k for k in own if k.startswith(driver.prefixes[index])]
        if not in_range or in_range[0] != sk:
            return False
        return not any(k.startswith(p) for p in driver.prefixes[:index] for k in own)

    def _entries(self, pk: str, prefix: str, after: str | None, limit: int) -> Iterator[list[str]]:
        """The sort keys of a range in order, in batches: the first of ``limit`` entries (a page's worth),
        then growing to ``_PAGE_READ`` while candidates keep being filtered out."""
        values: dict[str, Any] = {":pk": {"S": pk}, ":hi": {"S": prefix + search_index.HIGHEST}}
        if after is not None:
            condition = "pk = :pk AND sk BETWEEN :lo AND :hi"
            values[":lo"] = {"S": after}
        elif prefix:
            condition = "pk = :pk AND begins_with(sk, :prefix)"
            values = {":pk": {"S": pk}, ":prefix": {"S": prefix}}
        else:
            condition = "pk = :pk"
            values = {":pk": {"S": pk}}
        kwargs: dict[str, Any] = {
            "TableName": self._store.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ProjectionExpression": "sk",
            "ConsistentRead": True,
            "Limit": max(2, min(limit, _PAGE_READ)),
        }
        while True:
            resp = self._store.dynamodb.query(**kwargs)
            batch = [i["sk"]["S"] for i in resp.get("Items", []) if i["sk"]["S"] != after]
            if batch:
                yield batch
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
            kwargs["Limit"] = min(kwargs["Limit"] * 2, _PAGE_READ)

    def _count(self, request: SearchRequest, driver: _Driver) -> int:
        counting = SearchRequest(request.resource_type, request.criteria, count=_PAGE_READ)
        return sum(1 for _ in self._matches(counting, driver, (0, None)))

    # -- cursors ----------------------------------------------------------------------------
    @staticmethod
    def _scope(request: SearchRequest) -> str:
        return request.resource_type + "?" + "&".join(f"{k}={v}" for k, v in request.link_params)

    @staticmethod
    def _encode(scope: str, position: tuple[int, str]) -> str:
        token = orjson.dumps({"scope": scope, "range": position[0], "after": position[1]})
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    @staticmethod
    def _decode(scope: str, cursor: str) -> tuple[int, str]:
        try:
            token = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidCursor from None
        if not isinstance(token, dict) or token.get("scope") != scope:
            raise InvalidCursor
        if not isinstance(token.get("range"), int) or not isinstance(token.get("after"), str):
            raise InvalidCursor
        return token["range"], token["after"]


__all__ = ["DynamoSearch", "SearchPage"]
