"""How each of the spec's error invariants is evaluated, and the subset compiler against fhirpathpy."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from fhirlake.validation.engine import REGISTRY
from fhirlake.validation.fhirpath_lite import try_compile
from fhirlake.validation.invariants import compile_invariant

TABLES = resources.files("fhirlake") / "data" / "r4" / "validation"


def _all_constraints() -> dict[str, tuple[str, str, str]]:
    out = {}
    for f in TABLES.iterdir():
        if not f.name.endswith(".json") or f.name in ("valuesets.json", "skipped-valuesets.json"):
            continue
        data = json.loads(f.read_text())
        for table in data.values() if f.name == "datatypes.json" else [data]:
            for path, cons in table["constraints"].items():
                for key, human, expression in cons:
                    out[key] = (human, expression, path)
    return out


def test_modes() -> None:
    modes: dict[str, str] = {}
    for key, (human, expression, path) in _all_constraints().items():
        inv = compile_invariant(key, human, expression, path)
        modes[key] = inv.mode if inv else "not evaluated here"
    skipped = sorted(k for k, m in modes.items() if m == "not evaluated here")
    # dom-2..5 and ref-1 are evaluated by the engine; txt-1/2 need an HTML checker; ctm-1 uses resolve()
    assert skipped == ["ctm-1", "dom-2", "dom-3", "dom-4", "dom-5", "ref-1", "txt-1", "txt-2"]
    # only these need fhirpathpy (StructureDefinition / CodeSystem content rules)
    assert sorted(k for k, m in modes.items() if m == "fhirpathpy") == ["csd-1", "sdf-8", "sdf-8a", "sdf-9"]
    assert sum(m == "lite" for m in modes.values()) >= 180


CASES = [
    ("code.empty() or system.exists()", {"code": "a"}, False),
    ("code.empty() or system.exists()", {"code": "a", "system": "s"}, True),
    ("(low.empty() or high.empty()) or (low <= high)", {"low": 2, "high": 1}, False),
    (
        "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()",
        {
            "resourceType": "Observation",
            "valueString": "x",
            "code": {"coding": [{"code": "a"}]},
            "component": [{"code": {"coding": [{"code": "a"}]}}],
        },
        False,
    ),
    ("status in ('proposed' | 'cancelled')", {"status": "booked"}, False),
    ("(type = 'named-event' implies name.exists())", {"type": "named-event"}, False),
    ("extension.exists() or (a.count() + b.count() <= 1)", {"a": 1, "b": [1]}, False),
    ("extension.exists() or (a.count() + b.count() <= 1)", {"a": 1}, True),
    ("where(use = 'home').empty()", {"use": "home"}, False),
    ("concept.empty() or filter.empty()", {"concept": [{}], "filter": [{}]}, False),
    ("name.matches('[A-Z]([A-Za-z0-9_]){0,254}')", {"name": "abc"}, False),
    ("name.matches('[A-Z]([A-Za-z0-9_]){0,254}')", {"name": "Abc"}, True),
]


@pytest.mark.parametrize(("expression", "focus", "expected"), CASES)
def test_lite_agrees_with_fhirpathpy(expression: str, focus: dict, expected: bool) -> None:
    from fhirpathpy import evaluate
    from fhirpathpy.models import models

    class RC:
        resource = root = focus

    REGISTRY.resource_node("Observation")  # choice names (value[x]) come from the loaded tables
    lite = try_compile(expression)
    assert lite is not None
    assert lite(focus, RC()) is expected
    assert evaluate(focus, expression, {"resource": focus}, models["r4"]) == [expected]
