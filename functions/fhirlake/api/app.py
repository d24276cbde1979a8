"""The FHIR REST API: routes a framework-neutral Request to the core and shapes the Response.

Routes (R4 http.html), relative to the FHIR base:

    GET  /metadata                          capabilities
    GET  /_history                          history (system)
    POST /$validate                         validate
    POST /{type}                            create
    GET  /{type}/_history                   history (type)
    POST /{type}/$validate                  validate
    PUT|DELETE|PATCH /{type}?...            conditional update, delete, patch
    GET|PUT|DELETE|PATCH /{type}/{id}       read, update, delete, patch
    POST /{type}/{id}/$validate             validate
    GET|POST /Patient/{id}/$everything      the patient's record (service.everything)
    GET  /{type}/{id}/_history[/{vid}]      history (instance), vread
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from fhirlake.api.bundles import BundleProcessor
from fhirlake.api.http import (
    Request,
    Response,
    check_body_media_type,
    is_json_patch_body,
    json_response,
    response_media_type,
    url_with_query,
)
from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.bundle import history_bundle, searchset_bundle
from fhirlake.fhir.capability import capability_statement
from fhirlake.fhir.instant import http_date, parse_instant
from fhirlake.fhir.outcome import FhirError, Issue, operation_outcome
from fhirlake.fhir.patch import PatchDocument, patch_document
from fhirlake.fhir.summary import only_elements, summarize
from fhirlake.fhir.types import is_resource_type
from fhirlake.ingest.jobs import JobStore, job_view, jobs_list_view
from fhirlake.persistence import StoredVersion
from fhirlake.persistence.dynamodb import InvalidCursor
from fhirlake.persistence.dynamodb_search import SearchPage
from fhirlake.service.crud import ResourceService, check_type
from fhirlake.service.everything import PatientEverything, parse_everything, since_instant
from fhirlake.validation import Validator

DEFAULT_HISTORY_COUNT = 50
MAX_HISTORY_COUNT = 1000
_HISTORY_PARAMS = {"_count", "_since", "_cursor", "_format", "_pretty"}

Handler = Callable[[Request, list[str]], Response]


class FhirApi:
    def __init__(self, service: ResourceService, validator: Validator, max_body_bytes: int) -> None:
        self._service = service
        self._validator = validator
        self._max_body_bytes = max_body_bytes

    def handle(self, request: Request) -> Response:
        try:
            response_media_type(request)  # 406 before doing any work
            return self._route(request)
        except FhirError as exc:
            return json_response(request, exc.status, exc.outcome(), exc.headers)

    # -- routing ------------------------------------------------------------------------
    def _route(self, request: Request) -> Response:
        parts = [unquote(p) for p in request.path.strip("/").split("/") if p]
        methods = self._methods_for(parts)
        handler = methods.get(request.method)
        if handler is None:
            allow = ", ".join(sorted(methods)) or "none"
            raise FhirError(
                405,
                FhirError.of(
                    405, "not-supported", f"{request.method} is not allowed here (allowed: {allow})"
                ).issues,
                headers={"Allow": allow},
            )
        return handler(request, parts)

    def _methods_for(self, parts: list[str]) -> dict[str, Handler]:
        n = len(parts)
        if n == 0:
            return {"POST": self._bundle, "GET": self._search}  # GET [base]?...: system search
        head = parts[0]
        if n == 1 and head == "metadata":
            return {"GET": self._capabilities}
        if n == 1 and head == "_search":  # POST [base]/_search (and GET): system search
            return {"GET": self._search, "POST": self._search}
        if n == 1 and head == "_history":
            return {"GET": self._history}
        if n == 1 and head == "$validate":
            return {"POST": self._validate}
        if head == "_import" and n <= 2:  # bulk import jobs (not FHIR resources): docs/architecture.md
            return {"GET": self._import_jobs}
        check_type(head)
        tail = parts[1:]
        if n == 1:
            return {
                "POST": self._create,
                "GET": self._search,
                "PUT": self._conditional_update,
                "DELETE": self._conditional_delete,
                "PATCH": self._conditional_patch,
            }
        if tail == ["_history"]:
            return {"GET": self._history}
        if tail == ["_search"]:
            return {"GET": self._search, "POST": self._search}
        if tail == ["$validate"]:
            return {"POST": self._validate}
        if tail == ["$everything"] and head == "Patient":
            raise FhirError.of(
                501,
                "not-supported",
                "Patient/$everything over all patients is not supported: use Patient/[id]/$everything",
            )
        if tail[0].startswith("$"):
            raise FhirError.of(501, "not-supported", f"Operation {tail[0]} is not supported")
        if n == 2:
            return {"GET": self._read, "PUT": self._update, "DELETE": self._delete, "PATCH": self._patch}
        if n == 3 and parts[2] == "_history":
            return {"GET": self._history}
        if n == 3 and parts[2] == "$validate":
            return {"POST": self._validate}
        if n == 3 and parts[2] == "$everything" and head == "Patient":
            return {"GET": self._everything, "POST": self._everything}
        if n == 3 and parts[2].startswith("$"):
            raise FhirError.of(501, "not-supported", f"Operation {parts[2]} is not supported on {head}")
        if n == 4 and parts[2] == "_history":
            return {"GET": self._vread}
        if n == 3 and is_resource_type(parts[2]):  # compartment search: /Patient/123/Observation
            return {"GET": self._search}
        if n == 4 and is_resource_type(parts[2]) and parts[3] == "_search":
            return {"GET": self._search, "POST": self._search}
        raise FhirError.of(404, "not-found", "Unknown path")

    # -- interactions -------------------------------------------------------------------
    def _import_jobs(self, request: Request, parts: list[str]) -> Response:
        """``GET /_import`` (``_count``, ``before`` to page back) and ``GET /_import/{job}``: plain JSON."""
        store = self._service.store
        jobs = JobStore(store.dynamodb, store.table, store.tenant)  # type: ignore[attr-defined]
        if len(parts) == 2:
            view = job_view(jobs, parts[1]) if len(parts[1]) <= 64 else None
            if view is None:
                raise FhirError.of(404, "not-found", "No import job with this id")
            return json_response(request, 200, view)
        count = request.param("_count") or "50"
        limit = min(int(count), 1000) if count.isdigit() and int(count) > 0 else 50
        return json_response(request, 200, jobs_list_view(jobs, limit, request.param("before")))

    def _capabilities(self, request: Request, _parts: list[str]) -> Response:
        return json_response(request, 200, capability_statement(request.base_url))

    def _read(self, request: Request, parts: list[str]) -> Response:
        version = self._service.read(parts[0], parts[1])
        if _not_modified(request, version):
            return Response(304, _version_headers(request, version))
        return json_response(
            request, 200, _subset_for(request, version.resource), _version_headers(request, version)
        )

    def _vread(self, request: Request, parts: list[str]) -> Response:
        version = self._service.vread(parts[0], parts[1], parts[3])
        return json_response(request, 200, version.resource, _version_headers(request, version))

    def _create(self, request: Request, parts: list[str]) -> Response:
        if_none_exist = request.header("if-none-exist")
        if if_none_exist:
            result = self._service.conditional_create(
                parts[0], self._body(request), if_none_exist.lstrip("?"), request.base_url
            )
            return self._write_response(request, result.version, 201 if result.created else 200)
        result = self._service.create(parts[0], self._body(request))
        return self._write_response(request, result.version, 201)

    def _update(self, request: Request, parts: list[str]) -> Response:
        result = self._service.update(parts[0], parts[1], self._body(request), request.header("if-match"))
        return self._write_response(request, result.version, 201 if result.created else 200)

    def _bundle(self, request: Request, _parts: list[str]) -> Response:
        processor = BundleProcessor(self._service, self.handle)
        return json_response(request, 200, processor.process(self._body(request), request))

    def _conditional_update(self, request: Request, parts: list[str]) -> Response:
        result = self._service.conditional_update(
            parts[0], list(request.query), self._body(request), request.base_url, request.header("if-match")
        )
        return self._write_response(request, result.version, 201 if result.created else 200)

    def _patch(self, request: Request, parts: list[str]) -> Response:
        result = self._service.patch(
            parts[0], parts[1], self._patch_body(request), request.header("if-match")
        )
        return self._write_response(request, result.version, 200)

    def _conditional_patch(self, request: Request, parts: list[str]) -> Response:
        result = self._service.conditional_patch(
            parts[0],
            list(request.query),
            self._patch_body(request),
            request.base_url,
            request.header("if-match"),
        )
        return self._write_response(request, result.version, 200)

    def _conditional_delete(self, request: Request, parts: list[str]) -> Response:
        deleted = self._service.conditional_delete(parts[0], list(request.query), request.base_url)
        if _prefer_return(request) == "OperationOutcome":
            message = f"{len(deleted)} {parts[0]} resource(s) deleted"
            return json_response(
                request, 200, operation_outcome([Issue("information", "informational", message)])
            )
        headers = {"ETag": f'W/"{deleted[0].version_id}"'} if len(deleted) == 1 else {}
        return Response(204, headers)

    def _delete(self, request: Request, parts: list[str]) -> Response:
        tombstone = self._service.delete(parts[0], parts[1], request.header("if-match"))
        headers = {"ETag": f'W/"{tombstone.version_id}"'} if tombstone else {}
        if _prefer_return(request) == "OperationOutcome":
            message = (
                f"{parts[0]}/{parts[1]} deleted" if tombstone else f"{parts[0]}/{parts[1]} did not exist"
            )
            outcome = operation_outcome([Issue("information", "informational", message)])
            return json_response(request, 200, outcome, headers)
        return Response(204, headers)

    def _history(self, request: Request, parts: list[str]) -> Response:
        resource_type = parts[0] if parts[0] != "_history" else None
        resource_id = parts[1] if len(parts) == 3 else None
        unknown = sorted({k for k, _ in request.query} - _HISTORY_PARAMS)
        if unknown:
            raise FhirError.of(
                400, "not-supported", f"Unsupported history parameter(s): {', '.join(unknown)}"
            )
        count = _count(request.param("_count"))
        since = since_instant(request.param("_since"))
        try:
            page = self._service.history(
                resource_type, resource_id, count=count, since=since, cursor=request.param("_cursor")
            )
        except InvalidCursor:
            raise FhirError.of(400, "invalid", "The paging cursor is not valid") from None
        path = request.path.rstrip("/")
        kept = [(k, v) for k, v in request.query if k in ("_since", "_format", "_pretty")]
        kept.append(("_count", str(count)))
        links = {"self": url_with_query(request.base_url, path, request.query)}
        if page.next_cursor:
            links["next"] = url_with_query(request.base_url, path, [*kept, ("_cursor", page.next_cursor)])
        links["first"] = url_with_query(request.base_url, path, kept)
        return json_response(request, 200, history_bundle(request.base_url, page.versions, links))

    def _search(self, request: Request, parts: list[str]) -> Response:
        query = list(request.query)
        if request.method == "POST":  # POST [type]/_search: form-encoded parameters in the body
            media = (request.header("content-type") or "").split(";")[0].strip().lower()
            if media != "application/x-www-form-urlencoded":
                raise FhirError.of(
                    415, "not-supported", "POST _search takes application/x-www-form-urlencoded"
                )
            query += parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        strict = _strict(request)
        system_level = parts in ([], ["_search"])  # [base]?_type=... or [base]/_search
        try:
            if system_level:
                result = self._service.searching().system_search(query, request.base_url, strict)
            elif len(parts) >= 3:  # [compartment]/[id]/[type]
                result = self._service.searching().compartment_search(
                    parts[0], parts[1], parts[2], query, request.base_url, strict
                )
            else:
                result = self._service.searching().search(parts[0], query, request.base_url, strict)
        except InvalidCursor:
            raise FhirError.of(400, "invalid", "The paging cursor is not valid for this search") from None
        search = result.request
        path = "" if system_level else "/" + "/".join(parts[:3] if len(parts) >= 3 else parts[:1])
        return _searchset_response(
            request,
            path,
            search.link_params,
            result.page,
            result.included,
            result.warnings,
            elements=search.elements,
            summary=search.summary,
        )

    def _everything(self, request: Request, parts: list[str]) -> Response:
        """``Patient/[id]/$everything`` (patient-operation-everything.html): parameters from the query
        string and, with POST, a Parameters body; paging links repeat them as a GET query."""
        query = list(request.query)
        if request.method == "POST" and request.body.strip():
            query += self._parameters_body(request)
        everything = PatientEverything(self._service.store, self._service.searching())
        parsed = parse_everything(query, _strict(request))
        try:
            page = everything.page(parts[1], parsed, request.base_url)
        except InvalidCursor:
            raise FhirError.of(400, "invalid", "The paging cursor is not valid for this request") from None
        return _searchset_response(
            request,
            f"/Patient/{parts[1]}/$everything",
            list(parsed.link_params),
            SearchPage(page.versions, page.next_cursor, None),
            page.included,
            page.warnings,
        )

    def _parameters_body(self, request: Request) -> list[tuple[str, str]]:
        """The (name, value) pairs of an operation's Parameters body (primitive values only)."""
        body = self._body(request)
        errors = [i for i in self._validator.validate(body, expected_type="Parameters") if i.is_error]
        if errors:
            raise FhirError(400, errors)
        pairs: list[tuple[str, str]] = []
        for i, parameter in enumerate(body.get("parameter") or []):
            name = parameter.get("name") if isinstance(parameter, dict) else None
            value = next((v for k, v in parameter.items() if k.startswith("value")), None) if name else None
            if not isinstance(name, str) or not isinstance(value, str | int):  # bool is an int
                raise FhirError.of(
                    400,
                    "value",
                    "Each parameter needs a name and a primitive value",
                    f"Parameters.parameter[{i}]",
                )
            pairs.append((name, str(value)))
        return pairs

    def _validate(self, request: Request, parts: list[str]) -> Response:
        body = self._body(request)
        resource_type = parts[0] if parts and is_resource_type(parts[0]) else None
        mode = request.param("mode")
        resource = body
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            for parameter in body.get("parameter", []) or []:
                if not isinstance(parameter, dict):
                    continue
                if parameter.get("name") == "resource" and "resource" in parameter:
                    resource = parameter["resource"]
                elif parameter.get("name") == "mode":
                    mode = parameter.get("valueCode", mode)
        if mode not in (None, "create", "update", "delete", "profile"):
            raise FhirError.of(400, "value", "mode must be create, update, delete or profile")
        if mode == "delete":
            # Nothing in fhirlake forbids deleting a resource (no referential integrity rules).
            return json_response(request, 200, operation_outcome([]))
        issues = self._validator.validate(resource, expected_type=resource_type)
        if (
            mode == "update"
            and isinstance(resource, dict)
            and len(parts) >= 2
            and resource.get("id") != parts[1]
        ):
            issues.append(Issue("error", "invalid", "The resource id must equal the id in the URL", "id"))
        return json_response(request, 200, operation_outcome(issues))

    @staticmethod
    def _not_yet(feature: str) -> Handler:
        def handler(_request: Request, _parts: list[str]) -> Response:
            raise FhirError.of(
                501, "not-supported", f"{feature[0].upper()}{feature[1:]} is not supported yet"
            )

        return handler

    # -- helpers ------------------------------------------------------------------------
    def _body(self, request: Request) -> Any:
        check_body_media_type(request)
        return self._json_body(request)

    def _patch_body(self, request: Request) -> PatchDocument:
        json_patch = is_json_patch_body(request)
        return patch_document(self._json_body(request), json_patch=json_patch)

    def _json_body(self, request: Request) -> Any:
        if len(request.body) > self._max_body_bytes:
            raise FhirError.of(
                413, "too-costly", f"The body exceeds the limit of {self._max_body_bytes} bytes"
            )
        if not request.body.strip():
            raise FhirError.of(400, "required", "A request body is required")
        return fhir_json.loads(request.body)

    def _write_response(self, request: Request, version: StoredVersion, status: int) -> Response:
        headers = _version_headers(request, version)
        headers["Location"] = version_url(request.base_url, version)
        prefer = _prefer_return(request)
        if prefer == "minimal":
            return Response(status, headers)
        if prefer == "OperationOutcome":
            outcome = operation_outcome([Issue("information", "informational", "Stored")])
            return json_response(request, status, outcome, headers)
        return json_response(request, status, version.resource, headers)


