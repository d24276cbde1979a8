"""`fhirlake` command line: the local data store and tools around it.

fhirlake serve                   start the embedded data store (make run)
fhirlake invoke api EVENT.json   run a Lambda handler on a sample event against the embedded store
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from fhirlake import topology

DEFAULT_SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "synthea"


def _read_json(path: Path) -> object:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return json.loads(handle.read())


def load_samples(api_url: str, folder: Path) -> tuple[int, int]:
    """PUT every resource of every sample bundle through the FHIR API; returns (files, resources)."""
    import requests

    from fhirlake.fhir.references import bundle_resources

    files = resources = 0
    with requests.Session() as http:
        for path in sorted(folder.glob("*.json*")):
            bundle = _read_json(path)
            for rtype, rid, resource in bundle_resources(bundle):
                response = http.put(
                    f"{api_url}/{rtype}/{rid}",
                    json=resource,
                    headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
                )
                if response.status_code >= 300:
                    print(
                        f"  {path.name}: {rtype}/{rid} -> {response.status_code} {response.text[:300]}",
                        file=sys.stderr,
                    )
                else:
                    resources += 1
            files += 1
    return files, resources


def serve(args: argparse.Namespace) -> int:
    from fhirlake.local.runtime import LocalRuntime

    started = time.monotonic()
    runtime = LocalRuntime(port=args.port, moto_port=args.moto_port, access_log=args.access_log).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if not args.no_samples and args.samples.is_dir():
            files, count = load_samples(runtime.api_url, args.samples)
            print(f"Loaded {count} resources from {files} sample bundles in {args.samples}")
        resources = runtime.resources
        assert resources is not None
        print(f"""
fhirlake is ready in {time.monotonic() - started:.1f}s

  FHIR R4 API     {runtime.api_url}/        (try {runtime.api_url}/metadata)
  AWS endpoint    {runtime.moto_url}        (moto: aws --endpoint-url {runtime.moto_url} ...)
  DynamoDB table  {resources.table_name}""")
        for spec in topology.BUCKETS:
            print(f"  S3 {spec.role:<12} s3://{resources.buckets[spec.role]}")
        for spec in topology.QUEUES:
            print(f"  SQS {spec.role:<11} {resources.queue_urls[spec.role]}")
        print("\nData lives in memory and is gone when this process stops. Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("\nStopping fhirlake...", flush=True)
        runtime.stop()
    return 0


def invoke(args: argparse.Namespace) -> int:
    from fhirlake.local.lambda_context import LocalLambdaContext
    from fhirlake.local.runtime import LocalRuntime, load_handler

    spec = next((f for f in topology.FUNCTIONS if f.role == args.function), None)
    if spec is None:
        print(
            f"Unknown function {args.function!r}; known: {', '.join(f.role for f in topology.FUNCTIONS)}",
            file=sys.stderr,
        )
        return 2
    event = json.loads(Path(args.event).read_text())
    with LocalRuntime(port=0):
        handler = load_handler(spec.handler)
        result = handler(event, LocalLambdaContext(function_name=f"fhirlake-{spec.role}"))
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fhirlake", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    p_serve = commands.add_parser("serve", help="start the local data store")
    p_serve.add_argument("--port", type=int, default=int(os.environ.get("FHIRLAKE_PORT", "8080")))
    p_serve.add_argument(
        "--moto-port", type=int, default=int(os.environ.get("FHIRLAKE_MOTO_PORT", "0")) or None
    )
    p_serve.add_argument(
        "--samples", type=Path, default=Path(os.environ.get("FHIRLAKE_SAMPLES", DEFAULT_SAMPLES))
    )
    p_serve.add_argument("--no-samples", action="store_true", help="start empty")
    p_serve.add_argument(
        "--access-log", action="store_true", help="print one line per request (no query strings)"
    )
    p_serve.set_defaults(func=serve)

    p_invoke = commands.add_parser("invoke", help="run a handler on an event file against the embedded store")
    p_invoke.add_argument("function", help="function role, e.g. api")
    p_invoke.add_argument("event", help="path to a Lambda event JSON file (see events/)")
    p_invoke.set_defaults(func=invoke)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
