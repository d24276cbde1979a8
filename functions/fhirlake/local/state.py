"""Where a running ``fhirlake serve`` is, for the commands that work on it (import, sql, trend, lake,
reindex).

``serve`` writes its endpoints and the environment it gives the handlers to a state file; a command calls
:func:`use_local_store` to give its own process that same environment, so the core code it runs (the
import client, the SQL engine, the lake, the re-index job) reaches the local store exactly as the
handlers do, with no local-only code path.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from fhirlake import topology

STATE_FILE = Path(os.environ.get("FHIRLAKE_STATE", ".fhirlake/local.json"))
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


class NoLocalStore(RuntimeError):
    """No running store to talk to."""


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))


def read_state(path: Path = STATE_FILE) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="AWS endpoint of the local store (default: from --state)")
    parser.add_argument("--state", type=Path, default=STATE_FILE, help="state file of `fhirlake serve`")


def default_environment() -> dict[str, str]:
    """The resource names the local runtime provisions (``fhirlake.local.provision``), for a store whose
    state file is not at hand (``--endpoint`` alone)."""
    catalog = topology.ANALYTICS_CATALOG
    return {
        topology.RESOURCE_TABLE.env_var: topology.RESOURCE_TABLE.local_name,
        **{spec.env_var: spec.local_name for spec in topology.BUCKETS},
        catalog.env_var: catalog.local_name,
        catalog.workgroup_env_var: catalog.local_workgroup,
        topology.ENV_SQL_ENGINE: "duckdb",
    }


def use_local_store(state_path: Path = STATE_FILE, endpoint: str | None = None) -> dict[str, Any]:
    """Point this process at the running local store (endpoint, credentials, resource names) and return
    its state; raises :class:`NoLocalStore` when there is none."""
    state = read_state(state_path) or {}
    endpoint = endpoint or state.get("aws_endpoint")
    if not endpoint:
        raise NoLocalStore(
            f"No running fhirlake found ({state_path} is missing): start `make run`, or pass --endpoint"
        )
    os.environ.update(
        {
            **LOCAL_CREDENTIALS,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_REGION": LOCAL_REGION,
            "AWS_ENDPOINT_URL": endpoint,
            **(state.get("environment") or default_environment()),
        }
    )
    return state
