"""The asset lock: stacpkg's v1 table, plus the nullable `file_checksum` column its ADR-004 drafts.

stacpkg reads locks by column name and ignores extra columns, so a lock we write is a stacpkg lock
with one more column at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from stacflow.tasks.atomic import atomic_write
from stacflow.tasks.errors import MAX_DETAIL, InputError, shorten, strip_url_secrets
from stacflow.tasks.locations import Location, normalise_store_type, to_href, unsigned

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

STACPKG_LOCK_FIELDS = (
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("asset_key", pa.string(), nullable=False),
    pa.field("store_type", pa.string()),
    pa.field("store_container", pa.string()),
    pa.field("store_endpoint_url", pa.string()),
    pa.field("key", pa.string()),
    pa.field("size_bytes", pa.int64()),
    pa.field("etag", pa.string()),
    pa.field("last_modified", pa.string()),
)
LOCK_METADATA = {b"stacpkg:schema-kind": b"asset-lock", b"stacpkg:schema-version": b"v1"}
LOCK_SCHEMA = pa.schema(
    [*STACPKG_LOCK_FIELDS, pa.field("file_checksum", pa.string())], metadata=LOCK_METADATA
)
LOCK_COLUMNS = tuple(LOCK_SCHEMA.names)
# stacpkg reads a lock without any of the other columns (their values are null); a lock without
# a store type or a key locates nothing, so those two are required here too.
REQUIRED_COLUMNS = ("item_id", "asset_key", "store_type", "key")
OPTIONAL_COLUMNS = tuple(name for name in LOCK_COLUMNS if name not in REQUIRED_COLUMNS)
_HTTP_TYPES = frozenset({"http", "https"})
_CONTAINER_TYPES = frozenset({"s3", "gs", "az", *_HTTP_TYPES})


@dataclass(frozen=True, slots=True)
class LockRow:
    """One locked asset: where its bytes are, and what the store said about them."""

    item_id: str
    asset_key: str
    store_type: str | None
    store_container: str | None
    store_endpoint_url: str | None
    key: str | None
    size_bytes: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    file_checksum: str | None = None

    @property
    def location(self) -> Location:
        return Location(self.store_type, self.store_container, self.store_endpoint_url, self.key)

    @property
    def href(self) -> str:
        return to_href(self.location)

    @classmethod
    def at(cls, item_id: str, asset_key: str, location: Location, **facts: Any) -> LockRow:
        return cls(
            item_id,
            asset_key,
            location.store_type,
            location.store_container,
            location.store_endpoint_url,
            location.key,
            **facts,
        )


def missing_fields(row: LockRow) -> list[str]:
    """The location fields a row lacks, in stacpkg's order and by its rules: an http(s) row's
    key may be "" (stacpkg locks a signed URL as its whole href in `store_container`)."""
    if not row.store_type:
        return ["store_type"]
    missing = []
    if row.store_type in _CONTAINER_TYPES and not row.store_container:
        missing.append("store_container")
    if row.key is None or (row.key == "" and row.store_type not in _HTTP_TYPES):
        missing.append("key")
    return missing


def read_lock(path: Path) -> list[LockRow]:
    """Read a lock written by stacpkg or by us; a user's bad file becomes one clear InputError."""
    return rows_from_table(read_parquet(path, "an asset lock parquet file"), source=str(path))


def written_by_stacflow(path: Path) -> bool:
    """Whether a lock file is one stacflow wrote: it has the `file_checksum` column, which
    stacpkg 0.1.4 never writes and drops whenever it rewrites a lock."""
    try:
        return "file_checksum" in pq.read_schema(path).names
    except (pa.ArrowException, OSError):
        return False


