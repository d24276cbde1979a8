"""Differential test: the views' compiled FHIRPath against fhirpathpy (an independent implementation).

Every column path of the shipped views (except the SQL on FHIR-only key functions, which fhirpathpy
lacks) plus general expressions run over HL7 examples of the view's resource type; both engines must
give the same collection.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

import fhirpathpy
import pytest
from fhirlake.fhir.fhirpath import compile_path
from fhirlake.fhir.json import loads
from fhirlake.views import default_views
from fhirpathpy.models import models

from tests.conftest import SHARED_DATA

PER_TYPE = 12  # examples per resource type: variety at a few seconds of fhirpathpy
GENERAL = [
    "id",
    "meta.profile.first()",
    "text.status = 'generated'",
    "identifier.where(system.exists()).value",
    "identifier.count() > 1",
    "extension.url.distinct()",
    "code.coding.where(system = 'http://loinc.org').code",
    "code.coding.code.first() | status",
    "subject.reference.startsWith('Patient/')",
    "status in ('final' | 'amended' | 'active')",
    "name.where(use = 'official').family.exists().not()",
    "telecom.where(system = 'phone').value.last()",
    "status | gender | id",
    "value.ofType(Quantity).value > 5",
    "value.ofType(Quantity).value * 2",
    "component.code.coding.code.tail()",
    "category.coding.code contains 'vital-signs'",
    "issued.exists() xor effective.exists()",
    "interpretation.empty() implies status = 'final'",
    "iif(value.exists(), 'valued', 'no value')",
    "dosageInstruction.first().timing.repeat.frequency",
    "contained.id",
]


@cache
def examples(resource_type: str) -> tuple[dict[str, Any], ...]:
    paths = sorted((SHARED_DATA / "r4-examples").glob(f"{resource_type}-*.json"))[:PER_TYPE]
    return tuple(loads(p.read_bytes()) for p in paths)


def _normal(values: list[Any]) -> list[Any]:
    out = []
    for v in values:
        if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
            v = Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
            v = v.normalize()
        out.append(str(v) if type(v).__name__.startswith("FP_") else v)
    return out


def _cases() -> list[tuple[str, str]]:
    cases = set()
    for view in default_views():
        for select in view["select"]:
            for column in select.get("column", []):
                if "Key(" not in column["path"] and "forEach" not in select:
                    cases.add((view["resource"], column["path"]))
        for path in GENERAL:
            cases.add((view["resource"], path))
    return sorted(cases)


@pytest.mark.parametrize(("resource_type", "path"), _cases())
def test_same_result_as_fhirpathpy(resource_type: str, path: str) -> None:
    compiled = compile_path(path)
    resources = examples(resource_type)
    assert resources, resource_type
    for resource in resources:
        env = {"resource": resource, "rootResource": resource, "context": resource}
        try:
            expected = fhirpathpy.evaluate(resource, path, {}, models["r4"])
        except Exception:  # fhirpathpy rejects it (e.g. '+' on a collection): ours must fail too
            with pytest.raises(ValueError):
                compiled([resource], env)
            continue
        assert _normal(compiled([resource], env)) == _normal(expected), f"{resource['id']}: {path}"
