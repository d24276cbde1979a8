"""The analytics side of the deployment (issue 6): catalog, workgroup, lake feed, schedule, routes, IAM."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fhirlake import topology

from .conftest import ACCOUNT, DEPLOYED_FUNCTIONS, REGION

pytestmark = pytest.mark.infra  # one worker runs every infra module (tests/conftest.py)

DATABASE = "fhirlake_dev"  # <stackPrefix>_<stage> with cdk.json's defaults
WORKGROUP = "fhirlake-dev"
GLUE = f"arn:aws:glue:{REGION}:{ACCOUNT}"
CATALOG_ARNS = {f"{GLUE}:catalog", f"{GLUE}:database/{DATABASE}", f"{GLUE}:table/{DATABASE}/*"}
KEY_ACTIONS = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"}
XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


@pytest.fixture(scope="module")
def data(default_synth) -> dict[str, Any]:
    return default_synth.template(default_synth.data).to_json()


@pytest.fixture(scope="module")
def api(default_synth) -> dict[str, Any]:
    return default_synth.template(default_synth.api).to_json()


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def one(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = of_type(template, kind).items()
    return found


def function_id(template: dict[str, Any], spec: topology.FunctionSpec) -> str:
    (lid,) = [
        lid
        for lid, f in of_type(template, "AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == spec.handler
    ]
    return lid


def _logical(lid: str) -> str:
    """``StorageLakeBucketAD1898C0`` -> ``StorageLakeBucket`` (drop the CDK's hash suffix)."""
    return re.sub(r"[0-9A-F]{8}$", "", lid)


# Output names of CDK weak cross-stack references: PublishOutput + FnGetAtt<id><attr> or Ref<id>, + hash.
_PUBLISHED_ATT = re.compile(
    r"^PublishOutputFnGetAtt(?P<id>.+?[0-9A-F]{8})(?P<attr>[A-Z][a-z][A-Za-z]*)[0-9A-F]{8}$"
)
_PUBLISHED_REF = re.compile(r"^PublishOutputRef(?P<id>.+[0-9A-F]{8})[0-9A-F]{8}$")


def describe(value: Any) -> str:
    """A readable ARN: ``<StorageLakeBucket.Arn>/*`` for references (same or cross-stack), literals as is."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(describe(part) for part in parts)
    if "Fn::GetAtt" in value:
        lid, attribute = value["Fn::GetAtt"]
        return f"<{_logical(lid)}.{attribute}>"
    if "Ref" in value:
        return f"<{_logical(value['Ref'])}>"
    if "Fn::GetStackOutput" in value:
        name = value["Fn::GetStackOutput"]["OutputName"]
        if match := _PUBLISHED_ATT.match(name):
            return f"<{_logical(match['id'])}.{match['attr']}>"
        if match := _PUBLISHED_REF.match(name):
            return f"<{_logical(match['id'])}>"
    raise AssertionError(f"unexpected resource {value!r}")


def grants(template: dict[str, Any], spec: topology.FunctionSpec) -> set[tuple[str, str]]:
    """Every (action, resource) pair the function's role allows (a condition is appended to the resource)."""
    function = template["Resources"][function_id(template, spec)]
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    pairs = set()
    for policy in of_type(template, "AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            condition = f" if {json.dumps(statement['Condition'])}" if "Condition" in statement else ""
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            targets = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            pairs |= {(action, describe(target) + condition) for action in actions for target in targets}
    return pairs


def pairs(actions: set[str] | tuple[str, ...], *resources: str) -> set[tuple[str, str]]:
    return {(action, resource) for action in actions for resource in resources}


def environment(template: dict[str, Any], spec: topology.FunctionSpec) -> dict[str, Any]:
    function = template["Resources"][function_id(template, spec)]
    return function["Properties"]["Environment"]["Variables"]


def bucket_rules(data: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    (bucket,) = [
        b
        for lid, b in of_type(data, "AWS::S3::Bucket").items()
        if _logical(lid) == f"Storage{pascal(role)}Bucket"
    ]
    return {rule["Id"]: rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}


def pascal(role: str) -> str:
    from infra.constructs import pascal as to_pascal

    return to_pascal(role)


def test_the_analytics_functions_are_deployed():
    assert all(spec in DEPLOYED_FUNCTIONS for spec in topology.ANALYTICS_FUNCTIONS)


# ---------------------------------------------------------------------------------------------------
# Catalog, workgroup, buckets (data stack)
# ---------------------------------------------------------------------------------------------------
def test_glue_database_is_named_after_the_deployment_and_retained(data):
    _, database = one(data, "AWS::Glue::Database")
    props = database["Properties"]
    assert props["CatalogId"] == ACCOUNT
    assert props["DatabaseInput"]["Name"] == DATABASE
    assert describe(props["DatabaseInput"]["LocationUri"]) == "s3://<StorageLakeBucket>/"
    assert database["DeletionPolicy"] == "Retain"
    assert data["Outputs"]["GlueDatabase"]["Value"] == DATABASE


def test_athena_workgroup_is_engine_v3_enforced_encrypted_and_capped(data):
    _, workgroup = one(data, "AWS::Athena::WorkGroup")
    props = workgroup["Properties"]
    assert props["Name"] == WORKGROUP
    assert props["State"] == "ENABLED"
    config = props["WorkGroupConfiguration"]
    assert config["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["PublishCloudWatchMetricsEnabled"] is True
    assert config["BytesScannedCutoffPerQuery"] == 10 * 10**9  # athenaScanLimitGb default 10
    results = config["ResultConfiguration"]
    assert describe(results["OutputLocation"]) == "s3://<StorageQueryResultsBucket>/athena/"
    assert results["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    assert describe(results["EncryptionConfiguration"]["KmsKey"]) == "<KeysKey.Arn>"
    assert results["ExpectedBucketOwner"] == ACCOUNT
    assert data["Outputs"]["AthenaWorkGroup"]["Value"] == WORKGROUP


def test_query_results_expire_and_lake_versions_do_not_linger(data):
    results = bucket_rules(data, topology.QUERY_RESULTS_BUCKET.role)
    assert results["expire-query-results"]["ExpirationInDays"] == 30
    assert results["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    lake = bucket_rules(data, topology.LAKE_BUCKET.role)
    assert lake["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
    assert lake["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    assert not [rule for rule in lake.values() if "ExpirationInDays" in rule]  # lake data never expires
    blobs = bucket_rules(data, topology.BLOB_BUCKET.role)
    assert blobs["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90


# ---------------------------------------------------------------------------------------------------
# Functions: assets, environment
# ---------------------------------------------------------------------------------------------------
def test_functions_share_an_asset_only_with_the_same_dependency_extras(api):
    keys = {
        function["Properties"]["Handler"]: function["Properties"]["Code"]["S3Key"]
        for function in of_type(api, "AWS::Lambda::Function").values()
    }
    by_extras: dict[tuple[str, ...], set[str]] = {}
    for spec in DEPLOYED_FUNCTIONS:
        by_extras.setdefault(tuple(sorted(spec.extras)), set()).add(keys[spec.handler])
    assert all(len(assets) == 1 for assets in by_extras.values())  # same extras, same asset
    assert len({key for assets in by_extras.values() for key in assets}) == len(by_extras)
    assert by_extras[()] == {keys[topology.API_FUNCTION.handler], keys[topology.IMPORT_FUNCTION.handler]}


@pytest.mark.parametrize("spec", topology.ANALYTICS_FUNCTIONS, ids=lambda spec: spec.role)
def test_analytics_function_settings_and_environment(api, spec):
    function = api["Resources"][function_id(api, spec)]["Properties"]
    assert function["MemorySize"] == spec.memory_mb
    assert function["Timeout"] == spec.timeout_seconds
    assert function["Architectures"] == ["arm64"]
    env = environment(api, spec)
    assert set(spec.env) <= set(env)
    expected = {
        topology.ANALYTICS_CATALOG.env_var: DATABASE,
        topology.ANALYTICS_CATALOG.workgroup_env_var: WORKGROUP,
        topology.LAKE_BUCKET.env_var: "<StorageLakeBucket>",
        topology.QUERY_RESULTS_BUCKET.env_var: "<StorageQueryResultsBucket>",
    }
    for name in spec.env:
        if name in expected:
            assert describe(env[name]) == expected[name], name
    runs_queries = topology.ANALYTICS_CATALOG.workgroup_env_var in spec.env
    assert env.get(topology.ENV_SQL_ENGINE) == ("athena" if runs_queries else None)
    assert env.get("MPLCONFIGDIR") == ("/tmp/matplotlib" if "charts" in spec.extras else None)


# ---------------------------------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------------------------------
def test_lake_reads_new_versions_from_the_table_stream(api):
    lake = function_id(api, topology.LAKE_FUNCTION)
    (mapping,) = [
        m["Properties"]
        for m in of_type(api, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": lake}
    ]
    assert describe(mapping["EventSourceArn"]) == "<StorageResourceTable.StreamArn>"
    (criteria,) = mapping["FilterCriteria"]["Filters"]
    assert json.loads(criteria["Pattern"]) == topology.LAKE_STREAM_FILTER
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["BatchSize"] == 1000
    assert mapping["MaximumBatchingWindowInSeconds"] == 60  # queryable within 5 minutes
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    destination = mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert describe(destination) == "<TriggersLakeStreamFailures.Arn>"
    queue = api["Resources"][destination["Fn::GetAtt"][0]]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert describe(queue["Properties"]["KmsMasterKeyId"]) == "<KeysKey.Arn>"
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_lake_maintenance_runs_on_its_schedule_without_retries(api):
    maintenance = function_id(api, topology.LAKE_MAINTENANCE_FUNCTION)
    rule_id, rule = one(api, "AWS::Events::Rule")
    expression = topology.LAKE_MAINTENANCE_FUNCTION.trigger.removeprefix("schedule:")
    assert rule["Properties"]["ScheduleExpression"] == expression == "rate(15 minutes)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [maintenance, "Arn"]}
    invokers = [
        p["Properties"]
        for p in of_type(api, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [maintenance, "Arn"]}
    ]
    assert invokers == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [maintenance, "Arn"]},
            "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]},
        }
    ]
    _, invoke_config = one(api, "AWS::Lambda::EventInvokeConfig")
    assert invoke_config["Properties"]["FunctionName"] == {"Ref": maintenance}
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 0


def test_analytics_serves_its_routes_and_api_everything_else(api):
    resources = of_type(api, "AWS::ApiGateway::Resource")

    def path(resource_id: Any) -> str:
        if "Fn::GetAtt" in resource_id:  # the RestApi's RootResourceId
            return ""
        props = resources[resource_id["Ref"]]["Properties"]
        return f"{path(props['ParentId'])}/{props['PathPart']}"

    served = {}
    for method in of_type(api, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        assert props["HttpMethod"] == "ANY" and props["AuthorizationType"] == "AWS_IAM"
        assert props["Integration"]["Type"] == "AWS_PROXY"
        (target,) = re.findall(
            r"Functions(\w+?(?:Function|LiveAlias))[0-9A-F]{8}", json.dumps(props["Integration"]["Uri"])
        )
        served[path(props["ResourceId"]) or "/"] = target
    # the api (through its `live` alias when snapStart is on: tests/infra/test_infra_snapstart.py)
    assert served == {
        "/": "ApiFunction",
        "/{proxy+}": "ApiFunction",
        "/_analytics": "AnalyticsFunction",
        "/_analytics/{proxy+}": "AnalyticsFunction",
    }


# ---------------------------------------------------------------------------------------------------
# IAM: exactly these (action, resource) pairs
# ---------------------------------------------------------------------------------------------------
def test_lake_function_permissions_are_exact(api):
    assert grants(api, topology.LAKE_FUNCTION) == (
        pairs({"logs:CreateLogStream", "logs:PutLogEvents"}, "<FunctionsLakeLogGroup.Arn>")
        | pairs(XRAY | {"dynamodb:ListStreams"}, "*")
        | pairs(
            {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"},
            "<StorageResourceTable.StreamArn>",
        )
        | pairs({"s3:GetObject"}, "<StorageBlobsBucket.Arn>/*")
        | pairs({"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}, "<StorageLakeBucket.Arn>/*")
        | pairs({"s3:ListBucket"}, "<StorageBlobsBucket.Arn>", "<StorageLakeBucket.Arn>")
        | pairs({"glue:GetDatabase", "glue:GetTable", "glue:CreateTable", "glue:UpdateTable"}, *CATALOG_ARNS)
        | pairs(KEY_ACTIONS, "<KeysKey.Arn>")
        | pairs({"sqs:SendMessage"}, "<TriggersLakeStreamFailures.Arn>")
    )


def test_lake_maintenance_permissions_are_exact(api):
    table = "<StorageResourceTable.Arn>"
    assert grants(api, topology.LAKE_MAINTENANCE_FUNCTION) == (
        pairs({"logs:CreateLogStream", "logs:PutLogEvents"}, "<FunctionsLakeMaintenanceLogGroup.Arn>")
        | pairs(XRAY, "*")
        # backfill: scans the table (Table.grant also names its indexes) and reads big bodies
        | pairs({"dynamodb:Scan"}, table, f"{table}/index/*")
        | pairs({"s3:GetObject"}, "<StorageBlobsBucket.Arn>/*")
        | pairs({"s3:ListBucket"}, "<StorageBlobsBucket.Arn>")
        | pairs(
            {
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:DeleteObjectVersion",  # erasure purges the overwritten versions of a lake file
            },
            "<StorageLakeBucket.Arn>/*",
        )
        | pairs({"s3:ListBucket", "s3:ListBucketVersions"}, "<StorageLakeBucket.Arn>")
        | pairs(
            {"glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:CreateTable", "glue:UpdateTable"},
            *CATALOG_ARNS,
        )
        | pairs(KEY_ACTIONS, "<KeysKey.Arn>")
    )


def test_analytics_permissions_are_exact(api):
    table = "<StorageResourceTable.Arn>"
    assert grants(api, topology.ANALYTICS_FUNCTION) == (
        pairs({"logs:CreateLogStream", "logs:PutLogEvents"}, "<FunctionsAnalyticsLogGroup.Arn>")
        | pairs(XRAY, "*")
        | pairs({"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"}, table, f"{table}/index/*")
        | pairs({"s3:GetObject"}, "<StorageBlobsBucket.Arn>/*", "<StorageLakeBucket.Arn>/*")
        | pairs({"s3:ListBucket"}, "<StorageBlobsBucket.Arn>")
        | pairs({"s3:ListBucket", "s3:GetBucketLocation"}, "<StorageLakeBucket.Arn>")
        | pairs(
            {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
            "<StorageQueryResultsBucket.Arn>/*",
        )
        | pairs(
            {"s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"},
            "<StorageQueryResultsBucket.Arn>",
        )
        | pairs({"glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartitions"}, *CATALOG_ARNS)
        | pairs(
            {
                "athena:StartQueryExecution",
                "athena:GetQueryExecution",
                "athena:GetQueryResults",
                "athena:StopQueryExecution",
            },
            f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{WORKGROUP}",
        )
        | pairs(KEY_ACTIONS, "<KeysKey.Arn>")
    )


def test_only_the_lake_reads_the_stream_and_nothing_writes_the_catalog_but_the_lake(api):
    for spec in DEPLOYED_FUNCTIONS:
        actions = {action for action, _ in grants(api, spec)}
        reads_stream = spec.trigger == "stream"
        assert ("dynamodb:GetRecords" in actions) is reads_stream, spec.role
        writes_catalog = bool({"glue:CreateTable", "glue:UpdateTable"} & actions)
        assert writes_catalog is (spec.role in ("lake", "lake-maintenance")), spec.role
        assert not {"glue:DeleteTable", "glue:DeleteDatabase"} & actions
        assert ("s3:DeleteObjectVersion" in actions) is (spec.role == "lake-maintenance"), spec.role


# ---------------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------------
def test_alarms_watch_the_analytics_functions_stream_lag_and_failed_batches(api):
    alarms = [alarm["Properties"] for alarm in of_type(api, "AWS::CloudWatch::Alarm").values()]

    def alarm_on(metric: str, dimension: Any) -> list[dict[str, Any]]:
        return [
            a
            for a in alarms
            if a.get("MetricName") == metric and dimension in [d["Value"] for d in a.get("Dimensions", [])]
        ]

    for spec in topology.ANALYTICS_FUNCTIONS:
        function = {"Ref": function_id(api, spec)}
        assert len(alarm_on("Errors", function)) == 1, spec.role
        assert len(alarm_on("Throttles", function)) == 1, spec.role
    (lag,) = alarm_on("IteratorAge", {"Ref": function_id(api, topology.LAKE_FUNCTION)})
    assert lag["Statistic"] == "Maximum"
    assert lag["Threshold"] == 5 * 60 * 1000
    assert lag["ComparisonOperator"] == "GreaterThanThreshold"
    (queue_id,) = of_type(api, "AWS::SQS::Queue")  # the lake's on-failure queue (the rest is in data)
    (failed,) = alarm_on("ApproximateNumberOfMessagesVisible", {"Fn::GetAtt": [queue_id, "QueueName"]})
    assert failed["Threshold"] == 0
    body = one(api, "AWS::CloudWatch::Dashboard")[1]["Properties"]["DashboardBody"]["Fn::Join"][1]
    widgets = json.loads("".join(part if isinstance(part, str) else "TOKEN" for part in body))["widgets"]
    graphs = {w["properties"].get("title"): w["properties"].get("metrics") for w in widgets}
    assert "lake stream iterator age (ms)" in graphs
    ((scanned,),) = graphs["Athena bytes scanned"]
    assert 'MetricName="ProcessedBytes" WorkGroup="fhirlake-dev"' in scanned["expression"]


# ---------------------------------------------------------------------------------------------------
# Trigger and route declarations (pure Python, no synth)
# ---------------------------------------------------------------------------------------------------
def test_unwirable_triggers_and_routes_fail_the_synth():
    from dataclasses import replace

    from infra.constructs.triggers import http_routes, parse_trigger

    api = topology.API_FUNCTION
    for trigger in ("queue:nope", "schedule:every 5 minutes", "sqs", "stream:x"):
        with pytest.raises(ValueError, match="cannot wire trigger"):
            parse_trigger(replace(api, trigger=trigger))
    with pytest.raises(ValueError, match="needs a stream_filter"):
        parse_trigger(replace(topology.LAKE_FUNCTION, stream_filter=None))
    with pytest.raises(ValueError, match="exactly one http function"):
        http_routes((api, replace(api, role="other")))
    with pytest.raises(ValueError, match="claimed by"):
        http_routes((api, topology.ANALYTICS_FUNCTION, replace(topology.ANALYTICS_FUNCTION, role="other")))
    with pytest.raises(ValueError, match="plain '/path' prefix"):
        http_routes((api, replace(topology.ANALYTICS_FUNCTION, routes=("/_analytics/{id}",))))
    assert http_routes(DEPLOYED_FUNCTIONS) == ("api", {"/_analytics": "analytics"})
