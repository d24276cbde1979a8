"""Every case of the official SQL on FHIR v2 test suite, one test id per case."""

from __future__ import annotations

import pytest

from tests.views.sof_suite import KNOWN_FAILURES, Case, case_ids, check, load_cases

CASES = load_cases()


def _param(case: Case, case_id: str) -> object:
    reason = KNOWN_FAILURES.get(case.id)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case, id=case_id, marks=marks)


@pytest.mark.parametrize("case", [_param(c, i) for c, i in zip(CASES, case_ids(CASES), strict=True)])
def test_sof_v2_case(case: Case) -> None:
    check(case)


def test_suite_is_complete() -> None:
    # the vendored suite: 22 files, 132 cases; a lost file would silently shrink the pass rate
    assert len({c.file for c in CASES}) == 22
    assert len(CASES) == 132


def test_every_known_failure_names_a_real_case() -> None:
    assert set(KNOWN_FAILURES) <= {c.id for c in CASES}