def read_parquet(path: Path, expected: str) -> pa.Table:
    """A user's table; a missing, misplaced or unreadable file is one InputError naming it."""
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "no such file"
        raise InputError(f"{path}: {problem} (expected {expected})")
    try:
        # One file read whole: `pq.read_table` would import pyarrow.dataset and pandas (~0.3 s).
        return pq.ParquetFile(path).read()
    except (pa.ArrowException, OSError) as error:
        raise InputError(f"{path}: not a readable parquet file ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    """Arrow's message, without the path it repeats and past its first line (a C++ trace)."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return re.sub(r"^Could not open Parquet input source '[^']*': ", "", text)[:MAX_DETAIL]


def rows_from_table(table: pa.Table, source: str = "<table>") -> list[LockRow]:
    missing = [name for name in REQUIRED_COLUMNS if name not in table.column_names]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        raise InputError(
            f"{source}: missing column{'s' if len(missing) > 1 else ''} {listed} "
            f"(an asset lock needs {', '.join(REQUIRED_COLUMNS)}; "
            f"{', '.join(OPTIONAL_COLUMNS)} are optional)"
        )
    repeated = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if set(repeated) & set(LOCK_COLUMNS):
        raise InputError(
            f"{source}: columns {', '.join(map(repr, repeated))} appear more than once"
        )
    columns: dict[str, list[Any] | None] = {
        field.name: _column_values(table, field, source)
        if field.name in table.column_names
        else None
        for field in LOCK_SCHEMA
    }
    rows = []
    for index in range(table.num_rows):
        values: dict[str, Any] = {
            name: (None if column is None else column[index]) for name, column in columns.items()
        }
        for name in ("item_id", "asset_key"):
            if not values[name]:
                raise InputError(f"{source}: row {index + 1}: column {name!r} is empty")
        if values["size_bytes"] is not None and values["size_bytes"] < 0:
            raise InputError(
                f"{source}: row {index + 1} ({shorten(values['item_id'])}/"
                f"{shorten(values['asset_key'])}): column 'size_bytes' is "
                f"{values['size_bytes']}; a size cannot be negative"
            )
        try:
            values["store_type"] = normalise_store_type(values["store_type"])
        except InputError as error:
            raise InputError(f"{source}: row {index + 1}: column 'store_type': {error}") from None
        rows.append(LockRow(**values))
    return rows


def lock_table(rows: Iterable[LockRow]) -> pa.Table:
    """The lock as written: stacpkg's columns, then `file_checksum`; never a signed URL's query."""
    rows = list(rows)
    for index, row in enumerate(rows, start=1):
        if not row.item_id or not row.asset_key:
            raise InputError(
                f"lock row {index}: item_id and asset_key are required, "
                f"got {row.item_id!r} and {row.asset_key!r}"
            )
    rows = [_unsigned(row) for row in rows]
    columns = {name: [getattr(row, name) for row in rows] for name in LOCK_COLUMNS}
    for name in ("store_container", "store_endpoint_url"):
        columns[name] = [_without_query(value) for value in columns[name]]
    columns["store_type"] = [normalise_store_type(value) for value in columns["store_type"]]
    return pa.Table.from_pydict(columns, schema=LOCK_SCHEMA)


def write_lock(path: Path, rows: Iterable[LockRow]) -> bool:
    """Returns whether the file changed (the same rows leave it alone)."""
    table = lock_table(rows)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_planned_lock(path: Path, rows: Iterable[LockRow]) -> bool:
    """A lock in stacpkg's nine columns only, as its `relocate --dry-run` writes one: nothing
    was copied, so nothing was hashed."""
    table = lock_table(rows).select([field.name for field in STACPKG_LOCK_FIELDS])
    table = table.replace_schema_metadata(LOCK_METADATA)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _column_values(table: pa.Table, field: pa.Field, source: str) -> list[Any]:
    column = table.column(field.name)
    if not column.type.equals(field.type):
        try:
            column = column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise InputError(
                f"{source}: column {field.name!r} has type {column.type}, expected {field.type}"
            ) from None
    return list(column.to_pylist())


def _unsigned(row: LockRow) -> LockRow:
    """A signed URL's row as the location it signs (`locations.unsigned`): never its query."""
    location = unsigned(row.location)
    if location == row.location:
        return row
    return replace(row, store_container=location.store_container, key=location.key)


def _without_query(value: str | None) -> str | None:
    """No signed URL's query, and no URL userinfo, ever reaches a lock."""
    return strip_url_secrets(value) if value is not None else value
