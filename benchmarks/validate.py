"""Validator throughput vs. parsing and vs. fhir.resources (R4B pydantic models), same corpus, one process.

    .venv/bin/python benchmarks/validate.py [--limit N] [--seed S] [--rounds R]

Corpus: every Synthea resource (NDJSON lines + bundle entries) and every HL7 R4 example from
../shared/data, serialized to bytes once and shuffled. Every measurement runs over the same list.
Also measures the validator's cold-start cost in fresh subprocesses (import + first Patient validation);
the tables of every resource type in the corpus are loaded before the throughput runs (time printed).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def load_corpus() -> list[bytes]:
    out: list[bytes] = []
    for f in sorted((DATA / "synthea").glob("*/*.ndjson.gz")):
        out.extend(line for line in gzip.decompress(f.read_bytes()).splitlines() if line.strip())
    for f in sorted((DATA / "synthea").glob("*/*.json.gz")):
        bundle = orjson.loads(gzip.decompress(f.read_bytes()))
        out.extend(orjson.dumps(e["resource"]) for e in bundle.get("entry", []))
    out.extend(f.read_bytes() for f in sorted((DATA / "r4-examples").glob("*.json")))
    return out


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


COLD = """
import time, sys
t0 = time.perf_counter()
from fhirlake.validation import get_validator
v = get_validator("strict")
t1 = time.perf_counter()
issues = v.validate({"resourceType": "Patient", "id": "p1", "active": True, "name": [{"family": "X"}],
                     "birthDate": "2000-01-01", "gender": "female"})
t2 = time.perf_counter()
assert issues == [], issues
print((t1 - t0) * 1000, (t2 - t1) * 1000)
"""


def cold_start(runs: int = 5) -> tuple[float, float]:
    imports, firsts = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True, check=True).stdout
        a, b = map(float, out.split())
        imports.append(a)
        firsts.append(b)
    return sorted(imports)[runs // 2], sorted(firsts)[runs // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="use only N resources (0 = all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each row is their median")
    args = ap.parse_args()

    corpus = load_corpus()
    random.Random(args.seed).shuffle(corpus)
    if args.limit:
        corpus = corpus[: args.limit]
    parsed = [orjson.loads(b) for b in corpus]
    avg = sum(map(len, corpus)) / len(corpus)
    print(f"corpus: {len(corpus):,} resources, avg {avg / 1024:.1f} KB, Python {sys.version.split()[0]}")

    from fhir.resources.R4B import get_fhir_model_class
    from fhirlake.validation import get_validator

    classes = {}
    for r in parsed:
        t = r["resourceType"]
        if t not in classes:
            try:
                classes[t] = get_fhir_model_class(t)
            except (KeyError, ValueError):
                classes[t] = None
    r4b_items = [(classes[r["resourceType"]], r) for r in parsed if classes[r["resourceType"]] is not None]

    def r4b(item):
        cls, r = item
        with contextlib.suppress(Exception):
            cls.model_validate(r)

    print("throughput (validation of parsed JSON; parse measured separately):")
    # Load the tables of every type in the corpus before timing (as the R4B model classes are imported
    # above): otherwise whichever level runs first pays the one-off loading. Reported on its own line.
    first_of_type = {r["resourceType"]: r for r in reversed(parsed)}
    t = time.perf_counter()
    for r in first_of_type.values():
        get_validator("strict").validate(r)
    warm_ms = (time.perf_counter() - t) * 1000
    print(f"  (fhirlake tables for {len(first_of_type)} resource types loaded once: {warm_ms:.0f} ms)")
    # Rows are interleaved in chunks of 500 resources (each chunk: every row in turn), so that load from
    # other processes on a shared machine is spread evenly over all rows; a round is one pass over the
    # corpus, and each row's rate is the median over rounds.
    r4b_label = f"fhir.resources R4B model_validate ({len(r4b_items):,})"
    rows = {"orjson.loads": orjson.loads, r4b_label: r4b}
    for level in ("minimal", "structure-only", "strict"):
        rows[f"fhirlake {level}"] = get_validator(level).validate
    inputs = {"orjson.loads": corpus, r4b_label: r4b_items}
    chunks = [(i, i + 500) for i in range(0, len(parsed), 500)]
    r4b_index = [i for i, r in enumerate(parsed) if classes[r["resourceType"]] is not None]
    samples: dict[str, list[float]] = {label: [] for label in rows}
    for _ in range(args.rounds):
        seconds = dict.fromkeys(rows, 0.0)
        for lo, hi in chunks:
            for label, fn in rows.items():
                if label == r4b_label:
                    items = [
                        (classes[parsed[i]["resourceType"]], parsed[i]) for i in r4b_index if lo <= i < hi
                    ]
                else:
                    items = inputs.get(label, parsed)[lo:hi]
                t = time.perf_counter()
                for item in items:
                    fn(item)
                seconds[label] += time.perf_counter() - t
        for label in rows:
            samples[label].append(rate(len(inputs.get(label, parsed)), seconds[label]))
    med = {label: statistics.median(rs) for label, rs in samples.items()}
    for label, r in med.items():
        spread = f"{min(samples[label]):,.0f}..{max(samples[label]):,.0f}"
        print(f"  {label:<38} {r:>10,.0f} resources/s   (rounds: {spread})")
    parse_rate, r4b_rate = med["orjson.loads"], med[r4b_label]
    print(f"ratios (medians of {args.rounds} rounds):")
    for level in ("minimal", "structure-only", "strict"):
        r = med[f"fhirlake {level}"]
        print(f"  {level:<15} {r / r4b_rate:6.1f}x fhir.resources R4B   {r / parse_rate:5.2f}x orjson.loads")
    imp, first = cold_start()
    print(f"cold start (median of 5 fresh processes): import {imp:.1f} ms, ", end="")
    print(f"first Patient validation {first:.1f} ms")


if __name__ == "__main__":
    main()
