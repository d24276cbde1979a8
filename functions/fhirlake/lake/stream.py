"""A batch of DynamoDB stream records of the resource table -> the lake.

Failure reporting: a batch becomes one file per table, so records are not independent units of work.
Records are decoded in order up to the first one that cannot be (its body unreadable); the versions
before it are written and that record's sequence number is reported as the only ``batchItemFailures``
entry. Lambda (ReportBatchItemFailures) checkpoints there and redelivers from it, which is exactly what
a per-record processor would achieve (the stream resumes from the lowest failure) without splitting the
batch into one file per record. A failure to write raises: the whole batch is retried, and its file
names repeat, so the retry replaces what the first attempt may have written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fhirlake.lake.writer import LakeWriter, WriteSummary
from fhirlake.persistence import StoredVersion, keys
from fhirlake.persistence.blobs import S3BlobStore
from fhirlake.persistence.dynamodb import version_from_item


@dataclass
class BatchOutcome:
    summary: WriteSummary
    skipped: int  # records that are not new versions of this tenant (the event filter normally drops them)
    failed_sequence: str | None = None
    error_type: str | None = None

    def response(self) -> dict[str, Any]:
        """The handler's answer for a stream event source with ReportBatchItemFailures."""
        failures = [{"itemIdentifier": self.failed_sequence}] if self.failed_sequence else []
        return {"batchItemFailures": failures}


def new_version_image(record: dict[str, Any], tenant: str) -> dict[str, Any] | None:
    """The NewImage of a record inserting a version item of ``tenant``; None for any other record."""
    if record.get("eventName") != "INSERT":
        return None
    image = record.get("dynamodb", {}).get("NewImage") or {}
    if not image.get("sk", {}).get("S", "").startswith(keys.VERSION_PREFIX):
        return None
    if image.get("tenant", {}).get("S") != tenant:
        return None
    return image


def consume(
    records: Iterable[dict[str, Any]], writer: LakeWriter, blobs: S3BlobStore, tenant: str
) -> BatchOutcome:
    versions: list[StoredVersion] = []
    skipped = 0
    failed_sequence = error_type = None
    for record in records:
        image = new_version_image(record, tenant)
        if image is None:
            skipped += 1
            continue
        try:
            versions.append(version_from_item(image, blobs))
        except Exception as exc:  # checkpoint here: the records before it are written below
            failed_sequence = record["dynamodb"]["SequenceNumber"]
            error_type = type(exc).__name__
            break
    return BatchOutcome(writer.write(versions), skipped, failed_sequence, error_type)
