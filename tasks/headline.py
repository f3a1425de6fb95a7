"""A run's verdict in one short line: what the Artifacts page, a key's history and the flow
run's state message show, so that OK and FAILED read at a glance without opening anything."""

from __future__ import annotations

from collections import Counter

from stacflow.tasks.errors import scrub
from stacflow.tasks.report import Result, Step
from stacflow.tasks.summary import TO_COPY, Summary, cell

LINE_CHARS = 200
"""Prefect's UI shows a state message and an artifact description on one line."""
NAMED = 3
"""Failed assets a headline names before it says how many more."""
ORDER = {
    outcome: rank
    for rank, outcome in enumerate(
        (
            TO_COPY,
            Result.COPIED,
            Result.SKIPPED_VERIFIED,
            Result.DRIFTED,
            Result.FAILED,
            Result.VALID,
            Result.INVALID,
        )
    )
}


def headline(summary: Summary) -> str:
    """`FAILED: 3 of 6 assets failed at local`, `OK: 6 assets, 12 copied, 18 valid` or
    `plan only: 6 assets, 12 to-copy`."""
    assets = {
        (o.item_id, o.asset_key) for o in summary.outcomes if o.outcome != Result.NOT_SELECTED
    }
    total = len(assets)
    if summary.dry_run:
        return one_line(f"plan only: {_assets(total)}{_tally(summary, (Step.RELOCATE,))}")
    if summary.ok:
        steps = (Step.DERIVE, Step.RELOCATE, Step.VALIDATE)
        return one_line(f"OK: {_assets(total)}{_tally(summary, steps)}")
    stores = ", ".join(dict.fromkeys(o.store for o in summary.failures))
    failed = summary.failed_assets
    return one_line(f"FAILED: {failed} of {_assets(total)} failed at {stores}")


def failed_assets_line(summary: Summary) -> str:
    """The failed assets, named: the message of the run's `assets-failed` task run."""
    named = list(dict.fromkeys(f"{o.item_id}/{o.asset_key}" for o in summary.failures))
    more = f" and {len(named) - NAMED} more" if len(named) > NAMED else ""
    return one_line(f"{headline(summary)}: {', '.join(named[:NAMED])}{more}")


def one_line(text: str, limit: int = LINE_CHARS) -> str:
    """Whitespace folded to single spaces, cut at `limit` with an ellipsis, secrets redacted."""
    return cell(scrub(text), limit)


def _assets(count: int) -> str:
    return f"{count} asset{'' if count == 1 else 's'}"


def _tally(summary: Summary, steps: tuple[str, ...]) -> str:
    counts = Counter(
        o.outcome
        for o in summary.outcomes
        if o.step in steps and o.outcome not in (Result.NOT_SELECTED, Result.DERIVED)
    )
    ordered = sorted(counts.items(), key=lambda pair: ORDER.get(pair[0], len(ORDER)))
    return "".join(f", {n} {outcome}" for outcome, n in ordered)
