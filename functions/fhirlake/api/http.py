"""Framework-neutral HTTP request/response, and FHIR content negotiation (http.html#mime-type)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.outcome import FhirError

FHIR_JSON = "application/fhir+json"
PLAIN_JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
_JSON_TYPES = {FHIR_JSON, PLAIN_JSON, "text/json"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml", "xml"}
_FORMAT_ALIASES = {
    "json": FHIR_JSON,
    "xml": "application/fhir+xml",
    "html": "text/html",
    "ttl": "text/turtle",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # relative to the FHIR base, starting with "/"
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    base_url: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        values = [v for k, v in self.query if k == name]
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def response_media_type(request: Request) -> str:
    """The media type to answer with, from ``_format`` (which wins) or ``Accept``; 406 if not JSON."""
    wanted = request.param("_format")
    if wanted:
        media = _FORMAT_ALIASES.get(wanted.strip().lower(), _media_type(wanted))
        if media in _JSON_TYPES:
            return PLAIN_JSON if media == PLAIN_JSON else FHIR_JSON
        raise FhirError.of(406, "not-supported", "Only JSON is supported: use _format=json")
    accept = request.header("accept")
    if not accept:
        return FHIR_JSON
    ranges = [_media_type(part) for part in accept.split(",")]
    for media in ranges:
        if media == FHIR_JSON or media in ("*/*", "application/*"):
            return FHIR_JSON
        if media in (PLAIN_JSON, "text/json"):
            return PLAIN_JSON
    raise FhirError.of(406, "not-supported", "Only application/fhir+json and application/json are supported")


def check_body_media_type(request: Request) -> None:
    """415 for bodies that are not JSON. A missing Content-Type is taken as FHIR JSON."""
    content_type = request.header("content-type")
    if not content_type:
        return
    media = _media_type(content_type)
    if media in _JSON_TYPES:
        return
    if media in _XML_TYPES:
        raise FhirError.of(415, "not-supported", "XML is not supported: send application/fhir+json")
    raise FhirError.of(415, "not-supported", "Unsupported Content-Type: send application/fhir+json")


def is_json_patch_body(request: Request) -> bool:
    """A PATCH body's format (http.html#patch): True for a JSON Patch (``application/json-patch+json``),
    False for FHIR JSON (a FHIRPath Patch ``Parameters``; a JSON array is still read as a JSON Patch).
    415 for anything else (XML Patch included)."""
    content_type = request.header("content-type")
    media = _media_type(content_type) if content_type else FHIR_JSON
    if media == JSON_PATCH:
        return True
    if media in _JSON_TYPES:
        return False
    raise FhirError.of(
        415,
        "not-supported",
        f"PATCH takes {JSON_PATCH} (JSON Patch) or {FHIR_JSON} (FHIRPath Patch Parameters)",
    )


def json_response(
    request: Request, status: int, body: object, headers: dict[str, str] | None = None
) -> Response:
    """Serialise ``body`` as the negotiated JSON type; never fails negotiation for error bodies."""
    try:
        media = response_media_type(request)
    except FhirError:
        media = FHIR_JSON
    payload = fhir_json.dumps(body, pretty=(request.param("_pretty") or "").lower() == "true")
    out = {"Content-Type": f"{media}; charset=utf-8", **(headers or {})}
    return Response(status, out, payload)


def url_with_query(base: str, path: str, params: list[tuple[str, str]]) -> str:
    query = "&".join(f"{quote(k, safe='_:.-')}={quote(v, safe=':/|,.-_')}" for k, v in params)
    return f"{base}{path}" + (f"?{query}" if query else "")
