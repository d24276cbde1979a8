"""Every deploy-time option of the CDK app, parsed and validated in one place.

Options come from CDK context: ``cdk.json`` holds the defaults (kept equal to :data:`DEFAULTS` by a
test), ``cdk deploy -c name=value`` overrides them. Values given with ``-c`` are always strings, values
in ``cdk.json`` may be typed, so every parser below accepts both.

The target account/region come from the CDK CLI (``CDK_DEFAULT_ACCOUNT`` / ``CDK_DEFAULT_REGION``, i.e.
the AWS profile); without them the stacks are environment-agnostic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhirlake.search import config as index_config
from fhirlake.validation import ValidationLevel

from infra.views import ViewsFolderError, check_views_folder


class ConfigError(ValueError):
    """A context option or the target environment is not acceptable; synth must stop."""


# Values CloudWatch Logs accepts for a log group's retention (aws_logs.RetentionDays), by days.
LOG_RETENTION_DAYS = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS",
    1096: "THREE_YEARS", 1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS", 3288: "NINE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip

# Context keys and their defaults. cdk.json repeats these (tests/infra checks that they agree).
DEFAULTS: dict[str, Any] = {
    "stackPrefix": "fhirlake",
    "stage": "dev",
    "allowedRegions": [],
    "removalPolicy": "retain",
    "reservedConcurrency": None,
    "validationLevel": "strict",
    "apiThrottleRate": 100,
    "apiThrottleBurst": 200,
    "alarmTopic": True,
    "alarmEmail": None,
    "maxBodyBytes": 5 * 1024 * 1024,
    "logRetentionDays": 365,
    "resultsExpirationDays": 90,
    "bundling": "local",
    "analyticsDatabase": None,
    "athenaScanLimitGb": 10,
    "queryResultsExpirationDays": 30,
    "lakeNoncurrentVersionDays": 7,
    "searchConfig": None,
    # Off by default: SnapStart for Python bills for the cached snapshot while a version is active, and
    # fhirlake bills nothing at idle but storage unless asked to (docs/deploy.md "SnapStart").
    "snapStart": False,
    # A folder of the deployer's own ViewDefinitions (*.json), relative to the app; None = the shipped ones.
    "viewsDir": None,
}
# searchConfig and viewsDir paths are relative to the CDK app (app.py, cdk.json), wherever the CLI runs.
APP_DIR = Path(__file__).resolve().parents[1]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
# Athena/Glue database names: lowercase letters, digits and underscores (Athena lower-cases anything else
# and a hyphen needs quoting in every query).
_DATABASE = re.compile(r"^[a-z][a-z0-9_]{0,254}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# API Gateway rejects request payloads above 10 MB before the Lambda sees them; the Lambda enforces
# the (smaller) configurable FHIRLAKE_MAX_BODY_BYTES itself. Lambda's own synchronous payload limit
# is 6 MB (request and response, after base64), so anything above ~6 MB could never arrive anyway.
API_GATEWAY_MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
# athenaScanLimitGb counts decimal gigabytes, the unit Athena bills in (per TB scanned).
BYTES_PER_GB = 10**9
# Commercial regions without Lambda SnapStart (AWS Lambda developer guide, "Supported Regions": every
# commercial region except Asia Pacific (New Zealand) and Asia Pacific (Taipei)). Publishing a SnapStart
# version there fails the deployment, so synth fails first.
SNAP_START_UNSUPPORTED_REGIONS = ("ap-southeast-6", "ap-east-2")


@dataclass(frozen=True)
class Config:
    stack_prefix: str
    stage: str
    account: str | None
    region: str | None
    allowed_regions: tuple[str, ...]
    removal_policy: str  # "retain" | "destroy"
    reserved_concurrency: int | None
    validation_level: str
    api_throttle_rate: float
    api_throttle_burst: int
    alarm_topic: bool
    alarm_email: str | None
    max_body_bytes: int
    log_retention_days: int
    results_expiration_days: int
    bundling: str  # "local" | "skip"
    analytics_database: str  # Glue database of the lake (Athena queries it)
    athena_scan_limit_gb: int  # per-query bytes-scanned cutoff of the workgroup
    query_results_expiration_days: int
    lake_noncurrent_version_days: int
    # The search index configuration (fhirlake.search.config) as minified JSON; None = every R4 parameter.
    search_config: str | None = None
    # Lambda SnapStart on the functions of infra.constructs.functions.SNAP_START_ROLES (the api).
    snap_start: bool = False
    # The deployer's ViewDefinitions folder (checked at synth), shipped with the functions that
    # materialize views; None = only the ViewDefinitions fhirlake ships.
    views_dir: Path | None = None

    @property
    def retain(self) -> bool:
        return self.removal_policy == "retain"

    @property
    def bundling_enabled(self) -> bool:
        return self.bundling == "local"

    def stack_name(self, suffix: str) -> str:
        return f"{self.stack_prefix}-{self.stage}-{suffix}"

    @property
    def resource_name(self) -> str:
        """``<stackPrefix>-<stage>``: the name of per-deployment resources (API, dashboard, workgroup)."""
        return f"{self.stack_prefix}-{self.stage}"

    @property
    def athena_scan_limit_bytes(self) -> int:
        return self.athena_scan_limit_gb * BYTES_PER_GB

    def search_layout_digest(self) -> str:
        """Digest of the search index layout this configuration deploys: the indexed parameters, their
        expressions and shard counts and the key layout version, exactly what the re-index job compares
        with what the table holds (``fhirlake.service.reindex``). A deployment that changes it re-runs
        the job."""
        from fhirlake.service import reindex  # pulls in the persistence layer: only when asked

        config = index_config.load_config(self.search_config)
        index_config.use_config(config)
        try:
            return reindex.layout_digest(reindex.target_layout())
        finally:
            index_config.use_config(None)  # back to the environment's (the synth process has none)


def load_config(context: Callable[[str], Any] | Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """Parse the context (a mapping, or ``node.try_get_context``) and the CLI's environment variables."""
    get = context.get if isinstance(context, Mapping) else context

    def value(key: str) -> Any:
        raw = get(key)
        return DEFAULTS[key] if raw is None else raw

    region = environ.get("CDK_DEFAULT_REGION") or None
    allowed = _regions(value("allowedRegions"))
    if allowed:
        if region is None:
            raise ConfigError(
                "allowedRegions is set to "
                f"{', '.join(allowed)} but the target region is unknown (environment-agnostic synth). "
                "Set the region, e.g. AWS_REGION=eu-central-1 or `--profile`, so that the CDK CLI "
                "passes CDK_DEFAULT_REGION, or clear the allow-list with -c allowedRegions=''."
            )
        if region not in allowed:
            raise ConfigError(
                f"region {region!r} is not in allowedRegions ({', '.join(allowed)}): refusing to "
                "synthesize fhirlake there. Deploy to an allowed region (AWS_REGION=... or --profile; "
                "the CDK CLI falls back to us-east-1 when no region is configured) or change allowedRegions."
            )

    removal = _choice("removalPolicy", value("removalPolicy"), ("retain", "destroy"))
    levels = tuple(level.value for level in ValidationLevel)
    max_body = _int("maxBodyBytes", value("maxBodyBytes"), minimum=1024)
    if max_body > API_GATEWAY_MAX_PAYLOAD_BYTES:
        raise ConfigError(
            f"maxBodyBytes={max_body} exceeds API Gateway's 10 MB payload limit "
            f"({API_GATEWAY_MAX_PAYLOAD_BYTES}); requests that large never reach the Lambda."
        )
    retention = _int("logRetentionDays", value("logRetentionDays"), minimum=1)
    if retention not in LOG_RETENTION_DAYS:
        raise ConfigError(
            f"logRetentionDays={retention} is not a CloudWatch Logs retention; use one of "
            f"{sorted(LOG_RETENTION_DAYS)}"
        )
    email = value("alarmEmail") or None
    if email is not None and not _EMAIL.match(str(email)):
        raise ConfigError(f"alarmEmail={email!r} is not an e-mail address")
    reserved = value("reservedConcurrency")
    prefix, stage = _name("stackPrefix", value("stackPrefix")), _name("stage", value("stage"))
    return Config(
        stack_prefix=prefix,
        stage=stage,
        account=environ.get("CDK_DEFAULT_ACCOUNT") or None,
        region=region,
        allowed_regions=allowed,
        removal_policy=removal,
        reserved_concurrency=None if reserved in (None, "") else _int("reservedConcurrency", reserved, 1),
        validation_level=_choice("validationLevel", value("validationLevel"), levels),
        api_throttle_rate=_float("apiThrottleRate", value("apiThrottleRate"), minimum=1),
        api_throttle_burst=_int("apiThrottleBurst", value("apiThrottleBurst"), minimum=1),
        alarm_topic=_bool("alarmTopic", value("alarmTopic")),
        alarm_email=email,
        max_body_bytes=max_body,
        log_retention_days=retention,
        results_expiration_days=_int("resultsExpirationDays", value("resultsExpirationDays"), minimum=1),
        bundling=_choice("bundling", value("bundling"), ("local", "skip")),
        analytics_database=_database(value("analyticsDatabase") or f"{prefix}_{stage}".replace("-", "_")),
        athena_scan_limit_gb=_int("athenaScanLimitGb", value("athenaScanLimitGb"), minimum=1),
        query_results_expiration_days=_int(
            "queryResultsExpirationDays", value("queryResultsExpirationDays"), minimum=1
        ),
        lake_noncurrent_version_days=_int(
            "lakeNoncurrentVersionDays", value("lakeNoncurrentVersionDays"), minimum=1
        ),
        search_config=_search_config(value("searchConfig")),
        snap_start=_snap_start(value("snapStart"), region),
        views_dir=_views_dir(value("viewsDir")),
    )


