"""Context options change the synthesized stacks as documented (docs/deploy.md)."""

from __future__ import annotations

import json

import pytest
from fhirlake import topology

from .conftest import DEPLOYED_FUNCTIONS, TARGET

pytestmark = pytest.mark.infra  # one worker runs every infra module (tests/conftest.py)


@pytest.fixture(scope="module")
def custom(synth_factory):
    """A dev-style deployment: everything that can be overridden is."""
    synth = synth_factory(
        {
            "stackPrefix": "fl",
            "stage": "test",
            "removalPolicy": "destroy",
            "reservedConcurrency": "5",
            "alarmEmail": "ops@example.org",
            "apiThrottleRate": "10",
            "apiThrottleBurst": "20",
            "validationLevel": "minimal",
            "maxBodyBytes": "1048576",
            "logRetentionDays": "30",
            "resultsExpirationDays": "7",
            "allowedRegions": "eu-central-1, eu-west-1",
            "analyticsDatabase": "clinic_lake",
            "athenaScanLimitGb": "1",
            "queryResultsExpirationDays": "3",
            "lakeNoncurrentVersionDays": "2",
        }
    )
    return synth, synth.template(synth.data).to_json(), synth.template(synth.api).to_json()


def _of_type(template, kind):
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def test_names_follow_prefix_and_stage(custom):
    synth, _, _ = custom
    assert synth.data.stack_name == "fl-test-data"
    assert synth.api.stack_name == "fl-test-api"


def test_destroy_removes_protection_but_adds_no_auto_delete_lambda(custom):
    synth, data, _ = custom
    (table,) = _of_type(data, "AWS::DynamoDB::Table")
    assert table["Properties"]["DeletionProtectionEnabled"] is False
    assert table["DeletionPolicy"] == "Delete"
    for bucket in _of_type(data, "AWS::S3::Bucket"):
        assert bucket["DeletionPolicy"] == "Delete"
    assert not [r for r in data["Resources"].values() if r["Type"].startswith("Custom::")]
    assert synth.data.termination_protection is False


def test_overrides_reach_function_api_and_alarms(custom):
    _, data, api = custom
    (function,) = [
        f
        for f in _of_type(api, "AWS::Lambda::Function")
        if f["Properties"]["Handler"] == topology.API_FUNCTION.handler
    ]
    props = function["Properties"]
    assert props["ReservedConcurrentExecutions"] == 5
    env = props["Environment"]["Variables"]
    assert env[topology.ENV_VALIDATION_LEVEL] == "minimal"
    assert env[topology.ENV_MAX_BODY_BYTES] == "1048576"
    (stage,) = _of_type(api, "AWS::ApiGateway::Stage")
    assert stage["Properties"]["StageName"] == "test"
    assert stage["Properties"]["MethodSettings"][0]["ThrottlingRateLimit"] == 10
    assert stage["Properties"]["MethodSettings"][0]["ThrottlingBurstLimit"] == 20
    (subscription,) = _of_type(api, "AWS::SNS::Subscription")
    assert subscription["Properties"] == {**subscription["Properties"], "Protocol": "email",
                                          "Endpoint": "ops@example.org"}  # fmt: skip
    for group in _of_type(api, "AWS::Logs::LogGroup"):
        assert group["Properties"]["RetentionInDays"] == 30
    rules = [
        r
        for b in _of_type(data, "AWS::S3::Bucket")
        for r in b["Properties"]["LifecycleConfiguration"]["Rules"]
    ]
    assert [r["ExpirationInDays"] for r in rules if r["Id"] == "expire-results"] == [7]
    # with reserved concurrency set, the LambdaConcurrency suppression is gone
    assert "HIPAA.Security-LambdaConcurrency" not in json.dumps(function.get("Metadata", {}))
    # every function reserves it; the scheduled lake upkeep and the re-index job exactly one, so runs
    # never overlap (the CDK's trigger provider, a custom resource Lambda, reserves none)
    reserved = {
        f["Properties"]["Handler"]: f["Properties"].get("ReservedConcurrentExecutions")
        for f in _of_type(api, "AWS::Lambda::Function")
        if f["Properties"]["Handler"] in {spec.handler for spec in DEPLOYED_FUNCTIONS}
    }
    assert reserved.pop(topology.LAKE_MAINTENANCE_FUNCTION.handler) == 1
    assert reserved.pop(topology.REINDEX_FUNCTION.handler) == 1
    assert set(reserved.values()) == {5}


def test_analytics_overrides_reach_catalog_workgroup_buckets_and_functions(custom):
    _, data, api = custom
    (database,) = _of_type(data, "AWS::Glue::Database")
    assert database["Properties"]["DatabaseInput"]["Name"] == "clinic_lake"
    assert database["DeletionPolicy"] == "Delete"
    (workgroup,) = _of_type(data, "AWS::Athena::WorkGroup")
    assert workgroup["Properties"]["Name"] == "fl-test"
    assert workgroup["Properties"]["WorkGroupConfiguration"]["BytesScannedCutoffPerQuery"] == 10**9
    rules = {
        r["Id"]: r
        for b in _of_type(data, "AWS::S3::Bucket")
        for r in b["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert rules["expire-query-results"]["ExpirationInDays"] == 3
    noncurrent = sorted(
        r["NoncurrentVersionExpiration"]["NoncurrentDays"]
        for b in _of_type(data, "AWS::S3::Bucket")
        for r in b["Properties"]["LifecycleConfiguration"]["Rules"]
        if r["Id"] == "expire-noncurrent-versions"
    )
    assert noncurrent == [1, 2, 90, 90, 90]  # query results, lake, then landing/blobs/results
    (analytics,) = [
        f
        for f in _of_type(api, "AWS::Lambda::Function")
        if f["Properties"]["Handler"] == topology.ANALYTICS_FUNCTION.handler
    ]
    env = analytics["Properties"]["Environment"]["Variables"]
    assert env[topology.ANALYTICS_CATALOG.env_var] == "clinic_lake"
    assert env[topology.ANALYTICS_CATALOG.workgroup_env_var] == "fl-test"
    policies = json.dumps(_of_type(api, "AWS::IAM::Policy"))
    assert ":table/clinic_lake/*" in policies and ":workgroup/fl-test" in policies


def test_environment_agnostic_synth_without_allow_list_and_without_topic(synth_factory):
    synth = synth_factory({"alarmTopic": False}, environ={})
    api = synth.template(synth.api).to_json()
    assert not _of_type(api, "AWS::SNS::Topic")
    for alarm in _of_type(api, "AWS::CloudWatch::Alarm"):
        assert "AlarmActions" not in alarm["Properties"]
    assert synth.data.region.startswith("${Token")  # really environment-agnostic
    # ARNs built from names (Glue, Athena) use the pseudo parameters (and their cdk-nag suppression matches)
    policies = json.dumps(_of_type(api, "AWS::IAM::Policy"))
    assert ':glue:", {"Ref": "AWS::Region"}' in policies


def test_region_outside_allow_list_fails_synth():
    from infra.application import build_app
    from infra.config import ConfigError

    from .conftest import cdk_json_context

    context = {**cdk_json_context(), "bundling": "skip", "allowedRegions": "eu-central-1,eu-west-3"}
    with pytest.raises(
        ConfigError, match=r"region 'eu-west-1' is not in allowedRegions \(eu-central-1, eu-west-3\)"
    ):
        build_app(context, TARGET)
    with pytest.raises(ConfigError, match="target region is unknown"):
        build_app(context, {})
