"""AWS SDK clients as every fhirlake function creates them (retries, timeouts, connection pool).

Endpoints come from the standard AWS SDK configuration (``AWS_ENDPOINT_URL`` and friends), which is how
the local runtime points the very same code at moto on 127.0.0.1. A module of its own so that functions
that never serve the FHIR API (lake, re-index) do not import it at cold start.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=20,
    max_pool_connections=32,
)


def aws_client(service: str, session: boto3.Session | None = None) -> Any:
    return (session or boto3.Session()).client(service, config=_CLIENT_CONFIG)
