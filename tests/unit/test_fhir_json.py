from __future__ import annotations

import pytest
from fhirlake.fhir.json import dumps, loads
from fhirlake.fhir.outcome import FhirError


@pytest.mark.parametrize(
    "text",
    [
        b'{"v":1.50}',
        b'{"v":1e3}',
        b'{"v":-0.000}',
        b'{"v":0.12345678901234567890}',
        b'{"v":12345678901234567890}',
        b'{"v":2.5}',
        b'{"v":[1,2.0,3]}',
    ],
)
def test_numbers_keep_their_exact_text(text: bytes) -> None:
    assert dumps(loads(text)) == text


def test_plain_documents_take_the_fast_path() -> None:
    value = loads(b'{"a":"b","n":3,"f":2.5}')
    assert type(value["f"]) is float


def test_compact_documents_written_back_verbatim_keep_floats() -> None:
    # orjson writes these exact bytes back, so every number keeps its text as a float
    value = loads(b'{"v":1.0,"w":100.0,"x":[0.1,2]}')
    assert [type(value["v"]), type(value["w"])] == [float, float]
    assert dumps(value) == b'{"v":1.0,"w":100.0,"x":[0.1,2]}'


def test_spacing_does_not_hide_a_decimal_at_risk() -> None:
    text = b'{\n  "v": 1.50,\n  "w": 2.5\n}'
    assert dumps(loads(text)) == b'{"v":1.50,"w":2.5}'


@pytest.mark.parametrize("bad", [b"{", b'{"a":1,}', b"{'a':1}", b'{"a":1} // c', b"\xff\xfe{}"])
def test_malformed_json_is_a_400_with_position(bad: bytes) -> None:
    with pytest.raises(FhirError) as caught:
        loads(bad)
    assert caught.value.status == 400
    assert caught.value.issues[0].code == "invalid"
    assert "line 1" in caught.value.issues[0].diagnostics


def test_error_names_line_and_column_not_content() -> None:
    with pytest.raises(FhirError) as caught:
        loads(b'{\n  "name": "Secret Person",\n  "x": }')
    text = caught.value.issues[0].diagnostics
    assert "line 3" in text and "Secret" not in text
