"""Context parsing (infra.config): pure Python, no synth."""

from __future__ import annotations

import pytest

from infra.config import DEFAULTS, ConfigError, load_config

from .conftest import TARGET, cdk_json_context

pytestmark = pytest.mark.infra  # one worker runs every infra module (tests/conftest.py)


def test_cdk_json_defaults_equal_config_defaults():
    context = cdk_json_context()
    assert {key: context[key] for key in DEFAULTS} == DEFAULTS


def test_defaults():
    config = load_config({}, TARGET)
    assert config.stack_name("data") == "fhirlake-dev-data"
    assert config.retain and config.removal_policy == "retain"
    assert config.reserved_concurrency is None
    assert config.validation_level == "strict"
    assert config.max_body_bytes == 5 * 1024 * 1024
    assert config.allowed_regions == ()
    assert (config.account, config.region) == ("123456789012", "eu-west-1")
    assert config.analytics_database == "fhirlake_dev"
    assert config.resource_name == "fhirlake-dev"  # API, dashboard and Athena workgroup name
    assert config.athena_scan_limit_bytes == 10 * 10**9
    assert config.query_results_expiration_days == 30
    assert config.lake_noncurrent_version_days == 7


def test_analytics_database_follows_prefix_and_stage_unless_named():
    assert load_config({"stackPrefix": "fl", "stage": "eu-prod"}, TARGET).analytics_database == "fl_eu_prod"
    assert load_config({"analyticsDatabase": "clinic_lake"}, TARGET).analytics_database == "clinic_lake"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("eu-west-1", ("eu-west-1",)),
        (" eu-west-1 , EU-CENTRAL-1,", ("eu-west-1", "eu-central-1")),
        ('["eu-west-1", "eu-west-1"]', ("eu-west-1",)),
        (["eu-west-1", "eu-north-1"], ("eu-west-1", "eu-north-1")),
        ("", ()),
        ([], ()),
    ],
)
def test_allowed_regions_accepts_lists_and_comma_strings(raw, expected):
    region = expected[0] if expected else "eu-west-1"
    assert (
        load_config({"allowedRegions": raw}, TARGET | {"CDK_DEFAULT_REGION": region}).allowed_regions
        == expected
    )


def test_region_checks():
    with pytest.raises(ConfigError, match="not in allowedRegions"):
        load_config({"allowedRegions": "us-east-1"}, TARGET)
    with pytest.raises(ConfigError, match="target region is unknown"):
        load_config({"allowedRegions": "eu-west-1"}, {})
    with pytest.raises(ConfigError, match="not an AWS region"):
        load_config({"allowedRegions": "europe"}, TARGET)
    assert load_config({}, {}).region is None  # environment-agnostic is fine without an allow-list


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("removalPolicy", "snapshot", "must be one of retain, destroy"),
        ("validationLevel", "lenient", "must be one of"),
        ("maxBodyBytes", str(11 * 1024 * 1024), "10 MB"),
        ("maxBodyBytes", "lots", "integer"),
        ("logRetentionDays", "100", "not a CloudWatch Logs retention"),
        ("reservedConcurrency", "0", ">= 1"),
        ("alarmEmail", "not-an-address", "e-mail"),
        ("stage", "Prod!", "lowercase"),
        ("alarmTopic", "maybe", "true or false"),
        ("bundling", "docker", "local, skip"),
        ("analyticsDatabase", "Clinic-Lake", "lowercase letters, digits or '_'"),
        ("athenaScanLimitGb", "0", ">= 1"),
        ("queryResultsExpirationDays", "0", ">= 1"),
        ("lakeNoncurrentVersionDays", "a week", "integer"),
    ],
)
def test_bad_values_fail_with_a_clear_message(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config({key: value}, TARGET)


def test_strings_from_the_command_line_are_converted():
    config = load_config(
        {
            "reservedConcurrency": "10",
            "apiThrottleRate": "12.5",
            "alarmTopic": "false",
            "removalPolicy": "DESTROY",
        },
        TARGET,
    )
    assert config.reserved_concurrency == 10
    assert config.api_throttle_rate == 12.5
    assert config.alarm_topic is False
    assert config.removal_policy == "destroy" and not config.retain
