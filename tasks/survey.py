"""What a run would do, per target: copy, or already present and verified. Reads no source body."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import AssetError
from tasks.moves import Move
from tasks.opaque import Opaque
from tasks.relocate import verified_copy
from tasks.report import Outcome, Result, Step

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

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(moves)))) as pool:
        return [row for rows in pool.map(one, moves) for row in rows]


@task(cache_policy=NO_CACHE, name="survey-targets", retries=1, tags=["stacflow", "plan"])
def survey_task(moves: Opaque[Sequence[Move]], workers: int = 8) -> list[Outcome]:
    return survey(moves.value, workers)
