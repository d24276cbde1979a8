"""cdk-nag helpers: every suppression goes through :func:`suppress`, with a written reason."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct

RuleReason = tuple[str, str] | tuple[str, str, Iterable[Any]]


def suppress(construct: IConstruct, *rules: RuleReason, children: bool = False) -> None:
    """Suppress ``(rule_id, reason[, applies_to])`` findings on ``construct`` (and its children)."""
    suppressions = []
    for rule in rules:
        rule_id, reason, *rest = rule
        if len(reason) < 20:
            raise ValueError(f"write a real reason for suppressing {rule_id}")
        applies_to = list(rest[0]) if rest else None
        suppressions.append(NagPackSuppression(id=rule_id, reason=reason, applies_to=applies_to))
    NagSuppressions.add_resource_suppressions(construct, suppressions, apply_to_children=children)


def regex(pattern: str) -> RegexAppliesTo:
    """A granular ``appliesTo`` entry matching findings like ``Resource::<Table.Arn>/index/*``."""
    return RegexAppliesTo(regex=f"/{pattern}/g")
