"""Local (Docker-free) bundling of the Lambda asset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from infra import bundling

pytestmark = pytest.mark.infra  # one worker runs every infra module (tests/conftest.py)

ELF_MACHINE_AARCH64 = 183


def test_runtime_requirements_come_from_pyproject_without_boto3():
    requirements = bundling.runtime_requirements()
    names = {r.split("=")[0].split(">")[0].lower() for r in requirements}
    assert "aws-lambda-powertools" in names and "orjson" in names and "fhir.resources" in names
    assert "boto3" not in names


def test_pip_arguments_target_lambda_platform():
    args = bundling.pip_arguments(["orjson==3.13.0"], "/out")
    joined = " ".join(args)
    assert "--platform manylinux2014_aarch64" in joined
    assert "--implementation cp" in joined
    assert "--python-version 3.13" in joined
    assert "--only-binary=:all:" in args and "--no-compile" in args
    assert args[-1] == "orjson==3.13.0"


def _sources(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "__init__.py").write_text("")
    (source / "pkg" / "__pycache__" / "x.cpython-313.pyc").write_bytes(b"")
    (source / "pkg.egg-info").mkdir()
    return source


def test_local_bundling_copies_sources_and_runs_pip(tmp_path):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    bundler = bundling.LocalPipBundling(_sources(tmp_path), ["orjson==3.13.0"], run=fake_run)
    out = tmp_path / "out"
    out.mkdir()
    assert bundler.try_bundle(str(out)) is True
    assert (out / "pkg" / "__init__.py").exists()
    assert not (out / "pkg" / "__pycache__").exists() and not (out / "pkg.egg-info").exists()
    (command,) = calls
    assert command[1:4] == ["-m", "pip", "install"] and str(out) in command


def test_local_bundling_fails_loudly_instead_of_falling_back_to_docker(tmp_path):
    def failing_run(command, **kwargs):
        return SimpleNamespace(returncode=1, stdout="", stderr="No matching distribution found")

    bundler = bundling.LocalPipBundling(_sources(tmp_path), ["nope==0"], run=failing_run)
    with pytest.raises(bundling.BundlingError, match="No matching distribution"):
        bundler.try_bundle(str(tmp_path / "out"))


def test_cdk_calls_the_local_bundler_through_jsii(tmp_path):
    """The real CDK asset staging, offline: no requirements, so no pip; the sources are staged."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_

    app = App(outdir=str(tmp_path / "cdk.out"), builtin_cloud_formation_validation=False)
    stack = Stack(app, "BundlingProbe")
    source = _sources(tmp_path)
    lambda_.Function(
        stack,
        "Fn",
        runtime=bundling.LAMBDA_RUNTIME,
        handler="pkg.handler",
        code=bundling.lambda_code(source, requirements=[]),
    )
    assembly = app.synth()
    (asset_dir,) = [p for p in Path(assembly.directory).iterdir() if p.name.startswith("asset.")]
    assert (asset_dir / "pkg" / "__init__.py").exists()
    assert not (asset_dir / "pkg" / "__pycache__").exists()


@pytest.mark.bundling
@pytest.mark.skipif(
    os.environ.get("FHIRLAKE_TEST_BUNDLING") != "1",
    reason="downloads wheels from PyPI; run with FHIRLAKE_TEST_BUNDLING=1 (make test-bundling)",
)
def test_real_bundling_produces_arm64_lambda_asset(tmp_path):
    """The asset `make deploy` uploads: functions/ + manylinux aarch64 wheels (~5-10 s with network)."""
    out = tmp_path / "asset"
    out.mkdir()
    bundler = bundling.LocalPipBundling(bundling.FUNCTIONS_DIR, bundling.runtime_requirements())
    assert bundler.try_bundle(str(out)) is True
    assert (out / "handlers").is_dir() and (out / "fhirlake" / "topology.py").exists()
    assert not (out / "boto3").exists()
    extensions = list(out.glob("orjson/*.so")) + list(out.glob("pydantic_core/*.so"))
    assert len(extensions) == 2
    for extension in extensions:
        header = extension.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64
    # pure-Python parts import on this host from the bundle alone (platform wheels aside)
    check = "import fhirlake.topology, handlers; print('ok')"
    result = subprocess.run(
        [sys.executable, "-S", "-c", check],
        cwd=out,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(out)},
    )
    assert result.stdout.strip() == "ok", result.stderr


