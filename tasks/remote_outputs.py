"""Outputs in a bucket: each process works in a local copy, pulled at its start, pushed at its end.

Every function that writes outputs keeps writing files, atomically, into a folder. When `outputs:`
is a bucket, that folder is a working copy: `pull` fills it from the bucket, `push` uploads what
the run changed (each object one PUT, atomic; the locks before the items that point at them, the
report last). A run that dies before its push changes nothing in the bucket but its journal, so a
failed or killed run never clobbers earlier outputs.

The journal cannot be appended to in a bucket. Each batch's verified copies go to a segment
object of their own, `.stacflow/<target>.records.d/<time>-<id>.jsonl`, rewritten whole (one PUT)
as each record lands: a kill at any moment leaves every verified copy on record, in whole lines.
Reading merges the compacted journal with its segments (later records win); the run that holds
the run lock uploads the compacted journal at its end, then deletes the segments it merged.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import obstore

from stacflow.tasks.errors import AssetError
from stacflow.tasks.lease import LOCK_KEY
from stacflow.tasks.moves import Record
from stacflow.tasks.state import STATE_DIR, Journal, record_line
from stacflow.tasks.stores import StoreRef, open_store
from stacflow.tasks.stores.object_store import ObjectStore

JOURNAL_SUFFIX = ".records.jsonl"
SEGMENTS_SUFFIX = ".records.d"
UPLOAD_CHUNK = 8 * 1024 * 1024
PUSH_ORDER = (".stacflow/", "package/", "validation/", ".assets.lock.parquet", "items.parquet")
"""Run state first, the locks before the items that point at them; anything else (the report)
last, so a reader of the bucket never sees an alternate whose lock is not there yet."""


def segments_of(journal_key: str) -> str:
    """The folder of a journal's segments, beside it."""
    return journal_key.removesuffix(JOURNAL_SUFFIX) + SEGMENTS_SUFFIX + "/"


def journal_of(segment_key: str) -> str | None:
    """The journal a segment belongs to, or None for a key that is no segment."""
    folder, _, name = segment_key.rpartition("/")
    if not (folder.startswith(f"{STATE_DIR}/") and folder.endswith(SEGMENTS_SUFFIX) and name):
        return None
    return folder.removesuffix(SEGMENTS_SUFFIX) + JOURNAL_SUFFIX


@dataclass
class WorkingCopy:
    """A local folder standing in for outputs in a bucket, and what it was pulled from."""

    store: ObjectStore
    folder: Path
    pulled: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Each file as pulled (size, mtime): a file that differs was written by this run."""
    merged: set[str] = field(default_factory=set)
    """The segments merged into the local journals: deleted once the compacted journal is up."""

    def pull(self, under: str = "") -> None:
        """Download the objects under `under` (everything: ""), journals merged with their
        segments; the run lock is not an output."""
        segments: dict[str, list[str]] = {}
        journals: set[str] = set()
        for key, _ in sorted(self.store.listing()):
            if key == LOCK_KEY or not key.startswith(under):
                continue
            journal = journal_of(key)
            if journal is not None:
                segments.setdefault(journal, []).append(key)
                continue
            if key.endswith(JOURNAL_SUFFIX):
                journals.add(key)
            self._download(key, self.folder / key)
        for journal in journals | set(segments):
            self._merge(journal, segments.get(journal, []), compacted=journal in journals)
        self.pulled.update(self._stamps())
        for journal in segments:  # the bucket holds it only in pieces: it goes up whole
            self.pulled.pop(journal, None)

    def refresh_journals(self) -> None:
        """Merge again what every writer (shards on other hosts) has journaled since the pull."""
        self.pull(f"{STATE_DIR}/")

    def upload(self, relative: str) -> None:
        """One file of the working copy into the bucket now (a shard's report)."""
        self._upload(relative)
        stat = (self.folder / relative).stat()
        self.pulled[relative] = (stat.st_size, stat.st_mtime_ns)

    def forget(self, under: str) -> None:
        """Delete the objects under `under` (shard reports, once merged)."""
        for key, _ in list(self.store.listing()):
            if key.startswith(under):
                obstore.delete(self.store.store, key)

    def push(self, *, compact: bool = True) -> list[str]:
        """Upload what this run wrote, in `PUSH_ORDER`. `compact` (only under the run lock):
        then drop the merged segments, now that the journals that hold their records are up.
        Returns the keys written."""
        stamps = self._stamps()
        changed = [key for key, stamp in stamps.items() if self.pulled.get(key) != stamp]
        changed.sort(key=_push_rank)
        for key in changed:
            self._upload(key)
        self.pulled.update(stamps)
        if not compact:
            return changed
        for key in sorted(self.merged):
            obstore.delete(self.store.store, key)
        self.merged.clear()
        return changed

    def _merge(self, journal: str, segments: list[str], *, compacted: bool) -> None:
        path = self.folder / journal
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab" if compacted else "wb") as out:
            for key in segments:
                out.write(self._read(key))
        self.merged.update(segments)

    def _download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.store.open(key) as reader, path.open("wb") as out:
            for chunk in reader.chunks():
                out.write(chunk)

    def _read(self, key: str) -> bytes:
        with self.store.open(key) as reader:
            return b"".join(bytes(chunk) for chunk in reader.chunks())

    def _upload(self, key: str) -> None:
        with self.store.writer(key) as writer, (self.folder / key).open("rb") as data:
            while chunk := data.read(UPLOAD_CHUNK):
                writer.write(chunk)

    def _stamps(self) -> dict[str, tuple[int, int]]:
        return {
            path.relative_to(self.folder).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in self.folder.rglob("*")
            if path.is_file()
        }


def _push_rank(key: str) -> tuple[int, str]:
    for rank, marker in enumerate(PUSH_ORDER):
        if key.startswith(marker) or key.endswith(marker):
            return rank, key
    return len(PUSH_ORDER), key


@dataclass(frozen=True, slots=True)
class Mirrored:
    """A journal whose records also go to the outputs bucket as they land: its local working
    copy, the bucket, and its key there."""

    path: Path
    store: StoreRef
    key: str


def open_journal(place: Path | Mirrored) -> Journal:
    """A journal open for a batch: a local file, and with outputs in a bucket, a segment too."""
    if isinstance(place, Path):
        return Journal(place)
    return MirroredJournal(place)


def local_journal(place: Path | Mirrored) -> Path:
    return place if isinstance(place, Path) else place.path


class MirroredJournal(Journal):
    """Appends to the local working copy, and rewrites this batch's segment object with every
    record so far: a PUT is atomic, so the segment always holds whole records. Appends racing
    from the batch's threads share one PUT (whoever sends, sends everything buffered)."""

    def __init__(self, place: Mirrored) -> None:
        super().__init__(place.path)
        self.store = open_store(place.store)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.jsonl"
        self.segment = segments_of(place.key) + name
        self.lines: list[bytes] = []
        self.sent = 0
        self.buffer_guard = threading.Lock()
        self.send_guard = threading.Lock()

    def append(self, record: Record) -> None:
        """Returns once the record is in the bucket; OSError when it could not be sent."""
        super().append(record)
        with self.buffer_guard:
            self.lines.append(record_line(record).encode())
            mine = len(self.lines)
        with self.send_guard:
            if self.sent >= mine:
                return
            with self.buffer_guard:
                lines = list(self.lines)
            try:
                self._put(lines)
            except AssetError as error:
                raise OSError(error.message) from None
            self.sent = len(lines)

    def _put(self, lines: Iterable[bytes]) -> None:
        with self.store.writer(self.segment) as writer:
            writer.write(b"".join(lines))
