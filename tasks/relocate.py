"""Relocate: stream each locked asset into its targets, verified, atomic, retried, never twice.

`relocate_batch` copies a batch of assets with bounded concurrency; `relocate_one` is the whole
life of one asset: skip each target that provably holds it already, read the source once for the
rest (its facts checked against the lock before a byte is kept, SHA-256 on the way), tee the bytes
into every target's atomic writer, retry transient failures around the whole copy, and end with
exactly one outcome per target.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from stacflow.tasks.breaker import BREAKERS, StoreDown
from stacflow.tasks.checksum import is_sha256_multihash
from stacflow.tasks.errors import AssetError, ErrorClass, Reach, StacflowError
from stacflow.tasks.fanout import fan_out, shared_threads
from stacflow.tasks.moves import Leg, Move, Record
from stacflow.tasks.remote_outputs import Mirrored, local_journal, open_journal
from stacflow.tasks.report import Outcome, Result, Step
from stacflow.tasks.retry import RetryPolicy, retrying
from stacflow.tasks.state import Journal, read_records
from stacflow.tasks.stop import INTERRUPTED_MESSAGE, STOP, Interrupted
from stacflow.tasks.stores import StoreRef, open_store
from stacflow.tasks.tee import copy_once
from stacflow.tasks.verified import FACTS, verified_copy

log = logging.getLogger("stacflow")
NOT_ATTEMPTED = "not attempted: an earlier asset failed and fail_fast is set"


@dataclass(frozen=True, slots=True)
class CopyPolicy:
    """How hard to try and how wide to go; built by the compiler from the spec."""

    workers: int = 4
    attempts: int = 5
    initial_backoff: float = 1.0
    max_backoff: float = 60.0
    on_drift: str = "refuse"
    fail_fast: bool = False
    sweep: bool = True
    """Look for debris a killed run left (temp files, open multipart uploads) before writing;
    the flow turns it off when its run lock says the previous run ended normally."""
    verify: str = FACTS
    """`facts`: trust a recorded copy whose facts are unchanged; `checksums`: hash it first."""

    @property
    def retry(self) -> RetryPolicy:
        """The run's one retry policy: copies, derives, surveys and validation all follow it."""
        return RetryPolicy(self.attempts, self.initial_backoff, self.max_backoff)


@dataclass(frozen=True, slots=True)
class Moved:
    outcome: Outcome
    record: Record | None


def relocate_batch(
    moves: Sequence[Move],
    policy: CopyPolicy,
    journals: Mapping[str, Path | Mirrored] | None = None,
    *,
    resume: bool = False,
    on_done: Callable[[list[Outcome]], None] | None = None,
) -> list[Moved]:
    """Copy a batch; every (asset, target) ends with an outcome, every verified copy journaled.

    `on_done` hears each asset's outcomes as soon as they are settled (live progress).
    """
    journals = journals or {}
    if resume:
        moves = _with_journaled(moves, journals)
    if policy.sweep and not STOP.is_set():
        sweep_leftovers(moves).log_to(log)
    stop = threading.Event()
    open_journals = {target: open_journal(place) for target, place in journals.items()}

    def run(move: Move) -> list[Moved]:
        if STOP.is_set():
            return [_interrupted(move, leg) for leg in move.legs]
        if stop.is_set():
            return [
                Moved(_outcome(move, leg, Result.FAILED, message=NOT_ATTEMPTED), None)
                for leg in move.legs
            ]
        results = relocate_one(move, policy)
        _journal(move, results, open_journals)
        if policy.fail_fast and any(m.outcome.failed for m in results):
            stop.set()
        if on_done is not None:
            on_done([m.outcome for m in results])
        return results

    try:
        per_move = fan_out(
            shared_threads("stacflow-copy", policy.workers), policy.workers, run, moves
        )
        results = [moved for moved_legs in per_move for moved in moved_legs]
    finally:
        for journal in open_journals.values():
            journal.close()
    return results


def _journal(move: Move, results: Sequence[Moved], journals: Mapping[str, Journal]) -> None:
    """Record each new verified copy; one that cannot be is reported failed when the run settles."""
    for leg, moved in zip(move.legs, results, strict=True):
        if moved.record not in {None, leg.previous} and leg.target in journals:
            try:
                journals[leg.target].append(moved.record)
            except OSError as error:
                log.warning("%s/%s not journaled at %s: %s", *move.key, leg.target, error)


