"""`python -m benchmarks.profile [--quick] [--py-spy]`: where stacflow's byte phase spends its time.

For each size class and target of the throughput benchmark, it runs (each in its own process):
plain obstore (for reference), stacflow's byte phase with every step of `relocate_one` timed
(wall and thread CPU time, summed over threads: the functions are wrapped at run time, nothing
in tasks/ is edited), and with `--py-spy` the same byte phase sampled by py-spy with `--gil`
(which Python line holds the GIL). It also reads the CPU time the origin and moto spent.

It prints one markdown breakdown per case: per step, its calls, thread-seconds of wall time and
of CPU time, and milliseconds per asset.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import cases, servers
from benchmarks.data import LAST_MODIFIED_HTTP, KiB, MiB, make_dataset, write_spec

CLASSES = (("s256k", 2000, 256 * KiB), ("m4m", 200, 4 * MiB), ("l256m", 4, 256 * MiB))
QUICK = (("s256k", 200, 256 * KiB), ("m4m", 20, 4 * MiB), ("l64m", 2, 64 * MiB))
BUCKET = "bench"


# --- the instrumented child -----------------------------------------------------------------


class Clock:
    """Thread-seconds per step: wall (perf_counter) and CPU (thread_time), and call counts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wall: Counter[str] = Counter()
        self.cpu: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def add(self, key: str, wall: float, cpu: float) -> None:
        with self.lock:
            self.wall[key] += wall
            self.cpu[key] += cpu
            self.calls[key] += 1

    def timed(self, key: str, function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(key, time.perf_counter() - wall, time.thread_time() - cpu)

        return wrapper

    def patch(self, owner: Any, name: str, key: str) -> None:
        setattr(owner, name, self.timed(key, getattr(owner, name)))

    def patch_context(self, owner: Any, name: str, enter: str, leave: str) -> None:
        """A method returning a context manager: time its __enter__ and __exit__ apart."""
        original = getattr(owner, name)
        clock = self

        class Timed:
            def __init__(self, manager: Any) -> None:
                self.manager = manager

            def __enter__(self) -> Any:
                return clock.timed(enter, self.manager.__enter__)()

            def __exit__(self, *exc: object) -> Any:
                return clock.timed(leave, self.manager.__exit__)(*exc)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Timed:
            return Timed(original(*args, **kwargs))

        setattr(owner, name, wrapper)

    def patch_generator(self, owner: Any, name: str, first: str, rest: str) -> None:
        """A generator method: time its first `next` (setup included) and the others apart."""
        original = getattr(owner, name)
        clock = self

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            iterator = original(*args, **kwargs)
            key = first
            while True:
                wall, cpu = time.perf_counter(), time.thread_time()
                try:
                    item = next(iterator)
                except StopIteration:
                    clock.add(key, time.perf_counter() - wall, time.thread_time() - cpu)
                    return
                clock.add(key, time.perf_counter() - wall, time.thread_time() - cpu)
                key = rest
                yield item

        setattr(owner, name, wrapper)


def instrument(clock: Clock) -> None:
    """Wrap every step of `relocate_one` (module globals and class attributes, at run time)."""
    import hashlib  # noqa: PLC0415
    import types  # noqa: PLC0415

    from stacflow.tasks import relocate, state, tee  # noqa: PLC0415
    from stacflow.tasks.stores import file as file_store  # noqa: PLC0415
    from stacflow.tasks.stores import http as http_store  # noqa: PLC0415
    from stacflow.tasks.stores import object_store  # noqa: PLC0415

    relocate.relocate_one = clock.timed("relocate_one (one asset, whole)", relocate.relocate_one)
    relocate.verified_copy = clock.timed("  skip check (verified_copy)", relocate.verified_copy)
    relocate.copy_once = clock.timed("  copy_once", relocate.copy_once)
    clock.patch(state.Journal, "append", "  journal append")
    clock.patch_context(
        http_store.HttpStore, "open", "    source GET (request + headers)", "    source release"
    )
    clock.patch_generator(
        http_store._HttpReader,  # noqa: SLF001
        "chunks",
        "    source read: first chunk (buffer + recv)",
        "    source read: other chunks (recv)",
    )
    clock.patch(tee._LegWriter, "__init__", "    writer setup (open)")  # noqa: SLF001
    clock.patch(tee._LegWriter, "write", "    target write")  # noqa: SLF001
    clock.patch(tee._LegWriter, "commit", "    commit (close + HEAD)")  # noqa: SLF001
    for store in (file_store.FolderStore, object_store.ObjectStore):
        kind = "file" if store is file_store.FolderStore else "s3"
        clock.patch(store, "head", f"      {kind} HEAD (skip check and after commit)")
        clock.patch_context(
            store, "writer", f"      {kind} writer open", f"      {kind} writer close"
        )

    class Digest:
        def __init__(self) -> None:
            self.digest_ = hashlib.sha256()

        def update(self, data: Any) -> None:
            clock.timed("    SHA-256 update", self.digest_.update)(data)

        def digest(self) -> bytes:
            return self.digest_.digest()

    tee.hashlib = types.SimpleNamespace(sha256=Digest)


def child(args: dict[str, Any]) -> dict[str, Any]:
    clock = Clock()
    instrument(clock)
    from benchmarks.engines import stacflow_byte_phase  # noqa: PLC0415

    cpu = time.process_time()
    result = stacflow_byte_phase(args)
    result["process_cpu_s"] = time.process_time() - cpu
    result["steps"] = {
        key: [clock.calls[key], clock.wall[key], clock.cpu[key]] for key in clock.calls
    }
    return result


# --- the driver ----------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, USER_HZ ticks


def breakdown(name: str, result: dict[str, Any], plain: cases.Measured, extra: dict) -> str:
    files = result["files"]
    wall = result["seconds"]
    lines = [
        (
            f"### {name}: stacflow {wall:.2f} s, plain obstore {plain.seconds:.2f} s "
            f"({plain.seconds / wall:.2f}x)"
        ),
        "",
        f"- workers {result['workers']}, batches {result['batches']}, {files} assets; process "
        f"CPU during the byte phase {result['process_cpu_s']:.2f} s (obstore process "
        f"{plain.cpu_s:.2f} s in all, imports included); "
        + ", ".join(f"{k} {v:.2f} s" for k, v in extra.items()),
        "",
        (
            "| step (nested by indent) | calls | thread-s wall | thread-s CPU | ms/asset wall "
            "| ms/asset CPU |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for key, (calls, step_wall, step_cpu) in result["steps"].items():
        label = key.replace("  ", "&nbsp;&nbsp;")
        lines.append(
            f"| {label} | {calls} | {step_wall:.2f} | {step_cpu:.2f} | "
            f"{1000 * step_wall / files:.2f} | {1000 * step_cpu / files:.2f} |"
        )
    return "\n".join(lines)


def gil_profile(spec: Path, env: dict[str, str], work: Path, top: int = 12) -> str:
    """py-spy --gil: the lines that held the GIL, by project line (or leaf when outside it)."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not spy:
        return "(py-spy not installed: `pip install py-spy`)"
    raw, out = work / "gil.txt", work / "gil.json"
    command = [spy, "record", "--gil", "--nonblocking", "-r", "100", "-f", "raw", "-o", str(raw)]
    command += ["--", sys.executable, "-m", "benchmarks.engines", "stacflow"]
    command += [json.dumps({"spec": str(spec)}), str(out)]
    subprocess.run(command, env=env, cwd=work, capture_output=True, check=False)
    if not raw.exists():
        return "(py-spy failed)"
    frame = re.compile(r"^(.*) \((.*?):(\d+)\)$")
    where: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any("relocate_batch" in f for f in frames):
            continue
        total += int(count)
        project = [f for f in frames if (m := frame.match(f)) and m.group(2).startswith("tasks/")]
        leaf = re.sub(r" \(.*", "", frames[-1])
        where[f"{project[-1] if project else '(outside tasks/)'} → {leaf}"] += int(count)
    rows = [f"- {100 * n / total:.0f}% {key}" for key, n in where.most_common(top)]
    return f"GIL-holding samples in the byte phase: {total}\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "child":
        Path(sys.argv[3]).write_text(json.dumps(child(json.loads(sys.argv[2]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the quick suite's sizes")
    parser.add_argument("--py-spy", action="store_true", help="also sample the GIL holder")
    parser.add_argument("--only", action="append", help="a size class (s256k, m4m, l256m)")
    parser.add_argument("--target", choices=["local", "s3"], action="append")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="stacflow-profile-", dir="/tmp"))
    env = cases.bench_env(tmp / "prefect")
    classes = [c for c in (QUICK if args.quick else CLASSES) if not args.only or c[0] in args.only]
    try:
        data = [make_dataset(n, c, s, tmp / "origin", tmp / "packages") for n, c, s in classes]
        with (
            servers.origin(tmp / "origin", LAST_MODIFIED_HTTP, tmp) as origin,
            servers.moto(tmp) as moto,
        ):
            for kind in args.target or ["local", "s3"]:
                for dataset in data:
                    case = Case(dataset, kind, (origin, moto), env, tmp / f"{dataset.name}-{kind}")
                    print(case.run(py_spy=args.py_spy), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


class Case:
    def __init__(
        self, dataset: Any, kind: str, servers_: tuple[Any, Any], env: dict, work: Path
    ) -> None:
        origin, moto = servers_
        self.dataset, self.kind, self.origin, self.moto = dataset, kind, origin, moto
        self.env, self.work = env, work
        work.mkdir()
        self.spec = write_spec(
            work / "spec.yaml", dataset, origin.url, self.target("stacflow"), work / "out"
        )

    def target(self, engine: str) -> dict[str, Any]:
        if self.kind == "local":
            return {"name": "local", "type": "file", "root": str(self.work / engine)}
        return {
            "name": "s3",
            "type": "s3",
            "bucket": BUCKET,
            "prefix": f"{engine}/{self.dataset.name}",
            "endpoint": self.moto.url,
            "key_id": cases.S3_KEY_ID,
            "secret": cases.S3_SECRET,
        }

    def fresh(self) -> None:
        cases.clear(self.work / "stacflow", self.work / "obstore", self.work / "out")
        servers.moto_reset(self.moto.url, BUCKET)
        cases.drop_page_cache()

    def obstore(self) -> cases.Measured:
        self.fresh()
        args = {
            "origin": self.origin.url,
            "keys": str(self.dataset.files_from),
            "target": self.target("obstore"),
            "workers": 8,
            "chunk": 8 * MiB,
        }
        return cases.engine("obstore", args, self.env, self.work, self.work / "log.txt")

    def stacflow(self) -> dict[str, Any]:
        self.fresh()
        report = self.work / "steps.json"
        args = {"spec": str(self.spec)}
        command = [sys.executable, "-m", "benchmarks.profile", "child", json.dumps(args)]
        cases.measure([*command, str(report)], self.env, self.work, self.work / "log.txt")
        return json.loads(report.read_text())

    def run(self, *, py_spy: bool) -> str:
        plain = self.obstore()
        pids = {"origin": self.origin.pid, "moto": self.moto.pid}
        before = {name: proc_cpu(pid) for name, pid in pids.items()}
        steps = self.stacflow()
        servers_cpu = {f"{n} CPU": proc_cpu(p) - before[n] for n, p in pids.items()}
        if self.kind == "local":
            servers_cpu.pop("moto CPU")
        label = f"{self.dataset.label} → {self.kind}"
        text = breakdown(label, steps, plain, servers_cpu)
        if py_spy:
            self.fresh()
            text += "\n\n" + gil_profile(self.spec, self.env, self.work)
        return text + "\n"


if __name__ == "__main__":
    sys.exit(main())
