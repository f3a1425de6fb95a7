"""Outcomes are data: one row per (asset, store, step), rendered by artifacts and the CLI.

The run report is the record of what a run did; it is written even when the run fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stacflow.tasks.atomic import atomic_write


class Step(StrEnum):
    RELOCATE = "relocate"
    DERIVE = "derive"
    VALIDATE = "validate"


class Result(StrEnum):
    COPIED = "copied"
    SKIPPED_VERIFIED = "skipped-verified"
    FAILED = "failed"
    DRIFTED = "drifted"
    VALID = "valid"
    INVALID = "invalid"
    DERIVED = "derived"
    NOT_SELECTED = "not-selected"


FAILURES = frozenset({Result.FAILED, Result.DRIFTED, Result.INVALID})


@dataclass(frozen=True, slots=True)
class Outcome:
    item_id: str
    asset_key: str
    store: str
    step: str
    outcome: str
    bytes: int = 0
    attempts: int = 0
    duration_s: float = 0.0
    error_class: str | None = None
    message: str | None = None
    checked: str | None = None
    """For a validation: what was proven (`facts`, `sha256`, `sha256 (items)`, `sha256 (copy)`,
    or `no checksum recorded` when checksums were asked for and none was known)."""

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES


REPORT_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("asset_key", pa.string(), nullable=False),
        pa.field("store", pa.string(), nullable=False),
        pa.field("step", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("error_class", pa.string()),
        pa.field("message", pa.string()),
        pa.field("checked", pa.string()),
    ],
    metadata={b"stacflow:schema-kind": b"run-report", b"stacflow:schema-version": b"v1"},
)


def write_report(path: Path, outcomes: Iterable[Outcome]) -> bool:
    rows = list(outcomes)  # columns straight from attributes: asdict deep-copies every row
    columns = {f.name: [getattr(row, f.name) for row in rows] for f in fields(Outcome)}
    table = pa.table(columns, schema=REPORT_SCHEMA)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_report(path: Path) -> list[Outcome]:
    """Reports written before a column was added read back with its default."""
    return [Outcome(**row) for row in pq.ParquetFile(path).read().to_pylist()]
