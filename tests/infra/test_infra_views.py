"""The deployer's own ViewDefinitions (context ``viewsDir``, issue 6): checked at synth, shipped with the
functions that materialize views, and only with them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fhirlake import topology

from infra import bundling
from infra.config import ConfigError, load_config

from .conftest import TARGET, Synth, synthesize
from .test_infra_analytics import function_id

pytestmark = pytest.mark.infra  # one worker runs every infra module (tests/conftest.py)

VIEWS_ENV = "FHIRLAKE_VIEWS_DIR"
VIEW_ROLES = {topology.LAKE_FUNCTION.role, topology.LAKE_MAINTENANCE_FUNCTION.role}


def view(name: Any = "allergies", resource: str = "AllergyIntolerance") -> dict[str, Any]:
    return {
        "resourceType": "ViewDefinition",
        "name": name,
        "status": "active",
        "resource": resource,
        "select": [{"column": [{"name": "id", "path": "id", "type": "id"}]}],
    }


def write_views(folder: Path, files: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, content in files.items():
        text = content if isinstance(content, str) else json.dumps(content)
        (folder / file_name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def views_folder(tmp_path_factory) -> Path:
    return write_views(tmp_path_factory.mktemp("views"), {"allergies.json": view()})


@pytest.fixture(scope="module")
def views_synth(views_folder) -> Synth:
    return synthesize({"viewsDir": str(views_folder)})  # cdk-nag errors would already fail here


@pytest.fixture(scope="module")
def api_with_views(views_synth) -> dict[str, Any]:
    return views_synth.template(views_synth.api).to_json()


@pytest.fixture(scope="module")
def api_default(default_synth) -> dict[str, Any]:
    return default_synth.template(default_synth.api).to_json()


def function(template: dict[str, Any], spec: topology.FunctionSpec) -> dict[str, Any]:
    return template["Resources"][function_id(template, spec)]["Properties"]


def views_env_by_role(template: dict[str, Any]) -> dict[str, str | None]:
    return {
        spec.role: function(template, spec)["Environment"]["Variables"].get(VIEWS_ENV)
        for spec in topology.FUNCTIONS
    }


# ---------------------------------------------------------------------------------------------------
# Synth: environment and assets
# ---------------------------------------------------------------------------------------------------
def test_views_dir_points_the_lake_functions_at_the_shipped_folder(api_with_views):
    env = views_env_by_role(api_with_views)
    assert {role for role, value in env.items() if value is not None} == VIEW_ROLES
    assert {env[role] for role in VIEW_ROLES} == {"/var/task/fhirlake_views"}


def test_without_views_dir_no_function_gets_the_variable(api_default):
    assert set(views_env_by_role(api_default).values()) == {None}


def test_views_go_into_one_lake_asset_and_leave_the_other_assets_unchanged(api_with_views, api_default):
    lake, maintenance = topology.LAKE_FUNCTION, topology.LAKE_MAINTENANCE_FUNCTION
    assert function(api_with_views, lake)["Code"] == function(api_with_views, maintenance)["Code"]
    assert function(api_with_views, lake)["Code"] != function(api_default, lake)["Code"]
    for spec in topology.FUNCTIONS:
        if spec.role not in VIEW_ROLES:  # api/import/analytics...: same asset as without viewsDir
            assert function(api_with_views, spec)["Code"] == function(api_default, spec)["Code"], spec.role


def test_views_synth_is_cdk_nag_clean(views_synth):
    from aws_cdk.assertions import Annotations, Match

    nag = Match.string_like_regexp(r"(AwsSolutions|HIPAA\.Security)-")
    for stack in (views_synth.data, views_synth.api):
        assert Annotations.from_stack(stack).find_error("*", nag) == []
        assert Annotations.from_stack(stack).find_warning("*", nag) == []


# ---------------------------------------------------------------------------------------------------
# Synth-time checks of the folder
# ---------------------------------------------------------------------------------------------------
def test_valid_folder_is_accepted_and_relative_paths_start_at_the_app(views_folder):
    assert load_config({"viewsDir": str(views_folder)}, TARGET).views_dir == views_folder.resolve()
    assert load_config({}, TARGET).views_dir is None
    assert load_config({"viewsDir": ""}, TARGET).views_dir is None
    shipped = "functions/fhirlake/data/views"  # relative to the app dir, like searchConfig
    assert load_config({"viewsDir": shipped}, TARGET).views_dir.name == "views"


def test_a_file_may_replace_a_shipped_view(tmp_path):
    folder = write_views(tmp_path / "v", {"procedures.json": view("procedures", "Procedure")})
    assert load_config({"viewsDir": str(folder)}, TARGET).views_dir == folder.resolve()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"broken.json": "{not json"}, r"broken\.json: Expecting property name"),
        ({"bad.json": view(resource="NoSuchType")}, r"bad\.json: .*NoSuchType"),
        ({"nameless.json": view(name=None)}, r"nameless\.json: the ViewDefinition has no name"),
        (
            {"a.json": view(), "b.json": view()},
            r"b\.json: view 'allergies' is already defined by a\.json",
        ),
        ({"patient.json": view("patient", "Patient")}, r"patient\.json: view 'patient' would take the name"),
        (
            {"obs.json": view("observation_history", "Observation")},
            r"obs\.json: view 'observation_history' would take the name",
        ),
        ({"notes.txt": "not a view"}, r"no \*\.json ViewDefinition in "),
    ],
    ids=["bad-json", "invalid-view", "no-name", "duplicate", "resource-table", "history-table", "empty"],
)
def test_bad_views_fail_the_synth_naming_the_file(tmp_path, files, message):
    from infra.application import build_app

    folder = write_views(tmp_path / "views", files)
    with pytest.raises(ConfigError, match=rf"viewsDir='{re.escape(str(folder))}': {message}"):
        build_app({"viewsDir": str(folder), "bundling": "skip"}, TARGET, nag=False)


def test_missing_folder_fails_the_synth(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        load_config({"viewsDir": str(tmp_path / "nope")}, TARGET)


# ---------------------------------------------------------------------------------------------------
# Bundling: the folder lands in the asset
# ---------------------------------------------------------------------------------------------------
def test_local_bundling_copies_the_extra_folder_into_the_asset(tmp_path):
    source = tmp_path / "src"
    (source / "handlers").mkdir(parents=True)
    (source / "handlers" / "__init__.py").write_text("")
    views_folder = write_views(tmp_path / "views", {"allergies.json": view()})
    (views_folder / "__pycache__").mkdir()
    ran = []
    bundler = bundling.LocalPipBundling(
        source,
        ["orjson==3.13.0"],
        extra_dirs={"fhirlake_views": views_folder},
        run=lambda command, **_: ran.append(command) or SimpleNamespace(returncode=0, stdout="", stderr=""),
    )
    out = tmp_path / "out"
    out.mkdir()
    assert bundler.try_bundle(str(out)) is True
    assert json.loads((out / "fhirlake_views" / "allergies.json").read_text())["name"] == "allergies"
    assert not (out / "fhirlake_views" / "__pycache__").exists()
    assert (out / "handlers" / "__init__.py").exists() and len(ran) == 1


def test_extra_folder_may_not_overwrite_the_sources(tmp_path, views_folder):
    source = tmp_path / "src"
    (source / "fhirlake_views").mkdir(parents=True)
    bundler = bundling.LocalPipBundling(source, [], extra_dirs={"fhirlake_views": views_folder})
    with pytest.raises(bundling.BundlingError, match="File exists"):
        bundler.try_bundle(str(tmp_path / "out"))


def test_editing_a_view_changes_the_asset_hash(tmp_path):
    """A changed view must re-bundle and re-deploy the lake functions (the folder is outside functions/)."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_

    folder = write_views(tmp_path / "views", {"allergies.json": view()})
    source = tmp_path / "src"
    source.mkdir()
    (source / "handler.py").write_text("")
    app = App(outdir=str(tmp_path / "cdk.out"), builtin_cloud_formation_validation=False)
    app.node.set_context("aws:cdk:bundling-stacks", [])  # like -c bundling=skip
    stack = Stack(app, "Probe")

    def asset_hash(construct_id: str) -> str:
        code = bundling.lambda_code(source, [], {"fhirlake_views": folder})
        fn = lambda_.Function(
            stack, construct_id, runtime=bundling.LAMBDA_RUNTIME, handler="handler.x", code=code
        )
        return stack.resolve(fn.node.default_child.code)["s3Key"]

    first, same = asset_hash("A"), asset_hash("B")
    write_views(folder, {"allergies.json": view(resource="Patient")})
    assert first == same != asset_hash("C")


def test_cdk_stages_the_extra_folder_through_the_local_bundler(tmp_path, views_folder):
    """The real CDK asset staging, offline (no requirements, so no pip): the views are in the asset."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_

    source = tmp_path / "src"
    source.mkdir()
    (source / "handler.py").write_text("")
    app = App(outdir=str(tmp_path / "cdk.out"), builtin_cloud_formation_validation=False)
    code = bundling.lambda_code(source, [], {"fhirlake_views": views_folder})
    lambda_.Function(
        Stack(app, "Probe"), "Fn", runtime=bundling.LAMBDA_RUNTIME, handler="handler.x", code=code
    )
    (asset_dir,) = [p for p in Path(app.synth().directory).iterdir() if p.name.startswith("asset.")]
    assert (asset_dir / "fhirlake_views" / "allergies.json").is_file()
    assert (asset_dir / "handler.py").is_file()
