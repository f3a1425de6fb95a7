"""`stacflow plan` and the CLI's preflight: the plan, read without running anything.

Plain functions, no Prefect run: compile the spec against its tables, then ask each target what
it already holds (HEADs only), and count per target what a run would copy, skip or refuse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacflow.flows.compile import Plan, compile_plan, derive_checks, retry_policy
from stacflow.flows.compiled import compile_once
from stacflow.flows.inputs import (
    Inputs,
    load_inputs,
    load_spec,
    locks_to_validate,
    previous_records,
    unwritten_locks,
)
from stacflow.flows.planned import write_planned_locks
from stacflow.flows.selection import EXAMPLES, NotSelected, counted, without_item_note
from stacflow.flows.spec import Spec
from stacflow.tasks.derive import derive_facts, locate_assets
from stacflow.tasks.errors import InputError, PlanConflict, SpecError, UsageError
from stacflow.tasks.items import read_item_dicts
from stacflow.tasks.owners import Owner, foreign_owner
from stacflow.tasks.preflight import Probe, preflight
from stacflow.tasks.report import Result
from stacflow.tasks.sizes import format_size
from stacflow.tasks.stores import capabilities
from stacflow.tasks.survey import PLANNED, survey


def check_spec(spec_path: Path, targets: Sequence[str] | None) -> Spec:
    """Load, read the tables, compile, refuse conflicts: everything that needs no network.

    A table or plan problem found past the loader names the spec file too, as a loader error
    does: whoever runs many specs (a CI job, `stacflow serve`) must see which one to fix.
    """
    spec = load_spec(spec_path)
    stac = spec_path.parent / spec.stac if spec.stac is not None else None
    try:
        if stac is None:
            inputs = load_inputs(spec_path, spec)
            plan = compile_once(inputs, targets)
            plan.refuse_conflicts()
            refuse_foreign_folders(plan, Owner.of(spec.name, inputs.outputs_id))
            return spec
        items = read_item_dicts(stac)
        located = locate_assets(
            items, base=stac.parent, metadata_assets=spec.select.metadata_assets
        )
        derive_checks(spec, located, spec_path.parent)  # refuses assets no source stands for
    except (InputError, PlanConflict) as error:
        raise SpecError(str(spec_path), None, "", str(error)) from error
    if not located:
        problem = "no asset with an href to lock (assets keyed 'metadata' count only with "
        raise SpecError(
            str(spec_path), None, "stac", f"{stac}: {problem}select.metadata_assets: true)"
        )
    return spec


def secret_blocks(spec: Spec) -> list[str]:
    """The Prefect Secret blocks the spec's stores name: reading them needs a Prefect API."""
    stores = [s.store for s in spec.sources.values()] + [t.store for t in spec.targets.values()]
    names = [
        getattr(getattr(store, "credentials", None), "prefect_secret", None) for store in stores
    ]
    return sorted({name for name in names if name})


def refuse_foreign_folders(plan: Plan, owner: Owner) -> None:
    """Another spec's folder is found before Prefect starts (object stores: in the run)."""
    for target in plan.targets:
        if capabilities(target.store).file_system and (
            problem := foreign_owner(target.name, target.store, owner)
        ):
            raise PlanConflict([problem])


def check_validation(spec_path: Path, spec: Spec, locks: list[str]) -> None:
    """`check` refuses to say OK about nothing: unknown names, an empty choice, or only locks
    that no run has written yet."""
    names = locks_to_validate(spec_path, spec, locks)
    waiting = unwritten_locks(spec_path, spec, names)
    if len(waiting) == len(names):
        raise UsageError(f"{spec_path}: nothing to validate yet: {'; '.join(waiting.values())}")


@dataclass
class TargetCounts:
    to_copy: list[int] = field(default_factory=lambda: [0, 0])
    verified: list[int] = field(default_factory=lambda: [0, 0])
    conflicts: list[str] = field(default_factory=list)


