"""ResourceStore on one DynamoDB table, with S3 for bodies over the item size limit."""

from __future__ import annotations

import base64
import heapq
import re
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from threading import Lock
from typing import Any

import orjson
from botocore.exceptions import ClientError
from isal import isal_zlib

from fhirlake.fhir import json as fhir_json
from fhirlake.persistence import HistoryPage, StoredVersion, VersionConflict, keys, search_index
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.search.values import IndexValue
from fhirlake.topology import SYSTEM_HISTORY_INDEX, SYSTEM_HISTORY_SHARDS, TYPE_HISTORY_INDEX

# DynamoDB items are capped at 400 KB including attribute names; keep a margin for the keys.
MAX_INLINE_BODY_BYTES = 350 * 1024
BODY_ENCODING = "zlib+json"
# Bodies are written by ISA-L (isal_zlib: the zlib format, read back by the standard zlib): on a 1.5 kB
# resource its level 2 costs a third of zlib's level 6 CPU for 3 % more bytes (docs/performance.md).
BODY_COMPRESSION_LEVEL = 2
_BATCH_GET_LIMIT = 100
MAX_RESOURCES_PER_TRANSACTION = 50  # two items each; DynamoDB transactions hold up to 100 items
# A version sort key, or an index sort key starting with a stored lastUpdated instant.
# Versions whose search entries this process keeps after writing them (~1.5 KB each), so the next write of
# the same resource diffs against them instead of extracting the previous version again.
RECENT_ENTRIES = 4096
_POSITION = re.compile(r"v#\d{10}|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z#[A-Za-z0-9\-.#]+")


def _encode_cursor(scope: str, position: str) -> str:
    token = orjson.dumps({"scope": scope, "after": position})
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def _decode_cursor(scope: str, cursor: str) -> str:
    """The position inside a cursor issued for the same history scope, else InvalidCursor."""
    try:
        token = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidCursor from None
    if not isinstance(token, dict) or token.get("scope") != scope or not isinstance(token.get("after"), str):
        raise InvalidCursor
    if not _POSITION.fullmatch(token["after"]):
        raise InvalidCursor
    return token["after"]


def _lost_race(exc: ClientError) -> bool:
    """A cancelled transaction whose cause is another writer (condition failed, or a concurrent
    transaction on the same items): retryable, unlike throttling or validation errors."""
    if exc.response["Error"]["Code"] != "TransactionCanceledException":
        return False
    reasons = {r.get("Code") for r in exc.response.get("CancellationReasons", [])} - {None, "None"}
    if not reasons:  # some SDK versions only name the reasons in the message
        return "ConditionalCheckFailed" in str(exc) or "TransactionConflict" in str(exc)
    return reasons <= {"ConditionalCheckFailed", "TransactionConflict"}


def version_from_item(item: dict[str, Any], blobs: S3BlobStore) -> StoredVersion:
    """The version (or tombstone) stored as ``item``, in DynamoDB's attribute-value form: a GetItem or
    Query result, or the NewImage of a stream record (the lake reads versions through this too). A
    binary body arrives as bytes from boto3 and base64-encoded in the JSON Lambda delivers."""
    resource = None
    if not item.get("deleted", {}).get("BOOL"):
        body = blobs.get(item["body_key"]["S"]) if "body_key" in item else item["body"]["B"]
        if isinstance(body, str):
            body = base64.b64decode(body)
        resource = fhir_json.loads(zlib.decompress(body))
    return StoredVersion(
        resource_type=item["type"]["S"],
        id=item["id"]["S"],
        version_id=int(item["vid"]["N"]),
        last_updated=item["lu"]["S"],
        method=item["method"]["S"],
        resource=resource,
    )


_HISTORY_INDEX_KEYS = ("gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")  # set by ``_to_item`` on version items only
_CURRENT_SK = {"S": keys.CURRENT_SK}  # shared by the items: serialized, never modified


def _current_item(version_item: dict[str, Any]) -> dict[str, Any]:
    """The current-version item of a version item: the same attributes, not in the history indexes."""
    current = version_item.copy()
    for key in _HISTORY_INDEX_KEYS:
        del current[key]
    current["sk"] = _CURRENT_SK
    return current


