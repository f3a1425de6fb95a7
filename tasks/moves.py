"""The records a compiled plan hands to the work: one `Move` per asset, one `Leg` per target.

A move reads its source once and tees the bytes into every leg that still needs them. They live
in `tasks/` because the work functions take them; `flows/compile.py` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacflow.tasks.locks import LockRow
from stacflow.tasks.stores import Facts, StoreRef


@dataclass(frozen=True, slots=True)
class Record:
    """What a target holds for one asset, and which source facts it was copied from.

    The relocated lock row says where the copy is and what the target reported after writing it;
    the source facts let a rerun tell "already copied from this exact lock row" without a GET.
    A copy in a folder is `durable` only once the run that wrote it has flushed it to disk: a
    record that is not (its run was killed) is trusted only after the copy is hashed again.
    """

    row: LockRow
    source_size: int | None
    source_etag: str | None
    source_last_modified: str | None
    durable: bool = True
    refuted: bool = False
    """A validation found this very copy wrong (its facts unchanged since): trusted again only
    once its bytes hash to its checksum. Read from beside the journal, never written into it."""


@dataclass(frozen=True, slots=True)
class Leg:
    """One target's side of a move: where the copy goes and what the last run left there."""

    target: str
    store: StoreRef
    path: str
    row: LockRow
    previous: Record | None = None
    listed: Facts | None = None
    """The target's facts from a listing made before the batch (None: not listed there)."""
    was_listed: bool = False
    """Whether a listing was made: then `listed` replaces a HEAD, and None means missing."""
    adoptable: LockRow | None = None
    """Another tool's lock row (the target's `adopt` lock) for a copy at this very key."""


@dataclass(frozen=True, slots=True)
class Move:
    """Copy one locked asset from its source store into every target."""

    source: LockRow
    source_store: StoreRef
    source_path: str
    legs: tuple[Leg, ...]
    expected_checksum: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source.item_id, self.source.asset_key)

    @property
    def expected_size(self) -> int | None:
        return self.source.size_bytes


@dataclass(frozen=True, slots=True)
class Check:
    """Compare one lock row with what its store holds now (validation)."""

    row: LockRow
    store: StoreRef
    path: str
    checksum: str | None = None
    """The SHA-256 multihash the bytes must hash to (default: the row's `file_checksum`)."""
    checksum_from: str = "lock"
    """Where `checksum` was recorded: the lock itself, `items` (a provider's file:checksum) or
    `copy` (the journal or relocated lock of the target, when this lock row lost it)."""
    exact_etag: bool = False
    """Compare ETags as stacpkg does, quotes included: the row comes from a stacpkg lock."""
