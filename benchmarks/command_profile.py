"""`python -m benchmarks.command_profile`: where one whole `stacflow run` spends its time.

It makes a package (2,000 x 256 KiB by default) on a loopback origin, then runs the real CLI
(`stacflow.flows.cli.main`) in a fresh process, fresh and again (the rerun copies nothing), with
steps of the command wrapped at run time (nothing in flows/ or tasks/ is edited): imports,
reading the spec and the tables, compiling, the preflight, the Prefect server's start, the flow
run and its parts, task-run bodies, artifacts, API calls, and the shutdown after `main` returns.
Prefect runs in its default ephemeral mode (or against `--api-url`), with a private
PREFECT_HOME that one untimed 1-asset run warms first (a fresh home migrates a database).

Figures are wall seconds in the command's process, summed over calls (the `n` column); nested
steps are inside their parents, and steps in threads overlap the main thread. Run it with
`--repeat 3` to see how much a shared machine moves them.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.abc
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import cases, servers
from benchmarks.data import LAST_MODIFIED_HTTP, KiB, make_dataset, write_spec

T0_ENV = "STACFLOW_PROFILE_T0"

# (module, attribute, label): plain functions, patched wherever a stacflow module imported them.
STEPS = (
    ("stacflow.flows.planview", "check_spec", "preflight (check_spec)"),
    ("stacflow.flows.inputs", "load_spec", "read the spec"),
    ("stacflow.flows.inputs", "load_inputs", "read the tables (lock, items)"),
    ("stacflow.flows.inputs", "previous_records", "read the journals"),
    ("stacflow.flows.compile", "compile_plan", "compile the plan"),
    ("stacflow.flows.relocate", "gather_inputs", "flow: gather inputs"),
    ("stacflow.flows.relocate", "prepare_plan", "flow: prepare the plan"),
    ("stacflow.flows.relocate", "relocate_assets", "flow: relocate (byte phase)"),
    ("stacflow.flows.relocate", "settle_run", "flow: settle (flush, record, enrich, validate)"),
    ("stacflow.flows.relocate", "record_relocations", "flow: record relocations"),
    ("stacflow.flows.relocate", "finish_run", "flow: finish (report, summary, artifacts)"),
    ("stacflow.tasks.artifacts", "publish_summary", "artifacts: summary, outcomes, outputs"),
    ("stacflow.tasks.outputs", "enrich", "enrich the items (in a task)"),
    ("stacflow.tasks.report", "write_report", "write report.parquet"),
    ("stacflow.flows.api_server", "start_server", "start our temporary Prefect server"),
    ("stacflow.flows.api_server", "drain_prefect_client", "drain Prefect's client (events, logs)"),
)
# (module, class, method, label)
METHODS = (
    ("stacflow.flows.api_server", "TemporaryServer", "wait_ready", "wait for our temporary server"),
    ("stacflow.flows.api_server", "TemporaryServer", "stop", "stop our temporary server"),
    ("stacflow.flows.api_server", "TemporaryServer", "release", "release our temporary server"),
)


# --- the instrumented child ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, label: str, seconds: float) -> None:
        with self.lock:
            self.seconds[label] += seconds
            self.calls[label] += 1

    def timed(self, label: str, function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - started)

        wrapper.__profiled__ = True  # type: ignore[attr-defined]
        return wrapper

    def patch_everywhere(self, module: str, name: str, label: str) -> None:
        """Replace `module.name` and every stacflow module's imported reference to it."""
        owner = sys.modules.get(module)
        original = getattr(owner, name, None) if owner else None
        if original is None or getattr(original, "__profiled__", False):
            return
        wrapped = self.timed(label, original)
        for loaded in list(sys.modules.values()):
            if getattr(loaded, "__name__", "").startswith("stacflow") and (
                getattr(loaded, name, None) is original
            ):
                setattr(loaded, name, wrapped)

    def patch_method(self, owner: Any, name: str, label: str) -> None:
        setattr(owner, name, self.timed(label, getattr(owner, name)))


