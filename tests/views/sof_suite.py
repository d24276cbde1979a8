"""The official SQL on FHIR v2 test suite (vendored in ./sof_v2), run the way the suite's runner does.

Each case runs ``view`` over the file's ``resources`` and compares the rows with ``expect`` as a multiset
(row order is not part of the contract), numbers by value (1.0 == 1, Decimal == float by text), and the
column order with ``expectColumns`` when the case gives one. A case with ``expectError`` (or the
pre-release ``error`` key, or no expectation at all) must raise :class:`ViewDefinitionError`.

Shared by tests/views/test_sof_suite.py and scripts/sof_pass_rate.py.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhirlake.views import ViewDefinitionError, compile_view

SUITE = Path(__file__).resolve().parent / "sof_v2"

# Files from before `resource` became required (ViewDefinition.resource 1..1): their views apply to
# every resource in the file, all of one type, so the runner fills in that type (see sof_v2/README.md).
LEGACY_NO_RESOURCE = frozenset({"constant.json", "foreach.json"})

# Cases we knowingly fail, with the reason (the test marks them xfail(strict=True)).
KNOWN_FAILURES: dict[str, str] = {
    "constant.json::constant in where element": (
        "pre-release case: its where path yields a HumanName, which the current suite (validate.json, "
        "'where with path resolving to not boolean') requires to be an error"
    ),
    "fhirpath.json::getResourceKey()": (
        "this older case expects 'Patient/pt1', but fn_reference_keys.json requires getResourceKey() to "
        "equal getReferenceKey() of 'Patient/p1'; fhirlake's keys are the bare id (patient_id joins id)"
    ),
    "fn_boundary.json::decimal highBoundary": (
        "upstream expects 15.0809999 (7 decimals) for 15.080, every other row pads to 8 decimals "
        "(15.08099999); an error in the suite's expectation"
    ),
}


@dataclass(frozen=True)
class Case:
    file: str
    index: int
    title: str
    resources: list[dict[str, Any]]
    test: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file}::{self.title}"


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(SUITE.glob("*.json")):
        # decimals as Decimal: boundary functions depend on the written precision (1.0 vs 1)
        doc = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        for index, test in enumerate(doc["tests"]):
            cases.append(Case(path.name, index, test["title"], doc["resources"], test))
    return cases


def case_ids(cases: list[Case]) -> list[str]:
    """Unique, readable ids (a few files repeat a title)."""
    seen: dict[str, int] = {}
    ids = []
    for case in cases:
        n = seen.get(case.id, 0)
        seen[case.id] = n + 1
        ids.append(case.id if n == 0 else f"{case.id}#{n + 1}")
    return ids


def _view(case: Case) -> Any:
    view = case.test["view"]
    if case.file in LEGACY_NO_RESOURCE and isinstance(view, dict) and "resource" not in view:
        types = {r["resourceType"] for r in case.resources}
        assert len(types) == 1, "a legacy file mixes resource types"
        view = {**copy.deepcopy(view), "resource": types.pop()}
    return view


def _normal(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return ("number", Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    if isinstance(value, list):
        return tuple(_normal(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _normal(v)) for k, v in value.items()))
    raise TypeError(type(value))


def _multiset(rows: list[dict[str, Any]]) -> list[Any]:
    return sorted((_normal(r) for r in rows), key=repr)


def expects_error(case: Case) -> bool:
    test = case.test
    return bool(test.get("expectError")) or "error" in test or not ({"expect", "expectCount"} & test.keys())


def check(case: Case) -> None:
    """Raise AssertionError unless the engine does what the case expects."""
    if expects_error(case):
        try:
            compiled = compile_view(_view(case))
            for resource in case.resources:
                compiled.rows(resource)
        except ViewDefinitionError:
            return
        raise AssertionError(f"{case.id}: expected a ViewDefinitionError")
    compiled = compile_view(_view(case))
    rows = [row for resource in case.resources for row in compiled.rows(resource)]
    test = case.test
    if "expectCount" in test:
        assert len(rows) == test["expectCount"], f"{len(rows)} rows, expected {test['expectCount']}"
        return
    if "expectColumns" in test:
        assert list(compiled.column_names) == test["expectColumns"]
    expected = _multiset(test["expect"])
    actual = _multiset(rows)
    assert actual == expected, f"rows differ:\n  got      {rows}\n  expected {test['expect']}"


def passed(case: Case) -> bool:
    try:
        check(case)
    except AssertionError:
        return False
    except Exception:  # an unexpected crash counts as a failure, not a stop of the whole run
        return False
    return True
