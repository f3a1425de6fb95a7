"""The tutorial spec, end to end, on the real Prefect engine against loopback servers.

`specs/openaerialmap-austria.yaml` runs unchanged: its endpoints and folders come from the
environment, which these tests point at the loopback origin, moto and a tmp folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from stacflow.tasks.errors import RunFailed
from stacflow.tasks.items import items_from_table, read_items_table
from stacflow.tasks.locks import LOCK_COLUMNS, read_lock
from tests.packages import flip_byte_keeping_mtime

REPO = Path(__file__).resolve().parents[1]
TUTORIAL_SPEC = REPO / "specs" / "openaerialmap-austria.yaml"


@pytest.fixture
def tutorial(tmp_path, oam_data, oam_origin, oam_s3, moto_endpoint, monkeypatch, prefect_harness):
    """The tutorial spec with its endpoints on loopback and its outputs under tmp."""
    data = tmp_path / "tutorial"
    shutil.copytree(oam_data, data, ignore=shutil.ignore_patterns("origin"))
    out = tmp_path / "out"
    monkeypatch.setenv("STACPKG_TUTORIAL", str(data))
    monkeypatch.setenv("OAM_HTTPS_MIRROR", oam_origin.url + "/")
    monkeypatch.setenv("OAM_S3_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("OAM_ALLOW_HTTP", "true")
    monkeypatch.setenv("STACFLOW_OUT", str(out))
    return out


def run(**parameters):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415 - Prefect only in flow tests

    return relocate_package(spec_path=str(TUTORIAL_SPEC), **parameters)


def test_tutorial_relocates_enriches_and_validates(tutorial, oam_data):
    result = run()

    assert result["ok"], result["text"]
    assert result["counts"]["relocate:local:copied"] == 4
    for lock in ("https", "s3", "local"):
        assert result["counts"][f"validate:{lock}:valid"] == 4

    table = pq.read_table(tutorial / "openaerialmap-austria" / "local.assets.lock.parquet")
    assert tuple(table.column_names) == LOCK_COLUMNS
    assert table.schema.metadata[b"stacpkg:schema-kind"] == b"asset-lock"
    relocated = read_lock(tutorial / "openaerialmap-austria" / "local.assets.lock.parquet")
    source = {(r.item_id, r.asset_key): r for r in read_lock(_package_lock(oam_data))}
    assert {(r.item_id, r.asset_key) for r in relocated} == set(source)
    root = tutorial / "local-assets"
    for row in relocated:
        locked = source[(row.item_id, row.asset_key)]
        ext = Path(locked.key).suffix
        assert row.store_type == "file"
        assert row.key == str(root / row.item_id / f"{row.asset_key}{ext}")
        assert Path(row.key).read_bytes() == (oam_data / "origin" / locked.key).read_bytes()
        assert row.size_bytes == locked.size_bytes
        assert row.file_checksum.startswith("1220")

    items = items_from_table(read_items_table(tutorial / "openaerialmap-austria" / "items.parquet"))
    for item in items:
        for key in ("visual", "thumbnail"):
            alternates = item["assets"][key]["alternate"]
            assert alternates["s3"]["href"].startswith("s3://oin-hotosm-temp/")
            assert alternates["local"]["href"] == f"file://{root}/{item['id']}/{key}" + (
                ".tif" if key == "visual" else ".png"
            )
            assert item["assets"][key]["file:checksum"].startswith("1220")
        assert "alternate" not in item["assets"]["metadata"]

    lines = (tutorial / "openaerialmap-austria" / "validation" / "s3.jsonl").read_text()
    rows = [json.loads(line) for line in lines.splitlines()]
    assert [r["valid"] for r in rows] == [True] * 4
    assert rows[0]["store_endpoint_url"] == "https://s3.amazonaws.com"


def test_rerun_copies_nothing_and_a_same_size_rewrite_is_caught(tutorial, oam_origin):
    from stacflow.flows.validate import validate_package  # noqa: PLC0415

    run()
    gets_before = oam_origin.count("GET")
    result = run()
    assert result["counts"]["relocate:local:skipped-verified"] == 4
    assert oam_origin.count("GET") == gets_before

    tampered = next((tutorial / "local-assets").rglob("visual.tif"))
    flip_byte_keeping_mtime(tampered, offset=100)

    # Size, ETag (inode, mtime, size) and Last-Modified are unchanged: metadata cannot see it.
    metadata_only = validate_package(spec_path=str(TUTORIAL_SPEC), locks=["local"], checksums=False)
    assert metadata_only["counts"]["validate:local:valid"] == 4
    with pytest.raises(RunFailed, match="checksum mismatch"):
        validate_package(spec_path=str(TUTORIAL_SPEC), locks=["local"], checksums=True)
    lines = (tutorial / "openaerialmap-austria" / "validation" / "local.jsonl").read_text()
    invalid = [json.loads(line) for line in lines.splitlines() if '"valid": false' in line]
    assert len(invalid) == 1
    assert invalid[0]["key"] == str(tampered)
    assert invalid[0]["errors"][0].startswith("checksum mismatch: expected 1220")


def test_artifacts_of_a_run_can_be_read_back(tutorial):
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        ArtifactFilter,
        ArtifactFilterFlowRunId,
    )

    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    state = relocate_package(spec_path=str(TUTORIAL_SPEC), return_state=True)
    assert state.is_completed()
    flow_run = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run]))
        )
    by_key = {a.key: a for a in artifacts}
    summary = by_key["openaerialmap-austria-summary"]
    assert summary.type == "markdown"
    assert "| local | 4 (674.2 KiB) | 0 | 0 | 0 |" in summary.data
    validation = by_key["openaerialmap-austria-validation"]
    assert validation.type == "table"
    table = json.loads(validation.data) if isinstance(validation.data, str) else validation.data
    assert len(table) == 12
    assert {row["lock"] for row in table} == {"https", "s3", "local"}
    assert all(row["valid"] for row in table)
    assert by_key["openaerialmap-austria-progress"].type == "progress"


def _package_lock(data: Path) -> Path:
    return data / "openaerialmap-austria.pkg" / "assets.lock.parquet"
