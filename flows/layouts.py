"""Where each asset goes under a store's root: the layouts, and the keys no store may take.

`item-asset` is stacpkg 0.1.4's layout, rule for rule (where its relocate puts a copy):
`<item_id>/<asset_key><suffix>`, each name cleaned as stacpkg's `target_path` cleans it: runs of
characters outside `[A-Za-z0-9._=-]` become one `_`, then leading and trailing `.`, `_` and `/`
go (`item` and `asset` stand in for a name left empty); the suffix is that of the source href's
path as written (`.t%20f` stays so), and is not added again when the cleaned asset key already
ends with it. Checked against stacpkg's own `relocate --dry-run` on the corpus in
`tests/data/stacpkg/awkward` (`tests/test_stacpkg_keys.py`).
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from stacflow.tasks.locations import Location
from stacflow.tasks.locks import LockRow
from stacflow.tasks.stores import StoreRef, backend, capabilities

UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._=-]+")
SAFE_CHARS = re.compile(r"[^A-Za-z0-9._=-]")


def target_path(layout: str, row: LockRow, collection: str | None) -> str:
    """The key under the target root; raises ValueError when it could not stay under it."""
    source_key = (row.key or urlparse(row.href).path).lstrip("/")  # a signed URL's key is ""
    name = posixpath.basename(source_key)
    ext = safe_segment(posixpath.splitext(name)[1]) if posixpath.splitext(name)[1] else ""
    if layout == "item-asset":
        path = item_asset_key(row)
    elif layout == "source-key":
        path = source_key
    else:
        path = layout.format(
            collection=safe_segment(collection or "no-collection"),
            item_id=safe_segment(row.item_id),
            asset_key=safe_segment(row.asset_key),
            ext=ext,
            source_key=source_key,
            source_dir=posixpath.dirname(source_key),
            source_name=name,
        )
    return checked_path(path)


def safe_segment(value: str) -> str:
    """A template field: characters outside [A-Za-z0-9._=-] become _, and no all-dot segment."""
    cleaned = SAFE_CHARS.sub("_", value)
    if not cleaned.strip("."):
        cleaned = cleaned.replace(".", "_") or "_"
    return cleaned


def checked_path(path: str) -> str:
    """Refuse a key that is empty, absolute, climbs with `..`, or holds control characters."""
    if path.startswith("/"):
        raise ValueError(f"key {path!r} is absolute")
    parts = path.split("/")
    if not path or any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"key {path!r} would not stay under the target root")
    if any(unicodedata.category(c) == "Cc" for c in path):
        raise ValueError(f"key {path!r} holds control characters")
    return path


def fits_store(store: StoreRef, path: str) -> None:
    """Refuse keys the store cannot hold: at plan time, not one failed asset at a time."""
    can = capabilities(store)
    if can.max_name_bytes is not None:
        long = [part for part in path.split("/") if len(part.encode()) > can.max_name_bytes]
        if long:
            raise ValueError(
                f"key segment {long[0]!r} is longer than {can.max_name_bytes} bytes, "
                "which no file system holds"
            )
    if can.max_key_bytes is not None and len(f"{store.root}/{path}".encode()) > can.max_key_bytes:
        raise ValueError(f"key {path!r} is longer than {can.max_key_bytes} bytes")


def target_location(store: StoreRef, path: str) -> Location:
    """Where `path` under a store's root is, as a lock row says it (stacpkg's child_location)."""
    written = backend(store.kind)
    store_type = written.store_types[0]
    if written.capabilities.file_system:
        return Location(store_type, None, None, str(Path(store.root) / path))
    key = f"{store.root}/{path}" if store.root else path
    endpoint = store.access.endpoint.strip().rstrip("/") if store.access.endpoint else None
    return Location(store_type, store.container, endpoint, key)  # the endpoint as stacpkg writes it


def nesting_conflicts(
    label: str, store: StoreRef, claimed: dict[str, tuple[str, str]]
) -> list[str]:
    """On a file system a key cannot be both a file and a folder (`a/b` and `a/b/c.tif`)."""
    if not capabilities(store).file_system:
        return []
    folders = {posixpath.dirname(p) for p in claimed} - {""}
    parents = {f for folder in folders for f in _ancestors(folder)}
    return [
        f"{label}: {'/'.join(claimed[p])} maps to {shown_key(store, p)}, "
        "which other assets need as a folder"
        for p in sorted(set(claimed) & parents)
    ]


def _ancestors(folder: str) -> Iterable[str]:
    while folder:
        yield folder
        folder = posixpath.dirname(folder)


def shown_key(store: StoreRef, path: str) -> str:
    """A key under a store's root, for a message: the file's path, or the object's href."""
    if capabilities(store).file_system:
        return str(Path(store.root) / path)
    return target_location(store, path).href


def item_asset_key(row: LockRow) -> str:
    """The key stacpkg's relocate gives `row` under its target root."""
    item_id = component(row.item_id, "item")
    asset_key = component(row.asset_key, "asset")
    suffix = href_suffix(row.href)
    if suffix and not asset_key.endswith(suffix):
        asset_key += suffix
    return f"{item_id}/{asset_key}"


def component(value: str | None, default: str) -> str:
    """One cleaned name; whitespace at either end goes first, as stacpkg strips it."""
    cleaned = UNSAFE_RUN.sub("_", str(value or default).strip()).strip("._/")
    return cleaned or default


def href_suffix(href: str) -> str:
    """The extension of the href's last path segment, percent-encoding and all, as stacpkg
    reads it (`urlparse`, so a `;params` tail is not part of the path)."""
    return PurePosixPath(urlparse(href).path).suffix