def _searchset_response(
    request: Request,
    path: str,
    link_params: list[tuple[str, str]],
    page: SearchPage,
    included: list[StoredVersion],
    warnings: list[Issue],
    *,
    elements: tuple[str, ...] = (),
    summary: str | None = None,
) -> Response:
    """A searchset Bundle for one page (search, $everything): self/next links on ``path`` with
    ``link_params``, the matches shaped by ``_elements``/``_summary``, includes, warnings."""
    links = {"self": url_with_query(request.base_url, path, link_params)}
    if page.next_cursor:
        links["next"] = url_with_query(request.base_url, path, [*link_params, ("_cursor", page.next_cursor)])
    resources = [v.resource for v in page.versions if v.resource is not None]
    if elements:
        resources = [only_elements(r, elements) for r in resources]
    elif summary in ("true", "text", "data"):
        resources = [summarize(r, summary) for r in resources]
    total = page.total
    if total is None and page.next_cursor is None and request.param("_cursor") is None:
        total = len(resources)  # everything fits on the first page: the count is known for free
    outcome = operation_outcome(warnings) if warnings else None
    bundle = searchset_bundle(
        request.base_url,
        resources,
        links,
        total,
        outcome,
        [v.resource for v in included if v.resource is not None],
    )
    return json_response(request, 200, bundle)


