"""IndexValue keeps the dataclass interface its users rely on (fields, keyword construction with defaults,
immutability, equality and hashing, ``dataclasses.replace``) with its hand-written constructor."""

from __future__ import annotations

import dataclasses
import inspect
from decimal import Decimal

import pytest
from fhirlake.search.values import IndexValue


def test_constructor_takes_exactly_the_fields_with_their_defaults() -> None:
    fields = dataclasses.fields(IndexValue)
    parameters = list(inspect.signature(IndexValue).parameters.values())
    assert [p.name for p in parameters] == [f.name for f in fields]
    for p, f in zip(parameters, fields, strict=True):
        assert p.default == (inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)


def test_every_field_is_set_from_its_own_argument() -> None:
    arguments = {f.name: f"value-{f.name}" for f in dataclasses.fields(IndexValue)}
    value = IndexValue(**arguments)
    assert {name: getattr(value, name) for name in arguments} == arguments
    assert IndexValue("code", "token").components == ()
    assert IndexValue("code", "token").text is None


def test_immutable_hashable_comparable_and_replaceable() -> None:
    value = IndexValue(
        "value-quantity", "quantity", number=Decimal("1.0"), system="http://unitsofmeasure.org"
    )
    same = IndexValue("value-quantity", "quantity", number=Decimal("1.0"), system="http://unitsofmeasure.org")
    assert value == same and hash(value) == hash(same) and len({value, same}) == 1
    assert value != dataclasses.replace(value, number=Decimal("2"))
    assert dataclasses.replace(value, code_value="kg").code_value == "kg"
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.text = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        IndexValue("code", "token", unknown="x")  # type: ignore[call-arg]
