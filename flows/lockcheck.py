"""`stacflow check --lock FILE.parquet`: validate any asset lock, without a spec.

What `stacpkg asset-lock validate` does, row for row: the location fields, a HEAD, stacpkg's
comparison of size, ETag and Last-Modified (exact ETags for a lock stacpkg wrote), one JSON line
per row in its shape and wording; and, asked for, the bytes hashed against `file_checksum`. No
Prefect run: a lock file has no spec to name a run, artifacts or outputs after. Each row is read
from the store its location names (an S3 row at its `store_endpoint_url`), with the standard
AWS environment, as stacpkg reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from stacflow.flows.compile import source_access
from stacflow.flows.spec import Source
from stacflow.tasks.access import Access
from stacflow.tasks.errors import UsageError
from stacflow.tasks.locks import LockRow, read_lock, written_by_stacflow
from stacflow.tasks.moves import Check
from stacflow.tasks.stores.base import DEFAULT_CHUNK_SIZE
from stacflow.tasks.validate import validate_checks


def check_lock_files(
    paths: Sequence[Path],
    *,
    checksums: bool,
    access: Access,
    out: TextIO,
) -> tuple[int, int]:
    """Validate each lock file in turn, writing its lines to `out`; returns (rows, invalid)."""
    locks = [(path, read_lock(path)) for path in paths]  # every file is read before a request
    for path, rows in locks:
        _refuse_plain_http(path, rows, access)
    counted = invalid = 0
    for path, rows in locks:
        exact = not written_by_stacflow(path)
        checks = [_check(row, access, exact) for row in rows]
        for result in validate_checks(checks, path.name, checksums=checksums):
            out.write(json.dumps(result.line, sort_keys=True) + "\n")
            counted += 1
            invalid += result.outcome.failed
    return counted, invalid


def _check(row: LockRow, access: Access, exact_etag: bool) -> Check:
    store, path = source_access(row, Source(store=access), DEFAULT_CHUNK_SIZE, Path.cwd())
    return Check(row, store, path, exact_etag=exact_etag)


def _refuse_plain_http(path: Path, rows: Sequence[LockRow], access: Access) -> None:
    """As a spec must say `allow_http`, a command line must say `--allow-http`."""
    if access.allow_http:
        return
    plain = sum(
        1
        for row in rows
        if row.store_type == "http" or (row.store_endpoint_url or "").lower().startswith("http://")
    )
    if plain:
        raise UsageError(
            f"{path}: {plain} row(s) are reached over plain http://; add --allow-http to "
            "validate them anyway"
        )
