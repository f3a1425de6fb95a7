"""A full disk, a read-only mount: permanent for that target, at once; the others keep going.

Each failing asset used to be downloaded five times (a write error was taken for a transient
one). The run here has three targets: a 64 KiB tmpfs that fills after the first copy, an empty
read-only tmpfs and a plain folder. Expected: every asset read once, copied into the folder;
the full target fails the asset that hit ENOSPC and every later one at once, without a request;
the read-only one fails all of them before the run (the pre-flight), with the cause; report,
exit 1, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacflow.tasks.report import read_report
from tests.mounts import mounting, namespace_problem
from tests.packages import ORIGIN, make_package

REPO = Path(__file__).resolve().parents[1]
ASSETS = {
    ("scene-1", "visual"): ("scenes/1/visual.tif", os.urandom(40_000)),
    ("scene-2", "visual"): ("scenes/2/visual.tif", os.urandom(40_000)),
    ("scene-3", "visual"): ("scenes/3/visual.tif", os.urandom(40_000)),
}


@pytest.fixture
def tmpfs_available() -> None:
    if problem := namespace_problem():
        pytest.skip(f"full and read-only disks need small tmpfs mounts: {problem}")


def test_full_and_read_only_targets_fail_at_once_and_the_folder_gets_every_copy(
    tmp_path, origin, prefect_harness, tmpfs_available
):
    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    full, read_only, folder = tmp_path / "full", tmp_path / "ro", tmp_path / "folder"
    full.mkdir()
    read_only.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
name: disks
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{origin.url}/", allow_http: true}}
    compare: [size]
targets:
  full: {{store: {{type: file, root: "{full}"}}}}
  readonly: {{store: {{type: file, root: "{read_only}"}}}}
  folder: {{store: {{type: file, root: "{folder}"}}}}
relocate: {{max_workers: 1, retry: {{attempts: 5, initial_backoff: 10ms}}}}
outputs: {tmp_path / "out"}
"""
    )
    command = [sys.executable, "-m", "stacflow.flows.cli", "run", str(spec)]
    ran = subprocess.run(
        [*mounting(full=[(full, "64k")], read_only=[read_only]), *command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    rows = [r for r in read_report(tmp_path / "out" / "report.parquet") if r.step == "relocate"]
    at = {name: sorted((r for r in rows if r.store == name), key=lambda r: r.item_id) for name in
          ("full", "readonly", "folder")}  # fmt: skip

    assert [r.outcome for r in at["folder"]] == ["copied"] * 3
    for key, _ in ASSETS.values():
        assert origin.count("GET", f"/{key}") == 1  # never downloaded again for a full disk
    copies = {p.read_bytes() for p in folder.rglob("*.tif")}
    assert copies == {data for _, data in ASSETS.values()}

    first, filled, later = at["full"]
    assert first.outcome == "copied"
    assert filled.outcome == "failed"
    assert filled.message.startswith("No space left on device")
    assert filled.attempts == 1
    assert later.outcome == "failed"
    assert later.message.startswith("target unusable: No space left on device")
    assert later.attempts == 0

    for row in at["readonly"]:
        assert row.outcome == "failed"
        assert "Read-only file system" in row.message
        assert row.attempts == 0
    assert "FAILED (3 assets failed)" in ran.stdout
