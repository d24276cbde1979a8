"""handlers.analytics: proxy events in; status codes, charts, SQL results and OperationOutcomes out."""

from __future__ import annotations

import base64
import copy
import importlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from fhirlake.analytics.api import AnalyticsApi
from fhirlake.analytics.charts import PNG_SIGNATURE
from fhirlake.bootstrap import build_service
from fhirlake.config import Settings
from fhirlake.local.lambda_context import LocalLambdaContext

from tests.analytics.conftest import Lake

EVENTS = Path(__file__).resolve().parents[2] / "events" / "analytics"


@pytest.fixture(scope="module")
def handler_module(lake: Lake):
    module = importlib.import_module("handlers.analytics")
    settings = Settings.from_env()
    module._settings = settings
    module._api = AnalyticsApi(lambda: build_service(settings), lake.engine)  # this module's moto lake
    return module


def invoke(module, event: dict[str, Any]) -> dict[str, Any]:
    return module.handler(event, LocalLambdaContext(function_name="fhirlake-analytics"))


def sample(name: str, **changes: Any) -> dict[str, Any]:
    event = json.loads((EVENTS / name).read_text())
    for key, value in changes.items():
        event[key] = value
    if "queryStringParameters" in changes:
        query = changes["queryStringParameters"] or {}
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    return event


def outcome(result: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(result["body"])
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


def test_sql_sample_event_returns_json_rows(handler_module) -> None:
    result = invoke(handler_module, sample("sql.json"))
    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"].startswith("application/json")
    body = json.loads(result["body"])
    assert body["engine"] == "duckdb"
    assert body["columns"] == ["code", "display", "patients"]
    assert body["rows"] and body["rows"][0][2] >= body["rows"][-1][2]


def test_sql_accepts_a_json_body(handler_module) -> None:
    event = sample("sql.json", body=json.dumps({"sql": "SELECT count(*) AS n FROM patient"}))
    event["headers"]["Content-Type"] = "application/json"
    event["multiValueHeaders"]["Content-Type"] = ["application/json"]
    body = json.loads(invoke(handler_module, event)["body"])
    assert body["rows"] == [[4]]


@pytest.mark.parametrize(
    ("sql", "status", "code", "words"),
    [
        ("DROP TABLE observation", 400, "invalid", "read-only"),
        ("SELECT 1; DELETE FROM patient", 400, "invalid", "one SQL statement"),
        ("SELECT * FROM nope", 400, "invalid", "does not exist"),
        ("SELECT FROM WHERE (", 400, "invalid", "syntax"),
        ("", 400, "required", "SQL statement"),
    ],
)
def test_sql_errors_are_operation_outcomes(
    handler_module, sql: str, status: int, code: str, words: str
) -> None:
    result = invoke(handler_module, sample("sql.json", body=sql))
    assert result["statusCode"] == status
    issue = outcome(result)
    assert issue["code"] == code
    assert words in issue["diagnostics"]
    assert "Traceback" not in result["body"]


def test_population_trend_sample_event_renders_html(handler_module) -> None:
    result = invoke(handler_module, sample("trend.json"))
    assert result["statusCode"] == 200
    assert result["headers"]["Content-Type"].startswith("text/html")
    assert result["body"].count("<circle") == 60  # 2015-01 .. 2019-12, one point per month
    assert not re.search(r"https?://|\bsrc=|\bhref=", result["body"]), "self-contained"


def test_mean_trend_as_json(handler_module) -> None:
    event = sample(
        "trend.json",
        queryStringParameters={
            "code": "http://loinc.org|39156-5",
            "measure": "mean",
            "since": "2010-01",
            "until": "2020-12",
            "format": "json",
        },
    )
    body = json.loads(invoke(handler_module, event)["body"])
    assert body["series"][0]["unit"] == "kg/m2"
    assert all(20 < p["value"] < 40 for p in body["series"][0]["points"])


def test_patient_chart_is_a_base64_png(handler_module, lake: Lake, shared_data: Path) -> None:
    from tests.analytics.lake_fixture import synthea_resources

    event = sample("trend-patient.json")
    patient_id = event["queryStringParameters"]["patient"]
    service = build_service(Settings.from_env())
    for resource in synthea_resources(shared_data):
        wanted = resource["id"] == patient_id or (
            resource["resourceType"] == "Observation"
            and resource["subject"]["reference"] == f"Patient/{patient_id}"
            and resource["code"]["coding"][0]["code"] == "4548-4"
        )
        if wanted:
            service.update(resource["resourceType"], resource["id"], resource, None)

    result = invoke(handler_module, event)

    assert result["statusCode"] == 200
    assert result["isBase64Encoded"] is True
    assert result["headers"]["Content-Type"] == "image/png"
    assert result["headers"]["Cache-Control"] == "no-store"
    assert base64.b64decode(result["body"]).startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    ("query", "status", "expression"),
    [
        ({"patient": "nobody-here", "code": "4548-4"}, 404, None),
        ({"code": "4548-4"}, 400, "measure"),
        ({"code": "4548-4", "measure": "median"}, 400, "measure"),
        ({"measure": "mean"}, 400, "code"),
        ({"code": "4548-4", "measure": "mean", "format": "gif"}, 400, "format"),
        ({"code": "4548-4", "measure": "mean", "since": "last year"}, 400, "since"),
        ({"patient": "x", "code": "4548-4", "measure": "mean"}, 400, "measure"),
        ({"patient": "not/an id", "code": "4548-4"}, 400, "patient"),
    ],
)
def test_trend_parameter_errors(
    handler_module, query: dict[str, str], status: int, expression: str | None
) -> None:
    result = invoke(handler_module, sample("trend.json", queryStringParameters=query))
    assert result["statusCode"] == status
    issue = outcome(result)
    if expression:
        assert issue["expression"] == [expression]


