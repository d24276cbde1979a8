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

import bisect
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhirlake.api.bundles import BundleProcessor, same_content
from fhirlake.api.http import Request
from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.instant import after, now_instant
from fhirlake.fhir.outcome import FhirError, Issue, error
from fhirlake.fhir.types import is_resource_type, is_valid_id
from fhirlake.ingest.reader import Line, PoisonInput
from fhirlake.ingest.results import ChunkResults
from fhirlake.persistence import StoredVersion, VersionConflict, search_index
from fhirlake.search.extract import parameter_values
from fhirlake.search.query import matches, parse_search
from fhirlake.service.crud import ResourceService
from fhirlake.validation import Validator

BATCH = 50  # resources per DynamoDB transaction (100 items: version + current each)
MAX_REFERENCE_CACHE = 10_000
MAX_PREFETCHED_KEYS = 100_000  # index entries read at once to rule out many ifNoneExist conditions
# A "reference" member whose string value is a conditional reference (Type?query); group 3 is the byte
# that ends the value: '"', or a backslash (an escape, left to the walk over the parsed resource).
_CONDITIONAL_MEMBER = re.compile(rb'("reference"[ \t\r\n]*:[ \t\r\n]*")([A-Z][A-Za-z]*\?[^"\\]*)(["\\])')


class Deferred:
    """A resource to prepare again once what is pending is written."""


