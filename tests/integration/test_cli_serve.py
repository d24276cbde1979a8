"""`fhirlake serve` (what `make run` starts) as a user runs it: a real process, Ctrl-C to stop."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from fhirlake.local.runtime import free_port

pytestmark = pytest.mark.http
REPO = Path(__file__).resolve().parents[2]


def test_serve_loads_samples_prints_endpoints_and_stops_on_ctrl_c() -> None:
    port = free_port()
    env = {**os.environ, "FHIRLAKE_PORT": str(port)}
    env.pop("AWS_ENDPOINT_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "fhirlake.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 240  # start-up is ~20 s; a heavily loaded 2-core machine takes minutes
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Ctrl-C to stop" in line:
                break
        text = "".join(output)
        assert f"http://127.0.0.1:{port}/" in text, text
        assert "AWS endpoint" in text and "fhirlake-resources" in text and "s3://fhirlake-landing" in text
        assert "Loaded" in text and "from 4 sample bundles" in text, text
        assert "->" not in text, text  # no sample resource was refused
        first_sample = next((REPO / "samples" / "synthea").glob("*.json.gz"))
        entries = json.loads(gzip.decompress(first_sample.read_bytes()))["entry"]
        patient_id = next(e["fullUrl"][9:] for e in entries if e["resource"]["resourceType"] == "Patient")
        patient = requests.get(f"http://127.0.0.1:{port}/Patient/{patient_id}", timeout=10)
        assert patient.status_code == 200 and patient.json()["resourceType"] == "Patient"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "Stopping fhirlake" in process.stdout.read() + "".join(output)
