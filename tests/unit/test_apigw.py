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


def test_binary_bodies_are_base64_encoded_and_text_bodies_are_not() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    result = result_from_response(Response(200, {"Content-Type": "image/png"}, png))
    assert result["isBase64Encoded"] is True and base64.b64decode(result["body"]) == png
    for content_type in ("application/fhir+json", "text/html; charset=utf-8", "application/xml"):
        result = result_from_response(Response(200, {"Content-Type": content_type}, b"{}"))
        assert result["isBase64Encoded"] is False and result["body"] == "{}"
