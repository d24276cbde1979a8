"""Property tests: mutate valid resources and expect a rejection at the mutated path."""

from __future__ import annotations

import copy
from typing import Any

from fhirlake.validation import get_validator
from fhirlake.validation.engine import COMPLEX, PRIM, REGISTRY, Node
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.validation.conftest import synthea_resources

STRICT = get_validator("strict")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _sample() -> list[dict[str, Any]]:
    seen: dict[str, list[dict[str, Any]]] = {}
    for _, r in synthea_resources():
        bucket = seen.setdefault(r["resourceType"], [])
        if len(bucket) < 5:
            bucket.append(r)
    return [r for bucket in seen.values() for r in bucket]


SAMPLE = _sample()


def _locations(resource: dict[str, Any]) -> list[tuple[dict[str, Any], str, Node, str]]:
    """Every (object, key, node, path) in the resource (no inline resources)."""
    out = []
    stack = [(resource, REGISTRY.resource_node(resource["resourceType"]), resource["resourceType"])]
    while stack:
        obj, node, path = stack.pop()
        for key, val in obj.items():
            p = node.props.get(key)
            if p is None:
                continue
            out.append((obj, key, node, path))
            if p.kind == COMPLEX:
                child = REGISTRY.node_for(p)
                items = val if isinstance(val, list) else [val]
                for i, v in enumerate(items):
                    if isinstance(v, dict):
                        stack.append(
                            (v, child, f"{path}.{key}[{i}]" if isinstance(val, list) else f"{path}.{key}")
                        )
    return out


def _pick(data: st.DataObject) -> tuple[dict[str, Any], list[tuple[dict[str, Any], str, Node, str]]]:
    resource = copy.deepcopy(data.draw(st.sampled_from(SAMPLE)))
    return resource, _locations(resource)


def _expressions(resource: dict[str, Any]) -> set[str]:
    return {e for i in STRICT.validate(resource) if i.is_error for e in i.expression}


def test_sample_is_valid() -> None:
    assert len(SAMPLE) > 50
    for r in SAMPLE:
        assert _expressions(r) == set()


@SETTINGS
@given(st.data())
def test_unknown_element(data: st.DataObject) -> None:
    resource, locs = _pick(data)
    obj, _, _, _path = data.draw(st.sampled_from(locs))
    name = data.draw(st.from_regex(r"[a-z][a-zA-Z]{2,12}", fullmatch=True))
    if name in REGISTRY.resource_node(resource["resourceType"]).props or name in obj:
        return
    node_props = {k for k in obj}
    obj[name] = "x"
    exprs = _expressions(resource)
    assert any(e.endswith(f".{name}") for e in exprs) or node_props & {name}, exprs


@SETTINGS
@given(st.data())
def test_drop_required_element(data: st.DataObject) -> None:
    resource, locs = _pick(data)
    candidates = [(o, k, n, p) for o, k, n, p in locs if n.props[k].min > 0 and n.props[k].choice is None]
    if not candidates:
        return
    obj, key, _, path = data.draw(st.sampled_from(candidates))
    del obj[key]
    obj.pop("_" + key, None)
    assert path in _expressions(resource)


@SETTINGS
@given(
    st.data(),
    st.sampled_from(["wrong-type", "empty-string", "empty-array", "empty-object", "array-mismatch"]),
)
def test_wrong_shapes(data: st.DataObject, how: str) -> None:
    resource, locs = _pick(data)
    obj, key, node, path = data.draw(st.sampled_from(locs))
    p = node.props[key]
    target = f"{path}.{key}"
    if how == "wrong-type":
        obj[key] = {"x": 1} if p.kind == PRIM else 12345
        if p.many:
            obj[key] = [obj[key]]
            target += "[0]"
    elif how == "empty-string":
        if p.kind != PRIM or p.type in ("boolean", "integer", "decimal", "positiveInt", "unsignedInt"):
            return
        obj[key] = [""] if p.many else ""
        target += "[0]" if p.many else ""
    elif how == "empty-array":
        if not p.many:
            return
        obj[key] = []
    elif how == "empty-object":
        if p.kind != COMPLEX:
            return
        obj[key] = [{}] if p.many else {}
        target += "[0]" if p.many else ""
    else:
        val = obj[key]
        obj[key] = val[0] if p.many and isinstance(val, list) else [val]
        if p.many and p.kind == PRIM:
            pass
    assert target in _expressions(resource), (how, target)


@SETTINGS
@given(
    st.data(),
    st.sampled_from(["2020-13-01", "2020-02-30", "20200101", "2020-01-01T10:00", "yesterday", "2020/01/01"]),
)
def test_bad_dates(data: st.DataObject, bad: str) -> None:
    resource, locs = _pick(data)
    dated = [(o, k, n, p) for o, k, n, p in locs if n.props[k].type in ("date", "dateTime", "instant")]
    if not dated:
        return
    obj, key, node, path = data.draw(st.sampled_from(dated))
    many = node.props[key].many
    obj[key] = [bad] if many else bad
    assert f"{path}.{key}" + ("[0]" if many else "") in _expressions(resource)


@SETTINGS
@given(st.data(), st.from_regex(r"[a-z]{3,10}-bogus", fullmatch=True))
def test_bad_required_codes(data: st.DataObject, bad: str) -> None:
    resource, locs = _pick(data)
    coded = [(o, k, n, p) for o, k, n, p in locs if n.props[k].vs is not None and n.props[k].type == "code"]
    if not coded:
        return
    obj, key, node, path = data.draw(st.sampled_from(coded))
    many = node.props[key].many
    obj[key] = [bad] if many else bad
    assert f"{path}.{key}" + ("[0]" if many else "") in _expressions(resource)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=20,
)


@SETTINGS
@given(st.data(), JSON)
def test_random_json_never_breaks_the_validator(data: st.DataObject, junk: Any) -> None:
    resource, locs = _pick(data)
    obj, key, _, _ = data.draw(st.sampled_from(locs))
    obj[key] = junk
    for level in ("minimal", "structure-only", "strict"):
        issues = get_validator(level).validate(resource)
        assert all(i.code != "exception" for i in issues)
