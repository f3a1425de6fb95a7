"""What each benchmark subprocess runs: `python -m benchmarks.engines KIND ARGS-JSON OUT-JSON`.

One engine case per process, so its peak RSS is its own (the parent reads it with wait4) and no
state (store caches, the process-wide slot budget, Prefect settings) leaks from one case into the
next. Each kind writes a JSON result; timings are `perf_counter` spans around the measured work.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _outcomes(outcomes: list[Any]) -> dict[str, Any]:
    counts = Counter(str(o.outcome) for o in outcomes)
    failed = [o for o in outcomes if o.failed]
    return {
        "outcomes": dict(counts),
        "bytes_copied": sum(o.bytes for o in outcomes),
        "first_failure": failed[0].message if failed else None,
    }


def stacflow_byte_phase(args: dict[str, Any]) -> dict[str, Any]:
    """The byte phase exactly as the flow runs it, minus Prefect: compile the plan, then
    `relocate_batch` per batch, `BATCHES_IN_FLIGHT` at once, `plan.policy` (no sweep: the previous
    run ended normally), journals on; then, timed apart, the flush and the journal settlement."""
    from stacflow.flows.compile import compile_plan  # noqa: PLC0415
    from stacflow.flows.inputs import load_inputs, load_spec, previous_records  # noqa: PLC0415
    from stacflow.flows.records import record_relocations  # noqa: PLC0415
    from stacflow.flows.relocate import BATCHES_IN_FLIGHT  # noqa: PLC0415
    from stacflow.tasks.owners import Owner, claim_targets  # noqa: PLC0415
    from stacflow.tasks.preflight import preflight  # noqa: PLC0415
    from stacflow.tasks.relocate import flush_targets, relocate_batch  # noqa: PLC0415
    from stacflow.tasks.state import journal_path  # noqa: PLC0415
    from stacflow.tasks.stores import file, http, object_store  # noqa: F401, PLC0415 - untimed
    from stacflow.tasks.survey import with_listings  # noqa: PLC0415

    base = rss_kib()
    spec_path = Path(args["spec"])
    started = time.perf_counter()
    spec = load_spec(spec_path)
    inputs = load_inputs(spec_path, spec)
    plan = compile_plan(inputs, previous_records(inputs))
    plan.refuse_conflicts()
    stores = [(t.name, t.store) for t in plan.targets]
    preflight(plan.moves, plan.source, stores)
    claim_targets(stores, Owner.of(spec.name, inputs.outputs_id), write=True)
    plan = dataclasses.replace(plan, policy=dataclasses.replace(plan.policy, sweep=False))
    compile_s = time.perf_counter() - started
    journals = {t.name: journal_path(inputs.outputs, t.name) for t in plan.targets}
    before = rss_kib()
    started, cpu = time.perf_counter(), time.process_time()
    plan = dataclasses.replace(plan, moves=tuple(with_listings(plan.moves)))  # as the flow does
    batches = plan.batches()
    with ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT) as pool:
        futures = [pool.submit(relocate_batch, b, plan.policy, journals) for b in batches]
        moved = [m for f in futures for m in f.result()]
    seconds = time.perf_counter() - started
    flush_s = flush_targets([t.store for t in plan.targets])
    record_relocations(plan, inputs, [m.outcome for m in moved])
    return {
        "seconds": seconds,
        "flush_s": flush_s,
        "cpu_s": time.process_time() - cpu,
        "compile_s": compile_s,
        "files": len(plan.moves),
        "bytes": plan.bytes,
        "workers": plan.policy.workers,
        "batches": len(batches),
        "base_rss_kib": base,
        "before_rss_kib": before,
        "hwm_kib": hwm_kib(),
        **_outcomes([m.outcome for m in moved]),
    }


def obstore_copy(args: dict[str, Any]) -> dict[str, Any]:
    """The engine without stacflow: HTTPStore → LocalStore/S3Store, sync API in a thread pool,
    `get(...).stream(min_chunk_size=C)` into `open_writer`; no hashing, no checks."""
    import obstore as obs  # noqa: PLC0415
    from obstore.store import HTTPStore, LocalStore, S3Store  # noqa: PLC0415

    base = rss_kib()
    chunk = args["chunk"]
    source = HTTPStore(args["origin"], client_options={"allow_http": True, "timeout": "30min"})
    target = args["target"]
    if target["type"] == "file":
        store: Any = LocalStore(target["root"], mkdir=True)
    else:
        store = S3Store(
            target["bucket"],
            prefix=target["prefix"] or None,
            endpoint=target["endpoint"],
            region="us-east-1",
            access_key_id=target["key_id"],
            secret_access_key=target["secret"],
            virtual_hosted_style_request=False,
            client_options={"allow_http": True, "timeout": "30min"},
        )
    keys = Path(args["keys"]).read_text().split()

    def one(key: str) -> int:
        result = obs.get(source, key)
        with obs.open_writer(
            store, key, buffer_size=max(chunk, 5 << 20), max_concurrency=2
        ) as writer:
            for piece in result.stream(min_chunk_size=chunk):
                writer.write(piece)
        return result.meta["size"]

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=args["workers"]) as pool:
        total = sum(pool.map(one, keys))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_s": time.process_time() - cpu,
        "files": len(keys),
        "bytes": total,
        "base_rss_kib": base,
        "hwm_kib": hwm_kib(),
    }


def validate(args: dict[str, Any]) -> dict[str, Any]:
    """`validate_checks` over a source lock, `runs` times in this process: HEAD only, or
    HEAD + GET with checksums. Each run builds its own thread pool (new connections)."""
    from stacflow.flows.compile import compile_plan  # noqa: PLC0415
    from stacflow.flows.inputs import load_inputs, load_spec  # noqa: PLC0415
    from stacflow.tasks.stores import http  # noqa: F401, PLC0415 - untimed
    from stacflow.tasks.validate import validate_checks  # noqa: PLC0415

    spec_path = Path(args["spec"])
    spec = load_spec(spec_path)
    plan = compile_plan(load_inputs(spec_path, spec), validate=["https"], checksums=False)
    checks = list(plan.source_checks[0].checks)
    base = rss_kib()
    runs, invalid = [], []
    for _ in range(args.get("runs", 1)):
        started = time.perf_counter()
        results = validate_checks(checks, "https", checksums=args["checksums"])
        runs.append(time.perf_counter() - started)
        invalid = [r for r in results if r.outcome.failed]
    return {
        "seconds": statistics.median(runs),
        "runs": runs,
        "rows": len(checks),
        "invalid": len(invalid),
        "first_failure": invalid[0].outcome.message if invalid else None,
        "base_rss_kib": base,
        "hwm_kib": hwm_kib(),
    }


def pipeline(args: dict[str, Any]) -> dict[str, Any]:
    """What `relocate_package` does, through the same plain functions, without Prefect:
    load, compile, the stores' pre-flight and the targets' claim, relocate (batches, 2 in
    flight), journals → locks, then enriched items beside validation in batches (2 in flight),
    validation lines and report."""
    from stacflow.flows.compile import compile_plan, target_checks  # noqa: PLC0415
    from stacflow.flows.inputs import load_inputs, load_spec, previous_records  # noqa: PLC0415
    from stacflow.flows.records import record_relocations, recorded  # noqa: PLC0415
    from stacflow.flows.relocate import (  # noqa: PLC0415
        BATCHES_IN_FLIGHT,
        VALIDATION_BATCH_FACTOR,
        _chunks,
    )
    from stacflow.tasks.outputs import (  # noqa: PLC0415
        OutputPaths,
        write_enriched,
        write_validation,
    )
    from stacflow.tasks.owners import Owner, claim_targets  # noqa: PLC0415
    from stacflow.tasks.preflight import preflight  # noqa: PLC0415
    from stacflow.tasks.relocate import flush_targets, relocate_batch  # noqa: PLC0415
    from stacflow.tasks.report import write_report  # noqa: PLC0415
    from stacflow.tasks.state import journal_path  # noqa: PLC0415
    from stacflow.tasks.summary import Summary  # noqa: PLC0415
    from stacflow.tasks.validate import validate_checks  # noqa: PLC0415

    base = rss_kib()
    started, cpu = time.perf_counter(), time.process_time()
    spec_path = Path(args["spec"])
    spec = load_spec(spec_path)
    inputs = load_inputs(spec_path, spec)
    plan = compile_plan(inputs, previous_records(inputs))
    plan.refuse_conflicts()
    stores = [(t.name, t.store) for t in plan.targets]
    preflight(plan.moves, plan.source, stores)
    claim_targets(stores, Owner.of(spec.name, inputs.outputs_id), write=True)
    paths = OutputPaths(inputs.outputs)
    journals = {t.name: journal_path(inputs.outputs, t.name) for t in plan.targets}
    phase = time.perf_counter()
    with ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT) as pool:
        futures = [pool.submit(relocate_batch, b, plan.policy, journals) for b in plan.batches()]
        moved = [m for f in futures for m in f.result()]
    byte_phase_s = time.perf_counter() - phase
    flush_targets([t.store for t in plan.targets])
    outcomes = [m.outcome for m in moved]
    locks, alternates, outcomes = record_relocations(plan, inputs, outcomes)
    jobs = [(c.name, list(c.checks), c.checksums) for c in plan.source_checks]
    jobs += [
        (
            t.name,
            target_checks(t, locks.get(t.name, []), recorded(plan, t.name)),
            t.name in plan.checksum_targets,
        )
        for t in plan.targets
        if t.name in plan.validate_targets
    ]
    validated: dict[str, list[Any]] = {name: [] for name, _, _ in jobs}
    with ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT) as pool:
        enriching = pool.submit(write_enriched, paths, inputs.items_path, locks, alternates, [])
        futures = [
            (name, pool.submit(validate_checks, batch, name, checksums=checksums))
            for name, checks, checksums in jobs
            for batch in _chunks(checks, plan.batch_assets * VALIDATION_BATCH_FACTOR)
        ]
        for name, future in futures:
            validated[name].extend(future.result())
        files = enriching.result()
    all_outcomes = list(outcomes)
    for name, results in validated.items():
        write_validation(paths, name, [r.line for r in results])
        all_outcomes += [r.outcome for r in results]
    write_report(paths.report, all_outcomes)
    summary = Summary(
        name=plan.name,
        outcomes=tuple(all_outcomes),
        elapsed_s=time.perf_counter() - started,
        byte_phase_s=byte_phase_s,
        outputs=tuple(str(w.path) for w in files),
    )
    summary.text()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_s": time.process_time() - cpu,
        "byte_phase_s": byte_phase_s,
        "files": len(plan.moves),
        "task_units": len(plan.batches())
        + sum(len(_chunks(c, plan.batch_assets * VALIDATION_BATCH_FACTOR)) for _, c, _ in jobs)
        + 4,  # preflight, claim-targets, flush, enrich
        "base_rss_kib": base,
        "hwm_kib": hwm_kib(),
        "ok": summary.ok,
        **_outcomes(all_outcomes),
    }


def flow(args: dict[str, Any]) -> dict[str, Any]:
    """`relocate_package` against the server in PREFECT_API_URL, with the settings `stacflow
    run` gives its flow runs (no heartbeat thread, whose exit alone waits up to 1 s); then its
    task runs, read back."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: PLC0415

    from stacflow.flows.api_server import Api, run_settings  # noqa: PLC0415
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    base = rss_kib()
    started, cpu = time.perf_counter(), time.process_time()
    with run_settings(Api(os.environ["PREFECT_API_URL"])):
        state = relocate_package(spec_path=args["spec"], return_state=True)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    result = state.result(raise_on_failure=False)
    flow_run_id = state.state_details.flow_run_id
    hwm = hwm_kib()
    waited = time.perf_counter()
    counts: list[int] = []
    names: Counter[str] = Counter()
    with get_client(sync_client=True) as client:
        flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        deadline = time.monotonic() + args.get("wait_s", 60)
        while time.monotonic() < deadline:
            runs = client.read_task_runs(flow_run_filter=flow_filter, limit=200)
            counts.append(len(runs))
            terminal = [r for r in runs if r.state is not None and r.state.is_final()]
            if len(counts) >= 3 and counts[-1] == counts[-3] and len(terminal) == len(runs):
                break
            time.sleep(1.0)
        names = Counter(r.task_key.rsplit("-", 1)[0] if r.task_key else "?" for r in runs)
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "ok": isinstance(result, dict) and bool(result.get("ok")),
        "state": state.type.value,
        "task_runs": counts[-1] if counts else 0,
        "task_names": dict(names),
        "recorder_wait_s": time.perf_counter() - waited,
        "byte_phase_s": _byte_phase(result),
        "base_rss_kib": base,
        "hwm_kib": hwm,
    }


def _byte_phase(result: Any) -> float | None:
    text = result.get("text", "") if isinstance(result, dict) else ""
    for line in text.splitlines():
        if "bytes moved:" in line and " in " in line:
            try:
                return float(line.split(" in ", 1)[1].split(" s", 1)[0])
            except ValueError:
                return None
    return None


KINDS = {
    "stacflow": stacflow_byte_phase,
    "obstore": obstore_copy,
    "validate": validate,
    "pipeline": pipeline,
    "flow": flow,
}


def main() -> None:
    kind, args, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    result = KINDS[kind](args)
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
