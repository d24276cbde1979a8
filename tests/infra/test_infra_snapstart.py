"""Lambda SnapStart on the api function (context ``snapStart``): published versions, a ``live`` alias."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhirlake import topology

from infra.config import ConfigError, load_config

from .conftest import TARGET
from .test_infra_analytics import function_id, of_type

pytestmark = pytest.mark.infra  # one worker runs every infra module (tests/conftest.py)


@pytest.fixture(scope="module")
def api(synth_factory) -> dict[str, Any]:
    synth = synth_factory({"snapStart": "true"})
    return synth.template(synth.api).to_json()


@pytest.fixture(scope="module")
def without(default_synth) -> dict[str, Any]:
    return default_synth.template(default_synth.api).to_json()


@pytest.fixture(scope="module")
def reconfigured(synth_factory) -> dict[str, Any]:
    # a configuration change of the api function
    synth = synth_factory({"snapStart": "true", "validationLevel": "minimal"})
    return synth.template(synth.api).to_json()


def version_of(template: dict[str, Any], function: str) -> str:
    (version,) = [
        lid
        for lid, v in of_type(template, "AWS::Lambda::Version").items()
        if v["Properties"]["FunctionName"] == {"Ref": function}
    ]
    return version


def live_alias(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (alias,) = of_type(template, "AWS::Lambda::Alias").items()
    return alias


def api_gateway_targets(template: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(integration URIs, invoke-permission function names) of every method / permission for API Gateway."""
    uris = [
        m["Properties"]["Integration"]["Uri"] for m in of_type(template, "AWS::ApiGateway::Method").values()
    ]
    permitted = [
        p["Properties"]["FunctionName"]
        for p in of_type(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    return uris, permitted


def test_only_the_api_function_snapshots_its_published_versions(api):
    api_function = function_id(api, topology.API_FUNCTION)
    for lid, function in of_type(api, "AWS::Lambda::Function").items():
        expected = {"ApplyOn": "PublishedVersions"} if lid == api_function else None
        assert function["Properties"].get("SnapStart") == expected, lid


def test_api_gateway_invokes_the_live_alias_of_the_current_version(api):
    api_function = function_id(api, topology.API_FUNCTION)
    version = version_of(api, api_function)
    alias_id, alias = live_alias(api)
    assert alias["Properties"] == {
        "FunctionName": {"Ref": api_function},
        "FunctionVersion": {"Fn::GetAtt": [version, "Version"]},
        "Name": "live",
    }
    # a replaced version is deleted: each one keeps a billed snapshot cache while it exists
    assert of_type(api, "AWS::Lambda::Version")[version]["DeletionPolicy"] == "Delete"
    uris, permitted = api_gateway_targets(api)
    analytics = {"Fn::GetAtt": [function_id(api, topology.ANALYTICS_FUNCTION), "Arn"]}
    api_uris = [uri for uri in uris if alias_id in json.dumps(uri)]
    assert len(api_uris) == 2 and len(uris) == 4  # ANY / and /{proxy+}; /_analytics stays unqualified
    assert api_function not in json.dumps(uris)  # never $LATEST, which SnapStart does not apply to
    # API Gateway may invoke the alias, and nothing else of the api function
    assert sorted(map(json.dumps, permitted)) == sorted(
        [json.dumps({"Ref": alias_id})] * 2 + [json.dumps(analytics)] * 2
    )


def test_a_configuration_change_publishes_a_new_version_behind_the_alias(api, reconfigured):
    default_version = version_of(api, function_id(api, topology.API_FUNCTION))
    new_version = version_of(reconfigured, function_id(reconfigured, topology.API_FUNCTION))
    assert new_version != default_version  # CloudFormation publishes it, then deletes the old one
    assert live_alias(reconfigured)[1]["Properties"]["FunctionVersion"] == {
        "Fn::GetAtt": [new_version, "Version"]
    }


def test_api_function_avoids_what_snapstart_does_not_support(api):
    props = of_type(api, "AWS::Lambda::Function")[function_id(api, topology.API_FUNCTION)]["Properties"]
    assert "FileSystemConfigs" not in props  # EFS
    assert props.get("EphemeralStorage", {"Size": 512})["Size"] <= 512
    for kind in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
        for resource in of_type(api, kind).values():
            assert "ProvisionedConcurrencyConfig" not in resource["Properties"]


def test_snap_start_off_invokes_the_function_unqualified(without):
    api_function = function_id(without, topology.API_FUNCTION)
    assert "SnapStart" not in of_type(without, "AWS::Lambda::Function")[api_function]["Properties"]
    assert not of_type(without, "AWS::Lambda::Alias")
    versions = of_type(without, "AWS::Lambda::Version").values()
    assert {json.dumps(v["Properties"]["FunctionName"]) for v in versions} == {
        json.dumps({"Ref": function_id(without, topology.REINDEX_FUNCTION)})  # the deploy trigger's only
    }
    uris, permitted = api_gateway_targets(without)
    assert sum(api_function in json.dumps(uri) for uri in uris) == 2
    assert permitted.count({"Fn::GetAtt": [api_function, "Arn"]}) == 2


@pytest.mark.parametrize(("raw", "enabled"), [(True, True), ("false", False), ("off", False), ("1", True)])
def test_snap_start_option_parses_cdk_json_and_cli_values(raw, enabled):
    assert load_config({"snapStart": raw}, TARGET).snap_start is enabled


def test_snap_start_is_opt_in_and_refused_where_lambda_lacks_it():
    assert load_config({}, TARGET).snap_start is False  # it bills at idle: the deployer chooses it
    taipei = {**TARGET, "CDK_DEFAULT_REGION": "ap-east-2"}
    with pytest.raises(ConfigError, match=r"SnapStart is not available in ap-east-2.*snapStart=false"):
        load_config({"snapStart": "true"}, taipei)
    assert load_config({"snapStart": "false"}, taipei).snap_start is False
    with pytest.raises(ConfigError, match="snapStart='sometimes': must be true or false"):
        load_config({"snapStart": "sometimes"}, TARGET)
