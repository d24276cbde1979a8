"""Docker-free bundling of the Lambda assets.

An asset is the ``functions/`` folder (the ``fhirlake`` package and the thin ``handlers/``) plus the
runtime dependencies of ``pyproject.toml`` ``[project] dependencies`` and the optional-dependency
groups the function's ``FunctionSpec.extras`` names (:class:`LambdaAssets`: one asset per distinct
set), installed as manylinux aarch64 / CPython 3.13 wheels with ``pip install --platform ...``: pip
never runs a build, so what lands in the asset is exactly what PyPI publishes for the Lambda platform,
on any host OS/arch. An asset above Lambda's unzipped size limit fails the bundling (not the deploy).
An asset may also carry extra folders from outside ``functions/`` (``extra_dirs``: the deployer's
ViewDefinitions), copied in as ``<asset>/<name>/``; with ``-c bundling=skip`` nothing is bundled and the
staged asset is ``functions/`` alone, as for every asset (that assembly is for review, not deployment).

If this local bundling fails the error propagates and synth stops. :class:`LocalPipBundling` never
returns ``False``, because that would make the CDK fall back to Docker bundling, which is not what
we want (and not available on the machines this is built on).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerVolume, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
PYPROJECT = REPO_ROOT / "pyproject.toml"

LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_13
LAMBDA_ARCHITECTURE = lambda_.Architecture.ARM_64
PIP_PLATFORM = "manylinux2014_aarch64"  # must match LAMBDA_ARCHITECTURE
PIP_PYTHON_VERSION = "3.13"  # must match LAMBDA_RUNTIME
# Where Lambda unpacks a function's code asset (LAMBDA_TASK_ROOT).
LAMBDA_TASK_ROOT = "/var/task"

# Left out of the asset: the Lambda Python runtime ships boto3/botocore (and s3transfer). The api
# handler only uses long-standing DynamoDB/S3 calls, so the runtime's copy is enough and the asset is
# ~25 MB smaller (faster cold starts, faster deploys). If code ever needs a boto3 newer than the
# runtime's, remove the name from this set and it is bundled like any other dependency.
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore", "s3transfer"})

# Lambda rejects a function whose unzipped code is larger than this (250 MB); checked after bundling so
# that synth fails with the largest contributors listed, instead of the deployment failing later.
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000

# Never part of the asset: build/test leftovers of the source tree.
EXCLUDE = ("**/__pycache__", "**/*.pyc", "*.egg-info", "**/.pytest_cache", "**/.DS_Store")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".DS_Store")

_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(pyproject: Path = PYPROJECT, extras: Sequence[str] = ()) -> list[str]:
    """``[project] dependencies`` plus the named ``[project.optional-dependencies]`` groups of
    pyproject.toml, in that order, without duplicates and without what the Lambda runtime provides.
    """
    with pyproject.open("rb") as handle:
        project = tomllib.load(handle)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise ValueError(f"unknown optional-dependency group(s) {unknown} (not in {pyproject})")
    deps = [*project["dependencies"], *(r for extra in sorted(set(extras)) for r in optional[extra])]
    kept = []
    for requirement in dict.fromkeys(deps):
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

    ``extra_dirs`` maps a folder name in the asset to a folder copied there (it must not exist in the
    sources). ``run`` is injectable so that unit tests can check the behaviour without network access.
    """

    def __init__(
        self,
        source_dir: Path,
        requirements: Sequence[str],
        *,
        extra_dirs: Mapping[str, Path] | None = None,
        python: str = sys.executable,
        run: Callable[..., Any] = subprocess.run,
    ) -> None:
        self.source_dir = Path(source_dir)
        self.requirements = list(requirements)
        self.extra_dirs = {name: Path(folder) for name, folder in (extra_dirs or {}).items()}
        self.python = python
        self.run = run

    def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
        started = time.monotonic()
        out = Path(output_dir)
        try:
            shutil.copytree(self.source_dir, out, dirs_exist_ok=True, ignore=_IGNORE)
            for name, folder in self.extra_dirs.items():
                shutil.copytree(folder, out / name, ignore=_IGNORE)  # fails if the sources have <name>/
            if self.requirements:
                command = [self.python, "-m", "pip", *pip_arguments(self.requirements, str(out))]
                result = self.run(command, capture_output=True, text=True, env={**os.environ})
                if result.returncode != 0:
                    raise BundlingError(
                        f"pip failed with exit code {result.returncode}: {' '.join(command)}\n"
                        f"{result.stdout}\n{result.stderr}"
                    )
            size = check_unzipped_size(out, self.requirements)
        except BundlingError:
            raise
        except Exception as error:  # copying failed, pip missing, ...
            raise BundlingError(f"local bundling of {self.source_dir} failed: {error!r}") from error
        print(
            f"fhirlake: bundled {self.source_dir.name}/ + {len(self.requirements)} dependencies "
            f"locally in {time.monotonic() - started:.1f}s ({size / 1e6:.1f} MB unzipped)",
            file=sys.stderr,
        )
        return True  # never False: that would fall back to Docker


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file() and not item.is_symlink())


