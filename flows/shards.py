"""The relocate-in-shards flow: one package, relocated by many flow runs on Prefect workers.

The parent compiles the plan once (so conflicts are refused before anything starts), launches the
`relocate-package` deployment once per shard (every asset of an Item in the same shard), waits for
them, then merges: the shards' journals become one relocated lock per target, their outcome files
one report, and the parent enriches and validates as a single run would. Workers need the repo and
a shared outputs folder (the journals and shard reports live there).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import zlib
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from prefect.states import Cancelled, Cancelling
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field

from stacflow.flows.compile import Plan
from stacflow.flows.inputs import PACKAGE_ITEMS, PACKAGE_LOCK, Inputs, load_inputs, load_spec
from stacflow.flows.naming import run_name_from_spec
from stacflow.flows.relocate import (
    BATCHES_IN_FLIGHT,
    RUN_TIMEOUT_S,
    RunOverrides,
    apply_overrides,
    gather_inputs,
    prepare_plan,
    relocate_assets,
    settle_run,
    stop_run,
)
from stacflow.flows.spec import Spec
from stacflow.flows.verdict import ends_in_verdict
from stacflow.flows.workspace import outputs_folder, outputs_workspace
from stacflow.tasks.locks import read_lock
from stacflow.tasks.outputs import OutputPaths
from stacflow.tasks.report import Outcome, read_report, write_report
from stacflow.tasks.state import STATE_DIR
from stacflow.tasks.stop import STOP, Interrupted

DEFAULT_DEPLOYMENT = "relocate-shard/relocate-shard"
MAX_SHARDS = 64
# run_deployment's default (5 s) adds up to 5 s to every run after its last shard finished.
POLL_S = 1.0


class Shard(BaseModel):
    """One part of a package, relocated by its own flow run."""

    model_config = ConfigDict(extra="forbid")
    index: int = Field(ge=0, description="Which shard, from 0.")
    count: int = Field(ge=1, description="How many shards the package is split into.")
    report: str = Field(
        description="Where this shard writes its outcome rows for the parent, in the outputs."
    )
    sweep: bool = Field(
        default=True, description="Look for a killed run's debris (the parent's run lock knows)."
    )

    def of(self, plan: Plan) -> Plan:
        """The moves of this shard: every asset of an Item lands in the same shard."""
        moves = tuple(
            m
            for m in plan.moves
            if zlib.crc32(m.source.item_id.encode()) % self.count == self.index
        )
        return dataclasses.replace(plan, moves=moves)


@flow(
    name="relocate-shard",
    flow_run_name=run_name_from_spec(),
    timeout_seconds=RUN_TIMEOUT_S,
    description="One shard of a relocate-in-shards run: copy and journal its assets, write its "
    "outcomes for the parent. Started by relocate-in-shards, not by hand.",
    # Prefect types task_runner as TaskRunner[PrefectFuture], invariantly: its own runners fail it.
    task_runner=ThreadPoolTaskRunner(max_workers=BATCHES_IN_FLIGHT),  # type: ignore[arg-type]
)
@ends_in_verdict
def relocate_shard(
    spec_path: str,
    shard: Shard,
    targets: list[str] | None = None,
    overrides: RunOverrides | None = None,
) -> dict[str, Any]:
    """Copy one shard of a package; the parent (relocate-in-shards) merges, enriches, validates.

    Args:
        spec_path: The package spec, relative to the worker's working directory (the repo).
        shard: Which part of the package, and where to write its outcome rows.
        targets: Only these targets (default: every target in the spec).
        overrides: Run-time settings that take precedence over the spec.
    """
    spec = apply_overrides(load_spec(Path(spec_path)), overrides)
    with outputs_workspace(Path(spec_path), spec, "shard") as outputs:
        inputs = shard_inputs(Path(spec_path), spec)
        plan = shard.of(prepare_plan(inputs, targets))
        moved, byte_phase_s, _ = relocate_assets(plan, inputs, sweep=shard.sweep)  # logged there
        report = outputs.folder / shard.report
        write_report(report, [m.outcome for m in moved])
        outputs.upload(report)
    if STOP.is_set():  # cancelled: the parent merges what this shard copied
        raise Interrupted(f"shard {shard.index} interrupted; rerun the parent to resume")
    failed = sum(1 for m in moved if m.outcome.failed)
    get_run_logger().info(
        "shard %d/%d: %d assets, %d failed, byte phase %.2f s",
        shard.index,
        shard.count,
        len(plan.moves),
        failed,
        byte_phase_s,
    )
    return {"shard": shard.index, "assets": len(plan.moves), "failed": failed}


def shard_inputs(spec_path: Path, spec: Spec) -> Inputs:
    """A shard's tables. For lock-less Items the parent has derived the lock (a HEAD per asset)
    and written the package into the outputs: the shard reads it rather than derive it again."""
    package = OutputPaths(outputs_folder(spec_path, spec)).package
    lock = package / PACKAGE_LOCK
    if spec.package is None and lock.is_file():
        return load_inputs(spec_path, spec, lock=read_lock(lock), items=package / PACKAGE_ITEMS)
    return gather_inputs(spec_path, spec)[0]


@task(cache_policy=NO_CACHE, name="run-shard", tags=["stacflow", "shard"])
def run_shard(deployment: str, parameters: dict[str, Any]) -> str:
    """Start one shard's flow run on a worker and wait for it; its state's name is the result.

    When this run is stopped (Ctrl-C, a cancel), the shard is cancelled as the UI would: its
    worker stops it in order and it still writes its report for the merge."""
    # Prefect's async_dispatch types it as maybe a coroutine; called from sync code, it is not.
    child: FlowRun = run_deployment(  # type: ignore[assignment]
        name=deployment, parameters=parameters, timeout=0, as_subflow=True
    )
    cancelled = False
    with get_client(sync_client=True) as client:
        while not (state := client.read_flow_run(child.id).state) or not state.is_final():
            if STOP.is_set() and not cancelled:
                started = not (state is None or state.is_scheduled() or state.is_pending())
                stop = Cancelling if started else Cancelled  # nobody runs it yet to stop it
                client.set_flow_run_state(child.id, stop(message=STOP.reason), force=True)
                cancelled = True
            if cancelled:
                time.sleep(POLL_S)
            else:
                STOP.sleep(POLL_S)
    name = state.name or "Unknown"
    get_run_logger().info("shard flow run %s ended %s", child.name, name)
    return name


@flow(
    name="relocate-in-shards",
    flow_run_name=run_name_from_spec(),
    timeout_seconds=RUN_TIMEOUT_S,
    description="Relocate a package through parallel flow runs of the relocate-shard "
    "deployment (one per shard), then merge their locks and reports, enrich and validate.",
    # Prefect types task_runner as TaskRunner[PrefectFuture], invariantly: its own runners fail it.
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_SHARDS),  # type: ignore[arg-type]
)
@ends_in_verdict
def relocate_in_shards(
    spec_path: str = "specs/demo.yaml",
    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = 2,
    deployment: str = DEFAULT_DEPLOYMENT,
    targets: list[str] | None = None,
    overrides: RunOverrides | None = None,
) -> dict[str, Any]:
    """Split a package into shards, relocate them on workers, merge the results.

    Args:
        spec_path: The package spec, relative to the workers' working directory (the repo).
        shards: How many flow runs share the package (1-64).
        deployment: The relocate-shard deployment the shards run as.
        targets: Only these targets (default: every target in the spec).
        overrides: Run-time settings that take precedence over the spec.
    """
    started = time.monotonic()
    spec = apply_overrides(load_spec(Path(spec_path)), overrides)
    with outputs_workspace(Path(spec_path), spec, "run") as outputs, outputs.held() as killed:
        inputs, derived = gather_inputs(Path(spec_path), spec)
        plan = prepare_plan(inputs, targets)
        if derived:  # the shards read the package derived here
            outputs.upload_tree(OutputPaths(outputs.folder).package)
        reports = Path(STATE_DIR, "shards", str(flow_run.get_id() or "local"))
        futures = [
            run_shard.submit(
                deployment,
                {
                    "spec_path": spec_path,
                    "targets": targets,
                    "overrides": overrides.model_dump() if overrides else None,
                    "shard": Shard(
                        index=i,
                        count=shards,
                        report=(reports / f"{i}.parquet").as_posix(),
                        sweep=killed,
                    ).model_dump(),
                },
            )
            for i in range(shards)
        ]
        states = [future.result() for future in futures]
        outputs.refresh_journals()
        outputs.fetch(f"{reports.as_posix()}/")
        outcomes: list[Outcome] = list(derived)
        missing = []
        for index in range(shards):
            report = outputs.folder / reports / f"{index}.parquet"
            if report.is_file():
                outcomes += read_report(report)
            else:
                missing.append(f"shard {index} ({states[index]})")
        shutil.rmtree(outputs.folder / reports, ignore_errors=True)  # merged into the report
        outputs.discard(f"{reports.as_posix()}/")
        if STOP.is_set():
            stop_run(plan, inputs, outcomes, started)
        byte_phase_s = time.monotonic() - started
        problem = f"{', '.join(missing)} left no report; their assets were not merged"
        return settle_run(
            plan, inputs, outcomes, started, byte_phase_s, problem=problem if missing else None
        )