# Modules whose import is timed, and after whose import the wrappers go in (the CLI imports
# them lazily, in its own order: importing them up front would change what it overlaps).
IMPORTS = {
    "stacflow.flows.relocate": "import the flow modules (Prefect)",
    "stacflow.flows.validate": "import the flow modules (Prefect)",
    "stacflow.flows.planview": "import the plan modules",
    "prefect.server.api.server": "import Prefect's server code (in the command's process)",
}


class _Hook(importlib.abc.MetaPathFinder):
    """Times the watched imports and installs the wrappers as soon as each module exists."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def find_spec(self, name: str, *_: Any) -> Any:
        if name not in IMPORTS:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        load, started = spec.loader.exec_module, time.perf_counter()

        def exec_module(module: Any) -> None:
            load(module)
            self.clock.add(IMPORTS[name], time.perf_counter() - started)
            _patch_all(self.clock)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _patch_all(clock: Clock) -> None:
    for module, name, label in STEPS:
        clock.patch_everywhere(module, name, label)
    for module, owner, name, label in METHODS:
        cls = getattr(sys.modules.get(module), owner, None)
        if cls is not None and not getattr(getattr(cls, name), "__profiled__", False):
            clock.patch_method(cls, name, label)
    if "prefect" in sys.modules:
        _patch_prefect(clock)


def _patch_prefect(clock: Clock) -> None:
    """Prefect's own costs: API calls, each flow call, each task body."""
    import httpx  # noqa: PLC0415
    from prefect import Flow, Task  # noqa: PLC0415

    if not getattr(httpx.AsyncClient.send, "__profiled__", False):
        original = httpx.AsyncClient.send

        async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(self, request, *args, **kwargs)
            finally:
                path = request.url.path.split("/api/", 1)[-1].split("/")[0]
                label = f"API {request.method} /{path} (any thread)"
                clock.add(label, time.perf_counter() - started)

        send.__profiled__ = True  # type: ignore[attr-defined]
        httpx.AsyncClient.send = send  # type: ignore[method-assign]
    if not getattr(Flow.__call__, "__profiled__", False):
        clock.patch_method(Flow, "__call__", "flow call (Prefect's engine + the flow body)")
    for loaded in list(sys.modules.values()):
        if not getattr(loaded, "__name__", "").startswith("stacflow"):
            continue
        for value in list(vars(loaded).values()):
            if isinstance(value, Task) and not getattr(value.fn, "__profiled__", False):
                value.fn = clock.timed(f"task body: {value.name}", value.fn)
    server = sys.modules.get("prefect.server.api.server")
    asgi = getattr(server, "SubprocessASGIServer", None)
    if asgi is not None and not getattr(asgi.start, "__profiled__", False):
        clock.patch_method(asgi, "start", "start Prefect's ephemeral server")
        clock.patch_method(asgi, "stop", "stop Prefect's ephemeral server")


def child(argv: list[str], out: Path) -> int:
    started = time.perf_counter()
    clock = Clock()
    since_exec = time.time() - float(os.environ[T0_ENV])
    clock.add("interpreter start (exec to first line)", since_exec)
    sys.meta_path.insert(0, _Hook(clock))
    before = time.perf_counter()
    from stacflow.flows import cli  # noqa: PLC0415

    clock.add("import stacflow CLI", time.perf_counter() - before)
    _patch_all(clock)
    flow_started = time.perf_counter()
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    clock.add("cli.main (imports above included)", time.perf_counter() - flow_started)
    result = {
        "code": code,
        "main_returned": time.time(),
        "in_process": time.perf_counter() - started + since_exec,
        "steps": {k: [clock.seconds[k], clock.calls[k]] for k in clock.seconds},
    }
    out.write_text(json.dumps(result))
    leave = getattr(cli, "leave", None)  # how the `stacflow` command itself exits, where it has one
    if leave is not None:
        leave(code)
    return code


# --- the driver ---------------------------------------------------------------------------


