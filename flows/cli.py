"""`stacflow`: run, plan, check and serve package specs; print the JSON Schema of specs.

User mistakes (a bad spec, a missing table, a conflicting plan) print one `ERROR:` line and exit 2;
a run whose assets failed prints its summary and exits 1; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

# Offline by default: Prefect's telemetry would log an error on every run without a network.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from stacflow.flows import interrupt
from stacflow.flows.api_server import drain_prefect_client, prefect_api, run_settings
from stacflow.tasks.errors import OutputsUnwritable, RunFailed, UsageError, scrub
from stacflow.tasks.stop import Interrupted

if TYPE_CHECKING:
    from prefect import Flow

    from stacflow.flows.relocate import RunOverrides
    from stacflow.flows.spec import Spec

# flows.on_dask.ADDRESS_ENV and flows.shards.MAX_SHARDS, without importing Prefect to parse args
DASK_ADDRESS_ENV = "STACFLOW_DASK_ADDRESS"
MAX_SHARDS = 64


def main(argv: Sequence[str] | None = None) -> int:
    began = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.began = began
    if not getattr(args, "verbose", True):
        # The terminal gets the progress line and the summary; the flow run's page keeps every
        # log line (only the console handler is quietened, and only before Prefect is imported).
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UsageError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    except OutputsUnwritable as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    except RunFailed as error:
        summary = error.summary
        print(summary.text_for_command(began) if summary else error, file=sys.stdout)
        return 1
    except Interrupted as error:
        print(error, file=sys.stdout)
        return interrupt.EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume where it stopped", file=sys.stderr)
        return interrupt.EXIT_INTERRUPTED


def console() -> None:
    """The `stacflow` command: `main`, then leave without the interpreter's teardown.

    Everything a command writes is closed by then; Prefect's client is drained here, while its
    server is still there. Tearing the interpreter down (Prefect, pyarrow and obstore objects,
    thousands of them after a run) cost about 0.55 s per command for nothing, and obstore's
    runtime can crash the process at that moment (DESIGN.md, "Known traps"). Ctrl-C and SIGTERM
    are the command's own from its first line (flows/interrupt.py).
    """
    interrupt.install()
    leave(main())


def leave(code: int) -> NoReturn:
    """Exit with `code` once Prefect's client is drained and our output flushed."""
    drain_prefect_client()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stacflow",
        description="Relocate locked STAC assets into storage you control, as a Prefect flow.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a spec once: relocate, enrich, validate")
    run.add_argument("spec", type=Path, help="the package spec (YAML)")
    _add_targets(run)
    run.add_argument("--dry-run", action="store_true", help="plan only: copy and write nothing")
    run.add_argument("--max-workers", type=_positive, help="override relocate.max_workers")
    run.add_argument("--on-drift", choices=["refuse", "copy"], help="override relocate.on_drift")
    run.add_argument(
        "--fail-fast", action="store_true", default=None, help="stop at the first failure"
    )
    run.add_argument(
        "--verify",
        choices=["facts", "checksums"],
        help="override relocate.verify: 'checksums' hashes every copy already in a target "
        "before trusting it, and copies again what does not match",
    )
    scale = run.add_mutually_exclusive_group()
    scale.add_argument(
        "--shards",
        type=_shard_count,
        metavar="N",
        help="split the package over N flow runs of the relocate-package deployment on Prefect "
        "workers, then merge (needs a Prefect server, `prefect deploy --all` and a worker)",
    )
    scale.add_argument(
        "--dask-address",
        default=os.environ.get(DASK_ADDRESS_ENV) or None,
        metavar="URL",
        help="run the task runs on this Dask scheduler, e.g. tcp://127.0.0.1:8786 (default: "
        f"${DASK_ADDRESS_ENV}; needs the dask extra and a Prefect server the Dask workers reach)",
    )
    _add_verbose(run)
    run.set_defaults(handler=_run)

    plan = commands.add_parser("plan", help="show what a run would copy, skip or refuse")
    plan.add_argument("spec", type=Path)
    _add_targets(plan)
    plan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plan.add_argument(
        "--write-locks",
        type=Path,
        metavar="DIR",
        help="also write DIR/<name>.assets.lock.parquet: the lock each target (and planned "
        "source) would have, as stacpkg's `asset-lock relocate --dry-run` writes it",
    )
    plan.set_defaults(handler=_plan)

    check = commands.add_parser(
        "check",
        help="validate the spec's locks, or any lock file (no copying)",
        description="With SPEC: validate its locks in a Prefect run (--lock NAME picks sources "
        "and targets). Without: validate lock files as `stacpkg asset-lock validate` does "
        "(--lock FILE.parquet), printing its JSON lines; exit 1 if any row is invalid.",
    )
    check.add_argument("spec", type=Path, nargs="?", help="the package spec (YAML)")
    check.add_argument(
        "--lock",
        action="append",
        dest="locks",
        metavar="NAME|FILE",
        help="with SPEC, a source or target to validate (default: the spec's list); without "
        "SPEC, a lock file (repeatable)",
    )
    check.add_argument(
        "--checksums",
        action="store_true",
        default=None,
        help="also read the bytes and compare SHA-256",
    )
    check.add_argument(
        "--allow-http",
        action="store_true",
        help="lock files: permit rows reached over plain http:// (a spec says it per store)",
    )
    check.add_argument(
        "--anonymous",
        action="store_true",
        help="lock files: unsigned S3 requests (public buckets)",
    )
    _add_verbose(check)
    check.set_defaults(handler=_check)

    export = commands.add_parser(
        "export",
        help="write the enriched Items as STAC JSON (ItemCollection) or NDJSON",
        description="The Items a run enriched (<outputs>/items.parquet), as STAC Items that "
        "pystac and stac-geoparquet read without help.",
    )
    export.add_argument("spec", type=Path)
    export.add_argument("--format", choices=["ndjson", "json"], default="ndjson")
    export.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")
    export.add_argument(
        "--target",
        metavar="NAME",
        help="the Items with this target's copies promoted (targets.NAME.promote: true)",
    )
    export.set_defaults(handler=_export)

    schema = commands.add_parser("schema", help="print the JSON Schema of package specs")
    schema.add_argument("-o", "--output", type=Path, help="write it to this file instead")
    schema.set_defaults(handler=_schema)

    serve = commands.add_parser("serve", help="run specs on a schedule (needs a Prefect server)")
    serve.add_argument("specs", type=Path, nargs="+")
    when = serve.add_mutually_exclusive_group()
    when.add_argument("--cron", help="cron schedule for the relocation (e.g. '0 2 * * *')")
    when.add_argument(
        "--interval", type=_positive, metavar="SECONDS", help="relocate every SECONDS instead"
    )
    serve.add_argument("--validate-cron", help="cron schedule for validation-only runs")
    serve.set_defaults(handler=_serve)

    server = commands.add_parser(
        "server", help="start, stop or show a local Prefect server that outlives one command"
    )
    server.add_argument("action", choices=["start", "stop", "status"])
    server.add_argument(
        "--port", type=_positive, help="with start: this port (default 4200, else any free one)"
    )
    server.set_defaults(handler=_server)
    return parser


