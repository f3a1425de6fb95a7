"""Where a run's results land, and the writes that put them there: atomic, every one.

<outputs>/<target>.assets.lock.parquet      relocated lock per target (stacpkg v1 + file_checksum)
<outputs>/items.parquet                     the items, enriched with every target's alternate
<outputs>/<target>.primary.items.parquet    with `promote: true`: the target's href as primary
<outputs>/validation/<lock>.jsonl           stacpkg-shaped validation lines per lock
<outputs>/report.parquet                    one row per (asset, store, step) of the last run
<outputs>/package/                          for lock-less Items: the package stacflow built
<outputs>/.stacflow/                        run state (journals), not for consumers
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacflow.tasks.atomic import write_text_atomic
from stacflow.tasks.items import (
    Alternate,
    enrich_items,
    promote_alternate,
    read_items_table,
    table_from_items,
    write_items_table,
)
from stacflow.tasks.locations import unsigned_href
from stacflow.tasks.locks import LockRow, read_lock, write_lock, write_planned_lock


@dataclass(frozen=True)
class OutputPaths:
    root: Path

    def lock(self, target: str) -> Path:
        return self.root / f"{target}.assets.lock.parquet"

    @property
    def items(self) -> Path:
        return self.root / "items.parquet"

    def primary(self, target: str) -> Path:
        return self.root / f"{target}.primary.items.parquet"

    def validation(self, name: str) -> Path:
        return self.root / "validation" / f"{name}.jsonl"

    @property
    def report(self) -> Path:
        return self.root / "report.parquet"

    @property
    def package(self) -> Path:
        return self.root / "package"


@dataclass(frozen=True, slots=True)
class Written:
    """An output a run wrote; `changed` False: it already held exactly these bytes, so it was
    left alone (a rerun that changed nothing rewrites nothing, and says so)."""

    path: Path
    changed: bool


@dataclass(frozen=True, slots=True)
class Promotion:
    target: str
    alternate_key: str


@dataclass(frozen=True, slots=True)
class KeptTarget:
    """A target outside this run (`--target`, `targets:`): its relocated lock, if any, still
    gives the items its alternates, so a run for some targets never erases the others'."""

    name: str
    alternate_key: str
    alternate_name: str | None


def write_package(
    paths: OutputPaths, items: Sequence[dict[str, Any]], lock: Iterable[LockRow]
) -> Path:
    """A stacpkg package of lock-less Items, so later runs and other tools start from it.

    Neither of its tables holds a signature: an href's query string is dropped from the Items as
    from the lock (`locations.unsigned`), so both name the same, unsigned, objects.
    """
    write_items_table(paths.package / "items.parquet", table_from_items(unsigned_items(items)))
    write_lock(paths.package / "assets.lock.parquet", lock)
    return paths.package


def unsigned_items(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Items with every asset, alternate and link href unsigned (`locations.unsigned_href`)."""

    def unsigned_entry(entry: Any) -> Any:
        if not isinstance(entry, dict) or not isinstance(entry.get("href"), str):
            return entry
        return {**entry, "href": unsigned_href(entry["href"])}

    def unsigned_asset(asset: Any) -> Any:
        asset = unsigned_entry(asset)
        if isinstance(asset, dict) and isinstance(asset.get("alternate"), dict):
            alternates = asset["alternate"].items()
            asset = {**asset, "alternate": {k: unsigned_entry(v) for k, v in alternates}}
        return asset

    return [
        {
            **item,
            "assets": {k: unsigned_asset(a) for k, a in (item.get("assets") or {}).items()},
            "links": [unsigned_entry(link) for link in item.get("links") or []],
        }
        for item in items
    ]


def alternates_of(rows: Iterable[LockRow], key: str, name: str | None) -> list[Alternate]:
    """Each relocated row as the alternate its Item's asset gains (and its file facts)."""
    return [
        Alternate(
            row.item_id,
            row.asset_key,
            key,
            row.href,
            name,
            row.size_bytes,
            row.file_checksum,
            row.store_endpoint_url,
        )
        for row in rows
    ]


def kept_alternates(paths: OutputPaths, kept: Sequence[KeptTarget]) -> list[Alternate]:
    """The alternates that targets outside this run hold, from their relocated locks."""
    return [
        alternate
        for target in kept
        if paths.lock(target.name).is_file()
        for alternate in alternates_of(
            read_lock(paths.lock(target.name)), target.alternate_key, target.alternate_name
        )
    ]


def write_enriched(
    paths: OutputPaths,
    items_path: Path,
    locks: Mapping[str, Sequence[LockRow]],
    alternates: Sequence[Alternate],
    promotions: Sequence[Promotion],
    *,
    kept: Sequence[KeptTarget] = (),
    planned: Mapping[str, Sequence[LockRow]] | None = None,
) -> list[Written]:
    """The relocated locks and `planned` sources' locks, then the items that point at them: a
    reader never sees an alternate whose lock is not yet written. The items carry every target
    whose relocated lock holds an asset, this run's and the `kept` ones."""
    written = [
        Written(paths.lock(target), write_lock(paths.lock(target), rows))
        for target, rows in locks.items()
    ]
    written += [
        Written(paths.lock(source), write_planned_lock(paths.lock(source), rows))
        for source, rows in (planned or {}).items()
    ]
    enriched = enrich_items(
        read_items_table(items_path), [*alternates, *kept_alternates(paths, kept)]
    )
    written.append(Written(paths.items, write_items_table(paths.items, enriched)))
    for promotion in promotions:
        if promotion.target not in locks and not paths.lock(promotion.target).is_file():
            continue  # a target no run has relocated into yet has nothing to promote
        primary = paths.primary(promotion.target)
        promoted = promote_alternate(enriched, promotion.alternate_key)
        written.append(Written(primary, write_items_table(primary, promoted)))
    return written


def write_validation(paths: OutputPaths, name: str, lines: Iterable[dict[str, Any]]) -> Written:
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    return Written(paths.validation(name), write_text_atomic(paths.validation(name), text))
