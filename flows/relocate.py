"""The relocate-package flow: the relocate-assets tutorial as one declarative Prefect flow.

Read `relocate_package` top to bottom: it is the table of contents. Each step below it only
submits tasks and gathers their rows; every byte moves inside `tasks/`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field

from stacflow.flows.compile import (
    Plan,
    batches,
    derive_checks,
    retry_policy,
    target_checks,
)
from stacflow.flows.compiled import compile_once
from stacflow.flows.inputs import (
    Inputs,
    load_inputs,
    load_spec,
    with_items_table,
)
from stacflow.flows.naming import run_name_from_spec
from stacflow.flows.records import (
    left_alone,
    record_relocations,
    recorded,
    refute_invalid_copies,
)
from stacflow.flows.selection import without_item_note
from stacflow.flows.spec import Spec
from stacflow.flows.verdict import ends_in_verdict
from stacflow.flows.workspace import journal_place, outputs_workspace
from stacflow.tasks.artifacts import Progress, publish_summary
from stacflow.tasks.breaker import BREAKERS
from stacflow.tasks.derive import locate_assets
from stacflow.tasks.errors import AssetError, ErrorClass, RunFailed
from stacflow.tasks.headline import failed_assets_line
from stacflow.tasks.items import Alternate, read_item_dicts, table_from_items
from stacflow.tasks.locks import LockRow
from stacflow.tasks.moves import Check
from stacflow.tasks.opaque import Opaque
from stacflow.tasks.outputs import (
    KeptTarget,
    OutputPaths,
    Promotion,
    Written,
    alternates_of,
    unsigned_items,
    write_package,
    write_validation,
)
from stacflow.tasks.owners import Owner
from stacflow.tasks.prefect_tasks import (
    assets_failed_task,
    claim_targets_task,
    derive_batch_task,
    enrich_task,
    flush_targets_task,
    list_targets_task,
    preflight_task,
    relocate_batch_task,
    survey_task,
    sweep_leftovers_task,
    validate_batch_task,
)
from stacflow.tasks.relocate import Moved
from stacflow.tasks.report import Outcome, Result, Step, write_report
from stacflow.tasks.stop import STOP, Interrupted
from stacflow.tasks.stores import capabilities
from stacflow.tasks.summary import Summary
from stacflow.tasks.validate import Validated
from stacflow.tasks.writable import writing_outputs

BATCHES_IN_FLIGHT = 2
RUN_TIMEOUT_S = 24 * 3600
"""A relocation that runs a day is stuck, not slow: it ends TimedOut and the next run resumes
from the journals instead of a worker slot being held for ever."""
# A validation row costs a HEAD, a copy a GET and a write: fewer, larger task runs for it.
VALIDATION_BATCH_FACTOR = 4


class RunOverrides(BaseModel):
    """Run-time changes a user may make from the Prefect UI without editing the spec."""

    model_config = ConfigDict(extra="forbid")
    max_workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Assets copied at once (spec: relocate.max_workers).",
    )
    on_drift: Literal["refuse", "copy"] | None = Field(
        default=None,
        description="Copy a source that changed since it was locked (spec: relocate.on_drift).",
    )
    fail_fast: bool | None = Field(
        default=None, description="Stop at the first failed asset (spec: relocate.fail_fast)."
    )
    verify: Literal["facts", "checksums"] | None = Field(
        default=None,
        description="checksums: hash every copy already in a target before trusting it, and "
        "copy again what does not match (spec: relocate.verify).",
    )


@flow(
    name="relocate-package",
    flow_run_name=run_name_from_spec(),
    timeout_seconds=RUN_TIMEOUT_S,
    description="Relocate a package's locked assets into every target, enrich the items with "
    "the new alternates, and validate the remote and relocated locks.",
    # Prefect types task_runner as TaskRunner[PrefectFuture], invariantly: its own runners fail it.
    task_runner=ThreadPoolTaskRunner(max_workers=BATCHES_IN_FLIGHT),  # type: ignore[arg-type]
)
@ends_in_verdict
def relocate_package(
    spec_path: str = "specs/demo.yaml",
    targets: list[str] | None = None,
    dry_run: bool = False,
    overrides: RunOverrides | None = None,
) -> dict[str, Any]:
    """Run a package spec: relocate, enrich, derive, validate; fail if any asset failed.

    Args:
        spec_path: The package spec, relative to the working directory (the repo, in a deployment).
        targets: Only these targets (default: every target in the spec).
        dry_run: Compile and show the plan; copy nothing, write nothing.
        overrides: Run-time settings that take precedence over the spec.
    """
    started = time.monotonic()
    spec = apply_overrides(load_spec(Path(spec_path)), overrides)
    if dry_run:  # no run lock, no package: a dry run writes nothing at all
        with outputs_workspace(Path(spec_path), spec, "read"):
            inputs, derived, _ = derive_inputs(Path(spec_path), spec)
            plan = prepare_plan(inputs, targets, claim=False)
            planned = survey_task(Opaque(plan.moves), plan.policy.workers, plan.policy.retry)
            outcomes = [*derived, *planned, *left_alone(plan)]
            return finish_run(plan, inputs, outcomes, started, dry_run=True)
    with (
        outputs_workspace(Path(spec_path), spec, "run") as outputs,
        writing_outputs(outputs.folder),
    ):
        inputs, derived, items = derive_inputs(Path(spec_path), spec)
        plan = prepare_plan(inputs, targets)  # a plan refused here has written nothing
        with outputs.held() as killed:
            keep_package(inputs, items)
            moved, byte_phase_s, notes = relocate_assets(plan, inputs, sweep=killed)
            outputs.refresh_journals()
            outcomes = [*derived, *(m.outcome for m in moved)]
            if STOP.is_set():
                stop_run(plan, inputs, outcomes, started)
            return settle_run(plan, inputs, outcomes, started, byte_phase_s, notes=notes)


def apply_overrides(spec: Spec, overrides: RunOverrides | None) -> Spec:
    changes = overrides.model_dump(exclude_none=True) if overrides else {}
    if not changes:
        return spec
    return spec.model_copy(update={"relocate": spec.relocate.model_copy(update=changes)})


def gather_inputs(spec_path: Path, spec: Spec) -> tuple[Inputs, list[Outcome]]:
    """The package's tables; for lock-less Items, first derive the lock and write the package."""
    inputs, derived, items = derive_inputs(spec_path, spec)
    keep_package(inputs, items)
    return inputs, derived