def _run(args: argparse.Namespace) -> int:
    # The temporary Prefect server (if any) starts first and comes up while we import and check.
    with prefect_api(temporary=not (args.shards or args.dask_address)) as api:
        from stacflow.flows.relocate import RunOverrides, relocate_package  # noqa: PLC0415 - Prefect is slow to import
        from stacflow.flows.verdict import quiet_said_failures  # noqa: PLC0415
        from stacflow.flows.workspace import outputs_folder, outputs_store  # noqa: PLC0415
        from stacflow.tasks.writable import require_writable  # noqa: PLC0415

        spec = _preflight(args.spec, args.targets)
        if not args.dry_run and outputs_store(args.spec, spec) is None:  # a bucket: at its push
            require_writable(outputs_folder(args.spec, spec))
        quiet_said_failures()
        overrides = RunOverrides(
            max_workers=args.max_workers,
            on_drift=args.on_drift,
            fail_fast=args.fail_fast,
            verify=args.verify,
        )
        with run_settings(api):
            if args.shards:
                result = _run_in_shards(args, overrides)
            else:
                flow = _on_dask(args.dask_address) if args.dask_address else relocate_package
                result = flow(
                    spec_path=str(args.spec),
                    targets=args.targets,
                    dry_run=args.dry_run,
                    overrides=overrides,
                )
    print(result["summary"].value.text_for_command(args.began))
    return 0


