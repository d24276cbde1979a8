"""Local (Docker-free) bundling of the Lambda asset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from infra import bundling

# One xdist worker for all infra tests (`--dist loadgroup`): one jsii runtime, each synth once.
pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

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
