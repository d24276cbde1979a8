"""The HTTP surface of analytics, under ``/_analytics`` (framework-neutral: Request in, Response out).

    GET  /_analytics/trend?patient={id}&code={system|code}&format=png|html|json
    GET  /_analytics/trend?code={system|code}&measure=prevalence|mean[&since=YYYY-MM&until=YYYY-MM]&format=
    POST /_analytics/sql        body: one read-only Athena (Trino) SQL statement -> JSON result
    GET  /_analytics/queries    the shipped example queries, with their parameters

Errors are OperationOutcomes with the status the problem deserves (400 bad SQL or parameters, 404 unknown
patient, 504 query timeout). The FHIR service and the SQL engine are built on first use, so a SQL request
never pays for the FHIR validator and a patient chart never for the engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhirlake.analytics.engine import QueryError, SqlEngine
from fhirlake.analytics.queries import shipped_queries
from fhirlake.analytics.trends import MEASURES, Chart, Code, patient_progression, population_trend
from fhirlake.api.http import Request, Response
from fhirlake.fhir import json as fhir_json
from fhirlake.fhir.outcome import FhirError
from fhirlake.fhir.types import is_valid_id
from fhirlake.service.crud import ResourceService

PREFIX = "/_analytics"
FORMATS = {"png": "image/png", "html": "text/html; charset=utf-8", "json": "application/json"}
DEFAULT_MAX_ROWS = 1000
MAX_ROWS = 10_000
MAX_SQL_BYTES = 256 * 1024  # Athena's query string limit
_ISSUE_CODES = {400: "invalid", 404: "not-found", 409: "conflict", 504: "timeout"}


def query_error(error: QueryError) -> FhirError:
    return FhirError.of(error.status, _ISSUE_CODES.get(error.status, "exception"), error.message)


@dataclass
class AnalyticsApi:
    service_factory: Callable[[], ResourceService]
    engine_factory: Callable[[], SqlEngine]
    _service: ResourceService | None = field(default=None, init=False)
    _engine: SqlEngine | None = field(default=None, init=False)

    @property
    def service(self) -> ResourceService:
        if self._service is None:
            self._service = self.service_factory()
        return self._service

    @property
    def engine(self) -> SqlEngine:
        if self._engine is None:
            self._engine = self.engine_factory()
        return self._engine

    def route(self, request: Request) -> str:
        """``trend``, ``sql``... for ``/_analytics/trend`` (API Gateway's proxy path may omit the prefix)."""
        path = request.path
        if path == PREFIX or path.startswith(PREFIX + "/"):
            path = path[len(PREFIX) :]
        return path.strip("/")

    def handle(self, request: Request) -> Response:
        try:
            return self._dispatch(request)
        except QueryError as error:
            raise query_error(error) from None

    def _dispatch(self, request: Request) -> Response:
        route = self.route(request)
        allowed = {"trend": "GET", "sql": "POST", "queries": "GET"}.get(route)
        if allowed is None:
            raise FhirError.of(404, "not-found", f"Unknown analytics endpoint: {PREFIX}/{route}")
        if request.method != allowed:
            error = FhirError.of(405, "not-supported", f"{PREFIX}/{route} accepts {allowed} only")
            error.headers["Allow"] = allowed
            raise error
        if route == "sql":
            return self.sql(request)
        if route == "queries":
            return self.queries(request)
        return self.trend(request)

    # -- endpoints ----------------------------------------------------------------------------
    def sql(self, request: Request) -> Response:
        statement = _sql_from_body(request)
        max_rows = _int_param(request, "maxRows", DEFAULT_MAX_ROWS, 1, MAX_ROWS)
        result = self.engine.run(statement, max_rows=max_rows)
        return plain_json({"engine": self.engine.name, **result.to_json()})

    def queries(self, request: Request) -> Response:
        listing = [
            {
                "name": q.name,
                "title": q.title,
                "question": q.question,
                "table": q.table,
                "parameters": [
                    {"name": p.name, "type": p.type, "default": p.default, "description": p.description}
                    for p in q.parameters
                ],
                "sql": q.sql,
            }
            for q in shipped_queries().values()
        ]
        return plain_json({"queries": listing})

    def trend(self, request: Request) -> Response:
        chart_format = (request.param("format") or "png").lower()
        if chart_format not in FORMATS:
            raise FhirError.of(400, "value", f"format must be one of {', '.join(FORMATS)}", "format")
        token = request.param("code")
        if not token:
            raise FhirError.of(400, "required", "code (system|code) is required", "code")
        code = Code.parse(token)
        patient, measure = request.param("patient"), request.param("measure")
        if patient is not None and measure is not None:
            raise FhirError.of(
                400, "value", "measure applies to population trends, not to one patient", "measure"
            )
        if patient is not None:
            if not is_valid_id(patient):
                raise FhirError.of(400, "value", "patient must be a Patient id", "patient")
            chart = patient_progression(self.service, patient, code, request.base_url)
        elif measure in MEASURES:
            chart = population_trend(
                self.engine, code, measure, _month_param(request, "since"), _month_param(request, "until")
            )
        else:
            raise FhirError.of(
                400, "required", f"Give patient (one patient) or measure ({'|'.join(MEASURES)})", "measure"
            )
        return chart_response(chart, chart_format)


def plain_json(body: object, headers: dict[str, str] | None = None) -> Response:
    """Analytics answers are not FHIR resources: plain application/json (errors stay OperationOutcomes)."""
    return Response(
        200, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, fhir_json.dumps(body)
    )


def chart_response(chart: Chart, chart_format: str) -> Response:
    if chart_format == "json":
        return plain_json(chart.to_json(), {"Cache-Control": "no-store"})
    from fhirlake.analytics import charts  # matplotlib only for PNG requests

    body = charts.render_png(chart) if chart_format == "png" else charts.render_html(chart).encode()
    # Charts hold PHI (one patient's values): never cached by a shared cache.
    return Response(200, {"Content-Type": FORMATS[chart_format], "Cache-Control": "no-store"}, body)


def _sql_from_body(request: Request) -> str:
    if len(request.body) > MAX_SQL_BYTES:
        raise FhirError.of(413, "too-costly", f"The SQL is longer than {MAX_SQL_BYTES} bytes")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise FhirError.of(400, "invalid", "The SQL must be UTF-8 text") from None
    content_type = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type.endswith("json"):  # {"sql": "..."} for clients that only speak JSON
        try:
            payload = json.loads(text)
        except ValueError:
            raise FhirError.of(400, "invalid", "The JSON body is not valid JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("sql"), str):
            raise FhirError.of(400, "required", "The JSON body needs an 'sql' string", "sql")
        text = payload["sql"]
    if not text.strip():
        raise FhirError.of(400, "required", "The request body must hold one SQL statement")
    return text


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.param(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise FhirError.of(400, "value", f"{name} must be an integer from {low} to {high}", name)
    return int(value)


def _month_param(request: Request, name: str) -> date | None:
    value = request.param(name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value + "-01" if len(value) == 7 else value)
    except ValueError:
        raise FhirError.of(400, "value", f"{name} must be a month (YYYY-MM) or a date", name) from None


def audit_details(api: AnalyticsApi, request: Request) -> dict[str, Any]:
    """What the audit record says about a request: the endpoint and, for a patient chart, whose data."""
    route = api.route(request)
    patient = request.param("patient") if route == "trend" else None
    return {
        "endpoint": f"{PREFIX}/{route}",
        "resource_type": "Patient" if patient else None,
        "resource_id": patient if patient and is_valid_id(patient) else None,
        "measure": request.param("measure") if route == "trend" else None,
    }
