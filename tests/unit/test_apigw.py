"""API Gateway proxy events <-> the neutral request/response."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from fhirlake.api.apigw import request_from_event, result_from_response
from fhirlake.api.http import Response

EVENTS = Path(__file__).resolve().parents[2] / "events" / "api"


def test_execute_api_base_url_includes_the_stage() -> None:
    event = json.loads((EVENTS / "read.json").read_text())
    request = request_from_event(event)
    assert request.method == "GET" and request.path == "/Patient/example"
    assert request.base_url == "https://abc123.execute-api.eu-central-1.amazonaws.com/prod"


def test_custom_domain_base_path_and_configured_base_url() -> None:
    event = json.loads((EVENTS / "read.json").read_text())
    event["headers"]["Host"] = event["multiValueHeaders"]["Host"] = ["fhir.example.org"]
    event["headers"]["Host"] = "fhir.example.org"
    event["requestContext"]["path"] = "/r4/Patient/example"
    assert request_from_event(event).base_url == "https://fhir.example.org/r4"
    assert (
        request_from_event(event, "https://api.example.org/fhir").base_url == "https://api.example.org/fhir"
    )


def test_multi_value_query_and_base64_body() -> None:
    event = {
        "httpMethod": "POST",
        "path": "/Patient",
        "pathParameters": {"proxy": "Patient"},
        "multiValueQueryStringParameters": {"_tag": ["a", "b"]},
        "headers": {"Host": "h", "Content-Type": "application/fhir+json"},
        "body": base64.b64encode(b'{"resourceType":"Patient"}').decode(),
        "isBase64Encoded": True,
        "requestContext": {"path": "/Patient"},
    }
    request = request_from_event(event)
    assert request.query == [("_tag", "a"), ("_tag", "b")]
    assert request.body == b'{"resourceType":"Patient"}'
    assert request.header("content-type") == "application/fhir+json"


def test_result_shape() -> None:
    result = result_from_response(Response(201, {"ETag": 'W/"1"'}, b"{}"))
    assert result == {"statusCode": 201, "headers": {"ETag": 'W/"1"'}, "body": "{}", "isBase64Encoded": False}
