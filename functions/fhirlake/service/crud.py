"""The FHIR data store's core interactions: create, read, vread, update, patch, delete, history.

Knows nothing about HTTP or Lambda: it takes parsed resources and raises FhirError with the
status the spec prescribes; the API layer turns results into responses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fhirlake.fhir.instant import after, now_instant
from fhirlake.fhir.outcome import FhirError
from fhirlake.fhir.patch import PatchDocument
from fhirlake.fhir.types import is_resource_type, is_valid_id
from fhirlake.persistence import HistoryPage, Method, ResourceStore, StoredVersion, VersionConflict
from fhirlake.search.query import parse_search
from fhirlake.service.searching import Searcher, SearchService
from fhirlake.validation import Validator

# Writers that did not ask for a specific version (no If-Match) retry against the newer
# version this many times before giving up with 409.
MAX_WRITE_ATTEMPTS = 5
MAX_CONDITIONAL_DELETE = 100


@dataclass(frozen=True, slots=True)
class WriteResult:
    version: StoredVersion
    created: bool  # True when no live version existed before (201 rather than 200)


class ResourceService:
    def __init__(
        self,
        store: ResourceStore,
        validator: Validator,
        clock: Callable[[], str] = now_instant,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        searcher: Searcher | None = None,
    ) -> None:
        self._store = store
        self._searcher = searcher
        self._validator = validator
        self._clock = clock
        self._new_id = new_id

    @property
    def store(self) -> ResourceStore:
        return self._store

    # -- reads --------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str) -> StoredVersion:
        check_type(resource_type)
        current = self._store.current(resource_type, resource_id) if is_valid_id(resource_id) else None
        if current is None:
            raise _not_known(resource_type, resource_id)
        if current.deleted:
            raise gone(current)
        return current

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredVersion:
        check_type(resource_type)
        version = None
        if is_valid_id(resource_id) and version_id.isdigit() and len(version_id) <= 10:
            version = self._store.version(resource_type, resource_id, int(version_id))
        if version is None:
            raise FhirError.of(404, "not-found", f"{resource_type}/{resource_id} has no version {version_id}")
        if version.deleted:
            raise gone(version)
        return version

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        count: int,
        since: str | None,
        cursor: str | None,
    ) -> HistoryPage:
        if resource_type is not None:
            check_type(resource_type)
        if resource_id is not None and not is_valid_id(resource_id):
            raise FhirError.of(404, "not-found", f"{resource_type}/{resource_id} is not known")
        return self._store.history(resource_type, resource_id, count=count, since=since, cursor=cursor)

    def searching(self) -> SearchService:
        """Search (``service.searching``): type, compartment, includes, sort."""
        if self._searcher is None:
            raise FhirError.of(501, "not-supported", "Search is not configured on this server")
        return SearchService(self._store, self._searcher)

    # -- writes -------------------------------------------------------------------------
    def create(self, resource_type: str, resource: Any) -> WriteResult:
        check_type(resource_type)
        if isinstance(resource, dict):  # R4 http.html#create: an id in the body is ignored
            resource = {k: v for k, v in resource.items() if k != "id"}
        self._validate(resource, resource_type)
        # The server assigns the id.
        version = self._stamp(resource_type, self._new_id(), resource, 1, self._clock(), "POST")
        try:
            self._store.put(version)
        except VersionConflict:  # an id collision: astronomically unlikely with uuid4
            raise FhirError.of(409, "conflict", "Id collision; retry the create") from None
        return WriteResult(version, created=True)

    # -- conditional interactions (http.html#ccreate, #cond-update, #cdelete) -------------
    def conditional_create(
        self, resource_type: str, resource: Any, if_none_exist: str, base_url: str
    ) -> WriteResult:
        """Create unless ``if_none_exist`` (a query string) matches: one match is returned as it is
        (``created`` False), several are a 412."""
        check_type(resource_type)
        self._validate(resource, resource_type)
        found = self._find(resource_type, parse_qsl(if_none_exist, keep_blank_values=True), base_url, 2)
        if len(found) > 1:
            raise FhirError.of(412, "duplicate", "If-None-Exist matches more than one resource")
        if found:
            return WriteResult(found[0], created=False)
        return self.create(resource_type, resource)

    def conditional_update(
        self,
        resource_type: str,
        query: list[tuple[str, str]],
        resource: Any,
        base_url: str,
        if_match: str | None,
    ) -> WriteResult:
        check_type(resource_type)
        found = self._find(resource_type, query, base_url, 2)
        if len(found) > 1:
            raise FhirError.of(
                412, "multiple-matches", "The conditional update criteria match several resources"
            )
        body_id = resource.get("id") if isinstance(resource, dict) else None
        if not found:
            if body_id is None:
                return self.create(resource_type, resource)
            return self.update(resource_type, body_id, resource, if_match)  # update as create
        target = found[0].id
        if body_id is not None and body_id != target:
            raise FhirError.of(
                400,
                "invalid",
                "The resource id does not match the resource the criteria select",
                f"{resource_type}.id",
            )
        return self.update(resource_type, target, {**resource, "id": target}, if_match)

    def conditional_delete(
        self, resource_type: str, query: list[tuple[str, str]], base_url: str
    ) -> list[StoredVersion]:
        """Delete every match (the CapabilityStatement says ``conditionalDelete: multiple``), up to
        MAX_CONDITIONAL_DELETE of them; more is a 412 rather than a long-running request."""
        check_type(resource_type)
        found = self._find(resource_type, query, base_url, MAX_CONDITIONAL_DELETE + 1)
        if len(found) > MAX_CONDITIONAL_DELETE:
            raise FhirError.of(
                412, "too-costly", f"The criteria match more than {MAX_CONDITIONAL_DELETE} resources"
            )
        deleted = [self.delete(resource_type, v.id, None) for v in found]
        return [v for v in deleted if v is not None]

    def _find(
        self, resource_type: str, query: list[tuple[str, str]], base_url: str, limit: int
    ) -> list[StoredVersion]:
        criteria = [(k, v) for k, v in query if k not in ("_format", "_pretty")]
        if not criteria:
            raise FhirError.of(400, "required", "A conditional interaction needs search parameters")
        if self._searcher is None:
            raise FhirError.of(501, "not-supported", "Search is not configured on this server")
        # Unknown parameters must not widen the match: conditional interactions parse strictly.
        request = parse_search(resource_type, [*criteria, ("_count", str(limit))], base_url, strict=True)
        return self._searcher.search(request).versions

    def update(
        self, resource_type: str, resource_id: str, resource: Any, if_match: str | None
    ) -> WriteResult:
        check_type(resource_type)
        if not is_valid_id(resource_id):
            raise FhirError.of(
                400, "value", "The id in the URL is not a valid FHIR id", f"{resource_type}.id"
            )
        if isinstance(resource, dict) and resource.get("id") != resource_id:
            raise FhirError.of(
                400,
                "invalid",
                "The resource id must be present and equal to the id in the URL",
                f"{resource_type}.id",
            )
        self._validate(resource, resource_type)
        expected = parse_etag(if_match) if if_match is not None else None
        return self._write(
            resource_type,
            resource_id,
            expected,
            lambda vid, lu, _current: self._stamp(resource_type, resource_id, resource, vid, lu, "PUT"),
        )

    # -- patch (http.html#patch) ------------------------------------------------------------------
    def patch(
        self, resource_type: str, resource_id: str, patch: PatchDocument, if_match: str | None
    ) -> WriteResult:
        """Apply ``patch`` to the current version and store the result like an update. Without
        If-Match, a concurrent write is not lost: the patch is applied again on top of it."""
        self.read(resource_type, resource_id)  # 404 / 410 before If-Match is compared
        expected = parse_etag(if_match) if if_match is not None else None

        def patched_version(
            version_id: int, last_updated: str, current: StoredVersion | None
        ) -> StoredVersion:
            if current is None or current.deleted or current.resource is None:
                raise gone(current) if current is not None else _not_known(resource_type, resource_id)
            resource = patch.apply(current.resource)
            self._validate(resource, resource_type)
            return self._stamp(resource_type, resource_id, resource, version_id, last_updated, "PATCH")

        return self._write(resource_type, resource_id, expected, patched_version)

    def conditional_patch(
        self,
        resource_type: str,
        query: list[tuple[str, str]],
        patch: PatchDocument,
        base_url: str,
        if_match: str | None,
    ) -> WriteResult:
        """``PATCH [type]?[criteria]``: no match is a 404, several a 412 (as for a conditional update)."""
        return self.patch(
            resource_type, self.find_one(resource_type, query, base_url, "patch"), patch, if_match
        )

    def plan_patch(
        self, resource_type: str, resource_id: str, patch: PatchDocument, if_match: str | None
    ) -> tuple[StoredVersion, StoredVersion | None]:
        """A transaction's patch: the version it would store, pinned to the version it was applied to
        (a concurrent change makes the commit fail rather than lose it)."""
        current = self.read(resource_type, resource_id)
        if if_match is not None and parse_etag(if_match) != current.version_id:
            raise precondition_failed(resource_type, resource_id)
        assert current.resource is not None  # a live version has a body
        plan = self.plan_write(
            resource_type, resource_id, patch.apply(current.resource), f'W/"{current.version_id}"', "PATCH"
        )
        assert plan is not None  # only a delete plans nothing
        return plan

    def find_one(self, resource_type: str, query: list[tuple[str, str]], base_url: str, what: str) -> str:
        """The id of the one match of a conditional ``what``: none is a 404, several a 412."""
        check_type(resource_type)
        found = self._find(resource_type, query, base_url, 2)
        if not found:
            raise FhirError.of(404, "not-found", f"The conditional {what} criteria match no resource")
        if len(found) > 1:
            raise FhirError.of(
                412, "multiple-matches", f"The conditional {what} criteria match several resources"
            )
        return found[0].id

    def delete(self, resource_type: str, resource_id: str, if_match: str | None) -> StoredVersion | None:
        """Write a tombstone; returns it, the earlier tombstone, or None if the resource never existed."""
        check_type(resource_type)
        if not is_valid_id(resource_id):
            return None
        expected = parse_etag(if_match) if if_match is not None else None
        current = self._store.current(resource_type, resource_id)
        if current is None or current.deleted:
            if expected is not None and (current is None or current.version_id != expected):
                raise precondition_failed(resource_type, resource_id)
            return current  # idempotent: nothing (more) to delete
        return self._write(
            resource_type,
            resource_id,
            expected,
            lambda vid, lu, _current: StoredVersion(resource_type, resource_id, vid, lu, "DELETE", None),
        ).version

    # -- planned writes (transactions) ------------------------------------------------------
    def plan_write(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any] | None,
        if_match: str | None,
        method: Method,
    ) -> tuple[StoredVersion, StoredVersion | None] | None:
        """The version a write would store, against the current one; None for a delete of nothing.

        Validates and checks If-Match now; ``commit`` stores a set of plans all-or-nothing.
        """
        check_type(resource_type)
        if resource is not None:
            self._validate(resource, resource_type)
        expected = parse_etag(if_match) if if_match is not None else None
        current = self._store.current(resource_type, resource_id)
        if expected is not None and (current is None or current.version_id != expected):
            raise precondition_failed(resource_type, resource_id)
        if resource is None and (current is None or current.deleted):
            return None
        version_id = current.version_id + 1 if current else 1
        last_updated = after(current.last_updated, self._clock()) if current else self._clock()
        if resource is None:
            return StoredVersion(
                resource_type, resource_id, version_id, last_updated, "DELETE", None
            ), current
        return self._stamp(resource_type, resource_id, resource, version_id, last_updated, method), current

    def commit(self, writes: list[tuple[StoredVersion, StoredVersion | None]]) -> None:
        try:
            self._store.put_many(writes)
        except VersionConflict:
            raise FhirError.of(
                409, "conflict", "A resource in the transaction was changed concurrently; retry"
            ) from None

    def new_id(self) -> str:
        return self._new_id()

    def find(
        self, resource_type: str, query: list[tuple[str, str]], base_url: str, limit: int
    ) -> list[StoredVersion]:
        """Up to ``limit`` current matches of a search (strict parameters): conditional operations."""
        check_type(resource_type)
        return self._find(resource_type, query, base_url, limit)

    def _write(
        self,
        resource_type: str,
        resource_id: str,
        expected: int | None,
        make: Callable[[int, str, StoredVersion | None], StoredVersion],
    ) -> WriteResult:
        for _ in range(MAX_WRITE_ATTEMPTS):
            current = self._store.current(resource_type, resource_id)
            if expected is not None and (current is None or current.version_id != expected):
                raise precondition_failed(resource_type, resource_id)
            version_id = current.version_id + 1 if current else 1
            last_updated = after(current.last_updated, self._clock()) if current else self._clock()
            version = make(version_id, last_updated, current)
            try:
                self._store.put(version, current)
            except VersionConflict:
                if expected is not None:
                    raise precondition_failed(resource_type, resource_id) from None
                continue  # a concurrent writer won; apply ours on top of theirs
            return WriteResult(version, created=current is None or current.deleted)
        raise FhirError.of(
            409, "conflict", f"{resource_type}/{resource_id} is being updated concurrently; retry"
        )

    def _validate(self, resource: Any, resource_type: str) -> None:
        issues = self._validator.validate(resource, expected_type=resource_type)
        if any(i.is_error for i in issues):
            raise FhirError(400, issues)

    @staticmethod
    def _stamp(
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        version_id: int,
        last_updated: str,
        method: Method,
    ) -> StoredVersion:
        previous_meta = resource.get("meta")
        meta = {
            **(previous_meta if isinstance(previous_meta, dict) else {}),
            "versionId": str(version_id),
            "lastUpdated": last_updated,
        }
        # resourceType, id and meta first, then the resource's members in their order (a key keeps the
        # position of its first insertion; the three are set again in case the resource had them)
        body = {"resourceType": resource_type, "id": resource_id, "meta": meta, **resource}
        body["resourceType"], body["id"], body["meta"] = resource_type, resource_id, meta
        return StoredVersion(resource_type, resource_id, version_id, last_updated, method, body)


def check_type(resource_type: str) -> None:
    if not is_resource_type(resource_type):
        raise FhirError.of(404, "not-supported", f"Unknown resource type '{resource_type}'")


def _not_known(resource_type: str, resource_id: str) -> FhirError:
    return FhirError.of(404, "not-found", f"{resource_type}/{resource_id} is not known")


def gone(version: StoredVersion) -> FhirError:
    return FhirError(
        410,
        FhirError.of(410, "deleted", f"{version.resource_type}/{version.id} was deleted").issues,
        headers={"ETag": f'W/"{version.version_id}"'},
    )


def precondition_failed(resource_type: str, resource_id: str) -> FhirError:
    return FhirError.of(
        412, "conflict", f"If-Match does not name the current version of {resource_type}/{resource_id}"
    )


def parse_etag(value: str) -> int:
    """Accept W/"3", "3" and 3 (clients differ); anything else cannot match a version."""
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit() or len(text) > 10:
        raise FhirError.of(412, "conflict", 'If-Match must be a version ETag such as W/"3"')
    return int(text)