DEFERRED = Deferred()


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
        # The same cache on the line's bytes: a member as dropped -> as written (most lines carry one or two
        # conditional references, and a dictionary hit costs a tenth of resolving one again).
        self._resolved_members: dict[bytes, bytes] = {}
        self._unmatched: set[tuple[str, str]] = set()  # ifNoneExist conditions known to match nothing

    def run(
        self, lines: Iterable[Line], results: ChunkResults, stop: Callable[[], bool] | None = None
    ) -> Line | None:
        """Import the lines; with ``stop`` (asked before each line), end early when it says so and return
        the first line not imported (everything before it is stored or reported), else None."""
        rest: list[Line] = []

        def prepared() -> Iterator[_Pending | None]:
            for line in lines:
                if stop is not None and stop():
                    rest.append(line)
                    return
                if line.data.strip():  # blank lines carry nothing (and are not counted)
                    yield self.prepare({"line": line.number, "byteOffset": line.offset}, line.data, results)

        self.store_all(prepared(), results)
        return rest[0] if rest else None

    def store_all(self, prepared: Iterable[_Pending | Deferred | None], results: ChunkResults) -> None:
        """Commit prepared resources in batches of BATCH; a resource seen twice starts a new batch
        (one transaction cannot write one resource twice)."""
        pending: list[_Pending] = []
        keys: set[tuple[str, str]] = set()
        try:
            for ready in prepared:
                if not isinstance(ready, _Pending):
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
        self,
        where: dict[str, Any],
        data: bytes | None,
        results: ChunkResults,
        parsed: Any = None,
        defer_unresolved: bool = False,
    ) -> _Pending | Deferred | None:
        """A line (``data``) or an already parsed resource (``parsed``, ``data`` None) ready to write; None
        when it failed (reported). With ``defer_unresolved``, a resource whose conditional references find
        nothing is not reported but ``DEFERRED`` (what it refers to may be about to be written)."""
        walk = data is None  # conditional references are resolved on the parsed resource
        source = data
        if data is not None and b"?" in data:
            source = self._resolved_line(data)
            walk, source = source is None, source or data
        try:
            resource = fhir_json.loads(source) if source is not None else parsed
        except FhirError as exc:
            failure = exc
            if source is not data:  # the error located in the line as it was dropped
                try:
                    fhir_json.loads(data)
                except FhirError as original:
                    failure = original
            results.failed(where, failure.issues, data)
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
        if walk:
            resource = self._resolve(resource, issues, rtype)
        if issues and defer_unresolved and all(i.code == "not-found" for i in issues):
            return DEFERRED
        if not issues:
            issues = [i for i in self._validator.validate(resource, expected_type=rtype) if i.is_error]
        if issues:
            results.failed(where, issues, data, rtype, rid)
            return None
        return _Pending(where, data, rtype, rid, resource)

    def prepare_entry(
        self, index: int, entry: dict[str, Any], results: ChunkResults, defer_unresolved: bool = False
    ) -> _Pending | Deferred | None:
        """A batch Bundle's POST or PUT entry (see ``batch_of_writes``) as an import keeps it: under the
        resource's own id (a PUT's from its url); a POST's ``ifNoneExist`` that matches one resource
        writes nothing (reported ``unchanged``, as a FHIR batch answers 200)."""
        where = {"entry": index}
        resource, request = entry["resource"], entry["request"]
        path = urlsplit(request["url"]).path.strip("/").split("/")
        if request["method"] == "PUT" and len(path) == 2:
            if resource.get("id", path[1]) != path[1] or resource.get("resourceType") != path[0]:
                message = "The resource's type and id must be those of request.url"
                results.failed(
                    where, [error("invalid", message, f"Bundle.entry[{index}].request.url")], None, path[0]
                )
                return None
            resource = {**resource, "id": path[1]}
        condition = request.get("ifNoneExist")
        if request["method"] == "POST" and isinstance(condition, str):
            rtype = str(resource.get("resourceType"))
            try:
                found = self._conditional_matches(rtype, condition)
            except FhirError as exc:
                results.failed(where, exc.issues, None, rtype)
                return None
            if len(found) > 1:
                message = "ifNoneExist matches more than one resource"
                results.failed(
                    where,
                    [error("duplicate", message, f"Bundle.entry[{index}].request.ifNoneExist")],
                    None,
                    rtype,
                )
                return None
            if found:
                results.stored(where, rtype, found[0].id, found[0].version_id, "unchanged")
                self._learn_reference(rtype, condition, found[0].resource, found[0].id)
                return None
        ready = self.prepare(where, None, results, parsed=resource, defer_unresolved=defer_unresolved)
        if isinstance(ready, _Pending) and isinstance(condition, str):
            self._learn_reference(ready.type, condition, ready.resource, ready.id)
        return ready

    def expect_conditions(self, conditions: list[tuple[str, str]]) -> None:
        """Before many ``ifNoneExist`` searches: read each parameter's index once (when small) to learn
        which conditions can match nothing (no entry has their key; every match has one), so those
        entries need no search of their own. Conditions of other shapes are searched as usual."""
        wanted: dict[tuple[str, str, int], list[tuple[tuple[str, str], list[str]]]] = {}
        for rtype, condition in conditions:
            try:
                request = parse_search(rtype, parse_qsl(condition, keep_blank_values=True), "", strict=True)
            except FhirError:
                continue  # the search itself reports it
            if len(request.criteria) != 1:
                continue
            criterion = request.criteria[0]
            prefixes = search_index.driver_prefixes(criterion)
            if prefixes is not None:
                partition = (rtype, criterion.code, criterion.param.shards)
                wanted.setdefault(partition, []).append(((rtype, condition), prefixes))
        for (rtype, code, shards), expected in wanted.items():
            keys = self._store.index_keys(rtype, code, shards, limit=MAX_PREFETCHED_KEYS)
            if keys is None:
                continue
            for key, prefixes in expected:
                if not any(_has_prefix(keys, prefix) for prefix in prefixes):
                    self._unmatched.add(key)

    def _conditional_matches(self, rtype: str, condition: str) -> list[StoredVersion]:
        if (rtype, condition) in self._unmatched:
            return []
        return self._service.find(rtype, parse_qsl(condition, keep_blank_values=True), "", 2)

    def _learn_reference(self, rtype: str, condition: str, resource: dict[str, Any] | None, rid: str) -> None:
        """A later conditional reference ``{rtype}?{condition}`` is this resource (the only one matching it:
        the condition matched nothing else) when the resource matches the condition itself."""
        if resource is None or len(self._references) >= MAX_REFERENCE_CACHE:
            return
        try:
            request = parse_search(rtype, parse_qsl(condition, keep_blank_values=True), "", strict=True)
        except FhirError:
            return
        if request.criteria and all(
            matches(c, parameter_values(c.param, resource)) for c in request.criteria
        ):
            self._references[f"{rtype}?{condition}"] = f"{rtype}/{rid}"

    def _resolved_line(self, data: bytes) -> bytes | None:
        """The line with every conditional reference replaced by the literal one it resolves to, done on
        the bytes (no walk over the parsed resource); None when that cannot be done there (a ``\\u``
        escape, which could spell a key, an escape inside a reference, or a reference that does not
        resolve, which the walk then reports with its location)."""
        if b"\\u" in data:
            return None
        complete = True

        def literal(match: re.Match[bytes]) -> bytes:
            nonlocal complete
            member = match.group(0)
            replaced = self._resolved_members.get(member)
            if replaced is not None:
                return replaced
            try:
                found = self._lookup(match.group(2).decode()) if match.group(3) == b'"' else None
            except UnicodeDecodeError:
                found = None
            if not isinstance(found, str):
                complete = False
                return member
            replaced = match.group(1) + found.encode() + b'"'
            if len(self._resolved_members) < MAX_REFERENCE_CACHE:
                self._resolved_members[member] = replaced
            return replaced

        resolved = _CONDITIONAL_MEMBER.sub(literal, data)
        return resolved if complete else None

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
        found = self._lookup(reference)
        if isinstance(found, FhirError):
            issues.extend(Issue(i.severity, i.code, i.diagnostics, (path,)) for i in found.issues)
            return reference
        return found

    def _lookup(self, reference: str) -> str | FhirError:
        """The literal reference a conditional one resolves to (cached), or why it does not resolve (an
        error without a location); anything that is not a conditional reference comes back as it is."""
        rtype, _, query = reference.partition("?")
        if "/" in rtype or not is_resource_type(rtype):
            return reference  # not a conditional reference (e.g. an absolute URL with a query)
        found = self._references.get(reference)
        if found is not None:
            return found
        try:
            matches = self._service.find(rtype, parse_qsl(query, keep_blank_values=True), "", 2)
        except FhirError as exc:
            return exc
        if len(matches) != 1:
            return FhirError.of(
                412,
                "not-found" if not matches else "multiple-matches",
                f"The conditional reference to {rtype} matches {len(matches)} resources (exactly "
                "one is required: import the referenced resources first)",
            )
        found = f"{rtype}/{matches[0].id}"
        if len(self._references) < MAX_REFERENCE_CACHE:
            self._references[reference] = found
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


