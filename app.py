#!/usr/bin/env python3
"""CDK entry point (cdk.json: ``"app": ".venv/bin/python app.py"``). See docs/deploy.md."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
for path in (ROOT, ROOT / "functions"):  # infra/ and the shared fhirlake.topology declarations
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from infra.application import build_app  # noqa: E402
from infra.config import ConfigError  # noqa: E402

if __name__ == "__main__":
    try:
        app = build_app()
    except ConfigError as error:
        sys.exit(f"fhirlake: {error}")
    app.synth()
