"""From lines (or a JSON document) to stored versions: parse, resolve, validate, write in batches.

Per line: parse (exact decimals, located syntax errors), check type and id, resolve conditional
references (``Practitioner?identifier=...``, once per distinct reference) with the store's search,
validate at the job's level, then create-or-update under the client's id (PUT semantics). A line
without an id gets a deterministic one (from the job and line number), so a retried chunk writes the
same resource again rather than a new one.

Writes go in batches of up to 50 resources: current versions are fetched with one BatchGetItem per
type, a resource whose content equals its current version is not written again (``unchanged``: this
is what makes a retried chunk idempotent), and the rest are committed with ``put_many`` (one DynamoDB
transaction per batch: version + current items, the current item conditioned on the version read).
If another writer got in between, the batch's resources are written one by one through the service
(which retries on top of the newer version).

Bundles: ``transaction``/``batch`` run through the FHIR transaction logic (``api.bundles``) in its
``keep_client_ids`` mode; any other Bundle type (e.g. ``collection``) and a single resource are
imported like lines.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from fhirlake.api.bundles import BundleProcessor, same_content
from fhirlake.api.http import Request
from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.instant import after, now_instant
from fhirlake.fhir.outcome import FhirError, Issue, error
from fhirlake.fhir.types import is_resource_type, is_valid_id
from fhirlake.ingest.reader import Line, PoisonInput
from fhirlake.ingest.results import ChunkResults
from fhirlake.persistence import StoredVersion, VersionConflict
from fhirlake.service.crud import ResourceService
from fhirlake.validation import Validator

BATCH = 50  # resources per DynamoDB transaction (100 items: version + current each)
MAX_REFERENCE_CACHE = 10_000


class _Pending:
    __slots__ = ("id", "line", "resource", "type", "where")

    def __init__(
        self, where: dict[str, Any], line: bytes | None, rtype: str, rid: str, resource: dict
    ) -> None:
        self.where, self.line, self.type, self.id, self.resource = where, line, rtype, rid, resource


class LineImporter:
    def __init__(
        self,
        service: ResourceService,
        store: Any,  # DynamoResourceStore (current_many, put_many)
        validator: Validator,
        id_seed: str,
        clock: Any = now_instant,
    ) -> None:
        self._service, self._store, self._validator = service, store, validator
        self._seed = uuid.uuid5(uuid.NAMESPACE_URL, id_seed)
        self._clock = clock
        self._references: dict[str, str | FhirError] = {}

    def run(self, lines: Iterable[Line], results: ChunkResults) -> None:
        self.store_all(
            (
                self.prepare({"line": line.number, "byteOffset": line.offset}, line.data, results)
                for line in lines
                if line.data.strip()  # blank lines carry nothing (and are not counted)
            ),
            results,
        )

    def store_all(self, prepared: Iterable[_Pending | None], results: ChunkResults) -> None:
        """Commit prepared resources in batches of BATCH; a resource seen twice starts a new batch
        (one transaction cannot write one resource twice)."""
        pending: list[_Pending] = []
        keys: set[tuple[str, str]] = set()
        try:
            for ready in prepared:
                if ready is None:
                    continue
                if (ready.type, ready.id) in keys or len(pending) >= BATCH:
                    self.commit(pending, results)
                    pending, keys = [], set()
                pending.append(ready)
                keys.add((ready.type, ready.id))
        except PoisonInput:
            self.commit(pending, results)  # what was read before the poison is stored and reported
            raise
        self.commit(pending, results)

    # -- one line ---------------------------------------------------------------------------
    def prepare(
        self, where: dict[str, Any], data: bytes | None, results: ChunkResults, parsed: Any = None
    ) -> _Pending | None:
        """A line (``data``) or an already parsed resource (``parsed``, ``data`` None) ready to write."""
        try:
            resource = fhir_json.loads(data) if data is not None else parsed
        except FhirError as exc:
            results.failed(where, exc.issues, data)
            return None
        if not isinstance(resource, dict) or not is_resource_type(str(resource.get("resourceType"))):
            results.failed(where, [error("structure", "Each line must be a FHIR resource with a known "
                                         "resourceType", "resourceType")], data)  # fmt: skip
            return None
        rtype = resource["resourceType"]
        rid = resource.get("id")
        if rid is None:
            rid = str(uuid.uuid5(self._seed, str(where)))
            resource = {**resource, "id": rid}
        elif not is_valid_id(rid):
            results.failed(
                where, [error("value", "The id is not a valid FHIR id", f"{rtype}.id")], data, rtype
            )
            return None
        issues: list[Issue] = []
        if data is None or b"?" in data:
            resource = self._resolve(resource, issues, rtype)
        if not issues:
            issues = [i for i in self._validator.validate(resource, expected_type=rtype) if i.is_error]
        if issues:
            results.failed(where, issues, data, rtype, rid)
            return None
        return _Pending(where, data, rtype, rid, resource)

    def _resolve(self, value: Any, issues: list[Issue], path: str) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key == "reference" and isinstance(item, str) and "?" in item:
                    out[key] = self._resolve_one(item, issues, f"{path}.reference")
                else:
                    out[key] = self._resolve(item, issues, f"{path}.{key}")
            return out
        if isinstance(value, list):
            return [self._resolve(item, issues, f"{path}[{i}]") for i, item in enumerate(value)]
        return value

    def _resolve_one(self, reference: str, issues: list[Issue], path: str) -> str:
        rtype, _, query = reference.partition("?")
        if "/" in rtype or not is_resource_type(rtype):
            return reference  # not a conditional reference (e.g. an absolute URL with a query)
        found = self._references.get(reference)
        if found is None:
            try:
                matches = self._service.find(rtype, parse_qsl(query, keep_blank_values=True), "", 2)
                if len(matches) == 1:
                    found = f"{rtype}/{matches[0].id}"
                else:
                    found = FhirError.of(
                        412,
                        "not-found" if not matches else "multiple-matches",
                        f"The conditional reference to {rtype} matches {len(matches)} resources (exactly "
                        "one is required: import the referenced resources first)",
                        path,
                    )
            except FhirError as exc:
                found = FhirError(exc.status, [Issue(i.severity, i.code, i.diagnostics, (path,))
                                               for i in exc.issues])  # fmt: skip
            if len(self._references) < MAX_REFERENCE_CACHE and isinstance(found, str):
                self._references[reference] = found
        if isinstance(found, FhirError):
            issues.extend(found.issues)
            return reference
        return found

    # -- a batch of lines -------------------------------------------------------------------
    def commit(self, pending: list[_Pending], results: ChunkResults) -> None:
        if not pending:
            return
        current: dict[tuple[str, str], StoredVersion] = {}
        by_type: dict[str, list[str]] = {}
        for p in pending:
            by_type.setdefault(p.type, []).append(p.id)
        for rtype, ids in by_type.items():
            current |= {(rtype, rid): v for rid, v in self._store.current_many(rtype, ids).items()}
        plans: list[tuple[StoredVersion, StoredVersion | None]] = []
        owners: list[_Pending] = []
        now = self._clock()
        for p in pending:
            previous = current.get((p.type, p.id))
            if previous is not None and not previous.deleted and same_content(previous.resource, p.resource):
                results.stored(p.where, p.type, p.id, previous.version_id, "unchanged")
                continue
            vid = previous.version_id + 1 if previous else 1
            stamp = after(previous.last_updated, now) if previous else now
            plans.append((ResourceService._stamp(p.type, p.id, p.resource, vid, stamp, "PUT"), previous))
            owners.append(p)
        if not plans:
            return
        try:
            self._store.put_many(plans)
        except VersionConflict:
            for p in owners:  # someone else wrote one of them meanwhile: one by one, with retries
                self._one(p, results)
            return
        for (version, previous), p in zip(plans, owners, strict=True):
            created = previous is None or previous.deleted
            results.stored(p.where, p.type, p.id, version.version_id, "created" if created else "updated")

    def _one(self, p: _Pending, results: ChunkResults) -> None:
        current = self._store.current(p.type, p.id)
        if current is not None and not current.deleted and same_content(current.resource, p.resource):
            results.stored(p.where, p.type, p.id, current.version_id, "unchanged")
            return
        try:
            written = self._service.update(p.type, p.id, p.resource, None)
        except FhirError as exc:
            results.failed(p.where, exc.issues, p.line, p.type, p.id)
            return
        outcome = "created" if written.created else "updated"
        results.stored(p.where, p.type, p.id, written.version.version_id, outcome)


def import_document(
    document: Any,
    importer: LineImporter,
    service: ResourceService,
    handle: Any,
    results: ChunkResults,
) -> None:
    """A ``.json`` object: one resource, or a Bundle (transaction/batch through the transaction logic)."""
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        ready = importer.prepare({"line": 1}, None, results, parsed=document)
        importer.commit([ready] if ready else [], results)
        return
    kind = document.get("type")
    entries = document.get("entry") if isinstance(document.get("entry"), list) else []
    if kind not in ("transaction", "batch"):
        importer.store_all(
            (
                importer.prepare(
                    {"entry": index},
                    None,
                    results,
                    parsed=entry.get("resource") if isinstance(entry, dict) else None,
                )
                for index, entry in enumerate(entries)
            ),
            results,
        )
        return
    processor = BundleProcessor(service, handle, keep_client_ids=True)
    request = Request(method="POST", path="/", headers={"prefer": "return=minimal"})
    try:
        response = processor.process(document, request)
    except FhirError as exc:  # a transaction fails whole: every entry is reported with the outcome
        for index, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            results.failed({"entry": index}, exc.issues, None, rtype if isinstance(rtype, str) else None)
        return
    for index, (entry, answer) in enumerate(zip(entries, response["entry"], strict=True)):
        status = answer["response"]["status"]
        resource = entry.get("resource") if isinstance(entry, dict) else None
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if int(status.split()[0]) >= 400:
            outcome = answer["response"].get("outcome") or {}
            issues = [
                Issue(i.get("severity", "error"), i.get("code", "processing"), i.get("diagnostics", ""),
                      tuple(i.get("expression", ())))
                for i in outcome.get("issue", [])
            ] or [error("processing", f"The entry failed with {status}")]  # fmt: skip
            results.failed({"entry": index}, issues, None, rtype)
            continue
        location = answer["response"].get("location", "")
        parts = location.split("/")
        if len(parts) >= 4:
            method = (entry.get("request") or {}).get("method")
            # a POST answered 200: ifNoneExist matched or the content was already stored
            outcome = (
                "created" if status.startswith("201") else "unchanged" if method == "POST" else "updated"
            )
            results.stored({"entry": index}, parts[0], parts[1], int(parts[3]), outcome)
        else:  # a DELETE (or GET) entry: nothing stored, but the line is accounted for
            results.stored({"entry": index}, rtype or "(none)", "", 0, "unchanged")