def check_unzipped_size(asset_dir: Path, requirements: Sequence[str]) -> int:
    """The asset's unzipped size in bytes; :class:`BundlingError` above Lambda's limit."""
    sizes = {entry.name: _tree_bytes(entry) for entry in asset_dir.iterdir()}
    total = sum(sizes.values())
    if total > LAMBDA_UNZIPPED_LIMIT_BYTES:
        largest = sorted(sizes.items(), key=lambda item: -item[1])[:6]
        raise BundlingError(
            f"the Lambda asset with {', '.join(requirements) or 'no dependencies'} is {total / 1e6:.1f} MB "
            f"unzipped, above Lambda's limit of {LAMBDA_UNZIPPED_LIMIT_BYTES / 1e6:.1f} MB; largest: "
            + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in largest)
            + ". Bundle fewer optional-dependency groups with this function (FunctionSpec.extras)."
        )
    return total


def tree_digest(folder: Path) -> str:
    """SHA-256 over the relative paths and contents of ``folder``'s files (what the asset copies)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if _IGNORE(str(folder), list(relative.parts)):  # left out of the copy, so out of the digest
            continue
        digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def lambda_code(
    source_dir: Path = FUNCTIONS_DIR,
    requirements: Sequence[str] | None = None,
    extra_dirs: Mapping[str, Path] | None = None,
) -> lambda_.Code:
    """One Lambda asset: ``source_dir`` + ``requirements`` (default: the core runtime requirements) +
    each folder of ``extra_dirs`` as ``<asset>/<name>/``.

    The asset hash covers the source files and the bundling options; the pip command below lists the
    requirements, so changing a dependency in pyproject.toml changes the hash and re-bundles, and the
    environment carries a digest of each extra folder, so changing one of its files does too. (The
    ``image``/``command``/``volumes`` only document the Docker equivalent and feed the hash: the local
    bundler above always handles the bundling or fails.)
    """
    requirements = runtime_requirements() if requirements is None else list(requirements)
    extra_dirs = dict(sorted((extra_dirs or {}).items()))
    pip = " ".join(["pip", *pip_arguments([f"'{r}'" for r in requirements], "/asset-output")])
    copies = "".join(f" && cp -R /asset-extra/{name} /asset-output/{name}" for name in extra_dirs)
    return lambda_.Code.from_asset(
        str(source_dir),
        exclude=list(EXCLUDE),
        bundling=BundlingOptions(
            image=LAMBDA_RUNTIME.bundling_image,
            command=["bash", "-c", f"cp -R /asset-input/. /asset-output{copies} && {pip}"],
            volumes=[
                DockerVolume(host_path=str(folder), container_path=f"/asset-extra/{name}")
                for name, folder in extra_dirs.items()
            ],
            environment={
                f"FHIRLAKE_ASSET_EXTRA_{name.upper()}_SHA256": tree_digest(folder)
                for name, folder in extra_dirs.items()
            },
            local=LocalPipBundling(source_dir, requirements, extra_dirs=extra_dirs),
        ),
    )


class LambdaAssets:
    """The code asset of each function: one asset per distinct requirement set, bundled once.

    A function gets the core dependencies plus the optional-dependency groups its
    ``FunctionSpec.extras`` names, so the api and import functions keep the small core asset while the
    analytics functions carry pyarrow/matplotlib. A function may add extra folders (``extra_dirs``: the
    lake functions get the deployer's ViewDefinitions), so that no other asset grows. Functions asking
    for the same set and the same folders share one asset (one bundling run, one upload).
    """

    def __init__(
        self,
        source_dir: Path = FUNCTIONS_DIR,
        pyproject: Path = PYPROJECT,
        make_code: Callable[[Path, Sequence[str], Mapping[str, Path]], lambda_.Code] = lambda_code,
    ) -> None:
        self.source_dir = source_dir
        self.pyproject = pyproject
        self._make_code = make_code
        self._codes: dict[tuple[tuple[str, ...], tuple[tuple[str, Path], ...]], lambda_.Code] = {}

    def requirements(self, extras: Sequence[str] = ()) -> tuple[str, ...]:
        return tuple(runtime_requirements(self.pyproject, extras))

    def code(self, extras: Sequence[str] = (), extra_dirs: Mapping[str, Path] | None = None) -> lambda_.Code:
        requirements = self.requirements(extras)
        folders = tuple(sorted((name, Path(folder)) for name, folder in (extra_dirs or {}).items()))
        key = (requirements, folders)
        if key not in self._codes:
            self._codes[key] = self._make_code(self.source_dir, requirements, dict(folders))
        return self._codes[key]
