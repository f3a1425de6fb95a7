"""stacpkg 0.1.4's `item-asset` layout, rule for rule: where its relocate puts a copy.

`<item_id>/<asset_key><suffix>`, each name cleaned as stacpkg's `target_path` cleans it: runs of
characters outside `[A-Za-z0-9._=-]` become one `_`, then leading and trailing `.`, `_` and `/`
go (`item` and `asset` stand in for a name left empty); the suffix is that of the source href's
path as written (`.t%20f` stays so), and is not added again when the cleaned asset key already
ends with it. Checked against stacpkg's own `relocate --dry-run` on the corpus in
`tests/data/stacpkg/awkward` (`tests/test_stacpkg_keys.py`).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlparse

from stacflow.tasks.locks import LockRow

UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._=-]+")


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
