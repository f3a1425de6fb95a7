"""The validate-package flow: scheduled dual validation, failing loudly on drift or loss.

Validates the remote locks and the relocated locks a spec names, without copying anything, and
fails the flow run when any row is invalid, so that Prefect's notifications fire.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from stacflow.flows.compile import compile_plan
from stacflow.flows.inputs import (
    load_inputs,
    load_spec,
    locks_to_validate,
    previous_records,
    unwritten_locks,
)
from stacflow.flows.naming import run_name_from_spec
from stacflow.flows.relocate import BATCHES_IN_FLIGHT, finish_run, validate_locks
from stacflow.flows.verdict import ends_in_verdict
from stacflow.flows.workspace import outputs_folder, outputs_workspace
from stacflow.tasks.errors import UsageError
from stacflow.tasks.locks import read_lock
from stacflow.tasks.outputs import OutputPaths

VALIDATE_TIMEOUT_S = 3 * 3600
"""A nightly validation still running after three hours would overlap the day's work: it ends
TimedOut (and alerts, as a failed run does) rather than hanging."""


@flow(
    name="validate-package",
    flow_run_name=run_name_from_spec(),
    timeout_seconds=VALIDATE_TIMEOUT_S,
    description="Validate the remote and relocated locks of a package spec (no copying); "
    "fails when any asset drifted or went missing.",
    # Prefect types task_runner as TaskRunner[PrefectFuture], invariantly: its own runners fail it.
    task_runner=ThreadPoolTaskRunner(max_workers=BATCHES_IN_FLIGHT),  # type: ignore[arg-type]
)
@ends_in_verdict
def validate_package(
    spec_path: str = "specs/demo.yaml",
    locks: list[str] | None = None,
    checksums: bool | None = None,
) -> dict[str, Any]:
    """Validate locks of a spec.

    Args:
        spec_path: The package spec, relative to the working directory (the repo, in a deployment).
        locks: Sources and targets to validate (default: the spec's validate list).
        checksums: Also read the bytes and compare SHA-256 (default: as the spec says).
    """
    started = time.monotonic()
    spec = load_spec(Path(spec_path))
    names = locks_to_validate(Path(spec_path), spec, locks)
    waiting = unwritten_locks(Path(spec_path), spec, names)
    if len(waiting) == len(names):
        raise UsageError(f"{spec_path}: nothing to validate yet: {'; '.join(waiting.values())}")
    with outputs_workspace(Path(spec_path), spec, "write"):  # a bucket gets the lines at the end
        paths = OutputPaths(outputs_folder(Path(spec_path), spec))
        if spec.package is not None:
            inputs = load_inputs(Path(spec_path), spec)
        else:
            package = paths.package / "assets.lock.parquet"
            inputs = load_inputs(
                Path(spec_path),
                spec,
                lock=read_lock(package),
                items=paths.package / "items.parquet",
            )
        present = [name for name in names if name not in waiting]
        plan = compile_plan(inputs, previous_records(inputs), validate=present, checksums=checksums)
        relocated = {
            t.name: read_lock(paths.lock(t.name))
            for t in plan.targets
            if t.name in plan.validate_targets
        }
        validated = validate_locks(plan, relocated)
        return finish_run(
            plan,
            inputs,
            [],
            started,
            validated=validated,
            report=paths.root / "validation" / "report.parquet",
            unvalidated=waiting,
        )
