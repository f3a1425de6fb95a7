"""What each target already holds, kept between runs so a rerun copies only what is missing.

Each verified copy is appended to its target's journal as it lands (one JSON line, one `write`),
so a run killed at any moment leaves every verified copy on record. A kill or a full disk can tear
the last line: the next writer cuts that torn tail off before it appends (else its first record
would be glued to the fragment and lost), and a run checks that each copy it settles is on record
before it says so. The journal is fsynced per batch and compacted, atomically, at the end of every
run. A run lock beside it refuses a second concurrent run of the same spec and tells a run whether
the one before it was killed (then, and only then, staging debris is swept).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from stacflow.tasks.atomic import write_text_atomic
from stacflow.tasks.errors import UsageError
from stacflow.tasks.locks import LOCK_COLUMNS, LockRow, read_lock
from stacflow.tasks.moves import Record

STATE_DIR = ".stacflow"
_COPY_FACTS = ("item_id", "asset_key", "key", "size_bytes", "etag", "last_modified")
"""What names one copy: a refutation of it does not reach a later copy of the same asset."""
RUNNING = b"running"
TAIL_BLOCK = 64 * 1024
log = logging.getLogger("stacflow")


def journal_path(outputs: Path, target: str) -> Path:
    return outputs / STATE_DIR / f"{target}.records.jsonl"


def refuted_path(journal: Path) -> Path:
    """Beside a target's journal: the copies a validation found wrong, never to be trusted."""
    return journal.with_name(f"{journal.name.removesuffix('.records.jsonl')}.refuted.jsonl")