@dataclass(frozen=True, slots=True)
class Swept:
    """What a sweep removed, and what it could not do (one line per store, for log and summary)."""

    count: int = 0
    problems: tuple[str, ...] = ()

    def log_to(self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        if self.count:
            logger.info(
                "removed %d leftovers (temp files, open uploads) of an earlier, killed run",
                self.count,
            )
        for problem in self.problems:
            logger.warning("%s", problem)


def sweep_leftovers(moves: Sequence[Move]) -> Swept:
    """What a killed run left beside these keys is removed first: temp files in folders, open
    multipart uploads on S3. One call per target store, however many keys."""
    paths: dict[StoreRef, list[str]] = {}
    for move in moves:
        for leg in move.legs:
            paths.setdefault(leg.store, []).append(leg.path)
    swept = 0
    problems: list[str] = []
    for store, keys in paths.items():
        try:
            swept += open_store(store).sweep(keys)
        except StacflowError as error:
            where = store.container or store.root
            problems.append(f"could not sweep what a killed run left in {where}: {error}")
    return Swept(swept, tuple(problems))


def relocate_one(move: Move, policy: CopyPolicy) -> list[Moved]:
    """One outcome per leg, in leg order."""
    started = time.monotonic()
    done, pending = _settle_present(move, policy, started)
    attempts = 0
    try:
        for attempt in retrying(policy.retry):
            with attempt:
                STOP.check()
                attempts += 1
                try:
                    pending = _copy_attempt(
                        move, pending, policy, done=done, started=started, attempts=attempts
                    )
                except _Retry as retry:
                    pending = retry.legs  # legs that settled keep their outcome and record
                    raise
    except Interrupted:
        return _cut_short(move, done)
    except AssetError as error:
        if STOP.is_set():  # whatever the stop made a read raise, the copy was only cut short
            return _cut_short(move, done)
        attempts -= isinstance(error, StoreDown)  # that attempt made no request
        for leg in pending:
            if leg.target not in done:
                done[leg.target] = _failed(move, leg, error, started=started, attempts=attempts)
    return [done[leg.target] for leg in move.legs]


def _settle_present(
    move: Move, policy: CopyPolicy, started: float
) -> tuple[dict[str, Moved], list[Leg]]:
    """Legs that end before any copy (their target provably holds the asset, or is down), and
    the legs still to copy."""
    done: dict[str, Moved] = {}
    pending: list[Leg] = []
    provable = is_sha256_multihash(move.expected_checksum)
    for leg in move.legs:
        down = BREAKERS.refusal(leg.store, "target")
        if down is not None and down.reach == Reach.CONNECTION:
            done[leg.target] = _failed(move, leg, down, started=started)  # no HEAD would answer
            continue
        existing = None
        if leg.previous is not None or leg.adoptable is not None or provable:  # else: no look
            try:
                existing = verified_copy(move, leg, policy.verify)
            except AssetError:
                existing = None  # an unreadable target is rewritten; the write reports its error
        if existing is not None:
            done[leg.target] = Moved(
                _outcome(move, leg, Result.SKIPPED_VERIFIED, started=started), existing
            )
        elif down is not None:  # a full or read-only target still shows what it holds
            done[leg.target] = _failed(move, leg, down, started=started)
        else:
            pending.append(leg)
    return done, pending


def _failed(move: Move, leg: Leg, error: AssetError, *, started: float, attempts: int = 0) -> Moved:
    result = Result.DRIFTED if error.error_class == ErrorClass.DRIFT else Result.FAILED
    outcome = _outcome(
        move,
        leg,
        result,
        attempts=attempts,
        started=started,
        error_class=error.error_class,
        message=error.message,
    )
    return Moved(outcome, None)


def _copy_attempt(
    move: Move,
    legs: list[Leg],
    policy: CopyPolicy,
    *,
    done: dict[str, Moved],
    started: float,
    attempts: int,
) -> list[Leg]:
    """Copy into `legs`; settle the legs that end, raise for the transient rest (retried).

    A leg whose target went down meanwhile ends at once; a source that is down raises for all.
    Every answer and failure is told to the stores' breakers.
    """
    for leg in legs:
        if (down := BREAKERS.refusal(leg.store, "target")) is not None:
            done[leg.target] = _failed(move, leg, down, started=started, attempts=attempts - 1)
    legs = [leg for leg in legs if leg.target not in done]
    if not legs:
        return []
    failures: dict[str, AssetError] = {}
    records, drift = _copy_watched(move, legs, policy, failures)
    for leg in legs:
        if leg.target in records:
            record = records[leg.target]
            done[leg.target] = Moved(
                _outcome(
                    move,
                    leg,
                    Result.COPIED,
                    size=record.row.size_bytes or 0,
                    attempts=attempts,
                    started=started,
                    error_class=ErrorClass.DRIFT if drift else None,
                    message=f"copied despite drift (on_drift: copy): {drift}" if drift else None,
                ),
                record,
            )
        elif failures[leg.target].error_class != ErrorClass.TRANSIENT:
            error = failures[leg.target]
            done[leg.target] = _failed(move, leg, error, started=started, attempts=attempts)
    retry = [leg for leg in legs if leg.target not in done]
    if retry:
        raise _Retry(retry, failures[retry[0].target])
    return []


def _copy_watched(
    move: Move, legs: list[Leg], policy: CopyPolicy, failures: dict[str, AssetError]
) -> tuple[dict[str, Record], str | None]:
    """`copy_once`, unless the source is down; what each store answered goes to its breaker."""
    if (down := BREAKERS.refusal(move.source_store, "origin")) is not None:
        raise down
    try:
        records, drift = copy_once(move, legs, policy, failures)
    except AssetError as error:
        BREAKERS.record(move.source_store, error)
        raise
    BREAKERS.record(move.source_store, None)
    for leg in legs:
        if leg.target in records or leg.target in failures:
            BREAKERS.record(leg.store, failures.get(leg.target))
    return records, drift


class _Retry(AssetError):
    """Some legs failed transiently: the whole copy is tried again for them."""

    def __init__(self, legs: list[Leg], cause: AssetError) -> None:
        super().__init__(
            ErrorClass.TRANSIENT,
            cause.message,
            status=cause.status,
            retry_after=cause.retry_after,
            reach=cause.reach,
        )
        self.legs = legs


def _with_journaled(moves: Sequence[Move], journals: Mapping[str, Path | Mirrored]) -> list[Move]:
    known = {target: read_records(local_journal(place)) for target, place in journals.items()}
    return [
        replace(
            move,
            legs=tuple(
                replace(leg, previous=known.get(leg.target, {}).get(move.key, leg.previous))
                for leg in move.legs
            ),
        )
        for move in moves
    ]


def _cut_short(move: Move, done: Mapping[str, Moved]) -> list[Moved]:
    """Legs that settled keep their outcome; the rest were interrupted."""
    return [done.get(leg.target) or _interrupted(move, leg) for leg in move.legs]


def _interrupted(move: Move, leg: Leg) -> Moved:
    """A leg a stop request left uncopied: failed for this run, copied by the next."""
    outcome = _outcome(
        move, leg, Result.FAILED, error_class=ErrorClass.INTERRUPTED, message=INTERRUPTED_MESSAGE
    )
    return Moved(outcome, None)


def _outcome(
    move: Move,
    leg: Leg,
    result: Result,
    *,
    size: int = 0,
    attempts: int = 0,
    started: float | None = None,
    error_class: str | None = None,
    message: str | None = None,
) -> Outcome:
    return Outcome(
        item_id=move.source.item_id,
        asset_key=move.source.asset_key,
        store=leg.target,
        step=Step.RELOCATE,
        outcome=result,
        bytes=size,
        attempts=attempts,
        duration_s=round(time.monotonic() - started, 6) if started is not None else 0.0,
        error_class=error_class,
        message=message,
    )


def flush_targets(stores: Sequence[StoreRef]) -> float:
    """Make the run's copies durable, once per target (a syncfs per folder); returns seconds."""
    started = time.monotonic()
    for store in stores:
        open_store(store).flush()
    return time.monotonic() - started