@dataclass
class PlanReport:
    name: str
    source: str
    targets: dict[str, TargetCounts]
    conflicts: list[str]
    not_selected: list[NotSelected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stores: list[Probe] = field(default_factory=list)
    """The pre-flight: each source store reachable, each target root writable, or why not."""

    @property
    def unselected(self) -> int:
        return len(self.not_selected)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "unselected": self.unselected,
            "not_selected": [
                {
                    "reason": reason,
                    "assets": len(rows),
                    "examples": [f"{r.item_id}/{r.asset_key}" for r in rows[:EXAMPLES]],
                }
                for reason, rows in counted(self.not_selected).items()
            ],
            "notes": self.notes,
            "stores": [
                {
                    "role": p.role,
                    "name": p.name,
                    "where": p.where,
                    "ok": p.ok,
                    "problem": p.error.message if p.error else None,
                }
                for p in self.stores
            ],
            "targets": {
                name: {
                    "to_copy": {"assets": c.to_copy[0], "bytes": c.to_copy[1]},
                    "verified": {"assets": c.verified[0], "bytes": c.verified[1]},
                    "conflicts": c.conflicts,
                }
                for name, c in self.targets.items()
            },
            "conflicts": self.conflicts,
        }

    def text(self) -> str:
        lines = [f"plan for {self.name} (copy from source {self.source})"]
        lines.append(f"  {'target':<14}{'to copy':<24}{'present, verified':<24}conflicts")
        for name, c in self.targets.items():
            lines.append(
                f"  {name:<14}{_cell(c.to_copy):<24}{_cell(c.verified):<24}{len(c.conflicts)}"
            )
        for reason, rows in counted(self.not_selected).items():
            examples = ", ".join(f"{r.item_id}/{r.asset_key}" for r in rows[:EXAMPLES])
            lines.append(f"  not selected: {len(rows)} ({reason}), e.g. {examples}")
        if self.stores:
            lines.append("  stores (looked at, nothing written):")
            lines += [f"    {probe.line}" for probe in self.stores]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  ✗ {conflict}" for conflict in self.conflicts]
        if self.conflicts:
            lines.append("  a run refuses to start until every conflict is resolved")
        return "\n".join(lines)


def plan_report(
    spec_path: Path, targets: Sequence[str] | None, *, write_locks: Path | None = None
) -> tuple[PlanReport, bool]:
    """`write_locks`: also write the lock each target (and planned source) would have there,
    as stacpkg's `relocate --dry-run` would; not when the plan has conflicts."""
    spec = load_spec(spec_path)
    inputs = _inputs(spec_path, spec)
    plan = compile_plan(inputs, previous_records(inputs), targets)
    owner = Owner.of(spec.name, inputs.outputs_id)
    owned = [problem for t in plan.targets if (problem := foreign_owner(t.name, t.store, owner))]
    plan = dataclasses.replace(plan, conflicts=(*plan.conflicts, *owned))
    report = _report(plan, survey(plan.moves, plan.policy.workers, plan.policy.retry))
    report.stores = preflight(plan.moves, plan.source, [(t.name, t.store) for t in plan.targets])
    if write_locks is not None and not plan.conflicts:
        report.notes += [f"planned lock: {path}" for path in write_planned_locks(plan, write_locks)]
    return report, bool(plan.conflicts)


def _inputs(spec_path: Path, spec: Spec) -> Inputs:
    if spec.package is not None:
        return load_inputs(spec_path, spec)
    assert spec.stac is not None, "a spec without a package names its stac (Spec checks)"
    stac = spec_path.parent / spec.stac
    items = read_item_dicts(stac)
    rows = locate_assets(items, base=stac.parent, metadata_assets=spec.select.metadata_assets)
    derived = derive_facts(
        derive_checks(spec, rows, spec_path.parent),
        spec.relocate_source,
        spec.relocate.max_workers,
        retry_policy(spec),
    )
    return load_inputs(
        spec_path, spec, lock=[d.row for d in derived if d.row is not None], items=None
    )


def _report(plan: Plan, rows: Sequence[Any]) -> PlanReport:
    counts = {t.name: TargetCounts() for t in plan.targets}
    for row in rows:
        cell = (
            counts[row.store].verified
            if row.outcome == Result.SKIPPED_VERIFIED
            else counts[row.store].to_copy
        )
        if row.outcome in {PLANNED, Result.SKIPPED_VERIFIED}:
            cell[0] += 1
            cell[1] += row.bytes
    for conflict in plan.conflicts:
        if conflict.target in counts:
            counts[conflict.target].conflicts.append(conflict)
    return PlanReport(
        plan.name,
        plan.source,
        counts,
        list(plan.conflicts),
        list(plan.not_selected),
        without_item_note(plan.without_item),
    )


def _cell(cell: list[int]) -> str:
    return f"{cell[0]} ({format_size(cell[1])})"
