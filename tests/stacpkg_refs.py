"""The stacpkg 0.1.4 reference outputs in tests/data/stacpkg, as the tests read them.

`make_references.py` there wrote them with stacpkg itself; these helpers only read them, and
rebuild the awkward corpus's bytes and origin from `corpus.json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from tests.servers.origin import Origin

REFERENCES = Path(__file__).parent / "data" / "stacpkg"
AWKWARD = REFERENCES / "awkward"
COLLIDE = REFERENCES / "collide"
TUTORIAL = REFERENCES / "tutorial"
LOCAL_ROOT = "/tmp/stacpkg-reference/local-assets"  # a fixed name in the references
CORPUS_ORIGIN = "https://assets.example.test"
CORPUS_BUCKET = "relocated"
CORPUS_S3_ENDPOINT = "https://s3.example.test"
SIGNATURE = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def corpus() -> list[dict[str, Any]]:
    return json.loads((AWKWARD / "corpus.json").read_text())


def corpus_bytes(entry: dict[str, Any]) -> bytes:
    """The bytes the origin serves for one corpus row (as make_references.py describes them)."""
    return (
        f"{entry['seed']}:{entry['item_id']}/{entry['asset_key']}\n" * (entry["seed"] + 1)
    ).encode()


def serve_corpus(origin: Origin) -> None:
    """Put every corpus asset where an origin serves its href, and sign the signed one."""
    for entry in corpus():
        origin.write(entry["origin_path"], corpus_bytes(entry))
        _, _, query = entry["href"].partition("?")
        if query:
            origin.sign(entry["origin_path"], query)


def rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def plan(name: str) -> list[dict[str, Any]]:
    """stacpkg's `relocate --dry-run` rows for the awkward package (`file.item-asset`, ...)."""
    return rows(AWKWARD / f"plan.{name}.assets.lock.parquet")


def package_at(folder: Path, origin_url: str) -> Path:
    """The awkward package, its lock's origin moved to `origin_url` (stacpkg has no mirror)."""
    shutil.copytree(AWKWARD / "package", folder)
    lock = folder / "assets.lock.parquet"
    table = pq.read_table(lock)
    index = table.schema.get_field_index("store_container")
    moved = [
        value.replace(CORPUS_ORIGIN, origin_url, 1) if value else value
        for value in table.column(index).to_pylist()
    ]
    table = table.set_column(index, table.schema.field(index), pa.array(moved, pa.string()))
    pq.write_table(table, lock)
    return folder
