"""Derive: lock Items that have no lock yet, from their hrefs and a HEAD of each object.

As stacpkg's `asset-lock derive`: one row per asset with an href, assets keyed `metadata` skipped
unless asked, then size, ETag and Last-Modified from the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stacflow.tasks.breaker import BREAKERS, StoreDown
from stacflow.tasks.errors import AssetError, InputError
from stacflow.tasks.fanout import fan_out, shared_threads
from stacflow.tasks.locations import parse_href
from stacflow.tasks.locks import LockRow
from stacflow.tasks.moves import Check
from stacflow.tasks.report import Outcome, Result, Step
from stacflow.tasks.retry import RetryPolicy, retrying
from stacflow.tasks.stores import Facts, Store, open_store


@dataclass(frozen=True, slots=True)
class Derived:
    row: LockRow | None
    outcome: Outcome


def locate_assets(
    items: Iterable[dict[str, Any]], *, base: Path, metadata_assets: bool = False
) -> list[LockRow]:
    """Lock rows without facts, one per asset href; relative hrefs resolve against `base`."""
    rows = []
    for item in items:
        for key, asset in (item.get("assets") or {}).items():
            if key == "metadata" and not metadata_assets:
                continue
            href = (asset or {}).get("href")
            if not href:
                continue
            try:
                location = parse_href(href, base=base)
            except InputError as error:
                raise InputError(f"item {item['id']!r}, asset {key!r}: {error}") from None
            rows.append(LockRow.at(item["id"], key, location))
    return rows


def derive_facts(
    checks: Sequence[Check], name: str, workers: int = 8, retry: RetryPolicy | None = None
) -> list[Derived]:
    """A HEAD per row, `workers` at once (the spec's `max_workers`), each retried as `retry`
    (the spec's `relocate.retry`) says."""

    def run(check: Check) -> Derived:
        started = time.monotonic()
        store = open_store(check.store)
        tries = 0
        try:
            for attempt in retrying(retry or RetryPolicy()):
                with attempt:
                    tries += 1
                    facts = _watched_head(store, check)
        except AssetError as error:
            tries -= isinstance(error, StoreDown)  # that try made no request
            return Derived(None, _outcome(check, name, started, tries, error))
        row = replace(
            check.row, size_bytes=facts.size, etag=facts.etag, last_modified=facts.last_modified
        )
        return Derived(row, _outcome(check, name, started, tries))

    return fan_out(shared_threads("stacflow-derive", workers), workers, run, checks)


def _watched_head(store: Store, check: Check) -> Facts:
    """A HEAD, unless the store is down (then its rows end at once); the answer goes to its
    breaker."""
    if (down := BREAKERS.refusal(check.store, "origin")) is not None:
        raise down
    try:
        facts = store.head(check.path)
    except AssetError as error:
        BREAKERS.record(check.store, error)
        raise
    BREAKERS.record(check.store, None)
    return facts


def _outcome(
    check: Check, name: str, started: float, tries: int, error: AssetError | None = None
) -> Outcome:
    return Outcome(
        item_id=check.row.item_id,
        asset_key=check.row.asset_key,
        store=name,
        step=Step.DERIVE,
        outcome=Result.FAILED if error else Result.DERIVED,
        attempts=tries,
        duration_s=round(time.monotonic() - started, 6),
        error_class=error.error_class if error else None,
        message=error.message if error else None,
    )
