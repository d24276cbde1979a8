"""Settings of one deployment, read from the environment the CDK (or the local runtime) sets."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fhirlake import topology

DEFAULT_VALIDATION_LEVEL = "strict"  # when the environment names none (API writes and imports alike)
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    table_name: str
    blob_bucket: str
    tenant: str = "default"
    validation_level: str = DEFAULT_VALIDATION_LEVEL
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Public base URL of the FHIR API; when unset it is derived from each request (Host + stage).
    base_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """The settings every handler shares; subclasses add their own on top (``ImportSettings``)."""
        env = dict(os.environ if env is None else env)
        return Settings(
            table_name=env[topology.RESOURCE_TABLE.env_var],
            blob_bucket=env[topology.BLOB_BUCKET.env_var],
            tenant=env.get(topology.ENV_TENANT, "default"),
            validation_level=env.get(topology.ENV_VALIDATION_LEVEL, DEFAULT_VALIDATION_LEVEL),
            max_body_bytes=int(env.get(topology.ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES)),
            base_url=env.get(topology.ENV_BASE_URL) or None,
        )
