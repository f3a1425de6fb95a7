"""`python -m benchmarks.run [--quick]`: measure stacflow against plain obstore and rclone, print
one markdown table, and write it to benchmarks/results/<date>.md.

Sections: (1) relocation throughput from a loopback HTTP origin into a local folder and a moto
S3 server, three engines on the same data, plus `stacflow run` as a whole and Prefect's fixed
start cost; (2) validation throughput; (3) a rerun of a completed spec; (4) orchestration
overhead of the flow against a running Prefect server; (5) peak RSS against memory_limit.
Every figure is a median over the runs in the `n` column; every ratio compares figures from this
same invocation. Targets are printed next to the figures, never enforced.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import cases, remote, servers, stacpkg
from benchmarks.data import (
    LAST_MODIFIED_HTTP,
    Dataset,
    GiB,
    KiB,
    MiB,
    human,
    make_dataset,
    write_spec,
)

RESULTS = Path(__file__).resolve().parent / "results"
BUCKET = "bench"
MB = 1e6


@dataclass(frozen=True)
class Suite:
    classes: tuple[tuple[str, int, int], ...]
    local_runs: int
    s3_runs: int
    validate_rows: int
    validate_runs: int
    orchestration_assets: int
    orchestration_runs: int
    start_runs: int
    big: int
    small: tuple[int, int]
    small_size: int = 16 * KiB


FULL = Suite(
    classes=(("s256k", 2000, 256 * KiB), ("m4m", 200, 4 * MiB), ("l256m", 4, 256 * MiB)),
    local_runs=3,
    s3_runs=1,
    validate_rows=10_000,
    validate_runs=3,
    orchestration_assets=10_000,
    orchestration_runs=2,  # 3 runs of 10,000 assets took 144 s; the remote rows needed the time
    start_runs=3,
    big=1 * GiB,
    small=(1000, 256 * KiB),
)
QUICK = Suite(  # tiny: a smoke test that every section still runs (tests/test_benchmarks.py)
    classes=(("s16k", 20, 16 * KiB), ("m256k", 4, 256 * KiB), ("l4m", 1, 4 * MiB)),
    local_runs=1,
    s3_runs=1,
    validate_rows=20,
    validate_runs=1,
    orchestration_assets=20,
    orchestration_runs=1,
    start_runs=1,
    big=8 * MiB,
    small=(10, 64 * KiB),
)
SECTIONS = (
    "throughput-local",
    "throughput-s3",
    "remote",
    "validation",
    "memory",
    "start",
    "commands",
    "server",
)
ENGINES = ("stacflow", "obstore", "rclone")
# obstore's stream slices, as small as stacflow's reads (tasks/buffers.py MAX_READ): with its
# near-default 8 MiB ones it copied 4 x 256 MiB at about half the speed (the same CPU-cache
# effect), and a reference should be the engine at its best.
OBSTORE_CHUNK = 1 * MiB
RELOCATE = "{{max_workers: 8, memory_limit: {limit}, chunk_size: 8MiB}}"


@dataclass
class Row:
    area: str
    case: str
    what: str
    result: str
    ratio: str = ""
    target: str = ""
    met: str = ""
    runs: str = ""


def met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    return f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""


class Bench:
    def __init__(self, suite: Suite, tmp: Path, *, drop_caches: bool) -> None:
        self.suite = suite
        self.tmp = tmp
        self.logs = Path(tempfile.mkdtemp(prefix="stacflow-bench-logs-", dir="/tmp"))
        self.work = tmp / "work"
        self.work.mkdir()
        self.env = cases.bench_env(tmp / "prefect-ephemeral")
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}
        self.drop = drop_caches
        self.dropped = False
        self.origin_url = ""
        self.moto_url = ""
        self.origin_pid = self.moto_pid = self.prefect_pid = 0
        self.rclone: str | None = None
        self.datasets: dict[str, Dataset] = {}
        self.first_runs: dict[str, float] = {}

    # --- plumbing ----------------------------------------------------------------------

    @property
    def failed(self) -> bool:
        """Something to look into: the logs are kept (outside the data dir) when true."""
        return any("did not finish" in n or "broke" in n for n in self.notes)

    def prepare(self, *paths: Path, s3: bool = False, drop: bool = True) -> None:
        """Clear targets and counters; drop the page cache before engine runs only (a command
        run would otherwise re-read Python and Prefect from disk and time that)."""
        cases.clear(*paths)
        if s3:
            servers.moto_reset(self.moto_url, BUCKET)
        servers.origin_reset(self.origin_url)
        if self.drop and drop:
            self.dropped = cases.drop_page_cache() or self.dropped
        else:
            os.sync()

    def requests(self) -> dict[str, int]:
        return servers.origin_stats(self.origin_url)

    def target(self, kind: str, case: str, engine: str) -> dict[str, Any]:
        if kind == "local":
            return {"name": "local", "type": "file", "root": str(self.work / case / engine)}
        return {
            "name": "s3",
            "type": "s3",
            "bucket": BUCKET,
            "prefix": f"{engine}/{case}",
            "endpoint": self.moto_url,
            "key_id": cases.S3_KEY_ID,
            "secret": cases.S3_SECRET,
        }

    def spec(
        self,
        dataset: Dataset,
        target: dict[str, Any],
        name: str,
        *,
        limit: str = "512MiB",
        validate: str | None = None,
    ) -> tuple[Path, Path]:
        outputs = self.work / name / "out"
        spec = write_spec(
            self.work / name / "spec.yaml",
            dataset,
            self.origin_url,
            target,
            outputs,
            relocate=RELOCATE.format(limit=limit),
            validate=validate,
        )
        return spec, outputs

    def engine(self, kind: str, args: dict[str, Any], log: str) -> cases.Measured:
        return self.counted(
            lambda: cases.engine(kind, args, self.env, self.work, self.logs / f"{log}.log")
        )

    def counted(self, run: Any) -> cases.Measured:
        """Run a measurement; add the origin's request counts and the servers' CPU seconds."""
        groups = {"origin": self.origin_pid, "moto": self.moto_pid, "prefect": self.prefect_pid}
        groups = {name: pid for name, pid in groups.items() if pid}
        before = {name: servers.group_cpu(pid) for name, pid in groups.items()}
        measured = run()
        measured.extra["cpu"] = {n: servers.group_cpu(p) - before[n] for n, p in groups.items()}
        measured.extra["requests"] = self.requests()
        return measured

    def cpu_text(self, ms: list[cases.Measured], *servers_: str) -> str:
        """Median CPU seconds of the engine process and of the named servers."""
        own = [float(m.result.get("cpu_s", m.cpu_s)) for m in ms]
        parts = [f"CPU {med(own):.1f} s"]
        parts += [
            f"{name} {med([m.extra.get('cpu', {}).get(name, 0.0) for m in ms]):.1f} s"
            for name in servers_
        ]
        return f"{parts[0]} (+ {', '.join(parts[1:])})" if servers_ else parts[0]

    def fail_note(self, what: str, measured: cases.Measured) -> None:
        if not measured.ok:
            problem = measured.result.get("first_failure") or f"exit {measured.returncode}"
            if str(measured.log) not in problem:
                problem += f" (log: {measured.log})"
            self.notes.append(f"{what} did not finish cleanly: {problem}")

    # --- data --------------------------------------------------------------------------

    def make_data(self, only: set[str]) -> None:
        """The datasets the chosen sections read (the full suite writes about 4 GiB)."""
        root, packages = self.tmp / "origin", self.tmp / "packages"
        suite = self.suite
        wanted = [
            (("throughput-local", "throughput-s3", "remote", "commands"), suite.classes),
            (("validation",), [("v16k", suite.validate_rows, suite.small_size)]),
            (("server",), [("o16k", suite.orchestration_assets, suite.small_size)]),
            (("memory",), [("big", 1, suite.big), ("small", *suite.small)]),
        ]
        chosen = [c for sections, cases_ in wanted if only & set(sections) for c in cases_]
        for name, count, size in chosen:
            self.datasets[name] = make_dataset(name, count, size, root, packages)

    # --- (1) throughput, (3) rerun ---------------------------------------------------------

    def throughput(self, kind: str) -> None:
        runs = self.suite.local_runs if kind == "local" else self.suite.s3_runs
        for name, _, _ in self.suite.classes:
            self._throughput_case(self.datasets[name], kind, runs)

    def _throughput_case(self, data: Dataset, kind: str, runs: int) -> None:
        case = f"{data.name}-{kind}"
        s3 = kind == "s3"
        target = self.target(kind, data.name, "stacflow")
        spec, outputs = self.spec(data, target, f"{case}-stacflow")
        measured: dict[str, list[cases.Measured]] = {e: [] for e in ENGINES}
        rerun: cases.Measured | None = None
        workers = 8
        for run in range(runs):
            # stacflow
            self.prepare(self._path(target), outputs, s3=s3)
            result = self.engine("stacflow", {"spec": str(spec)}, f"{case}-stacflow")
            self.fail_note(f"stacflow {case} run {run + 1}", result)
            measured["stacflow"].append(result)
            workers = result.result.get("workers", workers)
            if run == runs - 1:  # the target now holds a completed run: rerun it
                servers.origin_reset(self.origin_url)
                rerun = self.engine("stacflow", {"spec": str(spec)}, f"{case}-rerun")
                self.fail_note(f"rerun {case}", rerun)
            # obstore
            plain = self.target(kind, data.name, "obstore")
            self.prepare(self._path(plain), s3=s3)
            args = {
                "origin": self.origin_url,
                "keys": str(data.files_from),
                "target": plain,
                "workers": workers,
                "chunk": OBSTORE_CHUNK,
            }
            result = self.engine("obstore", args, f"{case}-obstore")
            self.fail_note(f"obstore {case} run {run + 1}", result)
            measured["obstore"].append(result)
            # rclone
            if self.rclone:
                clone = self.target(kind, data.name, "rclone")
                self.prepare(self._path(clone), s3=s3)
                command = cases.rclone_command(
                    self.rclone,
                    self.origin_url,
                    data.files_from,
                    target=clone,
                    transfers=workers,
                    object_size=data.size,
                )
                log = self.logs / f"{case}-rclone.log"
                result = self.counted(
                    functools.partial(cases.measure, command, self.env, self.work, log)
                )
                result.result = {"seconds": result.wall}
                self.fail_note(f"rclone {case} run {run + 1}", result)
                measured["rclone"].append(result)
        self._throughput_rows(data, kind, measured, workers)
        if rerun is not None:
            self._rerun_row(data, kind, rerun, measured["stacflow"])
        cases.clear(self.work / data.name)
        if s3:
            servers.moto_reset(self.moto_url, BUCKET)

    def _path(self, target: dict[str, Any]) -> Path:
        return Path(target["root"]) if target["type"] == "file" else self.work / "none"

    def _throughput_rows(
        self,
        data: Dataset,
        kind: str,
        measured: dict[str, list[cases.Measured]],
        workers: int,
    ) -> None:
        case = f"{data.label} → {'local folder' if kind == 'local' else 'S3 (moto)'}"
        times = {e: [m.seconds for m in ms if m.ok] for e, ms in measured.items()}
        self.first_runs[f"{data.name}-{kind}"] = med(times["stacflow"])
        for engine in ENGINES:
            ms = measured[engine]
            if not ms:
                continue
            seconds = med(times[engine])
            if not times[engine]:
                self.rows.append(Row("throughput", case, engine, "failed (see notes)"))
                continue
            peak = med([m.peak_kib for m in ms])
            req = ms[-1].extra.get("requests", {})
            text = (
                f"{data.total / seconds / MB:.0f} MB/s · {data.count / seconds:.0f} files/s · "
                f"{seconds:.2f} s{spread(times[engine])} · peak RSS {mib(peak)} · "
                f"origin {req.get('GET', 0)} GET + {req.get('HEAD', 0)} HEAD · "
                + self.cpu_text(ms, "origin", *(["moto"] if kind == "s3" else []))
            )
            flushes = [m.result["flush_s"] for m in ms if m.ok and "flush_s" in m.result]
            if flushes:
                text += f" · then flushed to disk in {med(flushes):.2f} s (not in the byte phase)"
            label = {
                "stacflow": f"stacflow byte phase ({workers} workers, 2 batches in flight)",
                "obstore": f"plain obstore ({workers} threads, {human(OBSTORE_CHUNK)} slices)",
                "rclone": f"rclone copy (--transfers {workers})",
            }[engine]
            row = Row("throughput", case, label, text, runs=str(len(times[engine])))
            if engine == "stacflow":
                ratios, oks = [], []
                for other, want in (("obstore", 0.9), ("rclone", 1.0)):
                    if times.get(other):
                        ratio = med(times[other]) / seconds
                        ratios.append(f"{ratio:.2f}x {other}")
                        oks.append(ratio >= want)
                row.ratio = " · ".join(ratios)
                row.target = "≥ 0.9x obstore · ≥ 1.0x rclone"
                row.met = met(all(oks) if oks else None)
                self.rows.append(row)
                base = med([m.result.get("base_rss_kib", 0) for m in ms])
                self.rows.append(
                    Row(
                        "memory",
                        case,
                        "stacflow byte phase peak RSS",
                        f"{mib(peak)} (base after imports {mib(base)}; memory_limit 512 MiB)",
                        target="≤ memory_limit + base",
                        met=met(peak <= 512 * 1024 + base),
                        runs=str(len(ms)),
                    )
                )
            else:
                self.rows.append(row)

    def _rerun_row(
        self, data: Dataset, kind: str, rerun: cases.Measured, first: list[cases.Measured]
    ) -> None:
        first_s = med([m.seconds for m in first if m.ok])
        req = rerun.extra.get("requests", {})
        outcomes = rerun.result.get("outcomes", {})
        ratio = rerun.seconds / first_s if first_s else float("nan")
        self.rows.append(
            Row(
                "rerun",
                f"{data.label} → {'local folder' if kind == 'local' else 'S3 (moto)'}",
                "stacflow byte phase, rerun of the completed spec",
                f"{rerun.seconds:.2f} s (first run {first_s:.2f} s) · origin {req.get('GET', 0)} "
                f"GET + {req.get('HEAD', 0)} HEAD · {_counts(outcomes)}",
                ratio=f"{ratio:.1%} of first run",
                target="≤ 10%",
                met=met(ratio <= 0.10 and rerun.ok),
                runs="1",
            )
        )

    # --- (1) the whole command, Prefect's fixed start cost, and its rerun ------------------

    def start_cost(self, mode: str, api_url: str = "") -> None:
        """`stacflow run` on a 1-asset spec: the fixed cost of one command."""
        env = {**self.env, "PREFECT_API_URL": api_url}
        one = make_dataset("one", 1, 256 * KiB, self.tmp / "origin", self.tmp / "packages")
        target = self.target("local", f"one-{mode}", "stacflow")
        spec, outputs = self.spec(one, target, f"one-{mode}")
        walls, cold = [], None
        if mode == "ephemeral":  # the first command creates and migrates ~/.prefect's DB
            self.prepare(self._path(target), outputs, drop=False)
            cold = cases.stacflow_command(spec, env, self.work, self.logs / "start-cold.log")
        for _ in range(self.suite.start_runs):
            self.prepare(self._path(target), outputs, drop=False)
            done = cases.stacflow_command(spec, env, self.work, self.logs / f"start-{mode}.log")
            self.fail_note(f"stacflow run (1 asset, {mode})", done)
            walls.append(done.wall)
        text = f"{med(walls):.2f} s{spread(walls)} wall for `stacflow run` of a 1-asset spec"
        if cold is not None:
            text += f" · first command on a fresh PREFECT_HOME (DB migrations): {cold.wall:.2f} s"
        what = (
            "fixed start cost, ephemeral mode"
            if mode == "ephemeral"
            else "fixed start cost, against a running `prefect server start`"
        )
        self.rows.append(Row("start", "1 x 256 KiB → local", what, text, runs=str(len(walls))))
        self.start_medians = {**getattr(self, "start_medians", {}), mode: med(walls)}

    def whole_commands(self) -> None:
        """`stacflow run SPEC` per size class into a local folder, ephemeral mode, one run each."""
        for name, _, _ in self.suite.classes:
            data = self.datasets[name]
            target = self.target("local", name, "command")
            spec, outputs = self.spec(data, target, f"{name}-command")
            self.prepare(self._path(target), outputs, drop=False)
            done = cases.stacflow_command(spec, self.env, self.work, self.logs / "command.log")
            self.fail_note(f"stacflow run {name}", done)
            phase = done.result.get("byte_phase_s")
            text = f"{done.wall:.2f} s wall · {data.total / done.wall / MB:.0f} MB/s end to end"
            if phase:
                text += (
                    f" · byte phase per its report {phase:.2f} s · rest {done.wall - phase:.2f} s"
                )
            engine_s = self.first_runs.get(f"{name}-local")
            ratio = f"{engine_s / done.wall:.2f}x the byte phase's speed" if engine_s else ""
            self.rows.append(
                Row(
                    "command",
                    f"{data.label} → local folder",
                    "`stacflow run SPEC` (ephemeral Prefect, start included)",
                    text,
                    ratio=ratio,
                    runs="1",
                )
            )
            theirs = self._stacpkg_command(data)
            if theirs:
                mine = self.rows[-2]
                ratios = [mine.ratio, f"{theirs / done.wall:.2f}x stacpkg's speed"]
                mine.ratio = " · ".join(r for r in ratios if r)
            if name == self.suite.classes[0][0]:
                servers.origin_reset(self.origin_url)
                again = cases.stacflow_command(spec, self.env, self.work, self.logs / "command.log")
                req = self.requests()
                ratio_v = again.wall / done.wall
                self.rows.append(
                    Row(
                        "rerun",
                        f"{data.label} → local folder",
                        "`stacflow run SPEC` again (whole command)",
                        f"{again.wall:.2f} s (first {done.wall:.2f} s) · origin "
                        f"{req.get('GET', 0)} GET + {req.get('HEAD', 0)} HEAD",
                        ratio=f"{ratio_v:.1%} of first run",
                        target="≤ 10% (fixed start cost included)",
                        met=met(ratio_v <= 0.10),
                        runs="1",
                    )
                )
            cases.clear(self.work / name, self.work / f"{name}-command")

    def _stacpkg_command(self, data: Dataset) -> float | None:
        """stacpkg's pipeline on the same package, right after stacflow's run: its wall time."""
        binary = stacpkg.find()
        case = f"{data.label} → local folder"
        what = "stacpkg 0.1.4 pipeline (asset-lock relocate + items add-alternate)"
        if binary is None:
            text = f"not measured: no stacpkg at ${stacpkg.ENV} or {stacpkg.DEFAULT}"
            self.rows.append(Row("command", case, what, text))
            return None
        root, work = self.work / data.name / "stacpkg", self.work / f"{data.name}-stacpkg"
        command = stacpkg.pipeline(binary, data, self.origin_url, root, work)
        self.prepare(root, drop=False)
        done = cases.measure(command, stacpkg.env(self.env), self.work, self.logs / "stacpkg.log")
        done.result = {"ok": done.returncode == 0}
        self.fail_note(f"stacpkg pipeline {data.name}", done)
        text = f"{done.wall:.2f} s wall · {data.total / done.wall / MB:.0f} MB/s end to end"
        self.rows.append(Row("command", case, what, text, runs="1"))
        cases.clear(root, work)
        return done.wall if done.ok else None

    # --- (2) validation ------------------------------------------------------------------

    def validation(self) -> None:
        data = self.datasets["v16k"]
        spec, _ = self.spec(data, self.target("local", "v16k", "stacflow"), "v16k")
        runs = self.suite.validate_runs
        for checksums in (False, True):
            self.prepare()
            done = self.engine(
                "validate", {"spec": str(spec), "checksums": checksums, "runs": runs}, "validate"
            )
            self.fail_note(f"validation (checksums={checksums})", done)
            seconds = done.result.get("runs", [done.seconds])
            rows, req = done.result.get("rows", 0), done.extra["requests"]
            s = med(seconds)
            text = f"{rows / s:,.0f} rows/s · {s:.2f} s{spread(seconds)}"
            if checksums:
                text += f" · {data.total / s / MB:.0f} MB/s hashed"
            text += (
                f" · origin {req.get('GET', 0) // runs} GET + {req.get('HEAD', 0) // runs} HEAD"
                f" per run · peak RSS {mib(done.peak_kib)}"
            )
            what = "validate_checks, " + (
                "with checksums (HEAD + GET, SHA-256)" if checksums else "metadata only (HEAD)"
            )
            self.rows.append(
                Row(
                    "validation",
                    f"{data.count:,}-row lock ({human(data.size)} objects, https origin)",
                    what,
                    text,
                    runs=f"{len(seconds)} (one process)",
                )
            )

    # --- (4) orchestration ---------------------------------------------------------------

    def orchestration(self, api_url: str) -> None:
        data = self.datasets["o16k"]
        target = self.target("local", "o16k", "flow")
        validate = "{locks: [https, local], checksums: [local]}"
        spec, outputs = self.spec(data, target, "o16k", validate=validate)
        env = {**self.env, "PREFECT_API_URL": api_url}
        alone, flows = [], []
        for _ in range(self.suite.orchestration_runs):
            # No page-cache drop: the flow imports more lazily, inside its timed span.
            self.prepare(self._path(target), outputs, drop=False)
            done = self.counted(
                lambda: cases.engine(
                    "pipeline", {"spec": str(spec)}, self.env, self.work, self.logs / "pipeline.log"
                )
            )
            self.fail_note("engine alone (10k)", done)
            alone.append(done)
            self.prepare(self._path(target), outputs, drop=False)
            done = self.counted(
                lambda: cases.engine(
                    "flow", {"spec": str(spec)}, env, self.work, self.logs / "flow.log"
                )
            )
            self.fail_note("relocate_package flow (10k)", done)
            flows.append(done)
        a = med([m.seconds for m in alone])
        f = med([m.seconds for m in flows])
        a_phase = med([m.result.get("byte_phase_s") or 0 for m in alone])
        f_phase = med([m.result.get("byte_phase_s") or 0 for m in flows])
        case = f"{data.label} → local folder, validate https + local (checksums)"
        self.rows.append(
            Row(
                "orchestration",
                case,
                "engine alone (same plain functions, no Prefect)",
                f"{a:.2f} s{spread([m.seconds for m in alone])} · byte phase {a_phase:.2f} s · "
                f"peak RSS {mib(med([m.peak_kib for m in alone]))} · "
                + self.cpu_text(alone, "origin", "prefect"),
                runs=str(len(alone)),
            )
        )
        self.rows.append(
            Row(
                "orchestration",
                case,
                "`relocate_package` flow against a running Prefect server (as `stacflow run` "
                "runs it: no heartbeat thread)",
                f"{f:.2f} s{spread([m.seconds for m in flows])} · byte phase per its report "
                f"{f_phase:.2f} s · peak RSS {mib(med([m.peak_kib for m in flows]))} · "
                + self.cpu_text(flows, "origin", "prefect"),
                ratio=f"{f / a:.2f}x engine alone",
                target="≤ 1.15x",
                met=met(f / a <= 1.15),
                runs=str(len(flows)),
            )
        )
        last = flows[-1].result
        counted = alone[-1].result.get("task_units", 0)
        names = ", ".join(f"{n} {k}" for k, n in sorted(last.get("task_names", {}).items()))
        self.rows.append(
            Row(
                "orchestration",
                case,
                "task runs of one flow run",
                f"{last.get('task_runs', 0)} read back from the server ({names}; recorder "
                f"waited {last.get('recorder_wait_s', 0):.1f} s) · {counted} counted from the "
                "plan (preflight + claim-targets + relocate batches + validation batches + "
                "flush + enrich)",
                target="bounded: one per batch, = the plan's count",
                met=met(last.get("task_runs") == counted),
                runs="1",
            )
        )

    # --- (5) memory ----------------------------------------------------------------------

    def memory(self) -> None:
        for name, kinds in (("big", ("local", "s3")), ("small", ("local",))):
            data = self.datasets[name]
            for kind in kinds:
                for limit in ("256MiB", "512MiB"):
                    target = self.target(kind, f"{name}-{limit}", "stacflow")
                    spec, outputs = self.spec(
                        data, target, f"mem-{name}-{kind}-{limit}", limit=limit
                    )
                    self.prepare(self._path(target), outputs, s3=kind == "s3")
                    done = self.engine("stacflow", {"spec": str(spec)}, f"memory-{name}")
                    self.fail_note(f"memory {name} {kind} {limit}", done)
                    base = done.result.get("base_rss_kib", 0)
                    limit_kib = int(limit.removesuffix("MiB")) * 1024
                    where = "local folder" if kind == "local" else "S3 (moto)"
                    self.rows.append(
                        Row(
                            "memory",
                            f"{data.label} → {where}, memory_limit {limit.replace('Mi', ' Mi')}",
                            f"stacflow byte phase ({done.result.get('workers', '?')} workers)",
                            f"peak RSS {mib(done.peak_kib)} (base after imports {mib(base)}) · "
                            f"{data.total / done.seconds / MB:.0f} MB/s",
                            target="≤ memory_limit + base",
                            met=met(done.peak_kib <= limit_kib + base and done.ok),
                            runs="1",
                        )
                    )
                    cases.clear(self._path(target), outputs)
        if self.moto_url:
            servers.moto_reset(self.moto_url, BUCKET)


def _counts(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) or "no outcomes"


# --- the machine ---------------------------------------------------------------------------


def machine(rclone: str, rclone_how: str) -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    tmp_dev, tmp_fs = "?", "?"
    best = ""
    for line in Path("/proc/mounts").read_text().splitlines():
        device, point, fs = line.split()[:3]
        if "/tmp".startswith(point) and len(point) > len(best):
            best, tmp_dev, tmp_fs = point, device, fs
    usage = shutil.disk_usage("/tmp")
    rota = "?"
    with contextlib.suppress(OSError, IndexError):
        dev = Path(tmp_dev).name
        rota = Path(f"/sys/block/{dev}/queue/rotational").read_text().strip()
    versions = []
    for package in ("prefect", "obstore", "moto", "pyarrow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    load = os.getloadavg()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; RAM {mem / 1024**2:.1f} GiB",
        (
            f"- Disk (/tmp): {tmp_dev} ({tmp_fs}, rotational={rota}), "
            f"{usage.free / GiB:.0f} GiB free of {usage.total / GiB:.0f} GiB"
        ),
        f"- Kernel {platform.release()}; Python {platform.python_version()}; {', '.join(versions)}",
        f"- rclone: {rclone} ({rclone_how})",
        (
            f"- Load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
            "(other processes share these cores)"
        ),
    ]


AREAS = (
    "throughput",
    "remote",
    "command",
    "start",
    "rerun",
    "validation",
    "orchestration",
    "memory",
)


def table(rows: list[Row]) -> str:
    rows = sorted(rows, key=lambda r: AREAS.index(r.area) if r.area in AREAS else len(AREAS))
    head = (
        "| area | case | engine / measure | result (median) | ratio (same run) | target | met | n |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r.area} | {r.case} | {r.what} | {r.result} | {r.ratio} | {r.target} | {r.met} "
        f"| {r.runs} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run: a smoke test")
    parser.add_argument("--keep", action="store_true", help="keep the tmp dir (data and logs)")
    parser.add_argument(
        "--no-drop-caches", action="store_true", help="do not drop the page cache between runs"
    )
    parser.add_argument("--output", type=Path, help="write the table here too (default: dated)")
    parser.add_argument(
        "--only",
        type=lambda text: [part.strip() for part in text.split(",")],
        default=list(SECTIONS),
        help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})",
    )
    parser.add_argument("--no-rclone", action="store_true", help="do not look for or install it")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    suite = QUICK if args.quick else FULL
    started = time.perf_counter()
    rclone, how = (None, "not used (--no-rclone)") if args.no_rclone else cases.ensure_rclone()
    version = cases.rclone_version(rclone) if rclone else "not available"
    header = machine(version, how)
    tmp = Path(tempfile.mkdtemp(prefix="stacflow-bench-", dir="/tmp"))
    bench = Bench(suite, tmp, drop_caches=not args.no_drop_caches)
    bench.rclone = rclone
    kind = "quick" if args.quick else "full"
    print(f"stacflow benchmarks ({kind}): data in {tmp}, logs in {bench.logs}", flush=True)
    try:
        run_suite(bench, tmp, started, set(args.only))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            if not bench.failed:
                shutil.rmtree(bench.logs, ignore_errors=True)
    wall = time.perf_counter() - started
    if set(args.only) != set(SECTIONS):
        bench.notes.insert(0, f"Sections: only {', '.join(args.only)} (`--only`).")
    text = report(suite, header, bench, wall, quick=args.quick)
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d") + ("-quick" if args.quick else "")
    out = args.output or RESULTS / f"{name}.md"
    out.write_text(text + "\n")
    facts = {
        "suite": "quick" if args.quick else "full",
        "wall_s": round(wall, 1),
        "machine": header,
        "rows": [dataclasses.asdict(row) for row in bench.rows],
        "notes": bench.notes,
    }
    out.with_suffix(".json").write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwritten to {out} and {out.with_suffix('.json')}")
    return 0


def run_suite(bench: Bench, tmp: Path, started: float, only: set[str]) -> None:
    """The chosen sections, in an order that lets the servers be shared and started only once.

    A section that breaks (stacflow is being changed while this runs) becomes a note with its
    error, and the other sections still run.
    """

    def section(key: str, name: str, work: Any, *args: Any) -> None:
        if key not in only:
            return
        step = time.perf_counter()
        try:
            work(*args)
        except Exception as error:  # noqa: BLE001 - reported in the table's notes
            where = traceback.format_exception(error)[-1].strip()
            bench.notes.append(f"section {name!r} broke: {where} (logs: {bench.logs})")
        bench.timings.setdefault(name, time.perf_counter() - step)
        print(f"  {name} done at {time.perf_counter() - started:.0f} s", flush=True)

    only = {*only, "data"}
    section("data", "data", bench.make_data, only)
    with contextlib.ExitStack() as stack:
        origin = stack.enter_context(servers.origin(tmp / "origin", LAST_MODIFIED_HTTP, bench.logs))
        bench.origin_url, bench.origin_pid = origin.url, origin.pid
        if only & {"throughput-s3", "memory"}:
            moto = stack.enter_context(servers.moto(bench.logs))
            bench.moto_url, bench.moto_pid = moto.url, moto.pid
            servers.moto_reset(moto.url, BUCKET)
        section("throughput-local", "throughput -> local", bench.throughput, "local")
        section("throughput-s3", "throughput -> s3", bench.throughput, "s3")
        section("remote", "remote-like origin", remote.measure, bench)
        section("validation", "validation", bench.validation)
        section("memory", "memory", bench.memory)
        section("start", "start cost (ephemeral)", bench.start_cost, "ephemeral")
        section("commands", "whole commands", bench.whole_commands)
        if "server" in only:
            with servers.prefect_server(tmp / "prefect-server", bench.env) as server:
                bench.prefect_pid = server.pid
                bench.notes.append(
                    f"`prefect server start` (fresh DB) answered /api/health after "
                    f"{server.started_in:.1f} s; not part of any figure."
                )
                section("server", "start cost (server)", bench.start_cost, "server", server.url)
                section("server", "orchestration", bench.orchestration, server.url)


def report(suite: Suite, header: list[str], bench: Bench, wall: float, *, quick: bool) -> str:
    load = os.getloadavg()
    caches = (
        "dropped (`echo 1 > /proc/sys/vm/drop_caches` after `sync`) before every engine run"
        if bench.dropped
        else "not dropped (not permitted here, or --no-drop-caches); `sync` before every run"
    )
    notes = [
        (
            f"Suite: {'quick (smoke test)' if quick else 'full'}; wall time {wall:.0f} s "
            f"({', '.join(f'{k} {v:.0f} s' for k, v in bench.timings.items())})."
        ),
        (
            f"Runs per figure (the n column): local-folder throughput {suite.local_runs}, S3 "
            f"{suite.s3_runs} (moto is the bottleneck and the slowest part of the suite), "
            f"validation {suite.validate_runs}, start cost {suite.start_runs}, orchestration "
            f"{suite.orchestration_runs}; whole commands, reruns and memory cases 1 each, to fit "
            "the suite in 10 minutes on 2 cores."
        ),
        f"Page cache: {caches}; load average at the end {load[0]:.2f}.",
        (
            "Each engine case runs in its own process; peak RSS is wait4's ru_maxrss of that "
            "process; base = VmRSS after its imports. stacflow and obstore are timed inside their "
            "process (after imports and store/plan setup); rclone by its process wall time. CPU: "
            "the engine process's user + system seconds in the timed span (rclone: all of it), "
            "and in parentheses what the servers spent meanwhile (they share the 2 cores)."
        ),
        (
            "Origin: the tests' origin (tests/servers/origin.py) in its own process (stdlib "
            "HTTP/1.1, sendfile, HEAD, Range, If-Match, fixed Last-Modified, nginx-style ETag, "
            "request counters). S3: `python -m moto.server` in its own process, reset before "
            "every run."
        ),
        (
            "rclone: `rclone copy :http: DEST --http-url ORIGIN --files-from KEYS --no-traverse "
            "--transfers N` (the origin serves no index pages); S3 via `:s3:` with "
            "`--s3-provider Other`; objects above 200 MiB add `--s3-no-head` (rclone 1.60 HEADs "
            "`?versionId=null` after a multipart upload and moto answers 400)."
        ),
        (
            "plain obstore: HTTPStore → LocalStore/S3Store, sync API in a ThreadPoolExecutor of "
            f"stacflow's worker count, `get().stream(min_chunk_size={human(OBSTORE_CHUNK)})` into "
            "`open_writer(buffer_size=5 MiB, max_concurrency=2)`: no hashing, no checks, no "
            "fsync. stacflow reads in the same 1 MiB slices (its chunk_size, 8 MiB here, sizes "
            "multipart parts)."
        ),
        *bench.notes,
    ]
    return "\n".join(
        [
            f"# stacflow benchmarks, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "",
            *header,
            "",
            table(bench.rows),
            "",
            *(f"- {note}" for note in notes),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
