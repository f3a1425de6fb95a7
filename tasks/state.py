"""What each target already holds, kept between runs so a rerun copies only what is missing.

Each finished batch appends its records to a journal (one JSON line per asset, one `write` per
batch, fsynced), so a run killed at any moment leaves every verified copy on record; a torn last
line from a kill is ignored. The journal is compacted, atomically, at the end of every run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from tasks.atomic import write_text_atomic
from tasks.locks import LockRow, read_lock
from tasks.moves import Record

STATE_DIR = ".stacflow"


def journal_path(outputs: Path, target: str) -> Path:
    return outputs / STATE_DIR / f"{target}.records.jsonl"


def append_records(path: Path, records: Iterable[Record], *, sync: bool = True) -> None:
    """One `write` per call, so lines from concurrent writers never interleave.

    A process kill loses nothing written (the page cache survives it); `sync` also survives a
    power loss, and is asked for once per batch rather than once per asset.
    """
    data = "".join(_line(record) for record in records).encode()
    if not data and not (sync and path.is_file()):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if data:
            os.write(descriptor, data)
        if sync:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_records(path: Path, fallback_lock: Path | None = None) -> dict[tuple[str, str], Record]:
    """Latest record per asset; a relocated lock without its journal still counts."""
    records: dict[tuple[str, str], Record] = {}
    if fallback_lock is not None and fallback_lock.is_file() and not path.is_file():
        for row in read_lock(fallback_lock):
            records[(row.item_id, row.asset_key)] = Record(row, None, None, None)
    if path.is_file():
        for line in path.read_bytes().splitlines():
            record = _parse(line)
            if record is not None:
                records[(record.row.item_id, record.row.asset_key)] = record
    return records


def compact_records(path: Path, records: Iterable[Record]) -> None:
    write_text_atomic(path, "".join(_line(record) for record in records))


def _line(record: Record) -> str:
    data = asdict(record.row)
    data["source"] = {
        "size": record.source_size,
        "etag": record.source_etag,
        "last_modified": record.source_last_modified,
    }
    return json.dumps(data, separators=(",", ":")) + "\n"


def _parse(line: bytes) -> Record | None:
    """None for a line a kill or power loss tore, even inside a multi-byte character."""
    try:
        data = json.loads(line.decode())
        source = data.pop("source")
        return Record(LockRow(**data), source["size"], source["etag"], source["last_modified"])
    except (ValueError, KeyError, TypeError):
        return None
