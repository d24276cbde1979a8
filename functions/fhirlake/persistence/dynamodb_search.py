"""Search over the index entries of the resource table (see ``search_index`` for the item layout).

A search walks one *driver*: the index partitions of the most selective criterion (or of ``_id``, which
every resource has), reading sort-key ranges that contain every possible match in a fixed order: by range
(one per OR value), then shard, then sort key. Equality-like criteria read a sort-key prefix; date, number
and quantity prefixes read a bounded key range (``search_index.driver_ranges``). Each candidate's current
version is fetched (``BatchGetItem``) and kept only if every criterion matches its current body. A
resource is emitted at exactly one driver position -- its smallest key in the first range holding one, in
the one shard its id hashes to -- so pages never repeat it; the cursor is that position, so writes made
while a client pages cannot shift what later pages hold.

Sharded partitions (``SearchParameter.shards``) are read one after the other, not merged: a page of a
common value (``gender=female``) is one Query of one shard plus one BatchGetItem, like an unsharded one.
When a shard runs out before the page is full, the first Query of every later shard goes out in parallel,
so a rare value costs one round trip for all shards rather than one per shard.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from typing import Any

import orjson

from fhirlake.persistence import StoredVersion, search_index
from fhirlake.persistence.dynamodb import InvalidCursor
from fhirlake.persistence.search_index import KeyRange
from fhirlake.search.extract import parameter_values
from fhirlake.search.parameters import parameters
from fhirlake.search.query import Criterion, SearchRequest, matches
from fhirlake.search.values import IndexValue

_PAGE_READ = 100  # index entries per Query while filling a page (the first Query reads just a page's worth)
_WHOLE = KeyRange("", search_index.HIGHEST)

Position = tuple[int, int, str]  # (range index, shard, sort key)


@dataclass(frozen=True, slots=True)
class SearchPage:
    versions: list[StoredVersion]
    next_cursor: str | None
    total: int | None


@dataclass(frozen=True, slots=True)
class _Driver:
    code: str
    ranges: list[KeyRange]  # one key range per OR value
    criterion: Criterion | None
    shards: int = 1


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
        start = self._decode(scope, request.cursor) if request.cursor else (0, 0, None)
        if request.summary == "count":
            return SearchPage([], None, self._count(request, driver))
        found: list[StoredVersion] = []
        last: Position | None = None
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
        """The criterion whose ranges hold fewest candidates, as far as the query tells: an equality-like
        one (a few exact keys) before a range one, and fewer OR values first."""
        known = parameters(request.resource_type)
        best: tuple[tuple[bool, int], _Driver] | None = None
        for criterion in request.criteria:
            ranges = search_index.driver_ranges(criterion)
            if ranges is None:
                continue
            rank = (search_index.driver_prefixes(criterion) is None, len(ranges))
            if best is None or rank < best[0]:
                shards = known[criterion.code].shards if criterion.code in known else 1
                best = (rank, _Driver(criterion.code, ranges, criterion, shards))
        if best is not None:
            return best[1]
        return _Driver("_id", [_WHOLE], None, known["_id"].shards)

    # -- execution --------------------------------------------------------------------------
    def _matches(
        self, request: SearchRequest, driver: _Driver, start: tuple[int, int, str | None]
    ) -> Iterator[tuple[Position, StoredVersion]]:
        known = parameters(request.resource_type)
        used = [known[code] for code in dict.fromkeys([driver.code, *(c.code for c in request.criteria)])]
        chunk = max(2, min(request.count + 1, _PAGE_READ))
        pending: list[Position] = []
        for position in self._positions(request.resource_type, driver, start, chunk):
            pending.append(position)
            if len(pending) >= chunk:
                yield from self._checked(request, driver, used, pending)
                pending, chunk = [], _PAGE_READ
        yield from self._checked(request, driver, used, pending)

    def _checked(
        self, request: SearchRequest, driver: _Driver, used: list, positions: list[Position]
    ) -> Iterator[tuple[Position, StoredVersion]]:
        """The candidates at ``positions`` that match and are emitted there, in order (one BatchGetItem)."""
        if not positions:
            return
        ids = [sk.rpartition(search_index.KEY_END)[2] for _, _, sk in positions]
        current = self._store.current_many(request.resource_type, ids)
        for position, rid in zip(positions, ids, strict=True):
            version = current.get(rid)
            if version is None or version.resource is None:
                continue  # an entry of a deleted resource or of a write that never committed
            # Only the parameters this search uses are extracted (not all ~30 of the type).
            values = [v for sp in used for v in parameter_values(sp, version.resource)]
            if self._emitted_here(position, rid, driver, values) and all(
                matches(c, [v for v in values if v.code == c.code]) for c in request.criteria
            ):
                yield position, version

    @staticmethod
    def _emitted_here(position: Position, rid: str, driver: _Driver, values: list[IndexValue]) -> bool:
        """True at the one position where this resource is emitted: its smallest current key in this
        range, provided no earlier range holds one of its keys (it was emitted there). All of a
        resource's keys of one parameter are in one shard, so the shard plays no part."""
        index, _, sk = position
        own = sorted(
            f"{key}{search_index.KEY_END}{rid}"
            for v in values
            if v.code == driver.code and (key := search_index.entry_key(v)) is not None
        )
        in_range = [k for k in own if k in driver.ranges[index]]
        if not in_range or in_range[0] != sk:
            return False
        return not any(k in earlier for earlier in driver.ranges[:index] for k in own)

    def _positions(
        self, resource_type: str, driver: _Driver, start: tuple[int, int, str | None], limit: int
    ) -> Iterator[Position]:
        """Every index entry of the driver's ranges from ``start`` on, in position order."""
        pks = search_index.partition_keys(self._store.tenant, resource_type, driver.code, driver.shards)
        first_range, first_shard, after = start
        if first_shard >= len(pks) or first_range > len(driver.ranges):
            raise InvalidCursor  # issued under another shard count (the configuration changed)
        for index in range(first_range, len(driver.ranges)):
            key_range = driver.ranges[index]
            shard = first_shard if index == first_range else 0
            resume = after if index == first_range else None
            for sk in chain.from_iterable(self._entries(pks[shard], key_range, resume, limit)):
                yield index, shard, sk
            later = [self._entries(pk, key_range, None, limit) for pk in pks[shard + 1 :]]
            if not later:
                continue
            # The next shards' first Queries in parallel: a rare value would otherwise cost one round
            # trip per shard. Each later Query of a shard is issued only when its entries are needed.
            with ThreadPoolExecutor(max_workers=len(later)) as pool:
                heads = list(pool.map(lambda batches: next(batches, []), later))
            for offset, (head, rest) in enumerate(zip(heads, later, strict=True)):
                for sk in chain(head, chain.from_iterable(rest)):
                    yield index, shard + 1 + offset, sk

    def _entries(self, pk: str, key_range: KeyRange, after: str | None, limit: int) -> Iterator[list[str]]:
        """The sort keys of a range of one partition in order, in batches: the first of ``limit`` entries
        (a page's worth), then growing to ``_PAGE_READ`` while candidates keep being filtered out."""
        low = max(key_range.low, after) if after is not None else key_range.low
        if low > key_range.high:
            return
        values: dict[str, Any] = {":pk": {"S": pk}}
        if low and key_range.high != search_index.HIGHEST:
            condition = "pk = :pk AND sk BETWEEN :lo AND :hi"
            values |= {":lo": {"S": low}, ":hi": {"S": key_range.high}}
        elif low:
            condition = "pk = :pk AND sk >= :lo"
            values[":lo"] = {"S": low}
        elif key_range.high != search_index.HIGHEST:
            condition = "pk = :pk AND sk <= :hi"
            values[":hi"] = {"S": key_range.high}
        else:
            condition = "pk = :pk"
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
        return sum(1 for _ in self._matches(counting, driver, (0, 0, None)))

    # -- cursors ----------------------------------------------------------------------------
    @staticmethod
    def _scope(request: SearchRequest) -> str:
        return request.resource_type + "?" + "&".join(f"{k}={v}" for k, v in request.link_params)

    @staticmethod
    def _encode(scope: str, position: Position) -> str:
        token = orjson.dumps(
            {"scope": scope, "range": position[0], "shard": position[1], "after": position[2]}
        )
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    @staticmethod
    def _decode(scope: str, cursor: str) -> tuple[int, int, str]:
        try:
            token = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidCursor from None
        if not isinstance(token, dict) or token.get("scope") != scope:
            raise InvalidCursor
        position = (token.get("range"), token.get("shard", 0), token.get("after"))
        if not isinstance(position[0], int) or not isinstance(position[1], int):
            raise InvalidCursor
        if not isinstance(position[2], str) or min(position[0], position[1]) < 0:
            raise InvalidCursor
        return position


__all__ = ["DynamoSearch", "SearchPage"]
