"""Docker-free bundling of the Lambda asset.

The asset is the ``functions/`` folder (the ``fhirlake`` package and the thin ``handlers/``) plus the
runtime dependencies of ``pyproject.toml`` ``[project] dependencies``, installed as manylinux
aarch64 / CPython 3.13 wheels with ``pip install --platform ...``: pip never runs a build, so what
lands in the asset is exactly what PyPI publishes for the Lambda platform, on any host OS/arch.

If this local bundling fails the error propagates and synth stops. :class:`LocalPipBundling` never
returns ``False``, because that would make the CDK fall back to Docker bundling, which is not what
we want (and not available on the machines this is built on).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
PYPROJECT = REPO_ROOT / "pyproject.toml"

LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_13
LAMBDA_ARCHITECTURE = lambda_.Architecture.ARM_64
PIP_PLATFORM = "manylinux2014_aarch64"  # must match LAMBDA_ARCHITECTURE
PIP_PYTHON_VERSION = "3.13"  # must match LAMBDA_RUNTIME

# Left out of the asset: the Lambda Python runtime ships boto3/botocore (and s3transfer). The api
# handler only uses long-standing DynamoDB/S3 calls, so the runtime's copy is enough and the asset is
# ~25 MB smaller (faster cold starts, faster deploys). If code ever needs a boto3 newer than the
# runtime's, remove the name from this set and it is bundled like any other dependency.
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore", "s3transfer"})

# Never part of the asset: build/test leftovers of the source tree.
EXCLUDE = ("**/__pycache__", "**/*.pyc", "*.egg-info", "**/.pytest_cache", "**/.DS_Store")

_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The ``[project] dependencies`` of pyproject.toml, minus what the Lambda runtime provides."""
    with pyproject.open("rb") as handle:
        deps = tomllib.load(handle)["project"]["dependencies"]
    kept = []
    for requirement in deps:
        match = _REQ_NAME.match(requirement)
        if match is None:
            raise ValueError(f"cannot read the package name of dependency {requirement!r} in {pyproject}")
        if _canonical(match.group(1)) not in PROVIDED_BY_RUNTIME:
            kept.append(requirement)
    return kept


def pip_arguments(requirements: Sequence[str], target: str) -> list[str]:
    """``pip install`` arguments that fetch Lambda-platform wheels into ``target`` (no build, no .pyc)."""
    return [
        "install",
        "--target", target,
        "--platform", PIP_PLATFORM,
        "--implementation", "cp",
        "--python-version", PIP_PYTHON_VERSION,
        "--only-binary=:all:",
        "--no-compile",
        "--disable-pip-version-check",
        "--quiet",
        *requirements,
    ]  # fmt: skip


class BundlingError(RuntimeError):
    """Local bundling failed; synth must stop (there is no Docker fallback)."""


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """Copies the sources and ``pip install``s the wheels into the CDK's bundling output directory.

    ``run`` is injectable so that unit tests can check the behaviour without network access.
    """

    def __init__(
        self,
        source_dir: Path,
        requirements: Sequence[str],
        *,
        python: str = sys.executable,
        run: Callable[..., Any] = subprocess.run,
    ) -> None:
        self.source_dir = Path(source_dir)
        self.requirements = list(requirements)
        self.python = python
        self.run = run

    def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
        started = time.monotonic()
        out = Path(output_dir)
        try:
            shutil.copytree(
                self.source_dir,
                out,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache"),
            )
            if self.requirements:
                command = [self.python, "-m", "pip", *pip_arguments(self.requirements, str(out))]
                result = self.run(command, capture_output=True, text=True, env={**os.environ})
                if result.returncode != 0:
                    raise BundlingError(
                        f"pip failed with exit code {result.returncode}: {' '.join(command)}\n"
                        f"{result.stdout}\n{result.stderr}"
                    )
        except BundlingError:
            raise
        except Exception as error:  # copying failed, pip missing, ...
            raise BundlingError(f"local bundling of {self.source_dir} failed: {error!r}") from error
        print(
            f"fhirlake: bundled {self.source_dir.name}/ + {len(self.requirements)} dependencies "
            f"locally in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
        return True  # never False: that would fall back to Docker


def lambda_code(source_dir: Path = FUNCTIONS_DIR, requirements: Sequence[str] | None = None) -> lambda_.Code:
    """The asset of every fhirlake Lambda function (one asset, bundled once, shared by all functions).

    The asset hash covers the source files and the bundling options; the pip command below lists the
    requirements, so changing a dependency in pyproject.toml changes the hash and re-bundles. (The
    ``image``/``command`` pair only documents the Docker equivalent and feeds the hash: the local
    bundler above always handles the bundling or fails.)
    """
    requirements = runtime_requirements() if requirements is None else list(requirements)
    pip = " ".join(["pip", *pip_arguments([f"'{r}'" for r in requirements], "/asset-output")])
    return lambda_.Code.from_asset(
        str(source_dir),
        exclude=list(EXCLUDE),
        bundling=BundlingOptions(
            image=LAMBDA_RUNTIME.bundling_image,
            command=["bash", "-c", f"cp -R /asset-input/. /asset-output && {pip}"],
            local=LocalPipBundling(source_dir, requirements),
        ),
    )
