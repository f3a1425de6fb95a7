"""Benchmark data: files under the origin's root and a stacpkg package (lock + items) locking them.

Faster than tests/packages.py's `make_package` for GiBs (no MD5, one pass that writes and hashes),
with the same kind of lock: https hrefs under `ORIGIN`, size, the ETag and Last-Modified the
benchmark origin will send, and a SHA-256 `file_checksum` (so checksum validation has work to do).
Bytes are slices of one random pool behind a unique 32-byte header: incompressible, all distinct.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from tests.packages import item_dict
from tests.servers.origin import nginx_etag

ORIGIN = "https://assets.example.test"
LAST_MODIFIED = "2024-01-02T03:04:05+00:00"
LAST_MODIFIED_HTTP = "Tue, 02 Jan 2024 03:04:05 GMT"
ASSETS_PER_ITEM = 4
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
_POOL = 64 * MiB
_WRITE = 4 * MiB


@dataclass(frozen=True)
class Dataset:
    name: str
    count: int
    size: int
    origin_root: Path
    package: Path

    @property
    def total(self) -> int:
        return self.count * self.size

    @property
    def keys(self) -> list[str]:
        return [self.key(i) for i in range(self.count)]

    def key(self, index: int) -> str:
        return f"{self.name}/item-{index // ASSETS_PER_ITEM:05d}/a{index % ASSETS_PER_ITEM}.bin"

    @property
    def files_from(self) -> Path:
        """The keys, one a line: rclone's --files-from."""
        return self.package / "keys.txt"

    @property
    def label(self) -> str:
        return f"{self.count:,} x {human(self.size)}"


def human(size: float) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size:.0f} B"


class _Pool:
    def __init__(self) -> None:
        self.data = memoryview(os.urandom(_POOL))

    def write(self, path: Path, seed: str, size: int) -> str:
        """Write `size` bytes; return their SHA-256 multihash."""
        digest = hashlib.sha256()
        header = hashlib.sha256(seed.encode()).digest()[: min(32, size)]
        offset = int.from_bytes(header[:4], "big") % _POOL if header else 0
        with path.open("wb") as out:
            out.write(header)
            digest.update(header)
            left = size - len(header)
            while left > 0:
                piece = self.data[offset : offset + min(_WRITE, left, _POOL - offset)]
                out.write(piece)
                digest.update(piece)
                left -= len(piece)
                offset = (offset + len(piece)) % _POOL
        return "1220" + digest.hexdigest()


def make_dataset(name: str, count: int, size: int, origin_root: Path, packages: Path) -> Dataset:
    """Write the files and the package (`assets.lock.parquet`, `items.parquet`, `keys.txt`)."""
    from stacflow.tasks.items import table_from_items, write_items_table  # noqa: PLC0415
    from stacflow.tasks.locations import parse_href  # noqa: PLC0415
    from stacflow.tasks.locks import LockRow, write_lock  # noqa: PLC0415

    dataset = Dataset(name, count, size, origin_root, packages / name)
    dataset.package.mkdir(parents=True, exist_ok=True)
    pool = _Pool()
    items: dict[str, dict] = {}
    lock = []
    keys = dataset.keys
    for index, key in enumerate(keys):
        path = origin_root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        checksum = pool.write(path, key, size)
        item_id = f"{name}-{index // ASSETS_PER_ITEM:05d}"
        asset_key = f"a{index % ASSETS_PER_ITEM}"
        href = f"{ORIGIN}/{key}"
        items.setdefault(item_id, item_dict(item_id, "bench"))["assets"][asset_key] = {
            "href": href,
            "roles": ["data"],
            "type": "image/tiff; application=geotiff",
        }
        lock.append(
            LockRow.at(
                item_id,
                asset_key,
                parse_href(href),
                size_bytes=size,
                etag=nginx_etag(path.stat()),
                last_modified=LAST_MODIFIED,
                file_checksum=checksum,
            )
        )
    write_items_table(dataset.package / "items.parquet", table_from_items(list(items.values())))
    write_lock(dataset.package / "assets.lock.parquet", lock)
    dataset.files_from.write_text("".join(f"{k}\n" for k in keys))
    return dataset


def write_spec(
    path: Path,
    dataset: Dataset,
    origin_url: str,
    target: dict,
    outputs: Path,
    *,
    relocate: str = "{max_workers: 8, memory_limit: 512MiB, chunk_size: 8MiB}",
    validate: str | None = None,
) -> Path:
    """A spec relocating `dataset` from the origin into one target named `target["name"]`."""
    if target["type"] == "file":
        store = f"{{type: file, root: {target['root']}}}"
    else:
        store = (
            f'{{type: s3, bucket: {target["bucket"]}, prefix: "{target["prefix"]}", '
            f'endpoint: "{target["endpoint"]}", allow_http: true, region: us-east-1, '
            "credentials: {access_key_id: {env: BENCH_S3_KEY_ID}, "
            "secret_access_key: {env: BENCH_S3_SECRET}}}"
        )
    text = f"""\
name: bench-{dataset.name}-{target["name"]}
package: {dataset.package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  {target["name"]}:
    store: {store}
relocate: {relocate}
outputs: {outputs}
"""
    if validate:
        text += f"validate: {validate}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