# ---------------------------------------------------------------------------------------------------
# Per-function dependency extras (FunctionSpec.extras)
# ---------------------------------------------------------------------------------------------------
PYPROJECT = """\
[project]
name = "probe"
dependencies = ["orjson==3.13.0", "boto3==1.40.0"]

[project.optional-dependencies]
lake = ["pyarrow==26.0.1"]
charts = ["matplotlib==3.11.2", "orjson==3.13.0"]
dev = ["pytest==9.0.0"]
"""


@pytest.fixture
def pyproject(tmp_path) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT)
    return path


def test_extras_add_their_groups_to_the_core_requirements(pyproject):
    assert bundling.runtime_requirements(pyproject) == ["orjson==3.13.0"]
    assert bundling.runtime_requirements(pyproject, ("lake",)) == ["orjson==3.13.0", "pyarrow==26.0.1"]
    # groups in a stable order, each requirement once, boto3 still left to the runtime
    both = ["orjson==3.13.0", "matplotlib==3.11.2", "pyarrow==26.0.1"]
    assert bundling.runtime_requirements(pyproject, ("lake", "charts")) == both
    assert bundling.runtime_requirements(pyproject, ("charts", "lake")) == both


def test_unknown_extra_fails_instead_of_bundling_less(pyproject):
    with pytest.raises(ValueError, match=r"unknown optional-dependency group\(s\) \['plots'\]"):
        bundling.runtime_requirements(pyproject, ("lake", "plots"))


def test_the_real_extras_of_the_analytics_functions_exist():
    from fhirlake import topology

    core = bundling.runtime_requirements()
    for spec in topology.ANALYTICS_FUNCTIONS:
        requirements = bundling.runtime_requirements(extras=spec.extras)
        assert requirements[: len(core)] == core and len(requirements) > len(core), spec.role
    lake = " ".join(bundling.runtime_requirements(extras=topology.LAKE_FUNCTION.extras))
    assert "pyarrow==" in lake
    # analytics: charts only; Athena answers its SQL, and pyarrow + matplotlib would pass 250 MB unzipped
    analytics = " ".join(bundling.runtime_requirements(extras=topology.ANALYTICS_FUNCTION.extras))
    assert "matplotlib==" in analytics and "pyarrow==" not in analytics
    assert not {"pyarrow", "matplotlib", "duckdb", "sqlglot"} & {r.split("=")[0] for r in core}


def test_functions_with_the_same_extras_share_one_asset(pyproject, tmp_path):
    made = []

    def make_code(source_dir, requirements, extra_dirs):
        made.append(tuple(requirements))
        return object()

    assets = bundling.LambdaAssets(tmp_path, pyproject, make_code=make_code)
    core, core_again = assets.code(()), assets.code(())
    lake, charts_lake, lake_charts = (
        assets.code(("lake",)),
        assets.code(("charts", "lake")),
        assets.code(("lake", "charts")),
    )
    assert core is core_again and charts_lake is lake_charts
    assert len({id(core), id(lake), id(charts_lake)}) == 3
    assert made == [
        ("orjson==3.13.0",),
        ("orjson==3.13.0", "pyarrow==26.0.1"),
        ("orjson==3.13.0", "matplotlib==3.11.2", "pyarrow==26.0.1"),
    ]


def test_asset_above_the_lambda_size_limit_fails_the_bundling(tmp_path):
    def pip_installing_a_huge_wheel(command, **kwargs):
        target = Path(command[command.index("--target") + 1]) / "hugelib"
        target.mkdir()
        with (target / "libhuge.so").open("wb") as handle:  # sparse: no disk space used
            handle.truncate(bundling.LAMBDA_UNZIPPED_LIMIT_BYTES + 1)  # one byte over
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    bundler = bundling.LocalPipBundling(_sources(tmp_path), ["huge==1"], run=pip_installing_a_huge_wheel)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        bundling.BundlingError, match=r"above Lambda's limit of 262\.1 MB; largest: hugelib 262\.1"
    ):
        bundler.try_bundle(str(out))
