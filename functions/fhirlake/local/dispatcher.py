"""Feeds queue messages and table stream records to handlers, shaped as Lambda would deliver them.

- SQS: long-polls a queue, invokes the handler with an ``aws:sqs`` event of up to ``batch_size``
  records, deletes the records that did not fail (``batchItemFailures``, ReportBatchItemFailures),
  and leaves failures to the queue's redrive policy, as the Lambda event source mapping does.
- DynamoDB Streams: reads every shard from TRIM_HORIZON and invokes the handler with
  ``aws:dynamodb`` records in order, retrying a failed batch, as the stream event source does. An
  event filter pattern (``FunctionSpec.stream_filter``) drops the records it does not match before
  the handler sees them, as Lambda event filtering does.
- Schedules: invokes the handler with an EventBridge "Scheduled Event" every ``rate(...)`` period.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from fhirlake.local.lambda_context import LocalLambdaContext

LambdaHandler = Callable[[dict[str, Any], Any], Any]


class _Worker:
    """A background thread feeding one function until stopped."""

    def __init__(self, handler: LambdaHandler, function_name: str, region: str) -> None:
        self._handler, self._name, self._region = handler, function_name, region
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"feed-{function_name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        raise NotImplementedError


class _Poller(_Worker):
    """Calls ``poll_once`` until stopped, idling when there was nothing."""

    def __init__(self, handler: LambdaHandler, function_name: str, batch_size: int, region: str) -> None:
        super().__init__(handler, function_name, region)
        self._batch_size = batch_size

    def poll_once(self) -> int:
        raise NotImplementedError

    def _invoke(self, records: list[dict[str, Any]]) -> Any:
        return self._handler({"Records": records}, LocalLambdaContext(function_name=self._name))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.poll_once() == 0:
                    self._stop.wait(0.2)
            except Exception:  # endpoint going away at shutdown, or a failed batch: retried
                self._stop.wait(1.0)


class SqsPoller(_Poller):
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        handler: LambdaHandler,
        function_name: str,
        batch_size: int = 10,
        region: str = "us-east-1",
    ) -> None:
        super().__init__(handler, function_name, batch_size, region)
        self._sqs, self._url, self._arn = sqs, queue_url, queue_arn

    def poll_once(self, wait_seconds: int = 1) -> int:
        resp = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = resp.get("Messages", [])
        if not messages:
            return 0
        try:
            result = self._invoke([self._record(m) for m in messages]) or {}
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        except Exception:  # the whole batch failed: every message returns to the queue
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(messages)

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._arn,
            "awsRegion": self._region,
        }


class StreamPoller(_Poller):
    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        handler: LambdaHandler,
        function_name: str,
        batch_size: int = 100,
        region: str = "us-east-1",
        starting_position: str = "TRIM_HORIZON",  # as the Lambda event source mapping option
        event_filter: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(handler, function_name, batch_size, region)
        self._streams, self._arn = streams, stream_arn
        self._starting_position = starting_position
        self._filter = event_filter
        self._iterators: dict[str, str | None] = {}
        self._read_up_to: dict[str, str] = {}  # shard -> sequence number of the last record read

    def poll_once(self) -> int:
        delivered = 0
        shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._iterator_after(shard_id)
            iterator = self._iterators[shard_id]
            if iterator is None:
                continue
            resp = self._streams.get_records(ShardIterator=iterator, Limit=self._batch_size)
            read = resp.get("Records", [])
            records = [r for r in read if self._filter is None or matches(self._filter, r)]
            if records:
                self._invoke([self._record(r) for r in records])  # raises: the same batch is retried
                delivered += len(records)
            if read:
                self._read_up_to[shard_id] = read[-1]["dynamodb"]["SequenceNumber"]
                self._iterators[shard_id] = resp.get("NextShardIterator")
            elif resp.get("NextShardIterator") is None or shard_id not in self._read_up_to:
                self._iterators[shard_id] = resp.get("NextShardIterator")  # None: a closed shard, read
            else:
                # Idle: the next poll starts from a fresh iterator after the last record read, as a consumer
                # does when its iterator expires (after 15 minutes in DynamoDB Streams). moto's chain of
                # iterators can stop seeing new records after a quiet spell; a fresh one never does.
                self._iterators[shard_id] = self._iterator_after(shard_id)
        return delivered

    def _iterator_after(self, shard_id: str) -> str:
        last = self._read_up_to.get(shard_id)
        position = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last}
            if last is not None
            else {"ShardIteratorType": self._starting_position}
        )
        return self._streams.get_shard_iterator(StreamArn=self._arn, ShardId=shard_id, **position)[
            "ShardIterator"
        ]

    def _record(self, record: dict[str, Any]) -> dict[str, Any]:
        dynamodb = dict(record.get("dynamodb", {}))
        created = dynamodb.get("ApproximateCreationDateTime")
        if hasattr(created, "timestamp"):  # boto3 parses it; Lambda delivers epoch seconds
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        return {**record, "dynamodb": dynamodb, "eventSourceARN": self._arn, "awsRegion": self._region}


def matches(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Lambda event filtering for the pattern forms the topology uses: nested objects, lists of exact
    values, and ``{"prefix": ...}`` / ``{"exists": bool}`` rules (every key must match; any list item)."""
    for key, expected in pattern.items():
        value = record.get(key) if isinstance(record, Mapping) else None
        if isinstance(expected, Mapping):
            if not isinstance(value, Mapping) or not matches(expected, value):
                return False
        elif not any(_rule_matches(rule, value) for rule in expected):
            return False
    return True


def _rule_matches(rule: Any, value: Any) -> bool:
    if isinstance(rule, Mapping):
        if "prefix" in rule:
            return isinstance(value, str) and value.startswith(rule["prefix"])
        if "exists" in rule:
            return (value is not None) == bool(rule["exists"])
        raise ValueError(f"unsupported filter rule {sorted(rule)}")
    return value == rule


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int:
    """Seconds between runs of an EventBridge ``rate(...)`` expression."""
    match = _RATE.match(expression.strip())
    if not match:
        raise ValueError(f"only rate(...) schedules run locally, not {expression!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


class ScheduledInvoker(_Worker):
    """Invokes a handler with an EventBridge Scheduled Event every period, as a schedule rule does."""

    def __init__(self, handler: LambdaHandler, function_name: str, expression: str, region: str) -> None:
        super().__init__(handler, function_name, region)
        self._period = rate_seconds(expression)

    def invoke_now(self) -> Any:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "000000000000",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self._region,
            "resources": [f"arn:aws:events:{self._region}:000000000000:rule/{self._name}"],
            "detail": {},
        }
        return self._handler(event, LocalLambdaContext(function_name=self._name))

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.invoke_now()
            except Exception:  # as a failed scheduled invocation: the next period runs again
                continue
