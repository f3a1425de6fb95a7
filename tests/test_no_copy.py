"""A run in which no byte reached a target still ends in its report, its summary and exit 1.

Every asset fails before a byte is written: the origin refuses connections, the mirror folder is
mistyped, the target root lies under a regular file. Each run must name the real cause per asset,
write report.parquet, publish its summary, and print no traceback.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.tasks.report import read_report
from tests.packages import ORIGIN, make_package

ASSETS = {
    ("scene-1", "visual"): ("scenes/1/visual.tif", os.urandom(20_000)),
    ("scene-1", "thumbnail"): ("scenes/1/thumb.png", os.urandom(3_000)),
    ("scene-2", "visual"): ("scenes/2/visual.tif", os.urandom(25_000)),
}


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def write_spec(folder: Path, package: Path, endpoint: str, target_root: Path) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: no-copy
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{endpoint}", allow_http: true}}
    compare: [size]
targets:
  local:
    store: {{type: file, root: "{target_root}"}}
relocate: {{max_workers: 2, retry: {{attempts: 2, initial_backoff: 10ms}}}}
outputs: {folder / "out"}
"""
    )
    return spec


def run_failing(spec: Path, capsys) -> tuple[str, str]:
    assert main(["run", str(spec)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert (spec.parent / "out" / "report.parquet").is_file()
    return out, err


def reported(spec: Path) -> dict[tuple[str, str], tuple[str, str]]:
    rows = read_report(spec.parent / "out" / "report.parquet")
    return {(r.item_id, r.asset_key): (r.outcome, r.message) for r in rows if r.step == "relocate"}


def test_origin_refusing_connections(tmp_path, closed_port, prefect_harness, capsys):
    package = make_package(tmp_path / "pkg", tmp_path / "origin", ASSETS)
    spec = write_spec(tmp_path, package, f"http://127.0.0.1:{closed_port}/", tmp_path / "assets")
    out, _ = run_failing(spec, capsys)
    assert "FAILED" in out
    assert "connection refused" in out
    report = reported(spec)
    assert sorted(report) == sorted(ASSETS)
    assert all(
        outcome == "failed" and "connection refused" in message
        for outcome, message in report.values()
    )
    # The root holds this spec's owner record and nothing else: no copy, no temp file.
    assert [p.name for p in (tmp_path / "assets").rglob("*")] == [".stacflow-owner"]


def test_mistyped_mirror_folder(tmp_path, prefect_harness, capsys):
    package = make_package(tmp_path / "pkg", tmp_path / "origin", ASSETS)
    spec = write_spec(tmp_path, package, str(tmp_path / "orign"), tmp_path / "assets")
    out, _ = run_failing(spec, capsys)
    assert "not found" in out
    assert str(tmp_path / "orign") in out
    assert {outcome for outcome, _ in reported(spec).values()} == {"failed"}


def test_target_root_under_a_regular_file(tmp_path, prefect_harness, capsys):
    package = make_package(tmp_path / "pkg", tmp_path / "origin", ASSETS)
    (tmp_path / "a-file").write_text("not a folder")
    spec = write_spec(tmp_path, package, str(tmp_path / "origin"), tmp_path / "a-file" / "assets")
    out, _ = run_failing(spec, capsys)
    assert "Not a directory" in out
    report = reported(spec)
    assert all("Not a directory" in message for _, message in report.values())
    assert (tmp_path / "a-file").read_text() == "not a folder"