class Journal:
    """One target's journal, open for a batch: one `write` per record, so concurrent writers'
    lines never interleave; a process kill loses nothing written (the page cache survives it).

    Opening it repairs a torn tail first, under an exclusive lock, so that writers opening it at
    once (batches, shards on other workers) never glue a record to a fragment.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX)
            try:
                repair_tail(self.descriptor, path)
            finally:
                fcntl.flock(self.descriptor, fcntl.LOCK_UN)
        except BaseException:
            os.close(self.descriptor)
            raise

    def append(self, record: Record) -> None:
        """Raises OSError unless the whole line was written (a full disk writes part of it)."""
        line = record_line(record).encode()
        written = os.write(self.descriptor, line)
        if written != len(line):
            raise OSError(f"{self.path}: only {written} of {len(line)} bytes of a record written")

    def close(self) -> None:
        """Durable across a power loss too: asked for once per batch, not once per asset."""
        try:
            os.fsync(self.descriptor)
        finally:
            os.close(self.descriptor)


def append_records(path: Path, records: Iterable[Record]) -> None:
    journal = Journal(path)
    try:
        for record in records:
            journal.append(record)
    finally:
        journal.close()


def repair_tail(descriptor: int, path: Path) -> None:
    """Make the file end with a whole line: a torn last record is cut off (a record whole but
    for its newline gets one)."""
    size = os.fstat(descriptor).st_size
    if size == 0 or os.pread(descriptor, 1, size - 1) == b"\n":
        return
    end = size
    tail = b""
    while end > 0 and b"\n" not in tail:
        start = max(0, end - TAIL_BLOCK)
        tail = os.pread(descriptor, end - start, start) + tail
        end = start
    cut = end + tail.rfind(b"\n") + 1  # 0 when the torn line is the file's only line
    if _parse(tail[tail.rfind(b"\n") + 1 :]) is not None:
        os.write(descriptor, b"\n")
        return
    os.ftruncate(descriptor, cut)
    log.warning(
        "%s: dropped a torn record (%d bytes) that an interrupted run left at its end",
        path,
        size - cut,
    )


@contextmanager
def run_lock(outputs: Path) -> Iterator[bool]:
    """Held for a whole run; yields True when the previous run was killed before it ended."""
    path = outputs / STATE_DIR / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another stacflow run is writing to {outputs}: wait for it to end, or stop it"
            ) from None
        killed = os.pread(descriptor, len(RUNNING), 0) == RUNNING
        os.pwrite(descriptor, RUNNING, 0)
        try:
            yield killed
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)


def refute(journal: Path, rows: Iterable[tuple[LockRow, str]]) -> int:
    """Remember copies a validation found wrong (their lock rows, and why), so that no run
    trusts them again: the next one re-copies them. Appended under a lock; returns how many."""
    lines = "".join(
        json.dumps(
            {**{name: getattr(row, name) for name in _COPY_FACTS}, "reason": reason},
            separators=(",", ":"),
        )
        + "\n"
        for row, reason in rows
    ).encode()
    if not lines:
        return 0
    path = refuted_path(journal)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        repair_tail(descriptor, path)
        os.write(descriptor, lines)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return lines.count(b"\n")


def refuted(journal: Path) -> set[tuple[object, ...]]:
    """The copies validations found wrong, by their lock row's location and facts: a new copy
    (new facts) of the same asset is not refuted."""
    path = refuted_path(journal)
    if not path.is_file():
        return set()
    found = set()
    for line in path.read_bytes().splitlines():
        try:
            data = json.loads(line)
            found.add(tuple(data[name] for name in _COPY_FACTS))
        except (ValueError, KeyError, TypeError):
            continue  # a torn line refutes nothing
    return found


def read_records(path: Path, fallback_lock: Path | None = None) -> dict[tuple[str, str], Record]:
    """Latest record per asset: the relocated lock's rows, then the journal's records over them.
    The lock counts even beside a journal: a working copy of outputs in a bucket may hold a
    journal merged from this run's segments alone. A copy a validation found wrong is marked
    `refuted`: its facts prove nothing any more (a record is still checked against the copy's
    facts before a run trusts it)."""
    records: dict[tuple[str, str], Record] = {}
    if fallback_lock is not None and fallback_lock.is_file():
        for row in read_lock(fallback_lock):
            records[(row.item_id, row.asset_key)] = Record(row, None, None, None)
    if path.is_file():
        torn = 0
        for line in path.read_bytes().splitlines():
            record = _parse(line)
            if record is not None:
                records[(record.row.item_id, record.row.asset_key)] = record
            elif line.strip():
                torn += 1
        if torn:
            log.warning(
                "%s: %d unreadable line(s) ignored (torn by a kill or a full disk)", path, torn
            )
    wrong = refuted(path)
    if wrong:
        records = {
            key: dataclasses.replace(record, refuted=True)
            if tuple(getattr(record.row, name) for name in _COPY_FACTS) in wrong
            else record
            for key, record in records.items()
        }
    return records


def settle_journal(
    path: Path,
    relocated_lock: Path,
    settled: Mapping[tuple[str, str], bool],
    order: Sequence[tuple[str, str]],
) -> list[Record]:
    """Compact a target's journal once a run has flushed its copies; the records, in plan order.

    `settled` holds this run's outcomes (True: verified copy): a failed asset is never kept as
    relocated, this run's copies become durable, and assets outside the run keep their record.
    """
    rank = {key: index for index, key in enumerate(order)}
    kept = [
        dataclasses.replace(record, durable=True) if key in settled else record
        for key, record in read_records(path, fallback_lock=relocated_lock).items()
        if settled.get(key, True)
    ]
    kept.sort(key=lambda r: rank.get((r.row.item_id, r.row.asset_key), len(rank)))
    compact_records(path, kept)
    return kept


def compact_records(path: Path, records: Iterable[Record]) -> None:
    write_text_atomic(path, "".join(record_line(record) for record in records))


def record_line(record: Record) -> str:
    row = record.row
    data: dict[str, object] = {name: getattr(row, name) for name in LOCK_COLUMNS}
    data["source"] = {
        "size": record.source_size,
        "etag": record.source_etag,
        "last_modified": record.source_last_modified,
    }
    if not record.durable:
        data["durable"] = False
    return json.dumps(data, separators=(",", ":")) + "\n"


def _parse(line: bytes) -> Record | None:
    """None for a line a kill or power loss tore, even inside a multi-byte character."""
    try:
        data = json.loads(line.decode())
        source = data.pop("source")
        durable = data.pop("durable", True)
        return Record(
            LockRow(**data), source["size"], source["etag"], source["last_modified"], durable
        )
    except (ValueError, KeyError, TypeError):
        return None
