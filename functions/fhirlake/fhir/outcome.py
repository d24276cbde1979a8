"""OperationOutcome: the one shape every problem takes on its way to a client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue. ``code`` is from http://hl7.org/fhir/R4/valueset-issue-type.html."""

    severity: Severity
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity in ("fatal", "error")

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def error(code: str, diagnostics: str, *expression: str) -> Issue:
    return Issue("error", code, diagnostics, tuple(expression))


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    if not issues:
        issues = [Issue("information", "informational", "All OK")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@dataclass
class FhirError(Exception):
    """A failure with an HTTP status and the OperationOutcome issues that explain it.

    Raised anywhere in the core; the API layer turns it into a response. Diagnostics must
    never quote resource content (PHI): they name elements, not their values.
    """

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.status, "; ".join(i.diagnostics for i in self.issues))

    @classmethod
    def of(cls, status: int, code: str, diagnostics: str, *expression: str) -> FhirError:
        return cls(status, [error(code, diagnostics, *expression)])

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)