def derive_inputs(
    spec_path: Path, spec: Spec
) -> tuple[Inputs, list[Outcome], list[dict[str, Any]] | None]:
    """The package's tables; for lock-less Items, the lock derived from them (HEADs only) and
    the Items the package will hold. Nothing is written yet: a plan refused next leaves no
    trace (`keep_package` writes it once the run goes ahead)."""
    if spec.package is not None:
        return load_inputs(spec_path, spec), [], None
    assert spec.stac is not None, "a spec without a package names its stac (Spec checks)"
    stac = spec_path.parent / spec.stac
    items = read_item_dicts(stac)
    rows = locate_assets(items, base=stac.parent, metadata_assets=spec.select.metadata_assets)
    checks = derive_checks(spec, rows, spec_path.parent)
    derived = [
        result
        for future in [
            derive_batch_task.submit(
                Opaque(batch), spec.relocate_source, spec.relocate.max_workers, retry_policy(spec)
            )
            for batch in _chunks(checks, spec.relocate.batch.assets)
        ]
        for result in future.result()
    ]
    lock = [d.row for d in derived if d.row is not None]
    inputs = load_inputs(spec_path, spec, lock=lock)
    package = OutputPaths(inputs.outputs).package / "items.parquet"
    inputs = with_items_table(inputs, table_from_items(unsigned_items(items)), package)
    return inputs, [d.outcome for d in derived], items


def keep_package(inputs: Inputs, items: list[dict[str, Any]] | None) -> None:
    """Write the package derived from lock-less Items (None: the spec names a package)."""
    if items is not None:
        write_package(OutputPaths(inputs.outputs), items, inputs.lock)


def prepare_plan(
    inputs: Inputs, targets: Sequence[str] | None = None, *, claim: bool = True
) -> Plan:
    """Compile, and refuse the whole run if any key conflicts or another spec owns a target
    root: before a single byte moves.

    `claim`: record this spec as the owner of its target roots (not for a dry run).
    """
    plan = compile_once(inputs, targets)
    plan.refuse_conflicts()
    unusable = look_at_stores(plan)
    owner = Owner.of(inputs.spec.name, inputs.outputs_id)
    usable = [(t.name, t.store) for t in plan.targets if t.name not in unusable]
    unusable |= claim_targets_task(usable, owner, write=claim)
    for target in plan.targets:
        if target.name in unusable:
            BREAKERS.trip(target.store, unusable[target.name])
            get_run_logger().info(
                "target %s cannot be written, its assets fail: %s",
                target.name,
                unusable[target.name].message,
            )
    get_run_logger().info(
        "plan: %d assets (%d bytes) from %s into %s, %d batches",
        len(plan.moves),
        plan.bytes,
        plan.source,
        ", ".join(t.name for t in plan.targets) or "no target",
        len(plan.batches()),
    )
    return plan


