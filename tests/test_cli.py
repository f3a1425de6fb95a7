"""The CLI in-process on the real Prefect engine: exit codes, the demo, keys from the env."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from tests.servers.s3 import create_bucket, put_object

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The repo's specs/ folder, copied so the demo writes under tmp."""
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("out"))
    return tmp_path / "specs" / "demo.yaml"


def test_demo_runs_twice_with_exit_zero(demo, prefect_harness, capsys):
    assert main(["run", str(demo)]) == 0
    first = capsys.readouterr().out
    assert "relocate → local    6 copied (2.4 MiB)" in first
    assert "relocate → archive  6 copied (2.4 MiB)" in first
    assert "validate https       6 valid (2.4 MiB) (with checksums)" in first

    assert main(["run", str(demo)]) == 0
    second = capsys.readouterr().out
    assert "relocate → local    6 skipped-verified" in second
    assert "copied" not in second
    results = demo.parent / "demo" / "out" / "results"
    assert (results / "local.primary.items.parquet").is_file()
    local = demo.parent / "demo" / "out" / "local-assets"
    origin = demo.parent / "demo" / "origin" / "uploads"
    assert (local / "flight-01" / "visual.tif").read_bytes() == (
        origin / "flight-01" / "ortho.tif"
    ).read_bytes()


def test_plan_before_and_after_a_run(demo, prefect_harness, capsys):
    assert main(["plan", str(demo)]) == 0
    before = capsys.readouterr().out
    assert "local         6 (2.4 MiB)             0 (0 B)" in before
    assert main(["run", str(demo)]) == 0
    capsys.readouterr()
    assert main(["plan", str(demo)]) == 0
    after = capsys.readouterr().out
    assert "local         0 (0 B)                 6 (2.4 MiB)" in after


def test_a_failed_asset_exits_one_and_is_not_recorded(demo, prefect_harness, capsys):
    missing = demo.parent / "demo" / "origin" / "uploads" / "flight-02" / "ortho.tif"
    missing.unlink()
    assert main(["run", str(demo)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "flight-02/visual: failed: not found" in out
    from stacflow.tasks.locks import read_lock  # noqa: PLC0415

    rows = read_lock(demo.parent / "demo" / "out" / "results" / "local.assets.lock.parquet")
    assert ("flight-02", "visual") not in {(r.item_id, r.asset_key) for r in rows}
    assert len(rows) == 5


def test_s3_lock_validates_with_keys_from_named_variables(
    tmp_path, oam_data, moto_endpoint, prefect_harness, monkeypatch, capsys
):
    bucket = "oin-hotosm-temp"
    create_bucket(moto_endpoint, bucket)
    for path in (oam_data / "origin").rglob("*"):
        if path.is_file():
            key = path.relative_to(oam_data / "origin").as_posix()
            put_object(moto_endpoint, bucket, key, path.read_bytes(), public=False)
    spec = tmp_path / "s3-check.yaml"
    spec.write_text(
        f"""
name: s3-keys
package: {oam_data / "openaerialmap-austria.pkg"}
sources:
  https: {{prefix: "https://oin-hotosm-temp.s3.amazonaws.com/"}}
  s3:
    lock: {oam_data / "openaerialmap-austria.s3.assets.lock.parquet"}
    store:
      endpoint: {moto_endpoint}
      allow_http: true
      credentials:
        access_key_id: {{env: MIRROR_KEY_ID}}
        secret_access_key: {{env: MIRROR_SECRET}}
validate: [s3]
outputs: {tmp_path / "out"}
"""
    )
    monkeypatch.setenv("MIRROR_KEY_ID", "testing")
    monkeypatch.setenv("MIRROR_SECRET", "not-a-real-secret-value")
    assert main(["check", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "validate s3          4 valid" in out
    assert "not-a-real-secret-value" not in out
    lines = (tmp_path / "out" / "validation" / "s3.jsonl").read_text()
    assert "not-a-real-secret-value" not in lines
    assert lines.count('"valid": true') == 4