# ---------------------------------------------------------------------------------------------------
# Parsers: accept the typed value from cdk.json or the string from `-c key=value`.
# ---------------------------------------------------------------------------------------------------
def _regions(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        text = raw.strip()
        items = json.loads(text) if text.startswith("[") else text.split(",")
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise ConfigError(f"allowedRegions must be a list or a comma-separated string, got {raw!r}")
    regions = tuple(dict.fromkeys(str(item).strip().lower() for item in items if str(item).strip()))
    for region in regions:
        if not _REGION.match(region):
            raise ConfigError(f"allowedRegions: {region!r} is not an AWS region name (e.g. eu-west-1)")
    return regions


def _search_config(raw: Any) -> str | None:
    """The file's configuration, validated as the functions will load it, as minified JSON."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None
    path = APP_DIR / text  # an absolute path stays as it is
    if not path.is_file():
        raise ConfigError(f"searchConfig={text!r}: no such file ({path})")
    try:
        index_config.load_config(str(path))  # what every function does at its cold start
    except ValueError as exc:
        raise ConfigError(f"searchConfig={text!r}: {exc}") from None
    return json.dumps(json.loads(path.read_text()), separators=(",", ":"), sort_keys=True)


def _views_dir(raw: Any) -> Path | None:
    """The folder, once every ViewDefinition in it compiles as the lake functions will compile it."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None
    folder = APP_DIR / text  # an absolute path stays as it is
    try:
        check_views_folder(folder)
    except ViewsFolderError as exc:
        raise ConfigError(f"viewsDir={text!r}: {exc}") from None
    return folder.resolve()


def _snap_start(raw: Any, region: str | None) -> bool:
    enabled = _bool("snapStart", raw)
    if enabled and region in SNAP_START_UNSUPPORTED_REGIONS:
        raise ConfigError(
            f"Lambda SnapStart is not available in {region}: deploy with -c snapStart=false there "
            "(the api then initialises on every cold start, as without SnapStart)."
        )
    return enabled


def _name(key: str, raw: Any) -> str:
    text = str(raw).strip()
    if not _NAME.match(text):
        raise ConfigError(
            f"{key}={text!r}: use 1-20 lowercase letters, digits or '-', starting with a letter"
        )
    return text


def _database(raw: Any) -> str:
    text = str(raw).strip()
    if not _DATABASE.match(text):
        raise ConfigError(
            f"analyticsDatabase={text!r}: use lowercase letters, digits or '_', starting with a letter "
            "(at most 255 characters)"
        )
    return text


def _choice(key: str, raw: Any, allowed: tuple[str, ...]) -> str:
    text = str(raw).strip().lower()
    if text not in allowed:
        raise ConfigError(f"{key}={raw!r}: must be one of {', '.join(allowed)}")
    return text


def _int(key: str, raw: Any, minimum: int) -> int:
    try:
        number = int(str(raw).strip()) if not isinstance(raw, bool) else None
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise ConfigError(f"{key}={raw!r}: must be an integer >= {minimum}")
    return number


def _float(key: str, raw: Any, minimum: float) -> float:
    try:
        number = float(str(raw).strip()) if not isinstance(raw, bool) else None
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise ConfigError(f"{key}={raw!r}: must be a number >= {minimum}")
    return number


def _bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ConfigError(f"{key}={raw!r}: must be true or false")