def _has_prefix(sorted_keys: list[str], prefix: str) -> bool:
    at = bisect.bisect_left(sorted_keys, prefix)
    return at < len(sorted_keys) and sorted_keys[at].startswith(prefix)


def batch_of_writes(entries: list[Any]) -> bool:
    """Entries that can be imported in write batches rather than one request each: POSTs (conditional or
    not) and PUTs of one resource each, and no two with the same ``ifNoneExist`` (each entry then decides
    alone, as a FHIR batch's entries do)."""
    conditions: set[tuple[Any, str]] = set()
    for entry in entries:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(entry.get("resource"), dict):
            return False
        url, method = request.get("url"), request.get("method")
        if not isinstance(url, str) or "?" in url or method not in ("POST", "PUT"):
            return False
        if method == "PUT" and len(urlsplit(url).path.strip("/").split("/")) != 2:
            return False
        condition = request.get("ifNoneExist")
        if condition is not None:
            key = (entry["resource"].get("resourceType"), condition)
            if not isinstance(condition, str) or key in conditions:
                return False
            conditions.add(key)
    return True


def import_batch(entries: list[dict[str, Any]], importer: LineImporter, results: ChunkResults) -> None:
    """A batch Bundle of writes, in write batches. An entry whose conditional reference finds nothing yet
    (Synthea's PractitionerRoles refer to the Practitioners created by earlier entries of the same Bundle)
    is prepared again once everything else is written; then it is reported if it still finds nothing."""
    deferred: list[int] = []
    importer.expect_conditions(
        [
            (str(entry["resource"].get("resourceType")), entry["request"]["ifNoneExist"])
            for entry in entries
            if entry["request"]["method"] == "POST" and isinstance(entry["request"].get("ifNoneExist"), str)
        ]
    )

    def first_pass() -> Iterator[_Pending | None]:
        for index, entry in enumerate(entries):
            ready = importer.prepare_entry(index, entry, results, defer_unresolved=True)
            if isinstance(ready, Deferred):
                deferred.append(index)
            else:
                yield ready

    importer.store_all(first_pass(), results)
    importer.store_all((importer.prepare_entry(i, entries[i], results) for i in deferred), results)


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
        importer.commit([ready] if isinstance(ready, _Pending) else [], results)
        return
    kind = document.get("type")
    entries = document.get("entry") if isinstance(document.get("entry"), list) else []
    if kind == "batch" and batch_of_writes(entries):
        import_batch(entries, importer, results)
        return
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
