"""The api Lambda handler on the sample events, against moto in-process."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from types import ModuleType

import pytest
from fhirlake.local.lambda_context import LocalLambdaContext

EVENTS = Path(__file__).resolve().parents[2] / "events" / "api"
HANDLER_FILE = Path(__file__).resolve().parents[2] / "functions" / "handlers" / "api.py"


@pytest.fixture
def api_module(aws, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh instance of the handler module (a cold start), apart from the one the HTTP tests serve."""
    for name, value in aws.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")  # as deployed (the local runtime quiets it)
    spec = importlib.util.spec_from_file_location("cold_api_handler", HANDLER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def handler(api_module: ModuleType):
    return api_module.handler


def invoke(handler, name: str) -> dict:
    event = json.loads((EVENTS / f"{name}.json").read_text())
    return handler(event, LocalLambdaContext(function_name="fhirlake-api"))


def test_every_sample_event_gets_a_fhir_answer(handler) -> None:
    expected = {
        "metadata": 200,
        "update": 201,
        "update-if-match": 200,
        "read": 200,
        "vread": 200,
        "history-instance": 200,
        "history-type": 200,
        "history-system": 200,
        "validate": 200,
        "create": 201,
        "delete": 204,
        "error-unknown-type": 404,
    }
    for name, status in expected.items():
        result = invoke(handler, name)
        assert result["statusCode"] == status, (name, result["body"][:500])
        if result["body"]:
            assert json.loads(result["body"])["resourceType"]


def logged(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """Every log record with its structured extras, as the JSON formatter would write them."""
    return [{"message": r.getMessage(), **r.__dict__} for r in caplog.records]


def test_a_bug_becomes_a_500_outcome_without_phi_in_logs(handler, api_module, monkeypatch, caplog) -> None:
    family = "Chal" + "mers"

    def explode(request):
        raise ValueError(f"Peter {family}")  # an exception message carrying data

    monkeypatch.setattr(api_module._api, "handle", explode)
    result = invoke(handler, "update")
    assert result["statusCode"] == 500
    assert json.loads(result["body"])["issue"][0]["code"] == "exception"
    records = logged(caplog)
    error = next(r for r in records if r["message"] == "unhandled error")
    assert error["error_type"] == "ValueError"
    assert "Chalmers" not in str(records)  # neither the body nor the exception message reached the log


def test_audit_record_per_request(handler, caplog) -> None:
    caplog.set_level(logging.INFO, logger="fhirlake")  # the level a deployment runs at
    invoke(handler, "read")
    audit = next(r["audit"] for r in logged(caplog) if r["message"] == "audit")
    assert audit["principal"] == "arn:aws:iam::123456789012:role/fhir-client"
    assert audit["resource_type"] == "Patient" and audit["resource_id"] == "example"
    assert audit["status"] == 404
