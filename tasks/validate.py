"""Validate: does each lock row still describe what its store holds? stacpkg's rules and wording.

Per row: the location fields it needs, then a HEAD, then exact comparison of size, ETag and
Last-Modified where both the lock and the store have a value; with checksums, the bytes are read
and their SHA-256 compared with `file_checksum` too (stacpkg cannot see a same-size rewrite).
An unreachable object is a row with an error, never an aborted run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stacflow.tasks.breaker import BREAKERS, StoreDown
from stacflow.tasks.checksum import is_sha256_multihash, sha256_multihash
from stacflow.tasks.errors import AssetError, ErrorClass, strip_url_secrets
from stacflow.tasks.fanout import fan_out, shared_threads
from stacflow.tasks.locks import LockRow, missing_fields
from stacflow.tasks.moves import Check
from stacflow.tasks.report import Outcome, Result, Step
from stacflow.tasks.retry import RetryPolicy, retrying
from stacflow.tasks.stores import FACT_NAMES, Facts, Store, open_store

FACTS_ONLY = "facts"
NO_CHECKSUM = "no checksum recorded"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one row's validation found: its errors (none: valid), their class, carried from
    where each was found (a mismatch is drift; a store's error keeps its own class), and what
    was proven about the bytes."""

    errors: list[str]
    checked: str
    error_class: ErrorClass | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Validated:
    line: dict[str, Any]
    outcome: Outcome
    row: LockRow


def mismatches(
    row: LockRow, facts: Facts, compare: frozenset[str] = FACT_NAMES, *, exact_etag: bool = False
) -> list[str]:
    """stacpkg's comparison: exact, and only where both the lock and the store have a value.

    One leniency, for locks stacflow wrote (`exact_etag` off): an ETag with and without its
    surrounding quotes is the same tag (obstore 0.9, which stacpkg 0.1.4 runs on, reports a
    local file's unquoted; 0.12 quotes it). A stacpkg lock is held to stacpkg's equality.
    """
    same_etag = row.etag == facts.etag or (
        not exact_etag and _unquoted(row.etag) == _unquoted(facts.etag)
    )
    pairs = (
        ("size", row.size_bytes, facts.size, row.size_bytes == facts.size),
        ("etag", row.etag or None, facts.etag or None, same_etag),
        (
            "last_modified",
            row.last_modified or None,
            facts.last_modified or None,
            row.last_modified == facts.last_modified,
        ),
    )
    return [
        f"{name} mismatch: expected {locked}, actual {actual}"
        for name, locked, actual, same in pairs
        if name in compare and locked is not None and actual is not None and not same
    ]


def _unquoted(etag: str | None) -> str | None:
    return etag[1:-1] if etag and len(etag) > 1 and etag[0] == etag[-1] == '"' else etag


def validate_row(check: Check, *, checksums: bool, retry: RetryPolicy | None = None) -> Verdict:
    """The row's verdict: never "with checksums" for a row whose bytes were not hashed.

    A transient failure is tried again as the run's retry policy says, the whole row at once."""
    missing = missing_fields(check.row)
    if missing:
        return Verdict([f"missing fields: {','.join(missing)}"], FACTS_ONLY, ErrorClass.PERMANENT)
    expected = check.checksum or check.row.file_checksum
    checked = FACTS_ONLY
    if checksums:
        checked = NO_CHECKSUM
        if is_sha256_multihash(expected):
            checked = (
                "sha256" if check.checksum_from == "lock" else f"sha256 ({check.checksum_from})"
            )
    store = open_store(check.store)
    tries = 0
    try:
        for attempt in retrying(retry or RetryPolicy()):
            with attempt:
                tries += 1
                facts = _head_watched(store, check)
                errors = mismatches(
                    check.row, facts, check.store.compare, exact_etag=check.exact_etag
                )
                if errors:
                    return Verdict(errors, FACTS_ONLY, ErrorClass.DRIFT, tries)
                if not checked.startswith("sha256"):
                    return Verdict([], checked, attempts=tries)
                actual = _sha256(store, check.path)
    except AssetError as error:
        tries -= isinstance(error, StoreDown)  # that try made no request
        return Verdict([error.message], FACTS_ONLY, error.error_class, tries)
    if actual != expected:
        problem = f"checksum mismatch: expected {expected}, actual {actual}"
        return Verdict([problem], checked, ErrorClass.DRIFT, tries)
    return Verdict([], checked, attempts=tries)


def _sha256(store: Store, path: str) -> str:
    digest = hashlib.sha256()
    with store.open(path) as reader:
        for chunk in reader.chunks():
            digest.update(chunk)
    return sha256_multihash(digest.digest())


def _head_watched(store: Store, check: Check) -> Facts:
    """A HEAD, unless the store is down (then its rows end at once); the answer goes to its
    breaker."""
    if (down := BREAKERS.refusal(check.store, "store")) is not None:
        raise down
    try:
        facts = store.head(check.path)
    except AssetError as error:
        BREAKERS.record(check.store, error)
        raise
    BREAKERS.record(check.store, None)
    return facts


def validation_line(row: LockRow, errors: list[str], checked: str | None = None) -> dict[str, Any]:
    """One JSON-lines object in stacpkg's shape (keys sorted by the writer); where checksums
    were asked for, one more key, `checked`: what was proven about the bytes."""
    line: dict[str, Any] = {
        "asset_key": row.asset_key,
        "errors": errors,
        "item_id": row.item_id,
        "key": row.key,
        "store_container": strip_url_secrets(row.store_container) if row.store_container else None,
        "store_type": row.store_type,
        "valid": not errors,
    }
    if row.store_endpoint_url:
        line["store_endpoint_url"] = row.store_endpoint_url
    if checked is not None:
        line["checked"] = checked
    return line


def validate_checks(
    checks: Sequence[Check],
    lock_name: str,
    *,
    checksums: bool,
    workers: int = 8,
    retry: RetryPolicy | None = None,
) -> list[Validated]:
    """Every row, `workers` at once (the spec's `max_workers`), each retried as `retry` says."""

    def run(check: Check) -> Validated:
        started = time.monotonic()
        verdict = validate_row(check, checksums=checksums, retry=retry)
        errors, checked = verdict.errors, verdict.checked
        outcome = Outcome(
            item_id=check.row.item_id,
            asset_key=check.row.asset_key,
            store=lock_name,
            step=Step.VALIDATE,
            outcome=Result.INVALID if errors else Result.VALID,
            bytes=(check.row.size_bytes or 0) if checked.startswith("sha256") else 0,
            attempts=verdict.attempts,
            duration_s=round(time.monotonic() - started, 6),
            error_class=verdict.error_class if errors else None,
            message="; ".join(errors) if errors else None,
            checked=checked,
        )
        line = validation_line(check.row, errors, checked if checksums else None)
        return Validated(line, outcome, check.row)

    return fan_out(shared_threads("stacflow-validate", workers), workers, run, checks)
