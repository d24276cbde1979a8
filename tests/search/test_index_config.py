"""A deployment's search configuration: which parameters are indexed, searchable and advertised."""

from __future__ import annotations

import pytest
from fhirlake.fhir.capability import capability_statement
from fhirlake.fhir.outcome import FhirError
from fhirlake.persistence import search_index
from fhirlake.search.config import DEFAULT_HOT_SHARDS, load_config
from fhirlake.search.parameters import all_parameters, parameters

BASE = "http://fhir.example/base"


def advertised(rtype: str) -> set[str]:
    rest = capability_statement(BASE)["rest"][0]["resource"]
    return {p["name"] for r in rest if r["type"] == rtype for p in r["searchParam"]}


def test_default_indexes_every_r4_parameter() -> None:
    for rtype in ("Patient", "Observation", "Encounter", "Claim", "Bundle"):
        assert set(parameters(rtype)) == set(all_parameters(rtype))


def test_include_and_exclude_narrow_search_and_metadata(use_index_config) -> None:
    use_index_config(
        '{"include": {"Patient": ["*"], "Observation": ["code", "subject"]},'
        ' "exclude": {"*": ["_source"], "Patient": ["phonetic"]}}'
    )
    assert {"code", "subject", "_id"} == set(parameters("Observation"))  # _id: always
    assert "phonetic" not in parameters("Patient") and "_source" not in parameters("Patient")
    assert "family" in parameters("Patient")
    assert set(parameters("Encounter")) == {"_id"}  # not included
    assert advertised("Observation") == {"code", "subject", "_id"}
    assert advertised("Patient") == {c for c, p in parameters("Patient").items() if p.type != "composite"}


def test_known_but_unindexed_parameter_is_refused_or_ignored(use_index_config, index_service) -> None:
    use_index_config('{"exclude": {"Patient": ["birthdate"]}}')
    searching = index_service.searching()
    with pytest.raises(FhirError) as caught:
        searching.search("Patient", [("birthdate", "1970")], BASE, strict=True)
    assert caught.value.status == 400
    lenient = searching.search("Patient", [("birthdate", "1970")], BASE, strict=False)
    assert [w.severity for w in lenient.warnings] == ["warning"]
    assert "birthdate" in lenient.warnings[0].diagnostics


def test_unindexed_parameters_write_no_entries(use_index_config, index_service) -> None:
    use_index_config('{"include": {"Patient": ["gender"]}}')
    index_service.create("Patient", {"resourceType": "Patient", "gender": "male", "birthDate": "1970"})
    store = index_service.store
    entries = store.search_entries(store.current("Patient", "r0"))
    assert {pk.split("?")[1].split("#")[0] for pk, _ in entries} == {"gender", "_id"}


def test_shard_counts_default_and_override(use_index_config) -> None:
    assert parameters("Patient")["gender"].shards == DEFAULT_HOT_SHARDS  # a required code: few values
    assert parameters("Patient")["active"].shards == DEFAULT_HOT_SHARDS  # a boolean
    assert parameters("Observation")["_lastUpdated"].shards == DEFAULT_HOT_SHARDS  # appends at the end
    assert parameters("Observation")["code"].shards == 1  # CodeableConcept: many values
    assert parameters("Patient")["identifier"].shards == 1
    use_index_config('{"shards": {"Patient.gender": 2, "*._lastUpdated": 1}}')
    assert parameters("Patient")["gender"].shards == 2
    assert parameters("Observation")["_lastUpdated"].shards == 1
    assert search_index.partition_keys("t", "Patient", "gender", 2) == [
        "t#Patient?gender#0/2",
        "t#Patient?gender#1/2",
    ]


@pytest.mark.parametrize(
    ("doc", "mistake"),
    [
        ('{"include": {"Patientt": ["*"]}}', "unknown resource type"),
        ('{"include": {"Patient": ["colour"]}}', "no parameter 'colour'"),
        ('{"exclude": {"*": ["_id"]}}', "_id is always indexed"),
        ('{"shards": {"Patient.gender": 0}}', "shard count"),
        ('{"shards": {"Patient.colour": 2}}', "not Type.code"),
        ('{"includes": {}}', "expected an object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_configuration_mistakes_fail_loudly(doc: str, mistake: str) -> None:
    with pytest.raises(ValueError, match=mistake):
        load_config(doc)


def test_configuration_from_a_file(tmp_path) -> None:
    path = tmp_path / "search.json"
    path.write_text('{"include": {"Patient": ["name"]}}')
    config = load_config(str(path))
    assert config.indexes("Patient", "name") and not config.indexes("Patient", "gender")
    assert not config.indexes("Observation", "code") and config.indexes("Observation", "_id")
