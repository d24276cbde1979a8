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
