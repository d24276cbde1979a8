"""Builds the CDK app; ``app.py`` (the CDK CLI's entry point) and the tests both go through here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Aspects, Environment, Tags
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks
from fhirlake import topology

from infra.config import Config, load_config
from infra.stacks import ApiStack, DataStack

BUNDLING_STACKS = "aws:cdk:bundling-stacks"  # the CDK's own switch: [] = bundle no asset


def build_app(
    context: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    nag: bool = True,
    functions: tuple[topology.FunctionSpec, ...] | None = None,
    **app_options: Any,
) -> App:
    """Create the App with both stacks and the cdk-nag packs applied (not yet synthesized).

    ``context`` adds to what the CLI passes (tests pass cdk.json's context here); ``environ`` is where
    CDK_DEFAULT_ACCOUNT/CDK_DEFAULT_REGION are read (``os.environ`` by default); ``functions`` replaces
    ``topology.FUNCTIONS`` (tests deploy functions before the topology lists them).
    """
    app = App(context=dict(context or {}), **app_options)
    config = load_config(app.node.try_get_context, os.environ if environ is None else environ)
    if not config.bundling_enabled:
        # -c bundling=skip: stage the functions/ folder as is, run no bundler (fast, offline synth for
        # tests and reviews; the resulting assembly is not deployable).
        app.node.set_context(BUNDLING_STACKS, [])
    add_stacks(app, config, functions)
    if nag:
        Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
        Aspects.of(app).add(HIPAASecurityChecks(verbose=True))
    return app


def add_stacks(
    app: App, config: Config, functions: tuple[topology.FunctionSpec, ...] | None = None
) -> tuple[DataStack, ApiStack]:
    env = Environment(account=config.account, region=config.region)
    data = DataStack(app, config.stack_name("data"), config=config, env=env)
    api = ApiStack(app, config.stack_name("api"), config=config, data=data, specs=functions, env=env)
    for stack in (data, api):
        Tags.of(stack).add("project", "fhirlake")
        Tags.of(stack).add("fhirlake:stage", config.stage)
    return data, api
