"""Where a process reads and writes a spec's outputs: the folder itself, or, when `outputs:` is a
bucket, a local working copy of it (tasks/remote_outputs.py).

`outputs_workspace` opens it for a run (the run lock: flock on a folder, a lease in a bucket),
for a shard (no lock: the parent holds it; only journal segments and the shard's report go up),
or for reading. Code that only needs the folder asks `outputs_folder`, which finds the working
copy this process has open, or pulls one for reading.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stacflow.flows.spec import OutputsStore, Spec
from stacflow.tasks.lease import run_lease
from stacflow.tasks.remote_outputs import Mirrored, WorkingCopy
from stacflow.tasks.state import journal_path, run_lock
from stacflow.tasks.stores import StoreRef, open_store
from stacflow.tasks.stores.object_store import ObjectStore

Role = Literal["run", "write", "shard", "read"]
_OPEN: dict[StoreRef, list[WorkingCopy]] = {}
"""The working copies this process has open, per outputs bucket (innermost last)."""


@dataclass(frozen=True)
class Workspace:
    """A run's outputs folder; `copy` is None when the outputs are that folder."""

    folder: Path
    copy: WorkingCopy | None = None
    leased: bool | None = None
    """For a run's bucket, whether the run before it was killed: its lease is taken on opening,
    since the working copy must be pulled under it. None: not leased (a folder, or no run)."""

    @contextmanager
    def held(self) -> Iterator[bool]:
        """The run lock while the run writes; yields whether the previous run was killed. A
        folder is locked only here, so a run refused while planning creates nothing in it."""
        if self.leased is not None:
            yield self.leased
            return
        with run_lock(self.folder) as killed:
            yield killed

    def refresh_journals(self) -> None:
        """See what other hosts' shards journaled (a shared folder already shows it)."""
        if self.copy is not None:
            self.copy.refresh_journals()

    def fetch(self, relative: str) -> None:
        """Download the objects under `relative` (shard reports) into the working copy."""
        if self.copy is not None:
            self.copy.pull(relative)

    def discard(self, relative: str) -> None:
        """Remove the objects under `relative` from the bucket (the folder's copy is the
        caller's to remove)."""
        if self.copy is not None:
            self.copy.forget(relative)

    def upload(self, path: Path) -> None:
        if self.copy is not None:
            self.copy.upload(path.relative_to(self.folder).as_posix())

    def upload_tree(self, folder: Path) -> None:
        """Every file under `folder` of the working copy, into the bucket now."""
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self.upload(path)


def outputs_store(spec_path: Path, spec: Spec) -> StoreRef | None:
    if not isinstance(spec.outputs, OutputsStore):
        return None
    return spec.outputs.store.ref(spec_path.parent)


def outputs_id(spec_path: Path, spec: Spec) -> str:
    """What names the outputs across hosts: the folder's path, or the bucket's URL."""
    ref = outputs_store(spec_path, spec)
    if ref is None:
        return str((spec_path.parent / str(spec.outputs)).resolve())
    return _bucket(ref).describe("").rstrip("/")


def outputs_folder(spec_path: Path, spec: Spec) -> Path:
    """The folder this process reads and writes the outputs in."""
    ref = outputs_store(spec_path, spec)
    if ref is None:
        return (spec_path.parent / str(spec.outputs)).resolve()
    if not _OPEN.get(ref):
        copy = WorkingCopy(_bucket(ref), _scratch())
        copy.pull()
        _OPEN[ref] = [copy]
    return _OPEN[ref][-1].folder


def journal_place(spec_path: Path, spec: Spec, target: str) -> Path | Mirrored:
    """Where a batch journals a target's copies: the folder's journal, or also a bucket's."""
    folder = outputs_folder(spec_path, spec)
    path = journal_path(folder, target)
    ref = outputs_store(spec_path, spec)
    if ref is None:
        return path
    return Mirrored(path, ref, path.relative_to(folder).as_posix())


@contextmanager
def outputs_workspace(spec_path: Path, spec: Spec, role: Role) -> Iterator[Workspace]:
    """The outputs, open for a run (locked by `Workspace.held`; its journals compacted), for
    writing beside runs (validation lines), for a shard or for reading. A run's or a writer's
    working copy is pushed when it ends, whether it succeeded or failed (only files it wrote go
    up, each atomically)."""
    ref = outputs_store(spec_path, spec)
    if ref is None:
        yield Workspace(outputs_folder(spec_path, spec))
        return
    bucket = _bucket(ref)
    scratch = _scratch()
    try:
        with run_lease(bucket) if role == "run" else _not_locked() as killed:
            copy = WorkingCopy(bucket, scratch)
            copy.pull()
            _OPEN.setdefault(ref, []).append(copy)
            try:
                yield Workspace(scratch, copy, killed if role == "run" else None)
            finally:
                _OPEN[ref].remove(copy)
                if role in {"run", "write"}:
                    copy.push(compact=role == "run")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def _not_locked() -> Iterator[bool]:
    yield False


def _bucket(ref: StoreRef) -> ObjectStore:
    store = open_store(ref)
    if not isinstance(store, ObjectStore):
        raise TypeError(f"outputs in a {ref.kind} store are not supported")
    return store


def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="stacflow-outputs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
