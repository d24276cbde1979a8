from __future__ import annotations

from fhirlake.fhir.summary import SUBSETTED, only_elements, summarize

OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "meta": {"versionId": "1"},
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
    "status": "final",
    "code": {"text": "weight"},
    "valueQuantity": {"value": 72},
    "note": [{"text": "n"}],
    "_status": {"extension": [{"url": "urn:x", "valueString": "y"}]},
}


def test_summary_true_keeps_summary_elements_and_choice_variants() -> None:
    out = summarize(OBSERVATION, "true")
    assert set(out) == {"resourceType", "id", "meta", "status", "_status", "code", "valueQuantity"}
    assert SUBSETTED in out["meta"]["tag"]
    assert "tag" not in OBSERVATION["meta"]  # the stored resource is untouched


def test_summary_text_and_data() -> None:
    assert set(summarize(OBSERVATION, "text")) == {
        "resourceType",
        "id",
        "meta",
        "text",
        "status",
        "_status",
        "code",
    }
    data = summarize(OBSERVATION, "data")
    assert "text" not in data and "note" in data and "valueQuantity" in data


def test_elements_keep_the_listed_and_mandatory_ones() -> None:
    out = only_elements(OBSERVATION, ("note",))
    assert set(out) == {"resourceType", "id", "meta", "note", "status", "_status", "code"}
