"""``index_values`` walks each resource once with a plan compiled per resource type; it must give exactly
what evaluating each parameter on its own (``parameter_values``, the path search, sorting, includes and
the lake use) gives, in the same order, over every corpus resource and under a deployment configuration."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fhirlake.fhir.json import loads
from fhirlake.search.extract import index_values, parameter_values
from fhirlake.search.parameters import parameters

from tests.search.conftest import SHARED, _resources


def _per_parameter(resource: dict[str, Any]) -> list[Any]:
    return [v for sp in parameters(resource["resourceType"]).values() for v in parameter_values(sp, resource)]


def _corpus() -> Iterator[dict[str, Any]]:
    """Every resource of the Synthea data (bulk NDJSON and every patient bundle) and the HL7 examples."""
    for path in sorted((SHARED / "synthea").rglob("*")):
        if path.name.endswith(".ndjson.gz"):
            with gzip.open(path) as lines:
                for line in lines:
                    if line.strip():
                        yield from _resources(loads(line))
        elif path.name.endswith((".json.gz", ".json")):
            raw = path.read_bytes()
            yield from _resources(loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw))
    for path in sorted((SHARED / "r4-examples").glob("*.json")):
        yield from _resources(loads(path.read_bytes()))


def _sample(resources: Iterator[dict[str, Any]], first: int = 300, then_every: int = 25):
    """Every type's first ``first`` resources, then one in ``then_every``: Synthea repeats itself (the
    whole corpus was compared when the plan replaced the per-parameter walk: docs/performance.md)."""
    seen: Counter[str] = Counter()
    for resource in resources:
        n = seen[resource["resourceType"]]
        seen[resource["resourceType"]] += 1
        if n < first or n % then_every == 0:
            yield resource


def test_corpus_resources_index_as_each_parameter_alone() -> None:
    if not (SHARED / "synthea").is_dir() or not (SHARED / "r4-examples").is_dir():
        pytest.skip(f"no corpora under {SHARED}")
    count = values = 0
    types = set()
    for resource in _sample(_corpus()):
        got = index_values(resource, strict=True)
        assert got == _per_parameter(resource), f"{resource['resourceType']}/{resource.get('id')}"
        count += 1
        values += len(got)
        types.add(resource["resourceType"])
    assert count > 9_000 and len(types) > 140  # every type of the HL7 examples and of Synthea
    assert values > 10 * count


OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "tag": [{"system": "s", "code": "t"}]},
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2024-01-01",
    "valueQuantity": {"value": 60, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        }
    ],
}


def test_shared_paths_feed_each_parameter() -> None:
    """``subject`` feeds subject and patient (a Patient reference), ``meta`` every ``_*`` parameter,
    ``code`` code and the composites that start there; a path the resource lacks yields nothing."""
    got = index_values(OBSERVATION, strict=True)
    assert got == _per_parameter(OBSERVATION)
    codes = {v.code for v in got}
    assert {"subject", "patient", "_lastUpdated", "_tag", "code", "component-code"} <= codes
    assert {"code-value-quantity", "component-code-value-quantity", "combo-code"} <= codes
    assert "performer" not in codes
    group = {**OBSERVATION, "subject": {"reference": "Group/g1"}}
    assert {"subject", "patient"} & {v.code for v in index_values(group)} == {"subject"}


def test_the_deployment_configuration_applies(use_index_config) -> None:
    use_index_config('{"exclude": {"Observation": ["patient", "_tag"]}, "shards": {"Observation.code": 4}}')
    got = index_values(OBSERVATION, strict=True)
    assert got == _per_parameter(OBSERVATION)
    codes = {v.code for v in got}
    assert "patient" not in codes and "_tag" not in codes
    assert {"subject", "code", "_lastUpdated"} <= codes
    use_index_config(None)
    assert {"patient", "_tag"} <= {v.code for v in index_values(OBSERVATION)}


def test_a_failing_parameter_is_skipped_unless_strict() -> None:
    broken = {**OBSERVATION, "status": {"not": "a code"}, "subject": {"reference": "Patient/p1", "type": []}}
    broken["code"] = {"coding": [{"system": {"unhashable": True}, "code": "x"}]}
    got = index_values(broken)
    assert "code" not in {v.code for v in got}  # its system cannot be indexed
    assert "subject" in {v.code for v in got}
    with pytest.raises(TypeError):
        index_values(broken, strict=True)
