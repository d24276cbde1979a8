"""Persistence interface: versioned resources, independent of any AWS service.

The service layer talks only to :class:`ResourceStore`; ``dynamodb.DynamoResourceStore`` is the
implementation (DynamoDB single table + S3 for oversized bodies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Method = Literal["POST", "PUT", "PATCH", "DELETE"]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    resource_type: str
    id: str
    version_id: int
    last_updated: str  # FHIR instant, UTC, millisecond precision
    method: Method  # the interaction that produced this version (for history bundles)
    resource: dict[str, Any] | None  # None for a deletion (tombstone)

    @property
    def deleted(self) -> bool:
        return self.resource is None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    versions: list[StoredVersion]
    # Opaque position after the last returned version; None when there is nothing more.
    next_cursor: str | None


class VersionConflict(Exception):
    """Another writer stored the version this write expected to create."""


class ResourceStore(Protocol):
    def current(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        """The newest version (possibly a tombstone), strongly consistent; None if never stored."""
        ...

    def version(self, resource_type: str, resource_id: str, version_id: int) -> StoredVersion | None: ...

    def put(self, version: StoredVersion, previous: StoredVersion | None = None) -> None:
        """Store ``version`` only if ``previous`` (version n-1, None for n=1) is still current, else
        VersionConflict. ``previous`` also tells which search entries to retire."""
        ...

    def put_many(self, writes: list[tuple[StoredVersion, StoredVersion | None]]) -> None:
        """Store several (version, previous) pairs all-or-nothing, else VersionConflict."""
        ...

    def current_many(self, resource_type: str, resource_ids: list[str]) -> dict[str, StoredVersion]: ...

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        count: int,
        since: str | None = None,
        cursor: str | None = None,
    ) -> HistoryPage:
        """Versions newest first, of one instance, one type, or (both None) the whole tenant."""
        ...
