"""The configurable search index in the deployment: ``searchConfig``, the re-index function, its trigger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhirlake import topology

from .conftest import ACCOUNT, DEPLOYED_FUNCTIONS, REGION, TARGET, cdk_json_context
from .test_infra_analytics import KEY_ACTIONS, XRAY, environment, function_id, grants, of_type, pairs

pytestmark = pytest.mark.infra  # one worker runs every infra module (tests/conftest.py)

# Written with spaces and unsorted keys: the functions get it minified, keys sorted.
SEARCH_CONFIG = {
    "shards": {"Patient.gender": 16},
    "include": {"Patient": ["*"], "Observation": ["code", "subject", "date"]},
    "exclude": {"*": ["_source"]},
}
MINIFIED = (
    '{"exclude":{"*":["_source"]},"include":{"Observation":["code","subject","date"],"Patient":["*"]},'
    '"shards":{"Patient.gender":16}}'
)
# What fhirlake.service.reindex calls: checkpoint items, the Scan, emptying partitions, writing entries.
READ_WRITE_CALLS = ("Scan", "Query", "GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")
REINDEX_NAME = "fhirlake-dev-reindex"  # <stackPrefix>-<stage>-<role>: fixed, its policy names it


def write_config(folder: Path, doc: Any, name: str = "search.json") -> str:
    path = folder / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return str(path)


@pytest.fixture(scope="module")
def api(default_synth) -> dict[str, Any]:
    return default_synth.template(default_synth.api).to_json()


@pytest.fixture(scope="module")
def configured(synth_factory, tmp_path_factory):
    synth = synth_factory({"searchConfig": write_config(tmp_path_factory.mktemp("search"), SEARCH_CONFIG)})
    return synth, synth.template(synth.api).to_json()


def trigger_of(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = of_type(template, "Custom::Trigger").items()
    return found


def test_the_reindex_function_is_deployed():
    assert topology.REINDEX_FUNCTION in DEPLOYED_FUNCTIONS


# ---------------------------------------------------------------------------------------------------
# searchConfig -> FHIRLAKE_SEARCH_CONFIG
# ---------------------------------------------------------------------------------------------------
def test_without_search_config_no_function_gets_one(api):
    for spec in DEPLOYED_FUNCTIONS:
        assert topology.ENV_SEARCH_CONFIG not in environment(api, spec), spec.role


def test_search_config_reaches_exactly_the_functions_using_the_table(configured):
    _, api = configured
    for spec in DEPLOYED_FUNCTIONS:
        env = environment(api, spec)
        uses_table = topology.RESOURCE_TABLE.env_var in spec.env
        assert env.get(topology.ENV_SEARCH_CONFIG) == (MINIFIED if uses_table else None), spec.role
    for spec in (topology.API_FUNCTION, topology.IMPORT_FUNCTION, topology.ANALYTICS_FUNCTION,
                 topology.REINDEX_FUNCTION):  # fmt: skip
        assert environment(api, spec)[topology.ENV_SEARCH_CONFIG] == MINIFIED, spec.role


def test_the_deployed_value_is_the_configuration_the_functions_load(configured):
    from fhirlake.search.config import load_config

    _, api = configured
    config = load_config(environment(api, topology.API_FUNCTION)[topology.ENV_SEARCH_CONFIG])
    assert config.indexes("Observation", "code") and not config.indexes("Observation", "value-quantity")
    assert not config.indexes("Patient", "_source") and config.indexes("Patient", "phonetic")


def test_configured_deployment_is_nag_clean(configured):
    from aws_cdk.assertions import Annotations, Match

    synth, _ = configured
    for stack in (synth.data, synth.api):
        annotations = Annotations.from_stack(stack)
        nag = Match.string_like_regexp(r"(AwsSolutions|HIPAA\.Security)-")
        assert annotations.find_error("*", nag) == []
        assert annotations.find_warning("*", nag) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"include": {"Patient": ["nickname"]}}, "Patient has no parameter 'nickname'"),
        ({"include": {"Patients": ["*"]}}, "unknown resource type 'Patients'"),
        ({"exclude": {"*": ["_id"]}}, "_id is always indexed"),
        ({"shards": {"Patient.gender": 65}}, r"shard count of 'Patient.gender' must be an integer 1..64"),
        ({"indexes": {}}, "expected an object with 'include', 'exclude' and/or 'shards'"),
        ('{"include": ', "not valid JSON"),
    ],
)
def test_a_bad_search_config_fails_the_synth_with_the_mistake(tmp_path, content, message):
    from infra.application import build_app
    from infra.config import ConfigError

    path = write_config(tmp_path, content)
    context = {**cdk_json_context(), "bundling": "skip", "searchConfig": path}
    with pytest.raises(ConfigError, match=rf"searchConfig='{path}': search config.*{message}"):
        build_app(context, TARGET)


def test_search_config_paths_are_relative_to_the_app(tmp_path):
    from infra.config import APP_DIR, ConfigError, load_config

    assert (APP_DIR / "cdk.json").is_file()
    with pytest.raises(ConfigError, match=r"searchConfig='nowhere/search.json': no such file"):
        load_config({"searchConfig": "nowhere/search.json"}, TARGET)
    relative = Path(write_config(tmp_path, SEARCH_CONFIG)).relative_to(APP_DIR, walk_up=True)
    assert load_config({"searchConfig": str(relative)}, TARGET).search_config == MINIFIED
    assert load_config({"searchConfig": ""}, TARGET).search_config is None  # -c searchConfig= : default


def test_a_config_too_large_for_the_lambda_environment_fails_the_synth(tmp_path):
    from fhirlake.fhir.types import resource_types
    from fhirlake.search.parameters import all_parameters

    from infra.application import build_app

    # Every parameter of every type, listed one by one: valid, but ~100 KB.
    listed = {"include": {rtype: sorted(all_parameters(rtype)) for rtype in sorted(resource_types())}}
    context = {**cdk_json_context(), "bundling": "skip", "searchConfig": write_config(tmp_path, listed)}
    with pytest.raises(
        ValueError, match=r"over Lambda's 4096-byte limit\. The search configuration.*wildcards"
    ):
        build_app(context, TARGET, functions=DEPLOYED_FUNCTIONS)


# ---------------------------------------------------------------------------------------------------
# The deploy trigger
# ---------------------------------------------------------------------------------------------------
def test_reindex_runs_asynchronously_after_every_function_is_deployed(api):
    reindex = function_id(api, topology.REINDEX_FUNCTION)
    _, trigger = trigger_of(api)
    props = trigger["Properties"]
    assert props["InvocationType"] == "Event"  # the deployment does not wait for the job
    assert props["ExecuteOnHandlerChange"] is True
    versions = of_type(api, "AWS::Lambda::Version")  # the api's SnapStart versions are another function's
    (version,) = (lid for lid, v in versions.items() if v["Properties"]["FunctionName"] == {"Ref": reindex})
    assert props["HandlerArn"] == {"Ref": version}  # a new version (code or configuration) re-runs it
    assert versions[version]["DeletionPolicy"] == "Delete"  # old versions do not pile up code storage
    for spec in DEPLOYED_FUNCTIONS:  # the api and import write entries for the new layout meanwhile
        assert function_id(api, spec) in trigger["DependsOn"], spec.role
    policies = {lid for lid in of_type(api, "AWS::IAM::Policy") if lid.startswith("FunctionsReindex")}
    assert policies and policies <= set(trigger["DependsOn"])  # its own permissions exist by then


def test_a_changed_index_layout_re_runs_the_trigger(api, configured):
    from infra.config import load_config

    _, with_config = configured
    default = trigger_of(api)[1]["Properties"]
    changed = trigger_of(with_config)[1]["Properties"]
    assert default["SearchLayoutDigest"] != changed["SearchLayoutDigest"]
    assert default["HandlerArn"] != changed["HandlerArn"]  # the configuration is in the version too
    assert default["SearchLayoutDigest"] == load_config({}, TARGET).search_layout_digest()


def test_the_layout_digest_follows_what_is_indexed_not_how_it_is_written(tmp_path):
    from infra.config import load_config

    def digest(doc: Any) -> str:
        return load_config({"searchConfig": write_config(tmp_path, doc)}, TARGET).search_layout_digest()

    default = load_config({}, TARGET).search_layout_digest()
    assert digest({}) == digest({"exclude": {}}) == default  # nothing changes: no re-index work
    assert digest({"exclude": {"*": ["_source"]}}) != default
    assert digest({"shards": {"Patient.gender": 16}}) != digest({"shards": {"Patient.gender": 8}})


def test_deploy_triggers_take_no_argument():
    from dataclasses import replace

    from infra.constructs.triggers import parse_trigger

    assert parse_trigger(topology.REINDEX_FUNCTION).kind == "deploy"
    for trigger in ("deploy:now", "on-deploy"):
        with pytest.raises(ValueError, match="cannot wire trigger"):
            parse_trigger(replace(topology.REINDEX_FUNCTION, trigger=trigger))


# ---------------------------------------------------------------------------------------------------
# The re-index function: name, permissions, concurrency, alarms
# ---------------------------------------------------------------------------------------------------
def test_reindex_permissions_are_exact(api):
    table = "<StorageResourceTable.Arn>"
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{REINDEX_NAME}"
    assert grants(api, topology.REINDEX_FUNCTION) == (
        pairs({"logs:CreateLogStream", "logs:PutLogEvents"}, "<FunctionsReindexLogGroup.Arn>")
        | pairs(XRAY, "*")
        # base table only: the job never reads a GSI
        | pairs({f"dynamodb:{call}" for call in READ_WRITE_CALLS}, table)
        | pairs({"s3:GetObject"}, "<StorageBlobsBucket.Arn>/*")
        | pairs(KEY_ACTIONS, "<KeysKey.Arn>")
        # itself only, unqualified and its versions (the trigger invokes the current version)
        | pairs({"lambda:InvokeFunction"}, function, f"{function}:*")
    )


def test_reindex_function_is_named_and_alarmed(api):
    reindex = function_id(api, topology.REINDEX_FUNCTION)
    props = api["Resources"][reindex]["Properties"]
    assert props["FunctionName"] == REINDEX_NAME
    assert props["Timeout"] == topology.REINDEX_FUNCTION.timeout_seconds == 900
    assert "ReservedConcurrentExecutions" not in props  # opt-in (reservedConcurrency), then exactly 1
    alarmed = {
        alarm["Properties"]["MetricName"]
        for alarm in of_type(api, "AWS::CloudWatch::Alarm").values()
        if {"Name": "FunctionName", "Value": {"Ref": reindex}} in alarm["Properties"].get("Dimensions", [])
    }
    assert alarmed == {"Errors", "Throttles"}


def test_only_the_reindex_function_invokes_a_function(api):
    for spec in DEPLOYED_FUNCTIONS:
        invokes = {resource for action, resource in grants(api, spec) if action.startswith("lambda:")}
        assert bool(invokes) is (spec.role == topology.REINDEX_FUNCTION.role), spec.role
