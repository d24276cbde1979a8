"""batch and transaction Bundles posted to the base (http.html#transaction).

PATCH entries carry a ``Binary`` holding a JSON Patch (base64, ``application/json-patch+json``) or a
``Parameters`` FHIRPath Patch (http.html#patch).

- **batch**: every entry is an independent request, run through the same FHIR API as if sent alone; the
  batch-response carries each entry's status (and OperationOutcome on failure).
- **transaction**: all-or-nothing. Entries are resolved first (server ids for POSTs, ``ifNoneExist``,
  conditional PUT/DELETE URLs, ``urn:uuid:``/fullUrl references between entries, conditional references
  such as ``Practitioner?identifier=...`` that must match exactly one resource), then every resource is
  validated (a PATCH is applied to the current version first), then all writes are committed together
  (``ResourceService.commit``), then GETs run.
  Any failure fails the whole transaction with the failing entry's location in the OperationOutcome.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhirlake.api.http import JSON_PATCH, Request, Response
from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.bundle import new_bundle
from fhirlake.fhir.outcome import FhirError, Issue, operation_outcome
from fhirlake.fhir.patch import PatchDocument, patch_from_bundle_resource
from fhirlake.fhir.types import is_resource_type, is_valid_id
from fhirlake.persistence import StoredVersion
from fhirlake.service.crud import ResourceService

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_HEADER_FIELDS = {
    "ifMatch": "if-match",
    "ifNoneMatch": "if-none-match",
    "ifNoneExist": "if-none-exist",
    "ifModifiedSince": "if-modified-since",
}
# API Gateway answers within 29 s: larger loads belong in the landing bucket (bulk import).
MAX_ENTRIES = 5000


@dataclass
class _Entry:
    index: int
    method: str
    url: str
    resource_type: str
    resource_id: str | None
    query: list[tuple[str, str]] | None
    full_url: str | None
    resource: dict[str, Any] | None
    request: dict[str, Any]
    patch: PatchDocument | None = None  # a PATCH entry's document
    # resolution results
    targets: list[str] = field(default_factory=list)  # ids written (DELETE may have several)
    existing: StoredVersion | None = None  # ifNoneExist matched: nothing written
    written: list[StoredVersion] = field(default_factory=list)
    created: bool = False


def _fail(index: int, status: int, code: str, message: str, path: str = "") -> FhirError:
    where = f"Bundle.entry[{index}]" + (f".{path}" if path else "")
    return FhirError(status, [Issue("error", code, message, (where,))])


class BundleProcessor:
    """``keep_client_ids`` is the bulk import's mode (``fhirlake.ingest``): a transaction POST keeps the
    id its ``urn:uuid:`` fullUrl (or its resource) carries when it is a valid FHIR id, so re-importing
    the same Bundle updates rather than duplicates, and a write whose content equals the stored
    current version is skipped (no new version), so a retried import creates no duplicate versions.
    """

    def __init__(
        self,
        service: ResourceService,
        handle: Callable[[Request], Response],
        *,
        keep_client_ids: bool = False,
    ) -> None:
        self._service = service
        self._handle = handle  # the FHIR API itself, for batch entries and GETs
        self._resolved: dict[str, str] = {}  # conditional reference -> Type/id, once per Bundle
        self._keep_client_ids = keep_client_ids

    def process(self, bundle: Any, request: Request) -> dict[str, Any]:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise FhirError.of(
                400, "invalid", "POST to the base takes a batch or transaction Bundle", "Bundle"
            )
        kind = bundle.get("type")
        if kind not in ("batch", "transaction"):
            raise FhirError.of(400, "value", "Bundle.type must be batch or transaction", "Bundle.type")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
            raise FhirError.of(
                413 if isinstance(entries, list) else 400,
                "too-costly" if isinstance(entries, list) else "structure",
                f"A Bundle may hold up to {MAX_ENTRIES} entries",
                "Bundle.entry",
            )
        parsed = [self._parse(i, e, request.base_url) for i, e in enumerate(entries)]
        if kind == "batch":
            responses = [self._batch_entry(entry, request) for entry in parsed]
            return self._response_bundle("batch-response", responses)
        return self._response_bundle("transaction-response", self._transaction(parsed, request))

    # -- parsing ------------------------------------------------------------------------------
    def _parse(self, index: int, entry: Any, base_url: str) -> _Entry | FhirError:
        if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
            return _fail(index, 400, "required", "Each entry needs a request (method and url)", "request")
        req = entry["request"]
        method, url = req.get("method"), req.get("url")
        if method not in _ORDER or not isinstance(url, str) or not url:
            return _fail(
                index,
                400,
                "value",
                "request.method must be GET, HEAD, POST, PUT, PATCH or DELETE and request.url must be set",
                "request",
            )
        if base_url and url.startswith(base_url + "/"):
            url = url[len(base_url) + 1 :]
        split = urlsplit(url.lstrip("/"))
        segments = [s for s in split.path.split("/") if s]
        rtype = segments[0] if segments else ""
        resource = entry.get("resource")
        if method in ("POST", "PUT", "PATCH") and not isinstance(resource, dict):
            return _fail(index, 400, "required", f"A {method} entry needs a resource", "resource")
        patch = None
        if method == "PATCH":
            try:
                patch = patch_from_bundle_resource(resource, f"Bundle.entry[{index}].resource")
            except FhirError as exc:
                return _located(exc, index)
        query = parse_qsl(split.query, keep_blank_values=True) if split.query else None
        return _Entry(
            index,
            method,
            url,
            rtype,
            segments[1] if len(segments) > 1 else None,
            query,
            entry.get("fullUrl"),
            resource,
            req,
            patch,
        )

    # -- batch --------------------------------------------------------------------------------
    def _batch_entry(self, entry: _Entry | FhirError, request: Request) -> dict[str, Any]:
        if isinstance(entry, FhirError):
            return _error_response(entry)
        sub = self._sub_request(entry, request)
        response = self._handle(sub)
        return _entry_response(response, request.base_url)

    def _sub_request(self, entry: _Entry, request: Request, body: dict[str, Any] | None = None) -> Request:
        headers = {k: v for k, v in request.headers.items() if k in ("accept", "prefer")}
        for name, header in _HEADER_FIELDS.items():
            if isinstance(entry.request.get(name), str):
                headers[header] = entry.request[name]
        resource = body if body is not None else entry.resource
        raw = fhir_json.dumps(resource) if resource is not None else b""
        if raw:
            headers["content-type"] = "application/fhir+json"
        if entry.patch is not None and entry.patch.format == "json-patch":  # the Binary's content
            raw, headers["content-type"] = fhir_json.dumps(entry.patch.document), JSON_PATCH
        split = urlsplit(entry.url)
        return Request(
            method=entry.method,
            path="/" + split.path.lstrip("/"),
            query=parse_qsl(split.query, keep_blank_values=True),
            headers=headers,
            body=raw,
            base_url=request.base_url,
        )

    # -- transaction --------------------------------------------------------------------------
    def _transaction(self, parsed: list[_Entry | FhirError], request: Request) -> list[dict[str, Any]]:
        for entry in parsed:
            if isinstance(entry, FhirError):
                raise entry
        entries: list[_Entry] = parsed  # type: ignore[assignment]
        base = request.base_url
        mapping: dict[str, str] = {}
        claimed: set[str] = set()
        for entry in sorted(entries, key=lambda e: _ORDER[e.method]):
            if entry.method in ("GET", "HEAD"):
                continue
            self._resolve_target(entry, base)
            for rid in entry.targets:
                key = f"{entry.resource_type}/{rid}"
                if key in claimed:
                    raise _fail(
                        entry.index, 400, "duplicate", f"{key} appears more than once in the transaction"
                    )
                claimed.add(key)
            final = entry.existing.id if entry.existing else (entry.targets[0] if entry.targets else None)
            if entry.full_url and final and entry.method in ("POST", "PUT"):
                mapping[entry.full_url] = f"{entry.resource_type}/{final}"
        plans: list[tuple[StoredVersion, StoredVersion | None]] = []
        owners: list[_Entry] = []
        for entry in sorted(entries, key=lambda e: _ORDER[e.method]):
            if entry.method in ("GET", "HEAD") or entry.existing is not None:
                continue
            if entry.patch is not None:
                patch = entry.patch.map_document(
                    lambda document, entry=entry: self._rewrite_references(entry, document, mapping, base)
                )
                try:
                    plans.append(
                        self._service.plan_patch(
                            entry.resource_type, entry.targets[0], patch, entry.request.get("ifMatch")
                        )
                    )
                except FhirError as exc:
                    raise _located(exc, entry.index) from None
                owners.append(entry)
                continue
            resource = None
            if entry.resource is not None:
                resource = self._rewrite_references(entry, entry.resource, mapping, base)
                resource = {**resource, "id": entry.targets[0]}
            for rid in entry.targets:
                try:
                    plan = self._service.plan_write(
                        entry.resource_type,
                        rid,
                        resource,
                        entry.request.get("ifMatch"),
                        "POST" if entry.method == "POST" else "PUT" if entry.method == "PUT" else "DELETE",
                    )
                except FhirError as exc:
                    raise _located(exc, entry.index) from None
                if plan is not None and self._keep_client_ids and _unchanged(*plan):
                    entry.existing = plan[1]
                elif plan is not None:
                    plans.append(plan)
                    owners.append(entry)
        if plans:  # in keep_client_ids mode every write may have been unchanged
            self._service.commit(plans)
        for (version, previous), entry in zip(plans, owners, strict=True):
            entry.written.append(version)
            entry.created = entry.created or previous is None or previous.deleted
        out = []
        for entry in entries:
            if entry.method in ("GET", "HEAD"):
                out.append(_entry_response(self._handle(self._sub_request(entry, request)), request.base_url))
            else:
                out.append(self._write_response(entry, base, request))
        return out

    def _resolve_target(self, entry: _Entry, base: str) -> None:
        if not is_resource_type(entry.resource_type):
            raise _fail(
                entry.index,
                404,
                "not-supported",
                f"Unknown resource type '{entry.resource_type}'",
                "request.url",
            )
        if (
            entry.patch is None
            and entry.resource is not None
            and entry.resource.get("resourceType") != entry.resource_type
        ):
            raise _fail(
                entry.index,
                400,
                "invalid",
                "The resource type does not match request.url",
                "resource.resourceType",
            )
        try:
            if entry.method == "POST":
                if_none_exist = entry.request.get("ifNoneExist")
                if if_none_exist:
                    found = self._service.find(
                        entry.resource_type, parse_qsl(if_none_exist.lstrip("?")), base, 2
                    )
                    if len(found) > 1:
                        raise _fail(
                            entry.index,
                            412,
                            "duplicate",
                            "ifNoneExist matches several resources",
                            "request.ifNoneExist",
                        )
                    if found:
                        entry.existing = found[0]
                        return
                entry.targets = [self._client_id(entry) or self._service.new_id()]
            elif entry.method == "PUT":
                if entry.query is not None:
                    found = self._service.find(entry.resource_type, entry.query, base, 2)
                    if len(found) > 1:
                        raise _fail(
                            entry.index,
                            412,
                            "multiple-matches",
                            "The conditional update criteria match several resources",
                            "request.url",
                        )
                    body_id = entry.resource.get("id") if entry.resource else None
                    entry.targets = [found[0].id if found else body_id or self._service.new_id()]
                else:
                    if not entry.resource_id or not is_valid_id(entry.resource_id):
                        raise _fail(entry.index, 400, "value", "PUT needs [type]/[id]", "request.url")
                    if entry.resource and entry.resource.get("id") not in (None, entry.resource_id):
                        raise _fail(
                            entry.index,
                            400,
                            "invalid",
                            "The resource id must equal the id in request.url",
                            "resource.id",
                        )
                    entry.targets = [entry.resource_id]
            elif entry.method == "PATCH":
                entry.targets = [self._patch_target(entry, base)]
            elif entry.query is not None:  # conditional DELETE
                entry.targets = [
                    v.id for v in self._service.find(entry.resource_type, entry.query, base, 101)
                ]
                if len(entry.targets) > 100:
                    raise _fail(
                        entry.index, 412, "too-costly", "The delete criteria match over 100 resources"
                    )
            elif entry.resource_id and is_valid_id(entry.resource_id):
                entry.targets = [entry.resource_id]
            else:
                raise _fail(
                    entry.index, 400, "value", "DELETE needs [type]/[id] or [type]?[criteria]", "request.url"
                )
        except FhirError as exc:
            raise _located(exc, entry.index) from None

    def _patch_target(self, entry: _Entry, base: str) -> str:
        if entry.query is None:
            if not entry.resource_id or not is_valid_id(entry.resource_id):
                raise _fail(
                    entry.index, 400, "value", "PATCH needs [type]/[id] or [type]?[criteria]", "request.url"
                )
            return entry.resource_id
        return self._service.find_one(entry.resource_type, entry.query, base, "patch")

    def _client_id(self, entry: _Entry) -> str | None:
        if not self._keep_client_ids:
            return None
        if entry.full_url and entry.full_url.startswith("urn:uuid:") and is_valid_id(entry.full_url[9:]):
            return entry.full_url[9:]
        body_id = (entry.resource or {}).get("id")
        return body_id if is_valid_id(body_id) else None

    def _rewrite_references(self, entry: _Entry, value: Any, mapping: dict[str, str], base: str) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key == "reference" and isinstance(item, str):
                    out[key] = self._resolve_reference(entry, item, mapping, base)
                else:
                    out[key] = self._rewrite_references(entry, item, mapping, base)
            return out
        if isinstance(value, list):
            return [self._rewrite_references(entry, item, mapping, base) for item in value]
        return value

    def _resolve_reference(self, entry: _Entry, reference: str, mapping: dict[str, str], base: str) -> str:
        if reference in mapping:
            return mapping[reference]
        if reference in self._resolved:  # Synthea repeats the same practitioner hundreds of times
            return self._resolved[reference]
        rtype, question, query = reference.partition("?")
        if question and "/" not in rtype and is_resource_type(rtype):
            found = self._service.find(rtype, parse_qsl(query, keep_blank_values=True), base, 2)
            if len(found) != 1:
                raise _fail(
                    entry.index,
                    412,
                    "not-found" if not found else "multiple-matches",
                    f"The conditional reference to {rtype} matches {len(found)} resources "
                    "(exactly one is required)",
                    "resource",
                )
            self._resolved[reference] = f"{rtype}/{found[0].id}"
            return self._resolved[reference]
        return reference

    def _write_response(self, entry: _Entry, base: str, request: Request) -> dict[str, Any]:
        prefer_minimal = "return=minimal" in (request.header("prefer") or "")
        if entry.existing is not None:
            version, status = entry.existing, "200 OK"
        elif entry.written:
            version = entry.written[-1]
            status = (
                "201 Created"
                if entry.created and entry.method != "DELETE"
                else ("204 No Content" if entry.method == "DELETE" else "200 OK")
            )
        else:  # a DELETE that found nothing to delete
            return {"response": {"status": "204 No Content"}}
        response: dict[str, Any] = {
            "status": status,
            "etag": f'W/"{version.version_id}"',
            "lastModified": version.last_updated,
        }
        if entry.method != "DELETE":
            response["location"] = f"{version.resource_type}/{version.id}/_history/{version.version_id}"
        out: dict[str, Any] = {}
        if version.resource is not None and entry.method != "DELETE":
            out["fullUrl"] = f"{base}/{version.resource_type}/{version.id}"
            if not prefer_minimal:
                out["resource"] = version.resource
        out["response"] = response
        return out

    @staticmethod
    def _response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {**new_bundle(kind), "entry": entries}


def same_content(stored: dict[str, Any] | None, resource: dict[str, Any] | None) -> bool:
    """Equal but for the server-owned ``meta.versionId``/``meta.lastUpdated``."""
    if stored is None or resource is None:
        return False

    def strip(value: dict[str, Any]) -> dict[str, Any]:
        meta = value.get("meta")
        if not isinstance(meta, dict):
            return value
        rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        return {**{k: v for k, v in value.items() if k != "meta"}, **({"meta": rest} if rest else {})}

    return strip(stored) == strip(resource)


def _unchanged(version: StoredVersion, previous: StoredVersion | None) -> bool:
    return previous is not None and not previous.deleted and same_content(previous.resource, version.resource)


def _located(exc: FhirError, index: int) -> FhirError:
    """The error with its expressions under the failing entry: Patient.x → Bundle.entry[i].resource.x."""
    issues = []
    for issue in exc.issues:
        expressions = tuple(
            e
            if e.startswith("Bundle.entry[")
            else re.sub(r"^[A-Za-z]+", f"Bundle.entry[{index}].resource", e, count=1)
            for e in issue.expression
        )
        if not any(e.startswith("Bundle.entry[") for e in expressions):  # none, or JSON Patch pointers
            expressions = (f"Bundle.entry[{index}]", *expressions)
        issues.append(Issue(issue.severity, issue.code, issue.diagnostics, expressions))
    return FhirError(exc.status, issues, exc.headers)


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _entry_response(response: Response, base_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    body = fhir_json.loads(response.body) if response.body else None
    result: dict[str, Any] = {"status": _status_line(response.status)}
    if "Location" in response.headers:  # relative, as in the spec's transaction-response examples
        result["location"] = response.headers["Location"].removeprefix(base_url + "/")
    if "ETag" in response.headers:
        result["etag"] = response.headers["ETag"]
    if "Last-Modified" in response.headers and body is not None and isinstance(body.get("meta"), dict):
        result["lastModified"] = body["meta"].get("lastUpdated")
    if response.status >= 400 and body is not None:
        result["outcome"] = body
    elif body is not None:
        out["resource"] = body
    out["response"] = result
    return out


def _error_response(error: FhirError) -> dict[str, Any]:
    return {"response": {"status": _status_line(error.status), "outcome": operation_outcome(error.issues)}}