def _run_in_shards(args: argparse.Namespace, overrides: RunOverrides) -> dict[str, Any]:
    """The parent runs here; the shards run on workers, which must exist before anything starts."""
    from stacflow.flows.server import require_workers  # noqa: PLC0415
    from stacflow.flows.shards import DEFAULT_DEPLOYMENT, relocate_in_shards  # noqa: PLC0415

    if args.dry_run:
        raise UsageError("--shards copies; for a dry run use `stacflow plan` or drop --shards")
    require_workers("stacflow run --shards", DEFAULT_DEPLOYMENT)
    return relocate_in_shards(
        spec_path=_shard_spec_path(args.spec),
        shards=args.shards,
        targets=args.targets,
        overrides=overrides,
    )


def _shard_spec_path(spec: Path) -> str:
    """Where the shards find the spec, each in its worker's working directory: with outputs in a
    bucket, the path as given (a worker on another host has its own clone of the repo); else
    absolute, as the workers share this host's folders."""
    from stacflow.flows.inputs import load_spec  # noqa: PLC0415
    from stacflow.flows.workspace import outputs_store  # noqa: PLC0415

    if outputs_store(spec, load_spec(spec)) is not None and not spec.is_absolute():
        return spec.as_posix()
    return str(spec.resolve())


def _on_dask(address: str) -> Flow[..., dict[str, Any]]:
    """relocate-package on the Dask scheduler at `address`, refused without what Dask needs."""
    from prefect.settings import PREFECT_API_URL  # noqa: PLC0415

    try:
        from stacflow.flows.on_dask import on_dask  # noqa: PLC0415
    except ImportError as error:
        raise UsageError(
            f"--dask-address needs the dask extra ({error.name} is missing): "
            "pip install -e '.[dask]'"
        ) from None
    if not PREFECT_API_URL.value():
        raise UsageError(
            "--dask-address needs a Prefect server the Dask workers can reach: start one with "
            "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return on_dask(address)


def _plan(args: argparse.Namespace) -> int:
    from stacflow.flows.inputs import load_spec  # noqa: PLC0415
    from stacflow.flows.planview import plan_report, secret_blocks  # noqa: PLC0415

    # Only a Prefect Secret block needs an API here: then one server, ready before any thread.
    with prefect_api(temporary=bool(secret_blocks(load_spec(args.spec)))) as api:
        api.ready()
        report, conflicted = plan_report(args.spec, args.targets, write_locks=args.write_locks)
    print(scrub(json.dumps(report.as_json(), indent=2) if args.json else report.text()))
    return 2 if conflicted else 0


def _check(args: argparse.Namespace) -> int:
    if args.spec is None:
        return _check_lock_files(args)
    _refuse_lock_files_beside_a_spec(args)
    _preflight(args.spec, None, locks=args.locks or [])
    with prefect_api() as api:
        from stacflow.flows.validate import validate_package  # noqa: PLC0415
        from stacflow.flows.verdict import quiet_said_failures  # noqa: PLC0415

        quiet_said_failures()
        with run_settings(api):
            result = validate_package(
                spec_path=str(args.spec), locks=args.locks, checksums=args.checksums
            )
    print(result["summary"].value.text_for_command(args.began))
    return 0


def _check_lock_files(args: argparse.Namespace) -> int:
    """`check --lock FILE.parquet` without a spec: stacpkg's validate lines, exit 1 if invalid."""
    from stacflow.flows.lockcheck import check_lock_files  # noqa: PLC0415
    from stacflow.tasks.access import Access  # noqa: PLC0415

    if not args.locks:
        raise UsageError("check needs a SPEC, or lock files to validate: --lock FILE.parquet")
    missing = [name for name in args.locks if not Path(name).is_file()]
    if missing:
        raise UsageError(
            f"--lock {missing[0]}: no such lock file (without a SPEC, --lock names lock files; "
            "to validate a spec's source or target by name, give the spec first)"
        )
    access = Access(allow_http=args.allow_http, anonymous=args.anonymous)
    rows, invalid = check_lock_files(
        [Path(name) for name in args.locks],
        checksums=bool(args.checksums),
        access=access,
        out=sys.stdout,
    )
    print(f"{rows} rows validated, {invalid} invalid", file=sys.stderr)
    return 1 if invalid else 0


def _refuse_lock_files_beside_a_spec(args: argparse.Namespace) -> None:
    """With a spec, --lock names a source or target: a path would be read as neither."""
    if args.allow_http or args.anonymous:
        raise UsageError(
            "--allow-http and --anonymous are for lock files checked without a SPEC; "
            "a spec says them in each store's settings"
        )
    for name in args.locks or []:
        if "/" in name or (name.endswith(".parquet") and Path(name).is_file()):
            raise UsageError(
                f"--lock {name}: with a SPEC, --lock names one of its sources or targets; "
                f"to validate a lock file, leave out the spec: stacflow check --lock {name}"
            )


def _export(args: argparse.Namespace) -> int:
    from stacflow.flows.export import export_items  # noqa: PLC0415

    count = export_items(args.spec, args.format, args.output, target=args.target)
    if args.output is not None:
        print(f"wrote {count} Items to {args.output}", file=sys.stderr)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from stacflow.flows.schema import spec_schema  # noqa: PLC0415

    text = json.dumps(spec_schema(), indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _serve(args: argparse.Namespace) -> int:
    for spec in args.specs:
        _preflight(spec, None)
    with prefect_api(temporary=False):
        from stacflow.flows.serve import serve_specs  # noqa: PLC0415

        serve_specs(
            args.specs, cron=args.cron, interval=args.interval, validate_cron=args.validate_cron
        )
    return 0


def _server(args: argparse.Namespace) -> int:
    from stacflow.flows import local_server  # noqa: PLC0415

    if args.action == "start":
        url = local_server.start(args.port)
        print(
            f"local Prefect server at {url} (UI {url.removesuffix('/api')}); `stacflow` "
            "commands without PREFECT_API_URL use it until `stacflow server stop`"
        )
        return 0
    if args.action == "stop":
        print("stopped" if local_server.stop() else "no local server was running")
        return 0
    line = local_server.status()
    print(line or "not running: commands start a temporary server each")
    return 0 if line else 1


def _preflight(
    spec_path: Path, targets: Sequence[str] | None, *, locks: list[str] | None = None
) -> Spec:
    """Every user mistake that needs no network, found before Prefect starts (about 7 s).

    `locks`: for `check`, the locks asked for ([]: the spec's validate list).
    """
    from stacflow.flows.planview import check_spec, check_validation  # noqa: PLC0415

    spec = check_spec(spec_path, targets)
    if locks is not None:
        check_validation(spec_path, spec, locks)
    return spec


def _add_targets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        action="append",
        dest="targets",
        metavar="NAME",
        help="only this target (repeatable; default: every target)",
    )


def _shard_count(text: str) -> int:
    value = _positive(text)
    if value > MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SHARDS} shards, got {text}")
    return value


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show Prefect's log lines on the terminal"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


if __name__ == "__main__":
    console()
