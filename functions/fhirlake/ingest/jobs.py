"""Import jobs: one per dropped object, recorded in the resource table under non-resource keys.

Keys (``_`` never starts a resource type, so none of these can collide with a resource's
``{tenant}#{type}#{id}`` partition or a search entry's ``{tenant}#{type}?{param}``):

    pk = {tenant}#_job#{job_id}   sk = job             the job (status, source, timings, chunk total)
    pk = {tenant}#_job#{job_id}   sk = c#{index:06d}   one chunk (its byte range, done flag, counts)
    pk = {tenant}#_jobs           sk = {created}#{id}  the job list, newest last (GET /_import)
    pk = {tenant}#_src#{digest}   sk = src             first job of a (bucket, key, ETag): re-drop detection

A job's counts are the sums over its done chunks: a chunk is marked done and the job's ``done``
counter incremented in one DynamoDB transaction conditioned on the chunk not being done yet, so a
redelivered chunk is never counted twice, and the job completes when ``done == chunks`` (atomic).

Statuses: ``queued`` → ``running`` → ``completed`` | ``completed-with-errors`` (some lines in FAILURE)
| ``failed`` (the object could not be read: ``reason``); ``skipped`` when the same object (same bucket,
key and ETag) was already imported (``duplicateOf``), unless forced.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson
from botocore.exceptions import ClientError

QUEUED, RUNNING = "queued", "running"
COMPLETED, COMPLETED_WITH_ERRORS, FAILED, SKIPPED = "completed", "completed-with-errors", "failed", "skipped"
TERMINAL = frozenset({COMPLETED, COMPLETED_WITH_ERRORS, FAILED, SKIPPED})
_NAMESPACE = uuid.UUID("6f3c3a52-8a55-4c59-9a43-7d7f3a1f0c11")
JOB_SK = "job"


def job_id_for(bucket: str, key: str, version_id: str | None, etag: str, sequencer: str | None = None) -> str:
    """The same S3 object version always gets the same job id (redelivered events are recognised)."""
    identity = (
        f"{bucket}/{key}?versionId={version_id}" if version_id else f"{bucket}/{key}#{etag}#{sequencer}"
    )
    return str(uuid.uuid5(_NAMESPACE, identity))


def _at_segment(segment: int) -> str:
    """The chunk is still at the segment the caller ran (a chunk that never paused has no ``seg``)."""
    return "seg = :seg" if segment else "(attribute_not_exists(seg) OR seg = :seg)"


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in (
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    )


class JobStore:
    def __init__(self, dynamodb: Any, table: str, tenant: str) -> None:
        self._ddb, self._table, self._tenant = dynamodb, table, tenant

    def _pk(self, job_id: str) -> dict[str, Any]:
        return {"S": f"{self._tenant}#_job#{job_id}"}

    # -- jobs -------------------------------------------------------------------------------
    def create(self, job: dict[str, Any]) -> bool:
        """Record a new job; False when a job with this id exists (a redelivered event)."""
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "pk": self._pk(job["id"]),
                                "sk": {"S": JOB_SK},
                                "status": {"S": job["status"]},
                                "done": {"N": "0"},
                                "doc": {"B": orjson.dumps(job)},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "pk": {"S": f"{self._tenant}#_jobs"},
                                "sk": {"S": f"{job['createdAt']}#{job['id']}"},
                                "job": {"S": job["id"]},
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def get(self, job_id: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(
            TableName=self._table, Key={"pk": self._pk(job_id), "sk": {"S": JOB_SK}}, ConsistentRead=True
        ).get("Item")
        return _job(item) if item else None

    def update(self, job_id: str, job: dict[str, Any], *, expect: frozenset[str] | None = None) -> bool:
        """Replace the job document (and status); with ``expect``, only from one of those statuses."""
        values: dict[str, Any] = {":s": {"S": job["status"]}, ":d": {"B": orjson.dumps(job)}}
        kwargs: dict[str, Any] = {}
        if expect is not None:
            names = [f":e{i}" for i in range(len(expect))]
            values |= {n: {"S": s} for n, s in zip(names, sorted(expect), strict=True)}
            kwargs["ConditionExpression"] = f"#status IN ({', '.join(names)})"
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": self._pk(job_id), "sk": {"S": JOB_SK}},
                UpdateExpression="SET #status = :s, doc = :d",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
                **kwargs,
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def count_redelivery(self, job_id: str) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key={"pk": self._pk(job_id), "sk": {"S": JOB_SK}},
            UpdateExpression="ADD redeliveries :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    def list(self, limit: int = 50, before: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` jobs (newest first), optionally created before the ``before`` position."""
        values: dict[str, Any] = {":pk": {"S": f"{self._tenant}#_jobs"}}
        condition = "pk = :pk"
        if before:
            condition += " AND sk < :before"
            values[":before"] = {"S": before}
        items = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            Limit=limit,
        ).get("Items", [])
        jobs = []
        for item in items:
            job = self.get(item["job"]["S"])
            if job is not None:
                jobs.append({**job, "position": item["sk"]["S"]})
        return jobs

    # -- re-drop detection ------------------------------------------------------------------
    def claim_source(self, bucket: str, key: str, etag: str, job_id: str, force: bool = False) -> str | None:
        """Register ``job_id`` as the import of (bucket, key, ETag); returns the earlier job's id if another
        job already holds it (and that job did not fail) and ``force`` is not set, else None."""
        digest = hashlib.sha256(f"{bucket}\n{key}\n{etag}".encode()).hexdigest()[:40]
        key_ = {"pk": {"S": f"{self._tenant}#_src#{digest}"}, "sk": {"S": "src"}}
        item = self._ddb.get_item(TableName=self._table, Key=key_, ConsistentRead=True).get("Item")
        if item and item["job"]["S"] != job_id and not force:
            earlier = self.get(item["job"]["S"])
            if earlier is not None and earlier["status"] not in (FAILED, SKIPPED):
                return earlier["id"]
        self._ddb.put_item(TableName=self._table, Item={**key_, "job": {"S": job_id}})
        return None

    # -- chunks -----------------------------------------------------------------------------
    def put_chunks(self, job_id: str, chunks: list[dict[str, Any]]) -> None:
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": self._pk(job_id),
                        "sk": {"S": f"c#{c['index']:06d}"},
                        "doc": {"B": orjson.dumps(c)},
                    }
                }
            }
            for c in chunks
        ]
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self._table: requests[start : start + 25]}
            while pending:
                pending = self._ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def chunk(self, job_id: str, index: int) -> dict[str, Any] | None:
        item = self._ddb.get_item(
            TableName=self._table,
            Key={"pk": self._pk(job_id), "sk": {"S": f"c#{index:06d}"}},
            ConsistentRead=True,
        ).get("Item")
        return _chunk(item) if item else None

    def chunks(self, job_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = dict(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :c)",
            ExpressionAttributeValues={":pk": self._pk(job_id), ":c": {"S": "c#"}},
            ConsistentRead=True,
        )
        while True:
            resp = self._ddb.query(**kwargs)
            found += [_chunk(item) for item in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return found
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def save_progress(self, job_id: str, index: int, segment: int, progress: dict[str, Any]) -> bool:
        """Record that the chunk's ``segment`` ended where ``progress`` says (the next segment starts
        there); False when another invocation finished the chunk or recorded that segment first."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": self._pk(job_id), "sk": {"S": f"c#{index:06d}"}},
                UpdateExpression="SET progress = :p, seg = :next",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(done) AND "
                + _at_segment(segment),
                ExpressionAttributeValues={
                    ":p": {"B": orjson.dumps(progress)},
                    ":next": {"N": str(segment + 1)},
                    ":seg": {"N": str(segment)},
                },
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def complete_chunk(self, job_id: str, index: int, counts: dict[str, Any], segment: int = 0) -> bool:
        """Mark the chunk done with its counts and count it on the job, once, by the invocation that ran
        its last ``segment``; False if it already was done or another invocation went on with it."""
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": self._pk(job_id), "sk": {"S": f"c#{index:06d}"}},
                            "UpdateExpression": "SET done = :t, counts = :c",
                            "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(done) AND "
                            + _at_segment(segment),
                            "ExpressionAttributeValues": {
                                ":t": {"BOOL": True},
                                ":c": {"B": orjson.dumps(counts)},
                                ":seg": {"N": str(segment)},
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": self._pk(job_id), "sk": {"S": JOB_SK}},
                            "UpdateExpression": "ADD done :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True


def _job(item: dict[str, Any]) -> dict[str, Any]:
    job = orjson.loads(item["doc"]["B"])
    job["status"] = item["status"]["S"]
    job["chunksDone"] = int(item.get("done", {}).get("N", "0"))
    if "redeliveries" in item:
        job["redeliveries"] = int(item["redeliveries"]["N"])
    return job


def _chunk(item: dict[str, Any]) -> dict[str, Any]:
    chunk = orjson.loads(item["doc"]["B"])
    chunk["done"] = bool(item.get("done", {}).get("BOOL"))
    chunk["segment"] = int(item.get("seg", {}).get("N", "0"))
    if "counts" in item:
        chunk["counts"] = orjson.loads(item["counts"]["B"])
    if "progress" in item:
        chunk["progress"] = orjson.loads(item["progress"]["B"])
    return chunk


def empty_counts() -> dict[str, Any]:
    return {"read": 0, "stored": 0, "unchanged": 0, "failed": 0, "byType": {}}


def add_counts(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    for name in ("read", "stored", "unchanged", "failed"):
        total[name] += part.get(name, 0)
    for rtype, numbers in part.get("byType", {}).items():
        mine = total["byType"].setdefault(rtype, {"stored": 0, "failed": 0})
        for name, value in numbers.items():
            mine[name] = mine.get(name, 0) + value
    return total


def job_view(jobs: JobStore, job_id: str) -> dict[str, Any] | None:
    """What ``GET /_import/{job}`` answers: the job with its counts summed over the done chunks."""
    job = jobs.get(job_id)
    if job is None:
        return None
    counts = empty_counts()
    for chunk in jobs.chunks(job_id):
        if chunk["done"]:
            add_counts(counts, chunk.get("counts", {}))
    return {**job, "counts": counts}


def jobs_list_view(jobs: JobStore, limit: int = 50, before: str | None = None) -> dict[str, Any]:
    """What ``GET /_import`` answers: the newest jobs, newest first (``before`` pages on)."""
    found = jobs.list(limit, before)
    return {
        "jobs": [{k: v for k, v in job.items() if k != "position"} for job in found],
        "next": found[-1]["position"] if len(found) == limit else None,
    }
