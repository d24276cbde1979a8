"""Security and wiring properties of the default deployment (``cdk synth`` with cdk.json defaults)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhirlake import topology

from .conftest import DEPLOYED_FUNCTIONS

pytestmark = pytest.mark.infra  # one worker runs every infra module (tests/conftest.py)

# Every cdk-nag suppression in the default deployment. Adding one means adding it here, in review.
EXPECTED_SUPPRESSIONS = {
    "AwsSolutions-APIG2",
    "AwsSolutions-APIG3",
    "AwsSolutions-COG4",
    "AwsSolutions-IAM4",
    "AwsSolutions-IAM5",
    "AwsSolutions-L1",
    "AwsSolutions-SQS3",
    "HIPAA.Security-APIGWCacheEnabledAndEncrypted",
    "HIPAA.Security-APIGWSSLEnabled",
    "HIPAA.Security-DynamoDBInBackupPlan",
    "HIPAA.Security-IAMNoInlinePolicy",
    "HIPAA.Security-LambdaConcurrency",
    "HIPAA.Security-LambdaDLQ",
    "HIPAA.Security-LambdaInsideVPC",
    "HIPAA.Security-S3BucketReplicationEnabled",
    "HIPAA.Security-S3DefaultEncryptionKMS",
}
# Logical id prefix of the CDK's trigger provider (the custom resource Lambda of deploy triggers).
TRIGGER_PROVIDER = "AWSCDKTriggerCustomResourceProvider"
# Actions that may use Resource "*" (they support no resource-level permissions).
RESOURCE_STAR_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"}


@pytest.fixture(scope="module")
def synth(default_synth):
    return default_synth


@pytest.fixture(scope="module")
def data(synth) -> dict[str, Any]:
    return synth.template(synth.data).to_json()


@pytest.fixture(scope="module")
def api(synth) -> dict[str, Any]:
    return synth.template(synth.api).to_json()


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def only(template: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = resources(template, kind).values()
    return resource


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def function_of(template: dict[str, Any], spec: topology.FunctionSpec) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, f)
        for lid, f in resources(template, "AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == spec.handler
    ]
    return found


def policy_of(template: dict[str, Any], spec: topology.FunctionSpec) -> dict[str, Any]:
    _, function = function_of(template, spec)
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    (policy,) = [
        p
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    return policy


# ---------------------------------------------------------------------------------------------------
# cdk-nag
# ---------------------------------------------------------------------------------------------------
def test_cdk_nag_packs_are_applied(synth):
    from aws_cdk import Aspects
    from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

    kinds = {type(aspect) for aspect in Aspects.of(synth.app).all}
    assert {AwsSolutionsChecks, HIPAASecurityChecks} <= kinds


def test_no_unsuppressed_cdk_nag_errors_or_warnings(synth):
    from aws_cdk.assertions import Annotations, Match

    for stack in (synth.data, synth.api):
        annotations = Annotations.from_stack(stack)
        nag = Match.string_like_regexp(r"(AwsSolutions|HIPAA\.Security)-")
        assert annotations.find_error("*", nag) == []
        assert annotations.find_warning("*", nag) == []


def test_every_suppression_is_expected_and_explained(data, api):
    seen = set()
    for template in (data, api):
        for resource in template["Resources"].values():
            for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
                assert len(rule["reason"]) >= 60, rule
                seen.add(rule["id"])
    assert seen == EXPECTED_SUPPRESSIONS


# ---------------------------------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------------------------------
def test_kms_key_rotates_and_serves_logs(data):
    key = only(data, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    principals = json.dumps(key["Properties"]["KeyPolicy"])
    assert "logs." in principals and "s3.amazonaws.com" in principals


def test_table_matches_topology_and_is_protected(data):
    table = only(data, "AWS::DynamoDB::Table")
    props = table["Properties"]
    assert table["DeletionPolicy"] == "Retain"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["SSESpecification"]["SSEType"] == "KMS"
    assert "KMSMasterKeyId" in props["SSESpecification"]
    assert props["StreamSpecification"]["StreamViewType"] == topology.RESOURCE_TABLE.stream
    spec = topology.RESOURCE_TABLE
    assert props["KeySchema"] == [
        {"AttributeName": spec.partition.name, "KeyType": "HASH"},
        {"AttributeName": spec.sort.name, "KeyType": "RANGE"},
    ]
    indexes = {index["IndexName"]: index for index in props["GlobalSecondaryIndexes"]}
    assert set(indexes) == {index.name for index in spec.indexes}
    for index in spec.indexes:
        assert indexes[index.name]["KeySchema"] == [
            {"AttributeName": index.partition.name, "KeyType": "HASH"},
            {"AttributeName": index.sort.name, "KeyType": "RANGE"},
        ]
        assert indexes[index.name]["Projection"]["ProjectionType"] == index.projection


def test_buckets_are_private_versioned_encrypted_logged_and_tls_only(data):
    buckets = resources(data, "AWS::S3::Bucket")
    assert len(buckets) == len(topology.BUCKETS) + 1  # + the access-log bucket
    policies = {
        json.dumps(p["Properties"]["Bucket"]): p["Properties"]["PolicyDocument"]
        for p in resources(data, "AWS::S3::BucketPolicy").values()
    }
    log_buckets = [lid for lid, b in buckets.items() if "LoggingConfiguration" not in b["Properties"]]
    assert len(log_buckets) == 1
    for lid, bucket in buckets.items():
        props = bucket["Properties"]
        assert bucket["DeletionPolicy"] == "Retain"
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]
        if lid in log_buckets:
            assert sse == {"SSEAlgorithm": "AES256"}  # S3 access logging cannot target SSE-KMS
        else:
            assert sse["SSEAlgorithm"] == "aws:kms" and "KMSMasterKeyID" in sse
            assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": log_buckets[0]}
        rules = {rule["Id"] for rule in props["LifecycleConfiguration"]["Rules"]}
        assert rules  # every bucket expires something
        policy = policies[json.dumps({"Ref": lid})]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Statement"]
        ), lid


def test_results_bucket_expires_reports(data):
    expirations = [
        rule
        for bucket in resources(data, "AWS::S3::Bucket").values()
        for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        if rule["Id"] == "expire-results"
    ]
    assert [rule["ExpirationInDays"] for rule in expirations] == [90]


def test_landing_bucket_notifies_the_import_queue(data):
    queues = resources(data, "AWS::SQS::Queue")
    notifying = [
        b
        for b in resources(data, "AWS::S3::Bucket").values()
        if "NotificationConfiguration" in b["Properties"]
    ]
    assert len(notifying) == 1
    (config,) = notifying[0]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    target = config["Queue"]["Fn::GetAtt"][0]
    assert "RedrivePolicy" in queues[target]["Properties"]  # the import queue, not its DLQ
    policy_ids = set(resources(data, "AWS::SQS::QueuePolicy"))
    assert policy_ids & set(as_list(notifying[0]["DependsOn"]))
    # no custom-resource Lambda is needed for it
    assert not resources(data, "AWS::Lambda::Function")
    assert not [r for r in data["Resources"].values() if r["Type"].startswith("Custom::")]


def test_queues_are_encrypted_tls_only_with_dead_letter_queue(data):
    queues = resources(data, "AWS::SQS::Queue")
    assert len(queues) == 2 * len(topology.QUEUES)
    for queue in queues.values():
        assert "KmsMasterKeyId" in queue["Properties"]
    main = [q for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert len(main) == len(topology.QUEUES)
    assert (
        main[0]["Properties"]["RedrivePolicy"]["maxReceiveCount"] == topology.IMPORT_QUEUE.max_receive_count
    )
    assert main[0]["Properties"]["VisibilityTimeout"] == topology.IMPORT_QUEUE.visibility_timeout_seconds
    for policy in resources(data, "AWS::SQS::QueuePolicy").values():
        assert any(
            s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )


def test_data_stack_has_termination_protection(synth):
    assert synth.data.termination_protection is True


# ---------------------------------------------------------------------------------------------------
# Function
# ---------------------------------------------------------------------------------------------------
def test_api_function_runtime_and_environment(api):
    # one function per FunctionSpec, and no other custom resource function than the CDK's trigger provider
    functions = resources(api, "AWS::Lambda::Function")
    providers = [lid for lid in functions if lid.startswith(TRIGGER_PROVIDER)]
    assert len(providers) == (1 if any(spec.trigger == "deploy" for spec in DEPLOYED_FUNCTIONS) else 0)
    assert len(functions) == len(DEPLOYED_FUNCTIONS) + len(providers)
    _, function = function_of(api, topology.API_FUNCTION)
    props = function["Properties"]
    spec = topology.API_FUNCTION
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == spec.handler
    assert props["MemorySize"] == spec.memory_mb
    assert props["Timeout"] == spec.timeout_seconds
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert "ReservedConcurrentExecutions" not in props  # opt-in
    assert "LogGroup" in props["LoggingConfig"]
    env = props["Environment"]["Variables"]
    for name in spec.env:
        assert name in env
    assert env[topology.ENV_TENANT] == "default"
    assert env[topology.ENV_VALIDATION_LEVEL] == "strict"
    assert env[topology.ENV_MAX_BODY_BYTES] == str(5 * 1024 * 1024)
    assert env["POWERTOOLS_SERVICE_NAME"] == "fhirlake"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "fhirlake"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"


def test_log_groups_are_encrypted_with_retention(api):
    groups = resources(api, "AWS::Logs::LogGroup")
    assert len(groups) == 2 + len(DEPLOYED_FUNCTIONS)  # one per function, API access, API execution
    for group in groups.values():
        assert "KmsKeyId" in group["Properties"]
        assert group["Properties"]["RetentionInDays"] == 365


def test_iam_has_no_admin_or_unexplained_wildcards(data, api):
    managed = []
    for template in (data, api):
        for lid, role in resources(template, "AWS::IAM::Role").items():
            arns = [json.dumps(arn) for arn in role["Properties"].get("ManagedPolicyArns", [])]
            if lid.startswith(TRIGGER_PROVIDER):  # the CDK's deploy-trigger Lambda: basic execution only
                assert len(arns) == 1 and "service-role/AWSLambdaBasicExecutionRole" in arns[0]
                continue
            managed += arns
        for policy in resources(template, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = set(as_list(statement["Action"]))
                assert "*" not in actions
                assert not any(a.endswith(":*") for a in actions), statement
                if "*" in as_list(statement["Resource"]):
                    assert actions <= RESOURCE_STAR_ACTIONS, statement
    # the only AWS managed policy: API Gateway's account-level CloudWatch role
    assert len(managed) == 1 and "AmazonAPIGatewayPushToCloudWatchLogs" in managed[0]


def test_api_function_has_least_privilege(api):
    policy = policy_of(api, topology.API_FUNCTION)
    actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in as_list(s["Action"])}
    assert "dynamodb:Query" in actions and "dynamodb:PutItem" in actions
    assert "s3:GetObject" in actions and "s3:PutObject" in actions
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= actions
    assert not {"dynamodb:Scan", "s3:DeleteObjectVersion", "dynamodb:DeleteTable"} & actions
    assert not [a for a in actions if a.endswith("*")]


# ---------------------------------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------------------------------
def test_every_api_method_requires_sigv4(api):
    methods = resources(api, "AWS::ApiGateway::Method")
    routes = [route for spec in DEPLOYED_FUNCTIONS for route in spec.routes]
    assert len(methods) == 2 + 2 * len(routes)  # ANY / and ANY /{proxy+}, the same under each route
    for method in methods.values():
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM"
        assert method["Properties"]["Integration"]["Type"] == "AWS_PROXY"


def test_api_is_regional_and_returns_binary_charts_to_any_client(api):
    props = only(api, "AWS::ApiGateway::RestApi")["Properties"]
    assert props["Name"] == "fhirlake-dev"  # metrics (and the 5xx alarm) are keyed by it
    assert props["EndpointConfiguration"]["Types"] == ["REGIONAL"]
    # PNG charts decode whatever the browser's first Accept type; request bodies arrive base64-encoded
    # and the adapter decodes them (tests/unit/test_apigw.py).
    assert props["BinaryMediaTypes"] == ["*/*"]


def test_api_stage_logs_traces_and_throttles(api):
    stage = only(api, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["TracingEnabled"] is True
    access = stage["AccessLogSetting"]
    assert "DestinationArn" in access
    fields = json.loads(access["Format"])
    assert fields["requestId"] == "$context.requestId"
    assert not [
        v for v in fields.values() if "querystring" in v.lower() or "$input" in v or "body" in v.lower()
    ]
    (settings,) = stage["MethodSettings"]
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False
    assert settings["ThrottlingRateLimit"] == 100
    assert settings["ThrottlingBurstLimit"] == 200


def test_gateway_errors_are_operation_outcomes(api):
    responses = resources(api, "AWS::ApiGateway::GatewayResponse")
    assert responses
    for response in responses.values():
        props = response["Properties"]
        assert props["ResponseParameters"]["gatewayresponse.header.Content-Type"] == "'application/fhir+json'"
        assert '"resourceType":"OperationOutcome"' in props["ResponseTemplates"]["application/json"]


# ---------------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------------
def test_alarms_cover_api_function_dlq_and_table(api):
    alarms = list(resources(api, "AWS::CloudWatch::Alarm").values())
    text = json.dumps(alarms)
    metrics = ("5XXError", "Errors", "Throttles", "ApproximateNumberOfMessagesVisible", "ThrottledRequests")
    for metric in (*metrics, "SystemErrors"):
        assert f'"{metric}"' in text, metric
    topic = only(api, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic["Properties"]
    (topic_id,) = resources(api, "AWS::SNS::Topic")
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    assert not resources(api, "AWS::SNS::Subscription")  # no alarmEmail by default
    assert len(resources(api, "AWS::CloudWatch::Dashboard")) == 1


# ---------------------------------------------------------------------------------------------------
# Import function (bulk import, fhirlake.ingest)
# ---------------------------------------------------------------------------------------------------
def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return policy["Properties"]["PolicyDocument"]["Statement"]


def test_import_function_is_fed_by_the_import_queue_with_partial_batch_failures(api):
    function_id, function = function_of(api, topology.IMPORT_FUNCTION)
    props = function["Properties"]
    assert props["Timeout"] == topology.IMPORT_FUNCTION.timeout_seconds <= 900
    assert topology.IMPORT_QUEUE.visibility_timeout_seconds >= topology.IMPORT_FUNCTION.timeout_seconds
    assert props["MemorySize"] == topology.IMPORT_FUNCTION.memory_mb
    env = props["Environment"]["Variables"]
    for name in topology.IMPORT_FUNCTION.env:
        assert name in env
    assert env["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
    (mapping,) = [
        m
        for m in resources(api, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    mp = mapping["Properties"]
    assert mp["FunctionName"] == {"Ref": function_id}
    assert mp["BatchSize"] == 1
    assert mp["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "ImportQueue" in json.dumps(mp["EventSourceArn"])  # the import queue (its DLQ is wired)
    alarms = json.dumps(list(resources(api, "AWS::CloudWatch::Alarm").values()))
    assert json.dumps({"Ref": function_id}) in alarms  # errors and throttles of the import function


def test_dead_letters_of_the_import_queue_are_swept_into_failure_reports(api):
    function_id, _function = function_of(api, topology.IMPORT_DEAD_LETTER_FUNCTION)
    (mapping,) = [
        m["Properties"]
        for m in resources(api, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BatchSize"] == 1
    source = json.dumps(mapping["EventSourceArn"])
    assert "ImportDeadLetterQueue" in source, source


def test_import_function_has_least_privilege(api):
    statements = _statements(policy_of(api, topology.IMPORT_FUNCTION))
    by_actions = {tuple(sorted(as_list(s["Action"]))): s for s in statements}
    # landing: read only; results: reports (and staged parts) only
    assert ("s3:GetObject", "s3:GetObjectVersion") in by_actions
    landing = json.dumps(by_actions[("s3:GetObject", "s3:GetObjectVersion")]["Resource"])
    assert "Landing" in landing
    writes = [r for s in statements if "s3:PutObject" in as_list(s["Action"]) for r in as_list(s["Resource"])]
    assert len(writes) == 2  # results and blobs (bodies over the item limit), never the landing bucket
    assert not any("Landing" in json.dumps(r) for r in writes)
    # queue: consume (event source) + send (chunk fan-out)
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"} <= actions
    assert "dynamodb:Scan" not in actions
    # EventBridge: PutEvents on the default bus only, for the fhirlake.import source only
    (events,) = [s for s in statements if "events:PutEvents" in as_list(s["Action"])]
    assert events["Condition"] == {"StringEquals": {"events:source": "fhirlake.import"}}
    assert "event-bus/default" in json.dumps(events["Resource"])
    assert not [a for a in actions if a.endswith("*")]
    for statement in statements:
        if "*" in as_list(statement["Resource"]):
            assert set(as_list(statement["Action"])) <= RESOURCE_STAR_ACTIONS, statement
