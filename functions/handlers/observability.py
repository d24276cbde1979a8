"""Powertools for every handler: one service name and metrics namespace, as the CDK sets them
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE); the defaults keep a bare invocation (tests,
`fhirlake invoke`) working."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer


def powertools() -> tuple[Logger, Tracer, Metrics]:
    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "fhirlake")
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "fhirlake")
    return Logger(service=service), Tracer(service=service), Metrics(namespace=namespace)
