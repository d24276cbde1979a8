"""Cold start of the api Lambda: a fresh Python process imports the handler and serves its first
requests against the embedded data store (moto on loopback).

Prints, as medians over N fresh processes, the time to import `handlers.api` (module init: settings,
boto3 clients, validator), the first `GET /metadata`, the first `PUT` (validation tables load lazily per
type) and the first `GET` read, plus the bare interpreter start-up measured the same way as a baseline.

    .venv/bin/python benchmarks/cold_start.py [N]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))

PROBE = r"""
import json, time, sys
t0 = time.perf_counter()
import handlers.api as api
t1 = time.perf_counter()
from fhirlake.local.lambda_context import LocalLambdaContext
ctx = LocalLambdaContext(function_name="fhirlake-api")
events = {name: json.load(open(f"events/api/{name}.json")) for name in ("metadata", "update", "read")}
out = {"import_ms": (t1 - t0) * 1000}
for name in ("metadata", "update", "read"):
    s = time.perf_counter()
    result = api.handler(events[name], ctx)
    assert result["statusCode"] < 300, result
    out[name + "_ms"] = (time.perf_counter() - s) * 1000
print(json.dumps(out))
"""

BASELINE = "import time, json; print(json.dumps({}))"


def run(code: str, env: dict[str, str]) -> tuple[float, dict]:
    import time

    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          check=True)
    wall = (time.perf_counter() - start) * 1000
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from fhirlake.local.runtime import LocalRuntime

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with LocalRuntime(port=0) as runtime:
        env = {**os.environ, "PYTHONPATH": str(REPO / "functions"), "POWERTOOLS_METRICS_DISABLED": "true"}
        env["PUT_TABLE"] = runtime.resources.table_name
        walls, probes, baseline = [], [], []
        for _ in range(rounds):
            baseline.append(run(BASELINE, env)[0])
            wall, probe = run(PROBE, env)
            walls.append(wall)
            probes.append(probe)
    med = statistics.median
    interpreter = med(baseline)
    print(f"fresh processes: {rounds}; python {sys.version.split()[0]}")
    print(f"  bare interpreter start-up (baseline)  {interpreter:8.1f} ms")
    print(f"  import handlers.api (module init)     {med(p['import_ms'] for p in probes):8.1f} ms")
    print(f"  first GET /metadata                   {med(p['metadata_ms'] for p in probes):8.1f} ms")
    print(f"  first PUT /Patient/example            {med(p['update_ms'] for p in probes):8.1f} ms")
    print(f"  first GET /Patient/example            {med(p['read_ms'] for p in probes):8.1f} ms")
    total = med(walls)
    ratio = total / interpreter
    print(f"  whole process (start..3 answers)      {total:8.1f} ms  = {ratio:.1f}x the baseline")


if __name__ == "__main__":
    main()