def look_at_stores(plan: Plan) -> dict[str, AssetError]:
    """The pre-flight: the targets found unusable without writing, by name. A source that does
    not answer is only said: the breaker ends its assets after a few tries (a blip at start-up
    must not fail a whole run)."""
    probes = preflight_task(
        Opaque(plan.moves), plan.source, [(t.name, t.store) for t in plan.targets]
    )
    for probe in probes:
        if not probe.ok and probe.role == "source":
            get_run_logger().info("pre-flight: %s", probe.line)
    return {p.name: p.error for p in probes if p.role == "target" and p.error is not None}


def relocate_assets(
    plan: Plan, inputs: Inputs, *, sweep: bool = True
) -> tuple[list[Moved], float, list[str]]:
    """One task run per batch; concurrency inside each batch, bounded by the memory budget.

    The plan stays as compiled: what the run learns (a listing of each target; `sweep`, from
    the run lock: whether a killed run left debris to look for) travels beside it. Returns the
    outcomes, the byte phase's seconds, and what the sweep could not do (summary notes).
    """
    if not plan.targets or not plan.moves:
        return [], 0.0, []
    journals = {t.name: journal_place(inputs.spec_path, inputs.spec, t.name) for t in plan.targets}
    notes = sweep_leftovers_task(Opaque(plan.moves)) if sweep else []
    policy = dataclasses.replace(plan.policy, sweep=False)
    started = time.monotonic()
    moves = plan.moves
    if any(capabilities(t.store).listing for t in plan.targets):
        moves = tuple(list_targets_task(Opaque(plan.moves)).value)
    moved: list[Moved] = []
    with Progress(plan.slug, len(plan.moves), plan.bytes * len(plan.targets)) as progress:
        futures = [
            relocate_batch_task.submit(Opaque(batch), policy, journals)
            for batch in batches(moves, plan.batch_assets, plan.batch_bytes)
        ]
        for future in as_completed(futures):
            results = future.result()
            moved.extend(results)
            progress.advance([m.outcome for m in results])
    order = {move.key: index for index, move in enumerate(plan.moves)}
    moved.sort(key=lambda m: order[(m.outcome.item_id, m.outcome.asset_key)])
    return moved, time.monotonic() - started, notes


