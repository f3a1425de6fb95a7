"""Every Prefect task of stacflow: thin wrappers around the plain functions of `tasks/`.

They live apart so that the compiler, `stacflow plan` and the CLI's preflight import the plain
modules without importing Prefect (~1 s); the flows import this module. A wrapper adds only
what Prefect is for: names and tags, a log line, the live progress. Requests are retried in one
place only, `tasks/retry.py`, by the spec's policy: the tasks that make requests have no Prefect
retries (an asset that fails is an outcome; a task that raises has a bug, and rerunning it would
repeat every request of its batch), except relocate-batch, whose rerun resumes from the journal
and repeats no verified copy.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import task_run
from prefect.states import Cancelled, Failed

from stacflow.tasks.artifacts import report_progress
from stacflow.tasks.derive import Derived, derive_facts
from stacflow.tasks.errors import AssetError
from stacflow.tasks.items import Alternate
from stacflow.tasks.locks import LockRow
from stacflow.tasks.moves import Check, Move
from stacflow.tasks.opaque import Opaque
from stacflow.tasks.outputs import KeptTarget, OutputPaths, Promotion, Written, write_enriched
from stacflow.tasks.owners import Owner, claim_targets
from stacflow.tasks.preflight import Probe, preflight
from stacflow.tasks.relocate import (
    CopyPolicy,
    Moved,
    flush_targets,
    relocate_batch,
    sweep_leftovers,
)
from stacflow.tasks.remote_outputs import Mirrored
from stacflow.tasks.report import Outcome
from stacflow.tasks.retry import RetryPolicy
from stacflow.tasks.stop import Interrupted
from stacflow.tasks.stores import StoreRef
from stacflow.tasks.survey import survey, with_listings
from stacflow.tasks.validate import Validated, validate_checks

P = ParamSpec("P")
R = TypeVar("R")


def _stops_quietly(body: Callable[P, R]) -> Callable[P, R]:
    """A task cut short by a stop request ends Cancelled, not Failed: no traceback in the log,
    no retry; the flow receives the `Interrupted` (Prefect raises a returned state's `data`)
    and ends Cancelled too (flows/verdict.py)."""

    @functools.wraps(body)
    def run(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return body(*args, **kwargs)
        except Interrupted as error:
            return Cancelled(message=str(error), data=error)

    run.__signature__ = inspect.signature(body, eval_str=True)  # type: ignore[attr-defined]
    run.__annotations__ = typing.get_type_hints(body, include_extras=True)
    return run


@task(cache_policy=NO_CACHE, name="claim-targets", tags=["stacflow", "relocate"])
@_stops_quietly
def claim_targets_task(
    targets: list[tuple[str, StoreRef]], owner: Owner, *, write: bool
) -> dict[str, AssetError]:
    return claim_targets(targets, owner, write=write)


@task(cache_policy=NO_CACHE, name="preflight", tags=["stacflow", "relocate"])
def preflight_task(
    moves: Opaque[Sequence[Move]], source: str, targets: list[tuple[str, StoreRef]]
) -> list[Probe]:
    return preflight(moves.value, source, targets)


@task(cache_policy=NO_CACHE, name="derive-batch", tags=["stacflow", "derive"])
@_stops_quietly
def derive_batch_task(
    checks: Opaque[Sequence[Check]], name: str, workers: int, retry: RetryPolicy
) -> list[Derived]:
    results = derive_facts(checks.value, name, workers, retry)
    failed = sum(1 for r in results if r.row is None)
    get_run_logger().info("%s: %d assets derived, %d failed", name, len(results) - failed, failed)
    return results


@task(cache_policy=NO_CACHE, name="survey-targets", tags=["stacflow", "plan"])
@_stops_quietly
def survey_task(moves: Opaque[Sequence[Move]], workers: int, retry: RetryPolicy) -> list[Outcome]:
    return survey(moves.value, workers, retry)


@task(cache_policy=NO_CACHE, name="list-targets", tags=["stacflow", "relocate"])
@_stops_quietly
def list_targets_task(moves: Opaque[Sequence[Move]]) -> Opaque[list[Move]]:
    return Opaque(with_listings(moves.value))


@task(
    cache_policy=NO_CACHE,
    name="enrich-items",
    retries=2,
    retry_delay_seconds=[1, 5],
    tags=["stacflow", "enrich"],
)
def enrich_task(
    paths: OutputPaths,
    items_path: Path,
    locks: Opaque[dict[str, list[LockRow]]],
    alternates: Opaque[Sequence[Alternate]],
    promotions: Sequence[Promotion],
    *,
    kept: Sequence[KeptTarget] = (),
    planned: Opaque[Mapping[str, Sequence[LockRow]]] | None = None,
) -> list[Written]:
    written = write_enriched(
        paths,
        items_path,
        locks.value,
        alternates.value,
        promotions,
        kept=kept,
        planned=planned.value if planned else None,
    )
    changed = [w.path.name for w in written if w.changed]
    unchanged = [w.path.name for w in written if not w.changed]
    get_run_logger().info(
        "wrote %s with %d alternates%s",
        ", ".join(changed) or "nothing",
        len(alternates.value),
        f"; unchanged: {', '.join(unchanged)}" if unchanged else "",
    )
    return written


@task(cache_policy=NO_CACHE, name="validate-batch", tags=["stacflow", "validate"])
@_stops_quietly
def validate_batch_task(
    checks: Opaque[Sequence[Check]],
    lock_name: str,
    *,
    checksums: bool,
    workers: int,
    retry: RetryPolicy,
) -> list[Validated]:
    results = validate_checks(
        checks.value, lock_name, checksums=checksums, workers=workers, retry=retry
    )
    invalid = sum(1 for r in results if r.outcome.failed)
    hashed = sum(1 for r in results if (r.outcome.checked or "").startswith("sha256"))
    get_run_logger().info(
        "%s: %d rows validated (%d of them hashed), %d invalid",
        lock_name,
        len(results),
        hashed,
        invalid,
    )
    return results


@task(cache_policy=NO_CACHE, name="flush-targets", retries=1, tags=["stacflow", "relocate"])
def flush_targets_task(stores: Sequence[StoreRef]) -> float:
    seconds = flush_targets(stores)
    get_run_logger().info("copies flushed to disk in %.2f s", seconds)
    return seconds


@task(cache_policy=NO_CACHE, name="sweep-leftovers", tags=["stacflow", "relocate"])
def sweep_leftovers_task(moves: Opaque[Sequence[Move]]) -> list[str]:
    """Before any batch writes: what a killed run left; what could not be done, for the summary."""
    swept = sweep_leftovers(moves.value)
    swept.log_to(get_run_logger())
    return list(swept.problems)


@task(cache_policy=NO_CACHE, name="assets-failed", tags=["stacflow", "verdict"])
def assets_failed_task(message: str) -> State:
    """Ends Failed, naming the failed assets: a run whose assets failed shows it in its task
    graph, while the batches that recorded those outcomes stay Completed (failing them would
    make Prefect retry whole batches, and their rows are the run's record). It logs nothing:
    the flow's summary already lists each failure once."""
    return Failed(message=message)


@task(
    cache_policy=NO_CACHE,
    name="relocate-batch",
    retries=1,
    retry_delay_seconds=[5],
    tags=["stacflow", "relocate"],
)
def relocate_batch_task(
    moves: Opaque[Sequence[Move]],
    policy: CopyPolicy,
    journals: Mapping[str, Path | Mirrored] | None = None,
) -> list[Moved]:
    """A Prefect retry of a batch resumes from the journal: verified copies are not redone."""
    results = relocate_batch(
        moves.value,
        policy,
        journals,
        resume=(task_run.run_count or 1) > 1,
        on_done=report_progress,
    )
    counts: dict[str, int] = {}
    for moved in results:
        counts[moved.outcome.outcome] = counts.get(moved.outcome.outcome, 0) + 1
    get_run_logger().info(
        "batch of %d assets: %s; %d bytes copied",
        len(moves.value),
        ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
        sum(m.outcome.bytes for m in results),
    )
    return results