class InvalidCursor(ValueError):
    """A paging cursor that this store did not issue."""


Indexer = Callable[[dict[str, Any]], list[IndexValue]]
SearchEntries = set[tuple[str, str]]


class DynamoResourceStore:
    def __init__(
        self,
        dynamodb_client: Any,
        table_name: str,
        blobs: S3BlobStore,
        tenant: str,
        indexer: Indexer | None = None,
    ) -> None:
        self._ddb = dynamodb_client
        self._table = table_name
        self._blobs = blobs
        self._tenant = tenant
        self._indexer = indexer
        # Not on the current item: ~450 bytes more there cost ~1.6 WCU per write (docs/performance.md).
        self._recent_entries: dict[tuple[str, str, int], SearchEntries] = {}
        self._recent_lock = Lock()
        # {"S": pk} of each index partition written, shared by every request (~10 % of building them)
        self._partition_values: dict[str, dict[str, str]] = {}

    @property
    def dynamodb(self) -> Any:
        return self._ddb

    @property
    def table(self) -> str:
        return self._table

    @property
    def tenant(self) -> str:
        return self._tenant

    # -- writes -------------------------------------------------------------------------
    def put(self, version: StoredVersion, previous: StoredVersion | None = None) -> None:
        """One transaction: the new version item, and the current-version item moved from n-1 to n.

        The condition on the current item is the concurrency gate: of two writers that read version
        n-1, exactly one commits. Search entries the new version adds are written just before (so a
        client finds what it wrote as soon as the write returns); entries it no longer has are removed
        just after, each only if no newer version has written it again.
        """
        self.put_many([(version, previous)])

    def put_many(self, writes: list[tuple[StoredVersion, StoredVersion | None]]) -> None:
        """Store several versions all-or-nothing (a FHIR transaction).

        Up to 50 resources go in one DynamoDB transaction (100 items). Larger sets are written one
        resource at a time and, if one fails, the ones already written are reverted in reverse order
        (their version items removed, their current items restored): the outcome is all-or-nothing,
        though another client may briefly see a partial state.
        """
        entries = [
            (self.search_entries(previous), self.search_entries(version)) for version, previous in writes
        ]
        # All the new entries of the batch share full 25-item BatchWriteItem requests.
        self.put_entries(
            [
                (new - old, version.version_id)
                for (old, new), (version, _) in zip(entries, writes, strict=True)
            ]
        )
        prepared = [self._transaction_items(version, previous) for version, previous in writes]
        blobs = [blob for _, blob in prepared if blob]
        try:
            if len(prepared) <= MAX_RESOURCES_PER_TRANSACTION:
                self._transact([item for items, _ in prepared for item in items], writes)
            else:
                self._write_one_by_one(prepared, writes)
        except VersionConflict:
            for blob in blobs:
                self._blobs.delete(blob)  # never leave an unreferenced body behind
            raise
        for (old, new), (version, _) in zip(entries, writes, strict=True):
            self._remember_entries(version, new)
            self._delete_entries(old - new, version.version_id)

    def _transaction_items(
        self, version: StoredVersion, previous: StoredVersion | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        item, blob_key = self._to_item(version)
        current = _current_item(item)
        if version.version_id == 1:
            gate: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            gate = {
                "ConditionExpression": "vid = :previous",
                "ExpressionAttributeValues": {":previous": {"N": str(version.version_id - 1)}},
            }
        return [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Put": {"TableName": self._table, "Item": current, **gate}},
        ], blob_key

    def _transact(
        self, items: list[dict[str, Any]], writes: list[tuple[StoredVersion, StoredVersion | None]]
    ) -> None:
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _lost_race(exc):
                names = ", ".join(f"{v.resource_type}/{v.id}" for v, _ in writes[:5])
                raise VersionConflict(names) from None
            raise

    def _write_one_by_one(
        self,
        prepared: list[tuple[list[dict[str, Any]], str | None]],
        writes: list[tuple[StoredVersion, StoredVersion | None]],
    ) -> None:
        done: list[tuple[StoredVersion, StoredVersion | None]] = []
        try:
            for (items, _), write in zip(prepared, writes, strict=True):
                self._transact(items, [write])
                done.append(write)
        except Exception:
            for version, previous in reversed(done):
                self._revert(version, previous)
            raise

    def _revert(self, version: StoredVersion, previous: StoredVersion | None) -> None:
        """Undo a committed version: remove its item, make ``previous`` current again."""
        key = {"pk": {"S": keys.resource_pk(self._tenant, version.resource_type, version.id)}}
        mine = {
            "ConditionExpression": "vid = :mine",
            "ExpressionAttributeValues": {":mine": {"N": str(version.version_id)}},
        }
        restore: dict[str, Any]
        if previous is None:
            restore = {
                "Delete": {"TableName": self._table, "Key": key | {"sk": {"S": keys.CURRENT_SK}}, **mine}
            }
        else:
            item, _ = self._to_item(previous)
            current = _current_item(item)
            restore = {"Put": {"TableName": self._table, "Item": current, **mine}}
        self._ddb.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": key | {"sk": {"S": keys.version_sk(version.version_id)}},
                    }
                },
                restore,
            ]
        )
        old, new = self.search_entries(previous), self.search_entries(version)
        self._remember_entries(version, None)  # another write may take its version number
        self.put_entries([(old - new, previous.version_id if previous else 0)])

    # -- search index -------------------------------------------------------------------
    def search_entries(self, version: StoredVersion | None) -> SearchEntries:
        if version is None or version.resource is None or self._indexer is None:
            return set()
        known = self._recent_entries.get((version.resource_type, version.id, version.version_id))
        if known is not None:  # this process wrote that version: no second extraction
            return known
        values = self._indexer(version.resource)
        return search_index.entries(self._tenant, version.resource_type, version.id, values)

    def index_keys(self, resource_type: str, code: str, shards: int, limit: int) -> list[str] | None:
        """Every sort key of a parameter's index entries (all its shards), sorted; None when there are more
        than ``limit`` (reading them would cost more than the searches they could save)."""
        found: list[str] = []
        for partition in search_index.partition_keys(self._tenant, resource_type, code, shards):
            kwargs: dict[str, Any] = dict(
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": partition}},
                ProjectionExpression="sk",
                ConsistentRead=True,
            )
            while True:
                resp = self._ddb.query(**kwargs)
                found += [item["sk"]["S"] for item in resp.get("Items", [])]
                if len(found) > limit:
                    return None
                if "LastEvaluatedKey" not in resp:
                    break
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return sorted(found)

    def _remember_entries(self, version: StoredVersion, entries: SearchEntries | None) -> None:
        """Keep the entries of a committed version (None: forget them, the version was reverted)."""
        key = (version.resource_type, version.id, version.version_id)
        with self._recent_lock:
            self._recent_entries.pop(key, None)
            if entries is None or version.resource is None:
                return
            if len(self._recent_entries) >= RECENT_ENTRIES:  # the oldest goes first
                del self._recent_entries[next(iter(self._recent_entries))]
            self._recent_entries[key] = entries

    def put_entries(self, groups: list[tuple[SearchEntries, int]]) -> None:
        """Write search index entries, each group with the version that wrote it (``vid``)."""
        requests: list[dict[str, Any]] = []
        partitions = self._partition_values
        for entries, version_id in groups:
            vid = {"N": str(version_id)}  # shared by the requests: serialized, never modified
            for pk, sk in sorted(entries):
                partition = partitions.get(pk)
                if partition is None:  # one per index partition (bounded by the registry), reused
                    partition = partitions[pk] = {"S": pk}
                requests.append({"PutRequest": {"Item": {"pk": partition, "sk": {"S": sk}, "vid": vid}}})
        self.write_requests(requests)

    def write_requests(self, requests: list[dict[str, Any]]) -> None:
        """BatchWriteItem requests, 25 per call (the API's limit), unprocessed items retried."""
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self._table: requests[start : start + 25]}
            while pending:
                pending = self._ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def _delete_entries(self, entries: SearchEntries, version_id: int) -> None:
        for pk, sk in entries:
            try:
                self._ddb.delete_item(
                    TableName=self._table,
                    Key={"pk": {"S": pk}, "sk": {"S": sk}},
                    ConditionExpression="vid <= :mine",
                    ExpressionAttributeValues={":mine": {"N": str(version_id)}},
                )
            except ClientError as exc:
                # ConditionalCheckFailed: a newer version wrote the entry again, so it stays.
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    def _to_item(self, v: StoredVersion) -> tuple[dict[str, Any], str | None]:
        t, rid, vid, lu = v.resource_type, v.id, v.version_id, v.last_updated
        pk, sk, gsi1pk, gsi1sk, gsi2pk, gsi2sk = keys.version_item_keys(self._tenant, t, rid, vid, lu)
        item: dict[str, Any] = {
            "pk": {"S": pk},
            "sk": {"S": sk},
            "tenant": {"S": self._tenant},
            "type": {"S": t},
            "id": {"S": rid},
            "vid": {"N": str(vid)},
            "lu": {"S": lu},
            "method": {"S": v.method},
            "gsi1pk": {"S": gsi1pk},
            "gsi1sk": {"S": gsi1sk},
            "gsi2pk": {"S": gsi2pk},
            "gsi2sk": {"S": gsi2sk},
        }
        blob_key = None
        if v.resource is None:
            item["deleted"] = {"BOOL": True}
        else:
            body = isal_zlib.compress(fhir_json.dumps(v.resource), BODY_COMPRESSION_LEVEL)
            item["enc"] = {"S": BODY_ENCODING}
            if len(body) > MAX_INLINE_BODY_BYTES:
                blob_key = f"{self._tenant}/{t}/{rid}/{vid}.json.z"
                self._blobs.put(blob_key, body)
                item["body_key"] = {"S": blob_key}
            else:
                item["body"] = {"B": body}
        return item, blob_key

    # -- reads --------------------------------------------------------------------------
    def current(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        resp = self._ddb.get_item(
            TableName=self._table,
            Key={
                "pk": {"S": keys.resource_pk(self._tenant, resource_type, resource_id)},
                "sk": {"S": keys.CURRENT_SK},
            },
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return self._from_item(item) if item else None

    def current_many(self, resource_type: str, resource_ids: Iterable[str]) -> dict[str, StoredVersion]:
        """Current versions (tombstones included) of several resources of one type, by id."""
        table_keys = [
            {"pk": {"S": keys.resource_pk(self._tenant, resource_type, rid)}, "sk": {"S": keys.CURRENT_SK}}
            for rid in dict.fromkeys(resource_ids)
        ]
        return {v.id: v for v in self._batch_get(table_keys)}

    def _newest_versions(self, resource_type: str, resource_id: str, upper: str, limit: int) -> list[dict]:
        """Up to ``limit`` version items with ``sk <= upper``, newest first (strongly consistent)."""
        resp = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": {"S": keys.resource_pk(self._tenant, resource_type, resource_id)},
                ":lo": {"S": keys.VERSION_PREFIX},
                ":hi": {"S": upper},
            },
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
        )
        return resp.get("Items", [])

    def version(self, resource_type: str, resource_id: str, version_id: int) -> StoredVersion | None:
        resp = self._ddb.get_item(
            TableName=self._table,
            Key={
                "pk": {"S": keys.resource_pk(self._tenant, resource_type, resource_id)},
                "sk": {"S": keys.version_sk(version_id)},
            },
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return self._from_item(item) if item else None

    def _from_item(self, item: dict[str, Any]) -> StoredVersion:
        return version_from_item(item, self._blobs)

    # -- history ------------------------------------------------------------------------
    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        count: int,
        since: str | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        scope = f"{resource_type or '*'}/{resource_id or '*'}"
        position = _decode_cursor(scope, cursor) if cursor else None
        if resource_type and resource_id:
            return self._instance_history(resource_type, resource_id, count, since, position, scope)
        if resource_type:
            index_keys = self._index_page(
                TYPE_HISTORY_INDEX.name,
                "gsi1pk",
                "gsi1sk",
                [keys.type_history_pk(self._tenant, resource_type)],
                count,
                since,
                position,
            )
        else:
            index_keys = self._index_page(
                SYSTEM_HISTORY_INDEX.name,
                "gsi2pk",
                "gsi2sk",
                [keys.system_history_pk(self._tenant, s) for s in range(SYSTEM_HISTORY_SHARDS)],
                count,
                since,
                position,
            )
        page = index_keys[:count]
        versions = self._batch_get([k for _, k in page])
        next_cursor = _encode_cursor(scope, page[-1][0]) if len(index_keys) > count else None
        return HistoryPage(versions, next_cursor)

    def _instance_history(
        self,
        resource_type: str,
        resource_id: str,
        count: int,
        since: str | None,
        position: str | None,
        scope: str,
    ) -> HistoryPage:
        newest = self._newest_versions(
            resource_type, resource_id, position or keys.LAST_VERSION_KEY, count + 2
        )
        items = [i for i in newest if i["sk"]["S"] != position]
        if since:
            # Versions of one resource are in lastUpdated order, so the cut is a prefix.
            items = [i for i in items if i["lu"]["S"] >= since]
        page = items[:count]
        more = len(items) > count
        return HistoryPage(
            [self._from_item(i) for i in page], _encode_cursor(scope, page[-1]["sk"]["S"]) if more else None
        )

    def _index_page(
        self,
        index: str,
        pk_name: str,
        sk_name: str,
        partitions: list[str],
        count: int,
        since: str | None,
        position: str | None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to count+1 (sort key, table key) pairs, newest first, merged over the partitions."""

        def query(partition: str) -> list[tuple[str, dict[str, Any]]]:
            values: dict[str, Any] = {":pk": {"S": partition}}
            if position is not None and since is not None:
                condition = f"{pk_name} = :pk AND {sk_name} BETWEEN :lo AND :hi"
                values |= {":lo": {"S": since}, ":hi": {"S": position}}
            elif position is not None:
                condition = f"{pk_name} = :pk AND {sk_name} < :hi"
                values[":hi"] = {"S": position}
            elif since is not None:
                condition = f"{pk_name} = :pk AND {sk_name} >= :lo"
                values[":lo"] = {"S": since}
            else:
                condition = f"{pk_name} = :pk"
            found: list[tuple[str, dict[str, Any]]] = []
            kwargs: dict[str, Any] = dict(
                TableName=self._table,
                IndexName=index,
                KeyConditionExpression=condition,
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
            )
            while len(found) < count + 1:
                kwargs["Limit"] = count + 2 - len(found)
                resp = self._ddb.query(**kwargs)
                for item in resp.get("Items", []):
                    sort_key = item[sk_name]["S"]
                    if sort_key != position:
                        found.append((sort_key, {"pk": item["pk"], "sk": item["sk"]}))
                if "LastEvaluatedKey" not in resp:
                    break
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
            return found

        if len(partitions) == 1:
            results = [query(partitions[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(partitions)) as pool:
                results = list(pool.map(query, partitions))
        merged = heapq.merge(*results, key=lambda pair: pair[0], reverse=True)
        return [pair for _, pair in zip(range(count + 1), merged, strict=False)]

    def _batch_get(self, table_keys: Iterable[dict[str, Any]]) -> list[StoredVersion]:
        wanted = list(table_keys)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(wanted), _BATCH_GET_LIMIT):
            request: dict[str, Any] = {self._table: {"Keys": wanted[start : start + _BATCH_GET_LIMIT]}}
            while request:
                resp = self._ddb.batch_get_item(RequestItems=request)
                for item in resp.get("Responses", {}).get(self._table, []):
                    found[(item["pk"]["S"], item["sk"]["S"])] = item
                request = resp.get("UnprocessedKeys") or {}
        return [
            self._from_item(found[(k["pk"]["S"], k["sk"]["S"])])
            for k in wanted
            if (k["pk"]["S"], k["sk"]["S"]) in found
        ]
