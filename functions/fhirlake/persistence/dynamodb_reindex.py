"""The re-index job's table access (the job itself: ``fhirlake.service.reindex``).

Two records in the partition ``pk = "{tenant}#_search"``:

- ``sk = "config"``: the layout the table's index entries were written for, and its digest;
- ``sk = "reindex"``: the checkpoint of a running job: its digest, the layouts it set out to undo and
  build (zlib-compressed JSON), the number of partitions cleared and each Scan segment's position (``""``
  not started, ``"done"``, else the JSON of the segment's ``LastEvaluatedKey``).

Checkpoint updates are conditional on the digest: when another job (another configuration) has taken the
checkpoint over, they raise :class:`Superseded` instead of moving that job's positions.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from botocore.exceptions import ClientError

from fhirlake.persistence import StoredVersion, keys
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.persistence.dynamodb import DynamoResourceStore, SearchEntries, version_from_item
from fhirlake.search.config import Layout

CONFIG_SK = "config"
CHECKPOINT_SK = "reindex"
SEGMENT_DONE = "done"


class Superseded(Exception):
    """The checkpoint now belongs to a job for another configuration."""


@dataclass(frozen=True)
class Checkpoint:
    digest: str
    layouts: list[Layout]  # what the job plans from besides the applied layout, then its target (last)
    cleared: int  # partitions of the plan's clear list emptied so far
    segments: dict[int, str]  # Scan segment -> position ("", SEGMENT_DONE or a LastEvaluatedKey as JSON)


@dataclass(frozen=True)
class ScanPage:
    versions: list[StoredVersion]  # the live current versions of the wanted types
    scanned: int  # items the page read (all kinds)
    position: str  # where the segment continues (SEGMENT_DONE at its end)


class DynamoReindexStore:
    def __init__(self, dynamodb: Any, table: str, tenant: str, blobs: S3BlobStore) -> None:
        self._ddb = dynamodb
        self._table = table
        self._tenant = tenant
        self._blobs = blobs
        self._entries = DynamoResourceStore(
            dynamodb, table, blobs, tenant
        )  # writes entries as the writer does

    @property
    def tenant(self) -> str:
        return self._tenant

    # -- the two records -------------------------------------------------------------------------
    def applied_layout(self) -> Layout | None:
        item = self._item(CONFIG_SK)
        return _decode_layouts(item["layouts"]["B"])[0] if item else None

    def save_applied(self, layout: Layout, digest: str) -> None:
        item = self._key(CONFIG_SK) | {"digest": {"S": digest}, "layouts": {"B": _encode_layouts([layout])}}
        self._ddb.put_item(TableName=self._table, Item=item)

    def checkpoint(self) -> Checkpoint | None:
        item = self._item(CHECKPOINT_SK)
        if item is None:
            return None
        return Checkpoint(
            item["digest"]["S"],
            _decode_layouts(item["layouts"]["B"]),
            int(item["cleared"]["N"]),
            {int(s): position["S"] for s, position in item["segments"]["M"].items()},
        )

    def start(self, checkpoint: Checkpoint) -> None:
        item = self._key(CHECKPOINT_SK) | {
            "digest": {"S": checkpoint.digest},
            "layouts": {"B": _encode_layouts(checkpoint.layouts)},
            "cleared": {"N": str(checkpoint.cleared)},
            "segments": {"M": {str(s): {"S": p} for s, p in checkpoint.segments.items()}},
        }
        self._ddb.put_item(TableName=self._table, Item=item)

    def save_cleared(self, digest: str, cleared: int) -> None:
        self._update_checkpoint(digest, "SET cleared = :n", {}, {":n": {"N": str(cleared)}})

    def save_position(self, digest: str, segment: int, position: str) -> None:
        names = {"#segments": "segments", "#s": str(segment)}
        self._update_checkpoint(digest, "SET #segments.#s = :p", names, {":p": {"S": position}})

    def finish(self, layout: Layout, digest: str) -> None:
        """The job is done: ``layout`` is what the index holds, and the checkpoint goes."""
        self.save_applied(layout, digest)
        self._ddb.delete_item(TableName=self._table, Key=self._key(CHECKPOINT_SK))

    # -- index partitions and current versions ---------------------------------------------------
    def clear_partition(self, pk: str) -> int:
        """Delete every item of one index partition; the number deleted."""
        deleted = 0
        for batch in self._partition_keys(pk):
            self._entries.write_requests([{"DeleteRequest": {"Key": key}} for key in batch])
            deleted += len(batch)
        return deleted

    def scan_current(
        self, segment: int, segments: int, position: str, limit: int, types: Collection[str]
    ) -> ScanPage:
        """One page of a parallel Scan over the tenant's current-version items (strongly consistent),
        decoded only for the live resources of ``types``."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Segment": segment,
            "TotalSegments": segments,
            "Limit": limit,
            "ConsistentRead": True,
            "FilterExpression": "sk = :cur AND tenant = :tenant",
            "ExpressionAttributeValues": {":cur": {"S": keys.CURRENT_SK}, ":tenant": {"S": self._tenant}},
        }
        if position:
            kwargs["ExclusiveStartKey"] = orjson.loads(position)
        resp = self._ddb.scan(**kwargs)
        items = resp.get("Items", [])
        versions = [
            version_from_item(item, self._blobs)
            for item in items
            if item["type"]["S"] in types and not item.get("deleted", {}).get("BOOL")
        ]
        last = resp.get("LastEvaluatedKey")
        return ScanPage(versions, len(items), orjson.dumps(last).decode() if last else SEGMENT_DONE)

    def put_entries(self, groups: list[tuple[SearchEntries, int]]) -> int:
        """Write index entries, each group with the version it describes; the number written."""
        self._entries.put_entries(groups)
        return sum(len(entries) for entries, _ in groups)

    # -- table access ------------------------------------------------------------------------------
    def _update_checkpoint(
        self, digest: str, update: str, names: dict[str, str], values: dict[str, Any]
    ) -> None:
        """Record progress, only while the checkpoint is still this job's (same layout digest)."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(CHECKPOINT_SK),
                UpdateExpression=update,
                ConditionExpression="#digest = :digest",
                ExpressionAttributeNames={**names, "#digest": "digest"},
                ExpressionAttributeValues={**values, ":digest": {"S": digest}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise Superseded from None
            raise

    def _partition_keys(self, pk: str) -> Iterator[list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ProjectionExpression": "pk, sk",
        }
        while True:
            resp = self._ddb.query(**kwargs)
            if resp.get("Items"):
                yield resp["Items"]
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _key(self, sk: str) -> dict[str, Any]:
        return _record_key(self._tenant, sk)

    def _item(self, sk: str) -> dict[str, Any] | None:
        return self._ddb.get_item(TableName=self._table, Key=self._key(sk), ConsistentRead=True).get("Item")


def _record_key(tenant: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": f"{tenant}#_search"}, "sk": {"S": sk}}


def _encode_layouts(layouts: list[Layout]) -> bytes:
    return zlib.compress(orjson.dumps(layouts, option=orjson.OPT_SORT_KEYS), 9)


def _decode_layouts(blob: bytes) -> list[Layout]:
    return [
        {rtype: {code: (fp, int(n)) for code, (fp, n) in params.items()} for rtype, params in raw.items()}
        for raw in orjson.loads(zlib.decompress(blob))
    ]


def applied_digest(dynamodb: Any, table: str, tenant: str) -> str | None:
    """The digest of the layout the table's index holds (None: never re-indexed)."""
    item = dynamodb.get_item(TableName=table, Key=_record_key(tenant, CONFIG_SK), ConsistentRead=True)
    return item["Item"]["digest"]["S"] if "Item" in item else None
