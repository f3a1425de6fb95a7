"""The tool stacflow replaces, in the same table: stacpkg 0.1.4's "Relocate Assets" pipeline.

`stacpkg asset-lock relocate` copies the locked bytes into a folder and writes the relocated
lock; `stacpkg items add-alternate` records the copies in the Items, as `stacflow run` does with
a spec of one target. It needs Python 3.13, so it lives in a venv of its own, found through
`STACFLOW_BENCH_STACPKG` (the `stacpkg` executable) or at `/opt/stacpkg-venv/bin/stacpkg`:

    $(pyenv root)/versions/3.13.0/bin/python -m venv /opt/stacpkg-venv
    /opt/stacpkg-venv/bin/pip install stacpkg==0.1.4

Where it is absent, the table says so. Its lock names the public origin; a copy with the
loopback origin's URL is written before timing (stacpkg has no option to map a prefix).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.data import ORIGIN

if TYPE_CHECKING:
    from benchmarks.data import Dataset

ENV = "STACFLOW_BENCH_STACPKG"
DEFAULT = Path("/opt/stacpkg-venv/bin/stacpkg")


def find() -> Path | None:
    """The stacpkg executable to measure, or None."""
    named = os.environ.get(ENV)
    candidate = Path(named) if named else DEFAULT
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def pipeline(binary: Path, data: Dataset, origin_url: str, root: Path, work: Path) -> list[str]:
    """`bash -c` running relocate then add-alternate, failing if any stage fails."""
    work.mkdir(parents=True, exist_ok=True)
    lock = work / "loopback.assets.lock.parquet"
    _rehost(data.package / "assets.lock.parquet", lock, origin_url)
    relocated, alternate = work / "local.assets.lock.parquet", work / "local.arrows"
    s, q = shlex.quote(str(binary)), lambda value: shlex.quote(str(value))
    script = f"""set -euo pipefail
{s} asset-lock from-parquet {q(lock)} \\
  | {s} asset-lock relocate --source-prefix {q(origin_url + "/")} --store-type file \\
      --key {q(f"{root}/")} --max-workers 8 --memory-limit-bytes 512MiB --chunk-size-bytes 8MiB \\
  | {s} asset-lock to-parquet {q(relocated)}
{s} asset-lock from-parquet {q(relocated)} > {q(alternate)}
{s} items from-parquet {q(data.package / "items.parquet")} \\
  | {s} items add-alternate --asset-lock {q(alternate)} --alternate-key local \\
  | {s} items to-parquet {q(work / "items.parquet")}
"""
    return ["bash", "-c", script]


def env(base: dict[str, str]) -> dict[str, str]:
    """stacpkg refuses plain http unless told (the loopback origin is http)."""
    return {**base, "STACPKG_OBSTORE_ALLOW_HTTP": "1"}


def _rehost(lock: Path, output: Path, origin_url: str) -> None:
    table = pq.read_table(lock)
    index = table.schema.get_field_index("store_container")
    moved = pc.replace_substring(table.column(index), ORIGIN, origin_url)
    pq.write_table(table.set_column(index, table.schema.field(index), moved), output)
