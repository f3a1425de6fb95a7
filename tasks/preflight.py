"""What can be known about a run's stores before a byte moves: one cheap look per store.

A mistyped mirror folder or a target root under a regular file used to pass `stacflow plan`
("6 to copy") and then fail asset by asset, each retried. Here each source store gets one HEAD
of its first asset (its folder must exist, if it is one), and each target root is looked at
without writing: a folder must be creatable and writable and its disk not full, a bucket must
answer a listing. `plan` shows the result per store; a run puts an unusable target down at once
(its assets fail with the cause), and lets the breaker judge a source (a blip at start-up must
not fail a whole run).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stacflow.tasks.errors import AssetError, ErrorClass, Reach
from stacflow.tasks.moves import Move
from stacflow.tasks.stores import StoreRef, capabilities, open_store


@dataclass(frozen=True, slots=True)
class Probe:
    """One store as the pre-flight found it: `error` None when it looks usable."""

    role: str
    """`source` or `target`."""
    name: str
    where: str
    error: AssetError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def line(self) -> str:
        if self.error is None:
            verdict = {"source": "reachable", "target": "writable"}[self.role]
            return f"✓ {self.role} {self.name} {verdict}: {self.where}"
        return f"✗ {self.role} {self.name}: {self.error.message}"


def probe_sources(moves: Sequence[Move], name: str) -> list[Probe]:
    """One HEAD per source store, of the first asset read from it."""
    first: dict[StoreRef, str] = {}
    for move in moves:
        first.setdefault(move.source_store, move.source_path)
    return [_probe_source(name, store, path) for store, path in first.items()]


def _probe_source(name: str, store: StoreRef, path: str) -> Probe:
    opened = open_store(store)
    where = _where(store)
    if capabilities(store).file_system and store.root and not Path(store.root).is_dir():
        missing = AssetError(
            ErrorClass.PERMANENT, f"folder not found: {store.root}", reach=Reach.STORE
        )
        return Probe("source", name, where, missing)
    try:
        opened.head(path)
    except AssetError as error:
        return Probe("source", name, where, error)
    return Probe("source", name, where)


def probe_target(name: str, store: StoreRef) -> Probe:
    """Whether the target's root can take copies, found without writing to it."""
    if capabilities(store).file_system:
        return Probe("target", name, store.root, folder_problem(Path(store.root)))
    opened = open_store(store)
    where = _where(store)
    try:
        if capabilities(store).listing:
            next(iter(opened.listing()), None)  # type: ignore[attr-defined]
        else:
            opened.head(".stacflow-owner")
    except AssetError as error:
        if error.status == 404 and error.reach == Reach.ASSET:
            return Probe("target", name, where)  # the store answered: nothing there yet
        return Probe("target", name, where, error)
    return Probe("target", name, where)


def _where(store: StoreRef) -> str:
    if capabilities(store).file_system:
        return store.root or "/"
    return open_store(store).describe("").rstrip("/")


def folder_problem(root: Path) -> AssetError | None:
    """Why no file can be written under `root` (None: it can, or it can be created): the first
    folder that exists on its way must be a folder, writable, on a disk with room."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            break
        existing = existing.parent
    cause: int | None = None
    if not existing.is_dir():
        cause = errno.ENOTDIR
    elif not os.access(existing, os.W_OK | os.X_OK):
        cause = _read_only(existing) or errno.EACCES
    elif _full(existing):
        cause = errno.ENOSPC
    if cause is None:
        return None
    problem = f"{os.strerror(cause)}: {existing}"
    if cause == errno.ENOTDIR:
        problem += " (a file, where a folder must be)"
    return AssetError(ErrorClass.PERMANENT, problem, reach=Reach.STORE)


def _read_only(folder: Path) -> int | None:
    try:
        return errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else None
    except OSError:
        return None


def _full(folder: Path) -> bool:
    """No block left for an unprivileged writer (root's reserve does not count: a daemon
    user cannot use it, and a nearly full disk is about to fail anyway)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail == 0 and stats.f_blocks > 0


def preflight(
    moves: Sequence[Move], source: str, targets: Sequence[tuple[str, StoreRef]]
) -> list[Probe]:
    """Every store of a run, sources first."""
    return [*probe_sources(moves, source), *(probe_target(n, s) for n, s in targets)]