def run_command(spec: Path, env: dict[str, str], work: Path, log: Path) -> dict[str, Any]:
    out = work / f"profile-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", "benchmarks.command_profile", "--child", str(out), "--"]
    command += ["run", str(spec)]
    started = time.time()
    with log.open("ab") as sink:
        done = subprocess.run(
            command,
            env={**env, T0_ENV: repr(started)},
            cwd=work,
            stdout=sink,
            stderr=sink,
            check=False,
        )
    ended = time.time()
    result = json.loads(out.read_text()) if out.exists() else {"steps": {}, "code": None}
    result["wall"] = ended - started
    result["returncode"] = done.returncode
    if "main_returned" in result:
        result["steps"]["shutdown (main returned to process exit)"] = [
            ended - result["main_returned"],
            1,
        ]
    return result


def report(runs: dict[str, list[dict[str, Any]]]) -> str:
    labels: list[str] = []
    for results in runs.values():
        for result in results:
            labels += [k for k in result["steps"] if k not in labels]
    head = "| step | " + " | ".join(f"{name} s (n)" for name in runs) + " |"
    lines = [head, "|---|" + "---|" * len(runs)]
    lines.append(
        "| **whole command, wall** | "
        + " | ".join(_cell([r["wall"] for r in rs], [1]) for rs in runs.values())
        + " |"
    )
    for label in labels:
        cells = []
        for results in runs.values():
            values = [r["steps"][label][0] for r in results if label in r["steps"]]
            calls = [r["steps"][label][1] for r in results if label in r["steps"]]
            cells.append(_cell(values, calls) if values else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(values: list[float], calls: list[int]) -> str:
    spread = f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
    return f"{statistics.median(values):.2f}{spread} ({max(calls)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.command_profile", description=__doc__
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size-kib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1, help="fresh + rerun pairs (default 1)")
    parser.add_argument("--api-url", default="", help="a running Prefect server's API URL")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.child:
        return child([a for a in args.rest if a != "--"], args.child)
    tmp = Path(tempfile.mkdtemp(prefix="stacflow-cmdprof-", dir="/tmp"))
    try:
        return _drive(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drive(args: argparse.Namespace, tmp: Path) -> int:
    env = cases.bench_env(tmp / "prefect-home")
    env["PREFECT_API_URL"] = args.api_url
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    data = make_dataset("prof", args.count, args.size_kib * KiB, tmp / "origin", tmp / "packages")
    one = make_dataset("one", 1, 16 * KiB, tmp / "origin", tmp / "packages")
    work, logs = tmp / "work", tmp / "logs"
    work.mkdir()
    logs.mkdir()
    runs: dict[str, list[dict[str, Any]]] = {"fresh": [], "rerun": []}
    with servers.origin(tmp / "origin", LAST_MODIFIED_HTTP, logs) as origin:
        target = {"name": "local", "type": "file", "root": str(work / "warm")}
        warm = write_spec(work / "warm.yaml", one, origin.url, target, work / "warm-out")
        run_command(warm, env, work, logs / "warm.log")  # migrates PREFECT_HOME's database
        for index in range(args.repeat):
            root = work / f"assets-{index}"
            target = {"name": "local", "type": "file", "root": str(root)}
            spec = write_spec(
                work / f"spec-{index}.yaml", data, origin.url, target, work / f"out-{index}"
            )
            for kind in ("fresh", "rerun"):
                result = run_command(spec, env, work, logs / f"{kind}.log")
                if result["returncode"] != 0:
                    print((logs / f"{kind}.log").read_text()[-3000:], file=sys.stderr)
                runs[kind].append(result)
                print(f"  {kind} {index + 1}: {result['wall']:.2f} s", file=sys.stderr)
            cases.clear(root, work / f"out-{index}")
    mode = f"against {args.api_url}" if args.api_url else "ephemeral Prefect"
    print(
        f"`stacflow run` of {data.label} from a loopback origin into a folder ({mode}); "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; median (min-max) of "
        f"{args.repeat}, seconds (calls)\n"
    )
    print(report(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
