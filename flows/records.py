"""What a run records once its bytes have moved: relocated locks from the journals, and the
copies a validation refuted.

A run says OK only about what its journals bear out: a verified copy whose record is missing is
reported failed; a copy a validation found wrong is remembered, so the next run copies it again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from stacflow.flows.compile import Plan
from stacflow.flows.inputs import Inputs
from stacflow.flows.selection import not_selected_outcomes
from stacflow.tasks.errors import ErrorClass
from stacflow.tasks.items import Alternate
from stacflow.tasks.locks import LockRow
from stacflow.tasks.moves import Record
from stacflow.tasks.outputs import OutputPaths, alternates_of
from stacflow.tasks.report import Outcome, Result, Step
from stacflow.tasks.state import journal_path, refute, settle_journal
from stacflow.tasks.validate import Validated


def left_alone(plan: Plan) -> list[Outcome]:
    """The outcome of each locked asset the plan does not relocate: not selected, and why."""
    return not_selected_outcomes(plan.not_selected, [t.name for t in plan.targets])


def record_relocations(
    plan: Plan, inputs: Inputs, outcomes: Sequence[Outcome]
) -> tuple[dict[str, list[LockRow]], list[Alternate], list[Outcome]]:
    """Relocated locks, from the journals of verified copies, the alternates they make, and the
    outcomes as the journals bear them out.

    A failed asset is never recorded as relocated; assets outside this run (another selection,
    another shard's failure) keep their earlier records. The journal is compacted to match. A copy
    this run settled whose record is not in the journal read back (a torn or failed write) is
    reported failed, never OK: it is in neither the lock nor the items.
    """
    paths = OutputPaths(inputs.outputs)
    order = [move.key for move in plan.moves]
    locks: dict[str, list[LockRow]] = {}
    alternates: list[Alternate] = []
    unrecorded: dict[tuple[str, str, str], str] = {}
    for target in plan.targets:
        journal = journal_path(inputs.outputs, target.name)
        settled = {
            (o.item_id, o.asset_key): not o.failed
            for o in outcomes
            if o.step == Step.RELOCATE and o.store == target.name
        }
        records = settle_journal(journal, paths.lock(target.name), settled, order)
        locks[target.name] = [record.row for record in records]
        alternates += alternates_of(locks[target.name], target.alternate_key, target.alternate_name)
        for key in missing_records(plan, target.name, settled, records):
            unrecorded[(target.name, *key)] = str(journal)
    return locks, alternates, [_bear_out(o, unrecorded) for o in outcomes]


def missing_records(
    plan: Plan, target: str, settled: dict[tuple[str, str], bool], records: Sequence[Record]
) -> list[tuple[str, str]]:
    """This run's verified copies at `target` that its journal does not hold where planned."""
    on_record = {(r.row.item_id, r.row.asset_key): r.row.location for r in records}
    planned = {
        move.key: leg.row.location
        for move in plan.moves
        for leg in move.legs
        if leg.target == target
    }
    return [
        key
        for key, verified in settled.items()
        if verified and key in planned and on_record.get(key) != planned[key]
    ]


def _bear_out(outcome: Outcome, unrecorded: dict[tuple[str, str, str], str]) -> Outcome:
    journal = unrecorded.get((outcome.store, outcome.item_id, outcome.asset_key))
    if outcome.step != Step.RELOCATE or journal is None:
        return outcome
    return dataclasses.replace(
        outcome,
        outcome=Result.FAILED,
        error_class=ErrorClass.INTEGRITY,
        message=f"{outcome.outcome}, but its record is missing from {journal} (a torn or "
        "failed write): it is in neither the relocated lock nor the items; rerun to record it",
    )


def recorded(plan: Plan, target: str) -> dict[tuple[str, str], Record]:
    """What the target's journal (or relocated lock) recorded of each copy before this step."""
    return {
        move.key: leg.previous
        for move in plan.moves
        for leg in move.legs
        if leg.target == target and leg.previous is not None
    }


def refute_invalid_copies(
    plan: Plan, outputs: Path, validated: Mapping[str, list[Validated]]
) -> list[str]:
    """A copy that failed validation is never trusted again: it is remembered beside its
    target's journal, so the next run copies it again. Returns the remedy, said once.

    Not when the store failed to answer (transient, after every try): that says nothing
    about the copy, and the next validation looks again."""
    found = 0
    for target in plan.targets:
        invalid = [
            (result.row, result.outcome.message or "invalid")
            for result in validated.get(target.name, [])
            if result.outcome.failed and result.outcome.error_class != ErrorClass.TRANSIENT
        ]
        found += refute(journal_path(outputs, target.name), invalid)
    if not found:
        return []
    copies = "1 copy" if found == 1 else f"{found} copies"
    remedy = (
        f"remedy: the next `stacflow run` copies again the {copies} that failed validation; "
        "`stacflow run --verify checksums` also hashes every other copy before trusting it"
    )
    return [remedy]
