"""JSON syntax errors become issues with line/column and the element being parsed."""

from __future__ import annotations

import pytest
from fhirlake.validation import parse_and_validate


@pytest.mark.parametrize(
    ("raw", "reason", "expression"),
    [
        (b'// c\n{"resourceType": "Patient"}', "Comments are not allowed", "Patient"),
        (b'{"resourceType": "Patient", /* c */ "id": "a"}', "Comments are not allowed", "Patient"),
        (b'{"resourceType": "Patient", "name": [{"family": "x",}]}', "Trailing commas", "Patient.name[0]"),
        (
            b'{"resourceType": "Patient", "name": [{"family": "x" "given": ["y"]}]}',
            "comma is missing",
            "Patient.name[0]",
        ),
        (b'{"resourceType": "Patient", "name": [{"family": "x"]}', "closing bracket", "Patient.name[0]"),
        (b'{"resourceType": "Patient", "active": tru}', "", "Patient"),
        (b"", "", "$"),
    ],
)
def test_syntax_errors(raw: bytes, reason: str, expression: str) -> None:
    resource, issues = parse_and_validate(raw)
    assert resource is None
    (issue,) = issues
    assert issue.is_error and issue.code == "invalid"
    assert "line 1, column" in issue.diagnostics
    assert reason in issue.diagnostics
    assert issue.expression == (expression,)


def test_diagnostics_do_not_quote_content() -> None:
    _, issues = parse_and_validate(b'{"resourceType": "Patient", "name": [{"family": "SECRETNAME" x}]}')
    assert "SECRETNAME" not in issues[0].diagnostics


def test_valid_json_is_validated() -> None:
    resource, issues = parse_and_validate(
        b'{"resourceType": "Patient", "id": "bad_id"}', "minimal", "Patient"
    )
    assert resource == {"resourceType": "Patient", "id": "bad_id"}
    assert [i.expression for i in issues] == [("Patient.id",)]