def _strict(request: Request) -> bool:
    """``Prefer: handling=strict`` (search.html#errors): unknown parameters are an error, not ignored."""
    return "handling=strict" in (request.header("prefer") or "").replace(" ", "")


def _subset_for(request: Request, resource: Any) -> Any:
    """A read's ``_summary`` / ``_elements`` (the same subsets a search returns)."""
    summary, elements = request.param("_summary"), request.param("_elements")
    if elements:
        return only_elements(resource, tuple(e.strip() for e in elements.split(",") if e.strip()))
    if summary in ("true", "text", "data"):
        return summarize(resource, summary)
    if summary not in (None, "false"):
        raise FhirError.of(400, "value", "_summary must be true, false, text or data on a read")
    return resource


def _version_headers(request: Request, version: StoredVersion) -> dict[str, str]:
    return {
        "ETag": f'W/"{version.version_id}"',
        "Last-Modified": http_date(version.last_updated),
        "Content-Location": version_url(request.base_url, version),
    }


def version_url(base_url: str, version: StoredVersion) -> str:
    return f"{base_url}/{version.resource_type}/{version.id}/_history/{version.version_id}"


def _not_modified(request: Request, version: StoredVersion) -> bool:
    """Conditional read (http.html#cread): If-None-Match wins over If-Modified-Since, as in RFC 7232."""
    none_match = request.header("if-none-match")
    if none_match:
        return none_match.strip() in (f'W/"{version.version_id}"', f'"{version.version_id}"')
    modified_since = request.header("if-modified-since")
    if modified_since:
        try:
            since = parsedate_to_datetime(modified_since)
        except (TypeError, ValueError):
            return False  # an unparseable date is ignored (RFC 7232 section 3.3)
        return parse_instant(version.last_updated).replace(microsecond=0) <= since
    return False


def _prefer_return(request: Request) -> str:
    prefer = request.header("prefer") or ""
    for token in prefer.split(";"):
        for part in token.split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "return":
                value = value.strip().strip('"')
                if value in ("minimal", "representation", "OperationOutcome"):
                    return value
    return "representation"


def _count(value: str | None) -> int:
    if value is None:
        return DEFAULT_HISTORY_COUNT
    if not value.isdigit():
        raise FhirError.of(400, "value", "_count must be a non-negative integer")
    return max(1, min(int(value), MAX_HISTORY_COUNT))
