"""Locks planned without moving a byte, as `stacpkg asset-lock relocate --dry-run` plans them.

A planned source (`sources.<name>.plan`) says the same bytes are already in another store: its
lock is each row of the source it plans from, moved to where its layout puts it, the size kept,
ETag and Last-Modified unknown. `stacflow plan --write-locks DIR` writes these and the lock each
target would have, in stacpkg's nine columns, for stacpkg or a later spec to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from stacflow.flows.layouts import (
    fits_store,
    nesting_conflicts,
    shown_key,
    target_location,
    target_path,
)
from stacflow.flows.selection import SourceMap
from stacflow.tasks.errors import InputError
from stacflow.tasks.locks import LockRow, write_planned_lock

if TYPE_CHECKING:
    from stacflow.flows.compile import Plan
    from stacflow.flows.inputs import Inputs


def plan_source_locks(inputs: Inputs) -> tuple[dict[str, list[LockRow]], list[str]]:
    """The lock of each planned source, and the keys it could not plan (plan conflicts)."""
    spec = inputs.spec
    sources = SourceMap(spec, inputs.base, inputs.source_locks)
    locks: dict[str, list[LockRow]] = {}
    conflicts: list[str] = []
    for name, source in spec.sources.items():
        if source.plan is None:
            continue
        store = source.plan.store.ref(inputs.base)
        origin = spec.planned_from(name)
        claimed: dict[str, tuple[str, str]] = {}
        rows = []
        for row in inputs.lock:
            try:
                if not sources.covers(origin, row):
                    continue
            except InputError:
                continue  # a row without a usable href is a conflict of its own
            asset = (row.item_id, row.asset_key)
            try:
                path = target_path(source.plan.layout, row, inputs.collections.get(row.item_id))
                fits_store(store, path)
            except ValueError as error:
                conflicts.append(f"source {name}: {row.item_id}/{row.asset_key}: {error}")
                continue
            owner = claimed.setdefault(path, asset)
            if owner != asset:
                conflicts.append(
                    f"source {name}: {owner[0]}/{owner[1]} and {row.item_id}/{row.asset_key} "
                    f"both map to {shown_key(store, path)}"
                )
                continue
            location = target_location(store, path)
            rows.append(LockRow.at(*asset, location, size_bytes=row.size_bytes))
        conflicts += nesting_conflicts(f"source {name}", store, claimed)
        locks[name] = rows
    return locks, conflicts


def planned_target_rows(plan: Plan) -> dict[str, list[LockRow]]:
    """The lock each target would have after a run: its rows, the source's size kept."""
    rows: dict[str, list[LockRow]] = {target.name: [] for target in plan.targets}
    for move in plan.moves:
        for leg in move.legs:
            rows[leg.target].append(
                LockRow.at(
                    move.source.item_id,
                    move.source.asset_key,
                    leg.row.location,
                    size_bytes=move.source.size_bytes,
                )
            )
    return rows


def write_planned_locks(plan: Plan, folder: Path) -> list[Path]:
    """`<folder>/<name>.assets.lock.parquet` for every target and planned source."""
    written = []
    for name, rows in {**planned_target_rows(plan), **plan.planned_locks}.items():
        path = folder / f"{name}.assets.lock.parquet"
        write_planned_lock(path, rows)
        written.append(path)
    return written
