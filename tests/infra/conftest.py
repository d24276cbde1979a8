"""Fixtures for the CDK tests: synthesize the real app (as ``cdk synth`` would) without bundling.

Speed: the jsii runtime starts once per process (~1-3 s, ~7 s the very first time it unpacks), and
each synth of both stacks with the cdk-nag packs takes ~2-4 s. The CDK's built-in CloudFormation
template validation would add several seconds per synth, so ``App(builtin_cloud_formation_validation=
False)`` (same as ``CDK_VALIDATION=false``) turns it off here; ``make synth`` keeps it. Each test module
synthesizes each app variant once (module-scoped fixtures); the default deployment is synthesized once
per process (``default_synth``) and shared by the modules that check it.

The stacks are built with :data:`DEPLOYED_FUNCTIONS` (``topology.FUNCTIONS``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "functions"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_VALIDATION", "false")  # before the jsii runtime (node) starts

CDK_JSON = REPO / "cdk.json"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
TARGET = {"CDK_DEFAULT_ACCOUNT": ACCOUNT, "CDK_DEFAULT_REGION": REGION}


def cdk_json_context() -> dict[str, Any]:
    """The context the CDK CLI would pass: cdk.json's (options + feature flags)."""
    return dict(json.loads(CDK_JSON.read_text())["context"])


@dataclass
class Synth:
    app: Any
    data: Any  # DataStack
    api: Any  # ApiStack

    def template(self, stack: Any) -> Any:
        from aws_cdk.assertions import Template

        return Template.from_stack(stack)


def deployed_functions() -> tuple[Any, ...]:
    from fhirlake import topology

    return topology.FUNCTIONS


DEPLOYED_FUNCTIONS = deployed_functions()


def synthesize(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = TARGET,
    functions: tuple[Any, ...] = DEPLOYED_FUNCTIONS,
) -> Synth:
    from infra.application import build_app
    from infra.stacks import ApiStack, DataStack

    context = {**cdk_json_context(), "bundling": "skip", **(overrides or {})}
    app = build_app(context, environ, builtin_cloud_formation_validation=False, functions=functions)
    (data,) = (child for child in app.node.children if isinstance(child, DataStack))
    (api,) = (child for child in app.node.children if isinstance(child, ApiStack))
    app.synth()  # cdk-nag errors would already fail here (they are synth-time validation errors)
    return Synth(app=app, data=data, api=api)


@pytest.fixture(scope="module")
def synth_factory() -> Callable[..., Synth]:
    return synthesize


@pytest.fixture(scope="session")
def default_synth() -> Synth:
    """``cdk synth`` with cdk.json's defaults (and DEPLOYED_FUNCTIONS)."""
    return synthesize()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bundling: runs the real local Lambda bundling (pip downloads wheels from PyPI)"
    )
