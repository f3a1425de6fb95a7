"""What a run would do, per target: copy, or already present and verified. Reads no source body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from stacflow.tasks.breaker import BREAKERS
from stacflow.tasks.errors import AssetError
from stacflow.tasks.fanout import fan_out, shared_threads
from stacflow.tasks.moves import Leg, Move, Record
from stacflow.tasks.report import Outcome, Result, Step
from stacflow.tasks.retry import RetryPolicy, with_retries
from stacflow.tasks.stores import Facts, Store, StoreRef, capabilities, open_store
from stacflow.tasks.stores.object_store import ObjectStore
from stacflow.tasks.summary import TO_COPY
from stacflow.tasks.verified import verified_copy

PLANNED = TO_COPY


def survey(
    moves: Sequence[Move], workers: int = 8, retry: RetryPolicy | None = None
) -> list[Outcome]:
    """One row per (asset, target): `skipped-verified` where a rerun would skip, else `to-copy`.

    `workers` targets are looked at at once; a look that fails transiently is tried again as
    `retry` says, and one that still fails means `to-copy` (the copy reports what is wrong)."""

    policy = retry or RetryPolicy()

    def one(move: Move) -> list[Outcome]:
        rows = []
        for leg in move.legs:
            try:
                verified = with_retries(policy, partial(_watched_look, move, leg)) is not None
            except AssetError:
                verified = False
            rows.append(
                Outcome(
                    item_id=move.source.item_id,
                    asset_key=move.source.asset_key,
                    store=leg.target,
                    step=Step.RELOCATE,
                    outcome=Result.SKIPPED_VERIFIED if verified else PLANNED,
                    bytes=move.expected_size or 0,
                )
            )
        return rows

    per_move = fan_out(shared_threads("stacflow-survey", workers), workers, one, moves)
    return [row for rows in per_move for row in rows]


def _watched_look(move: Move, leg: Leg) -> Record | None:
    """`verified_copy`, unless the target is down; what it answered goes to its breaker."""
    if (down := BREAKERS.refusal(leg.store, "target")) is not None:
        raise down
    try:
        found = verified_copy(move, leg)
    except AssetError as error:
        BREAKERS.record(leg.store, error)
        raise
    BREAKERS.record(leg.store, None)
    return found


LIST_PER_KEY = 10
"""A listing stops once it has seen this many objects per key to look for (plus one page): a
LIST page is sequential where HEADs run `max_workers` at once, so past that, HEADs are faster."""
LIST_PAGE = 1000


def with_listings(moves: Sequence[Move]) -> list[Move]:
    """On object stores, one listing of a target instead of a HEAD per key.

    A first run into an empty prefix learns in one request that nothing is there; a rerun gets
    every key's facts. A prefix that holds much more than this run's keys is not listed to its
    end: the run HEADs its keys instead. Only this run's keys are kept from a listing.
    """
    listed: dict[StoreRef, dict[str, Facts]] = {}
    targets = {leg.store for move in moves for leg in move.legs}
    for store in [target for target in targets if capabilities(target).listing]:
        keys = {leg.path for move in moves for leg in move.legs if leg.store == store}
        try:
            found = _bounded_listing(open_store(store), keys)
        except AssetError:
            continue  # its keys are HEADed one by one, and a write reports what is wrong
        if found is not None:
            listed[store] = found
    if not listed:
        return list(moves)
    return [
        replace(
            move,
            legs=tuple(
                replace(leg, listed=listed[leg.store].get(leg.path), was_listed=True)
                if leg.store in listed
                else leg
                for leg in move.legs
            ),
        )
        for move in moves
    ]


def _bounded_listing(store: Store, keys: set[str]) -> dict[str, Facts] | None:
    """The facts of `keys` found under the store's root; None if the root holds too much."""
    assert isinstance(store, ObjectStore), "only object stores declare the listing capability"
    limit = LIST_PER_KEY * len(keys) + LIST_PAGE
    found: dict[str, Facts] = {}
    for seen, (path, facts) in enumerate(store.listing(), start=1):
        if seen > limit:
            return None
        if path in keys:
            found[path] = facts
    return found
