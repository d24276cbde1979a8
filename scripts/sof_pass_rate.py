"""Print the SQL on FHIR v2 test-suite pass rate of fhirlake.views: `python scripts/sof_pass_rate.py`.

Runs every vendored case (tests/views/sof_v2) and prints one line per file and the total
"passed/total"; failing cases are listed (known ones with the reason).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from tests.views.sof_suite import KNOWN_FAILURES, load_cases, passed  # noqa: E402


def main() -> int:
    per_file: dict[str, list[bool]] = defaultdict(list)
    failures: list[str] = []
    for case in load_cases():
        ok = passed(case)
        per_file[case.file].append(ok)
        if not ok:
            failures.append(case.id)
    for name, results in sorted(per_file.items()):
        print(f"{name:26} {sum(results):3}/{len(results)}")
    total = [ok for results in per_file.values() for ok in results]
    print(f"{'total':26} {sum(total):3}/{len(total)} ({100 * sum(total) / len(total):.1f}%)")
    for case_id in failures:
        print(
            f"  failed: {case_id}"
            + (f" (known: {KNOWN_FAILURES[case_id]})" if case_id in KNOWN_FAILURES else "")
        )
    return 0 if all(case_id in KNOWN_FAILURES for case_id in failures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
