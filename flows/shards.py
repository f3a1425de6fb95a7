"""The relocate-in-shards flow: one package, relocated by many flow runs on Prefect workers.

The parent compiles the plan once (so conflicts are refused before anything starts), launches the
`relocate-package` deployment once per shard (every asset of an Item in the same shard), waits for
them, then merges: the shards' journals become one relocated lock per target, their outcome files
one report, and the parent enriches and validates as a single run would. Workers need the repo and
a shared outputs folder (the journals and shard reports live there).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.inputs import load_spec
from flows.relocate import (
    RunOverrides,
    Shard,
    apply_overrides,
    finish_run,
    gather_inputs,
    prepare_plan,
    record_relocations,
    validate_locks,
)
from tasks.errors import RunFailed
from tasks.report import Outcome, read_report
from tasks.state import STATE_DIR

DEFAULT_DEPLOYMENT = "relocate-package/relocate-package"
MAX_SHARDS = 64
# run_deployment's default (5 s) adds up to 5 s to every run after its last shard finished.
POLL_S = 1.0


@task(name="run-shard", tags=["stacflow", "shard"])
def run_shard(deployment: str, parameters: dict[str, Any]) -> str:
    """Start one shard's flow run on a worker and wait for it; its state's name is the result."""
    child = run_deployment(
        name=deployment, parameters=parameters, timeout=None, poll_interval=POLL_S, as_subflow=True
    )
    state = child.state.name if child.state else "Unknown"
    get_run_logger().info("shard flow run %s ended %s", child.name, state)
    return state


@flow(
    name="relocate-in-shards",
    description="Relocate a package through parallel flow runs of the relocate-package "
    "deployment (one per shard), then merge their locks and reports, enrich and validate.",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_SHARDS),
)
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
        deployment: The relocate-package deployment the shards run as.
        targets: Only these targets (default: every target in the spec).
        overrides: Run-time settings that take precedence over the spec.
    """
    started = time.monotonic()
    spec = apply_overrides(load_spec(Path(spec_path)), overrides)
    inputs, derived = gather_inputs(Path(spec_path), spec)
    plan = prepare_plan(inputs, targets)
    reports = inputs.outputs / STATE_DIR / "shards" / str(flow_run.get_id() or "local")
    futures = [
        run_shard.submit(
            deployment,
            {
                "spec_path": spec_path,
                "targets": targets,
                "overrides": overrides.model_dump() if overrides else None,
                "shard": Shard(
                    index=i, count=shards, report=str(reports / f"{i}.parquet")
                ).model_dump(),
            },
        )
        for i in range(shards)
    ]
    states = [future.result() for future in futures]
    outcomes: list[Outcome] = list(derived)
    missing = []
    for index in range(shards):
        report = reports / f"{index}.parquet"
        if report.is_file():
            outcomes += read_report(report)
        else:
            missing.append(f"shard {index} ({states[index]})")
    shutil.rmtree(reports, ignore_errors=True)  # merged into the run's report below
    byte_phase_s = time.monotonic() - started
    locks, files = record_relocations(plan, inputs, outcomes)
    validated = validate_locks(plan, locks)
    if missing:
        raise RunFailed(f"{', '.join(missing)} left no report; their assets were not merged")
    return finish_run(
        plan, inputs, outcomes, started, validated=validated, byte_phase_s=byte_phase_s, files=files
    )
