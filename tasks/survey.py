"""What a run would do, per target: copy, or already present and verified. Reads no source body."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import AssetError
from tasks.fanout import fan_out, shared_threads
from tasks.moves import Move
from tasks.opaque import Opaque
from tasks.report import Outcome, Result, Step
from tasks.stores import Facts, StoreRef, open_store
from tasks.verified import verified_copy

PLANNED = "to-copy"


def survey(moves: Sequence[Move], workers: int = 8) -> list[Outcome]:
    """One row per (asset, target): `skipped-verified` where a rerun would skip, else `to-copy`."""

    def one(move: Move) -> list[Outcome]:
        rows = []
        for leg in move.legs:
            try:
                verified = verified_copy(move, leg) is not None
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


@task(cache_policy=NO_CACHE, name="survey-targets", retries=1, tags=["stacflow", "plan"])
def survey_task(moves: Opaque[Sequence[Move]], workers: int = 8) -> list[Outcome]:
    return survey(moves.value, workers)


LIST_WHEN_KNOWN = 0.5


def with_listings(moves: Sequence[Move]) -> list[Move]:
    """On object stores, one listing of a target instead of a HEAD per key, for reruns.

    Only where most of the target's keys have a record (a rerun): a first run has nothing to
    skip, and listing a prefix that holds other data would cost more than it saves.
    """
    listed: dict[StoreRef, dict[str, Facts]] = {}
    for store in {leg.store for move in moves for leg in move.legs if leg.store.kind == "s3"}:
        legs = [leg for move in moves for leg in move.legs if leg.store == store]
        if sum(leg.previous is not None for leg in legs) >= LIST_WHEN_KNOWN * len(legs):
            target = open_store(store)
            listed[store] = dict(target.listing())
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


@task(cache_policy=NO_CACHE, name="list-targets", retries=1, tags=["stacflow", "relocate"])
def list_targets_task(moves: Opaque[Sequence[Move]]) -> Opaque[list[Move]]:
    return Opaque(with_listings(moves.value))
