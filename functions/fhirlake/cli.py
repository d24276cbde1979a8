"""`fhirlake` command line: the local data store and tools around it.

fhirlake serve                   start the embedded data store (make run)
fhirlake import PATH... [--wait] import NDJSON / Bundle files into the running store (bulk import)
fhirlake invoke api EVENT.json   run a Lambda handler on a sample event against the embedded store
fhirlake view run VIEW INPUT...  run a SQL on FHIR v2 ViewDefinition over NDJSON / Bundle files
fhirlake sql "SELECT ..."        Athena (Trino) SQL over the lake: DuckDB locally, --athena in the cloud
fhirlake trend ...               disease-progression charts (one patient, or a population) as PNG / HTML
fhirlake lake backfill|compact|erase --patient ID   maintain the analytics lake of the running store
fhirlake reindex                 rebuild the search index after the indexed parameters changed
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from fhirlake import topology
from fhirlake.local.state import STATE_FILE, NoLocalStore, add_store_arguments, use_local_store

DEFAULT_SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "synthea"


def import_samples(endpoint: str, folder: Path) -> tuple[int, int]:
    """Load the sample bundles through the bulk import (landing bucket → queue → import function), as
    ``fhirlake import`` would; returns (files, stored resources)."""
    from fhirlake.ingest.local_client import LocalImport, expand

    local = LocalImport(endpoint)
    files = expand([folder])
    job_ids = {local.upload(path, f"samples/{path.name}", {}): path for path in files}
    stored = 0
    for job_id, view in local.wait(list(job_ids), timeout=300).items():
        counts = view.get("counts") or {}
        stored += counts.get("stored", 0)
        if view["status"] != "completed":
            reason = (
                view.get("reason") or f"{counts.get('failed', 0)} failed (s3://{local.results}/{job_id}/)"
            )
            print(f"  {job_ids[job_id].name}: job {job_id} -> {view['status']}: {reason}", file=sys.stderr)
    return len(files), stored


def import_files(args: argparse.Namespace) -> int:
    from fhirlake.ingest.local_client import LocalImport, expand, progress_bar, tiers
    from fhirlake.local.state import read_state

    state = read_state(args.state) or {}
    endpoint = args.endpoint or state.get("aws_endpoint")
    if not endpoint:
        print(
            f"No running fhirlake found ({args.state} is missing): start `make run`, or pass --endpoint",
            file=sys.stderr,
        )
        return 2
    local = LocalImport(endpoint, **{k: state[k] for k in ("landing", "table", "results") if k in state})
    files = expand(args.paths)
    missing = [f for f in files if not f.is_file()]
    if missing or not files:
        print(f"Nothing to import: {', '.join(map(str, missing)) or 'no files'}", file=sys.stderr)
        return 2
    metadata = {}
    if args.force:
        metadata["fhirlake-force"] = "true"
    if args.validation:
        metadata["fhirlake-validation"] = args.validation
    groups = tiers(files)
    jobs: dict[str, Path] = {}
    for number, group in enumerate(groups):
        started = {}
        for path in group:
            key = f"{args.prefix.strip('/') + '/' if args.prefix else ''}{path.name}"
            job_id = local.upload(path, key, metadata, progress_bar(path.name, path.stat().st_size))
            started[job_id] = path
        jobs |= started
        if number < len(groups) - 1:  # conditional references need these stored first
            print(f"  waiting for {len(started)} reference-target file(s) to be imported...", file=sys.stderr)
            local.wait(list(started), args.timeout)
    if not args.wait:
        for job_id, path in jobs.items():
            print(f"{path.name}: job {job_id}")
        print(f"Follow them with GET /_import/{{job}}; results in s3://{local.results}/{{job}}/")
        return 0
    views = local.wait(list(jobs), args.timeout)
    exit_code = 0
    for job_id, path in jobs.items():
        view = views[job_id]
        counts = view.get("counts") or {}
        print(
            f"{path.name}: {view['status']} — {counts.get('stored', 0)} stored "
            f"({counts.get('unchanged', 0)} unchanged), {counts.get('failed', 0)} failed"
        )
        for rtype, numbers in sorted((counts.get("byType") or {}).items()):
            print(
                f"    {rtype:<28} {numbers.get('stored', 0):>7} stored {numbers.get('failed', 0):>7} failed"
            )
        if view.get("reason"):
            print(f"    reason: {view['reason']}")
        print(f"    results: s3://{local.results}/{job_id}/manifest.json")
        if view["status"] not in ("completed", "skipped") or counts.get("failed"):
            exit_code = 1
    return exit_code


def serve(args: argparse.Namespace) -> int:
    from fhirlake.local.runtime import LocalRuntime
    from fhirlake.local.state import read_state, write_state

    started = time.monotonic()
    runtime = LocalRuntime(port=args.port, moto_port=args.moto_port, access_log=args.access_log).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    resources = runtime.resources
    assert resources is not None
    state = {
        "pid": os.getpid(),
        "api_url": runtime.api_url,
        "aws_endpoint": runtime.moto_url,
        "table": resources.table_name,
        "landing": resources.buckets[topology.LANDING_BUCKET.role],
        "results": resources.buckets[topology.RESULTS_BUCKET.role],
        # What the handlers get: `fhirlake sql|trend|lake|reindex` give their own process the same.
        "environment": resources.environment(),
    }
    try:
        write_state(args.state, state)
        if not args.no_samples and args.samples.is_dir():
            files, count = import_samples(runtime.moto_url, args.samples)
            print(f"Loaded {count} resources from {files} sample bundles in {args.samples}")
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
        if read_state(args.state) == state:
            args.state.unlink(missing_ok=True)
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


def reindex(args: argparse.Namespace) -> int:
    from fhirlake.service.reindex import run_reindex

    try:
        use_local_store(args.state, args.endpoint)
    except NoLocalStore as error:
        print(error, file=sys.stderr)
        return 2
    report = run_reindex(segments=args.segments)  # no deadline: runs to the end
    print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.status in ("done", "up-to-date") else 1


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
    p_serve.add_argument(
        "--state", type=Path, default=STATE_FILE, help="where to write the endpoints (for import)"
    )
    p_serve.set_defaults(func=serve)

    p_import = commands.add_parser(
        "import", help="import NDJSON / Bundle files into the running local store (landing bucket)"
    )
    p_import.add_argument("paths", nargs="+", type=Path, help="files or folders (.ndjson[.gz], .json[.gz])")
    p_import.add_argument("--wait", action="store_true", help="wait for the jobs and print a summary")
    add_store_arguments(p_import)
    p_import.add_argument("--prefix", default="", help="key prefix in the landing bucket")
    p_import.add_argument("--force", action="store_true", help="import even files already imported")
    p_import.add_argument("--validation", choices=["strict", "structure-only", "minimal"])
    p_import.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the jobs")
    p_import.set_defaults(func=import_files)

    p_invoke = commands.add_parser("invoke", help="run a handler on an event file against the embedded store")
    p_invoke.add_argument("function", help="function role, e.g. api")
    p_invoke.add_argument("event", help="path to a Lambda event JSON file (see events/)")
    p_invoke.set_defaults(func=invoke)

    p_reindex = commands.add_parser(
        "reindex", help="rebuild the search index of the running store after FHIRLAKE_SEARCH_CONFIG changed"
    )
    p_reindex.add_argument("--segments", type=int, default=4, help="parallel Scan segments")
    add_store_arguments(p_reindex)
    p_reindex.set_defaults(func=reindex)

    from fhirlake.analytics import cli as analytics_cli
    from fhirlake.lake import cli as lake_cli
    from fhirlake.views import cli as views_cli

    views_cli.register(commands)
    analytics_cli.register(commands)
    lake_cli.register(commands)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