def settle_run(
    plan: Plan,
    inputs: Inputs,
    outcomes: list[Outcome],
    started: float,
    byte_phase_s: float,
    *,
    problem: str | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """After the bytes: flush, record, enrich beside validation, report; `problem` fails it."""
    flush_s = flush_targets_task([t.store for t in plan.targets if copied_to(t.name, outcomes)])
    locks, alternates, outcomes = record_relocations(plan, inputs, outcomes)
    outcomes += left_alone(plan)
    enriching = enrich_items(plan, inputs, locks, alternates)
    validated = validate_locks(plan, locks)
    files = enriching.result() if enriching is not None else []
    if problem:
        raise RunFailed(problem)
    return finish_run(
        plan,
        inputs,
        outcomes,
        started,
        validated=validated,
        byte_phase_s=byte_phase_s,
        flush_s=flush_s,
        files=files,
        notes=notes,
    )


def stop_run(plan: Plan, inputs: Inputs, outcomes: list[Outcome], started: float) -> NoReturn:
    """Stopped by a signal or a cancel: the copies made are flushed (the journal names them) and
    reported; enriching and validating half a run is left to the rerun, which resumes."""
    flush_targets_task([t.store for t in plan.targets if copied_to(t.name, outcomes)])
    with contextlib.suppress(RunFailed):  # the interrupted copies count as failed there
        finish_run(plan, inputs, outcomes, started)
    raise Interrupted(interrupted_line(plan, outcomes))


def interrupted_line(plan: Plan, outcomes: Sequence[Outcome]) -> str:
    """What the stop left: copies made by this run, and copies the rerun will make (also those
    of a shard cancelled before it started, which reported nothing)."""
    copies = [o for o in outcomes if o.step == Step.RELOCATE]
    copied = sum(o.outcome == Result.COPIED for o in copies)
    settled = sum(o.error_class != ErrorClass.INTERRUPTED for o in copies)
    left = sum(len(move.legs) for move in plan.moves) - settled
    return f"interrupted: {copied} copied, {left} left; rerun to resume"


def copied_to(target: str, outcomes: Sequence[Outcome]) -> bool:
    """Whether this run wrote a copy into `target`: only then is there anything to flush (a
    target that got none may not even exist: every asset failed before a byte was written)."""
    return any(
        o.store == target and o.step == Step.RELOCATE and o.outcome == Result.COPIED
        for o in outcomes
    )


def enrich_items(
    plan: Plan, inputs: Inputs, locks: dict[str, list[LockRow]], alternates: list[Alternate]
) -> PrefectFuture[list[Written]] | None:
    """The items with their new alternates (the targets', and the locks of sources that add
    one), written while the locks validate (neither needs the other); planned source locks are
    written first. None when there are no items, or nothing to add."""
    if not (plan.targets or plan.planned_locks or plan.lock_alternates):
        return None
    if inputs.items_path is None:
        return None
    alternates = [
        *alternates,
        *(
            a
            for lock in plan.lock_alternates
            for a in alternates_of(lock.rows, lock.key, lock.name)
        ),
    ]
    spec = inputs.spec
    promotions = [
        Promotion(name, spec.alternate_key(name))
        for name in spec.targets
        if spec.targets[name].promote
    ]
    kept = [
        KeptTarget(name, spec.alternate_key(name), spec.alternate_name(name))
        for name in spec.targets
        if name not in locks
    ]
    return enrich_task.submit(
        OutputPaths(inputs.outputs),
        inputs.items_path,
        Opaque(locks),
        Opaque(alternates),
        promotions,
        kept=kept,
        planned=Opaque(plan.planned_locks),
    )


def validate_locks(plan: Plan, locks: dict[str, list[LockRow]]) -> dict[str, list[Validated]]:
    """Dual validation: the remote locks the spec names, and the relocated ones."""
    jobs: list[tuple[str, list[Check], bool]] = [
        (checks.name, list(checks.checks), checks.checksums) for checks in plan.source_checks
    ]
    jobs += [
        (
            t.name,
            target_checks(t, locks.get(t.name, []), recorded(plan, t.name)),
            t.name in plan.checksum_targets,
        )
        for t in plan.targets
        if t.name in plan.validate_targets
    ]
    futures = [
        (
            name,
            validate_batch_task.submit(
                Opaque(batch),
                name,
                checksums=checksums,
                workers=plan.policy.workers,
                retry=plan.policy.retry,
            ),
        )
        for name, checks, checksums in jobs
        for batch in _chunks(checks, plan.batch_assets * VALIDATION_BATCH_FACTOR)
    ]
    validated: dict[str, list[Validated]] = {name: [] for name, _, _ in jobs}
    for name, future in futures:
        validated[name].extend(future.result())
    return validated


def finish_run(
    plan: Plan,
    inputs: Inputs,
    outcomes: list[Outcome],
    started: float,
    *,
    validated: dict[str, list[Validated]] | None = None,
    byte_phase_s: float = 0.0,
    flush_s: float = 0.0,
    dry_run: bool = False,
    report: Path | None = None,
    files: Sequence[Written] = (),
    unvalidated: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Report, validation lines, artifacts and the verdict; written even when the run failed.

    `unvalidated`: locks that were to be validated but could not be, and why.
    """
    paths = OutputPaths(inputs.outputs)
    report = report or paths.report
    written = list(files)
    validated = validated or {}
    for name, results in validated.items():
        written.append(write_validation(paths, name, [r.line for r in results]))
        outcomes += [r.outcome for r in results]
    remedies = refute_invalid_copies(plan, inputs.outputs, validated)
    if not dry_run:
        written.append(Written(report, write_report(report, outcomes)))
    summary = Summary(
        name=plan.name,
        outcomes=tuple(outcomes),
        elapsed_s=time.monotonic() - started,
        byte_phase_s=byte_phase_s,
        flush_s=flush_s,
        outputs=tuple(str(w.path) for w in written),
        unchanged=tuple(str(w.path) for w in written if not w.changed),
        dry_run=dry_run,
        unvalidated=tuple((unvalidated or {}).items()),
        notes=(*without_item_note(plan.without_item), *remedies, *notes),
        began=started,
    )
    publish_summary(plan.slug, summary, paths.root.as_uri())
    if not summary.ok:
        assets_failed_task(failed_assets_line(summary), return_state=True)
        raise RunFailed(summary.text(), summary)
    get_run_logger().info("%s", summary.text())
    return run_result(summary, plan)


def run_result(summary: Summary, plan: Plan) -> dict[str, Any]:
    """What the flow run returns: counts a caller (or a parent flow) can act on, and the
    summary for an in-process caller (the CLI prints it), opaque: Prefect walks a returned
    value's every dataclass looking for futures, ~0.3 s per 10,000 outcomes."""
    return {
        "name": summary.name,
        "ok": summary.ok,
        "assets": len(plan.moves),
        "bytes": plan.bytes,
        "copied_bytes": summary.copied_bytes,
        "counts": {
            f"{step}:{store}:{outcome}": count
            for step in (Step.DERIVE, Step.RELOCATE, Step.VALIDATE)
            for store, row in summary.counts(step).items()
            for outcome, (count, _) in row.items()
        },
        "text": summary.text(),
        "summary": Opaque(summary),
    }


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