def test_unknown_endpoint_and_wrong_method(handler_module) -> None:
    event = sample("trend.json", path="/_analytics/nothing", pathParameters={"proxy": "nothing"})
    assert invoke(handler_module, event)["statusCode"] == 404
    wrong = sample("sql.json", httpMethod="GET")
    result = invoke(handler_module, wrong)
    assert result["statusCode"] == 405
    assert result["headers"]["Allow"] == "POST"


def test_queries_lists_the_shipped_queries(handler_module) -> None:
    event = sample(
        "trend.json",
        path="/_analytics/queries",
        pathParameters={"proxy": "queries"},
        queryStringParameters=None,
    )
    body = json.loads(invoke(handler_module, event)["body"])
    names = {q["name"] for q in body["queries"]}
    assert {"prevalence_by_month", "time_to_first_medication", "lab_value_trajectories"} <= names


def test_audit_record_names_the_endpoint_and_patient_but_no_sql(handler_module, caplog) -> None:
    secret = "SELECT 'Jane Doe 1970-01-01' AS who"
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(
        record.getMessage() + json.dumps(getattr(record, "audit", {}))
    )
    handler_module.logger.addHandler(handler)
    level = handler_module.logger.log_level
    handler_module.logger.setLevel("INFO")  # the local runtime, when started earlier, sets WARNING
    try:
        invoke(handler_module, sample("sql.json", body=secret))
        invoke(
            handler_module, sample("trend.json", queryStringParameters={"patient": "p-1", "code": "4548-4"})
        )
    finally:
        handler_module.logger.removeHandler(handler)
        handler_module.logger.setLevel(level)
    text = "\n".join(records)
    assert "/_analytics/sql" in text and "/_analytics/trend" in text and "p-1" in text
    assert "Jane Doe" not in text and "1970-01-01" not in text


def test_proxy_path_without_prefix_routes_too(handler_module) -> None:
    event = copy.deepcopy(sample("sql.json", body="SELECT 1 AS one"))
    event["path"] = "/sql"  # API Gateway's proxy parameter holds the path below /_analytics
    assert json.loads(invoke(handler_module, event)["body"])["rows"] == [[1]]


def test_the_cloud_handler_imports_neither_duckdb_sqlglot_nor_matplotlib() -> None:
    """In AWS the analytics Lambda carries pyarrow and matplotlib only; a chart-less cold start pays for
    neither matplotlib nor the local engine's packages."""
    import subprocess
    import sys

    code = (
        "import sys, handlers.analytics as h; "
        "from fhirlake.analytics.engine import engine_from_env; engine_from_env(); "
        "print(sorted(m for m in ('duckdb', 'sqlglot', 'matplotlib') if m in sys.modules))"
    )
    env = {
        **os.environ,
        "FHIRLAKE_SQL_ENGINE": "athena",
        "FHIRLAKE_TABLE": "t",
        "FHIRLAKE_BLOB_BUCKET": "b",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def test_a_bug_is_a_500_operation_outcome_without_a_trace(handler_module, monkeypatch) -> None:
    def broken(request):
        raise RuntimeError("secret detail of patient p-1")

    monkeypatch.setattr(handler_module._api, "handle", broken)
    result = invoke(handler_module, sample("sql.json"))
    assert result["statusCode"] == 500
    issue = outcome(result)
    assert issue["code"] == "exception" and "c6af9ac6-7b61-11e6-9a41-93e8deadbeef" in issue["diagnostics"]
    assert "secret" not in result["body"] and "Traceback" not in result["body"]
