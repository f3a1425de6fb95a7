"""Kill a run with SIGKILL in the middle of a large object, rerun it: same end state, no debris."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stacflow.tasks.locks import read_lock
from stacflow.tasks.owners import OWNER_FILE
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package

LARGE = 48 * 1024 * 1024
STALL_AFTER = 16 * 1024 * 1024


def _spec(folder: Path, package: Path, origin_url: str) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: kill-test
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  local:
    store: {{type: file, root: {folder / "assets"}}}
relocate: {{max_workers: 2, chunk_size: 1MiB, memory_limit: 64MiB}}
validate: {{locks: [https, local], checksums: [local]}}
outputs: {folder / "out"}
"""
    )
    return spec


def _stacflow(spec: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stacflow.flows.cli", "run", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


def _tree(root: Path) -> dict[str, bytes]:
    """The copies under a target root (its owner record names each run's own outputs)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != OWNER_FILE
    }


def _lock_rows(out: Path, root: Path) -> list[tuple]:
    # ETag and Last-Modified of a file name its inode and mtime: they differ between two runs.
    return sorted(
        (
            r.item_id,
            r.asset_key,
            Path(r.key).relative_to(root).as_posix(),
            r.size_bytes,
            r.file_checksum,
        )
        for r in read_lock(out / "local.assets.lock.parquet")
    )


def test_sigkill_mid_copy_then_rerun_matches_an_uninterrupted_run(
    tmp_path, origin, prefect_harness
):
    origin.last_modified = LAST_MODIFIED_HTTP
    assets = {
        ("scene-1", "visual"): ("scenes/1/visual.tif", os.urandom(LARGE)),
        ("scene-1", "thumbnail"): ("scenes/1/thumb.png", os.urandom(30_000)),
        ("scene-2", "visual"): ("scenes/2/visual.tif", os.urandom(700_000)),
    }
    package = make_package(tmp_path / "pkg", origin.root, assets, checksums=True)
    killed = tmp_path / "killed"
    clean = tmp_path / "clean"
    killed.mkdir()
    clean.mkdir()

    origin.stall("/scenes/1/visual.tif", 60, after_bytes=STALL_AFTER, times=1)
    process = _stacflow(_spec(killed, package, origin.url))
    target = killed / "assets" / "scene-1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        partial = [p for p in target.glob(".visual.tif.stacflow-tmp-*") if p.stat().st_size > 0]
        if partial:
            break
        assert process.poll() is None, process.stdout.read().decode()
        time.sleep(0.05)
    else:
        raise AssertionError("the large object never started to land")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    assert not (target / "visual.tif").exists(), "a partial object reached its final name"

    origin.clear()
    rerun = _stacflow(_spec(killed, package, origin.url))
    output = rerun.communicate(timeout=180)[0].decode()
    assert rerun.returncode == 0, output
    uninterrupted = _stacflow(_spec(clean, package, origin.url))
    output = uninterrupted.communicate(timeout=180)[0].decode()
    assert uninterrupted.returncode == 0, output

    assert _tree(killed / "assets") == _tree(clean / "assets")
    assert json.loads((killed / "assets" / OWNER_FILE).read_text())["outputs"] == str(
        killed / "out"
    )
    assert sorted(_tree(killed / "assets")) == [
        "scene-1/thumbnail.png",
        "scene-1/visual.tif",
        "scene-2/visual.tif",
    ]
    assert _lock_rows(killed / "out", killed / "assets") == _lock_rows(
        clean / "out", clean / "assets"
    )
    debris = [
        p for p in (killed / "assets").rglob("*") if ".stacflow-tmp-" in p.name or "#" in p.name
    ]
    assert debris == []
