"""Build small stacpkg packages in tmp folders, for tests that need their own assets."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from stacflow.tasks.checksum import sha256_multihash
from stacflow.tasks.items import table_from_items, write_items_table
from stacflow.tasks.locations import parse_href
from stacflow.tasks.locks import LockRow, write_lock

ORIGIN = "https://assets.example.test"
LAST_MODIFIED = "2024-01-02T03:04:05+00:00"
LAST_MODIFIED_HTTP = "Tue, 02 Jan 2024 03:04:05 GMT"  # the same moment, as the origin sends it


def make_package(
    folder: Path,
    origin_root: Path,
    assets: Mapping[tuple[str, str], tuple[str, bytes]],
    *,
    checksums: bool = False,
) -> Path:
    """Write `assets` ((item_id, asset_key) → (key, bytes)) under `origin_root` and lock them.

    The lock describes the bytes the way an S3-like origin would (MD5 ETag, fixed Last-Modified),
    at `https://assets.example.test/<key>`; serve `origin_root` with that Last-Modified.
    """
    items: dict[str, dict] = {}
    lock = []
    for (item_id, asset_key), (key, data) in assets.items():
        path = origin_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        href = f"{ORIGIN}/{key}"
        item = items.setdefault(item_id, item_dict(item_id))
        item["assets"][asset_key] = {"href": href, "roles": ["data"]}
        lock.append(
            LockRow.at(
                item_id,
                asset_key,
                parse_href(href),
                size_bytes=len(data),
                etag=f'"{hashlib.md5(data).hexdigest()}"',
                last_modified=LAST_MODIFIED,
                file_checksum=sha256_multihash(hashlib.sha256(data).digest())
                if checksums
                else None,
            )
        )
    write_items_table(folder / "items.parquet", table_from_items(list(items.values())))
    write_lock(folder / "assets.lock.parquet", lock)
    return folder


def item_dict(item_id: str, collection: str = "tests") -> dict:
    """A minimal valid STAC Item, its assets to be filled in."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": collection,
        "geometry": {"type": "Point", "coordinates": [16.37, 48.21]},
        "bbox": [16.37, 48.21, 16.37, 48.21],
        "properties": {"datetime": "2024-01-02T03:04:05Z"},
        "links": [],
        "assets": {},
    }


def flip_byte_keeping_mtime(path: Path, offset: int) -> None:
    """A same-size rewrite in place, mtime kept: invisible to every check but a checksum."""
    before = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
