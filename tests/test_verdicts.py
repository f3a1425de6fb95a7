"""Validation verdicts are facts a run acts on, and each says what it proved.

A copy a checksum validation found wrong is never skipped again: the next plain run copies it
(the WP's scenario: corrupt in place keeping size and mtime, validate, rerun, validate). A row
without a checksum is never reported "with checksums" without its bytes being hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.tasks.checksum import sha256_multihash
from stacflow.tasks.items import table_from_items, write_items_table
from stacflow.tasks.locks import read_lock, write_lock
from tests.packages import (
    LAST_MODIFIED_HTTP,
    ORIGIN,
    flip_byte_keeping_mtime,
    item_dict,
    make_package,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("out"))
    return tmp_path / "specs" / "demo.yaml"


def _paths(demo: Path) -> tuple[Path, Path, Path]:
    out = demo.parent / "demo" / "out"
    copy = out / "local-assets" / "flight-01" / "visual.tif"
    source = demo.parent / "demo" / "origin" / "uploads" / "flight-01" / "ortho.tif"
    return out / "results", copy, source


def test_a_copy_that_failed_validation_is_copied_again_by_the_next_plain_run(
    demo, prefect_harness, capsys
):
    results, copy, source = _paths(demo)
    assert main(["run", str(demo)]) == 0
    capsys.readouterr()
    flip_byte_keeping_mtime(copy, offset=1000)

    assert main(["check", str(demo), "--lock", "local", "--checksums"]) == 1
    checked = capsys.readouterr().out
    assert "flight-01/visual: invalid: checksum mismatch" in checked
    assert (
        "remedy: the next `stacflow run` copies again the 1 copy that failed validation; "
        "`stacflow run --verify checksums` also hashes every other copy before trusting it"
    ) in checked

    assert main(["run", str(demo)]) == 0
    rerun = capsys.readouterr().out
    assert "relocate → local    5 skipped-verified, 1 copied (625.1 KiB)" in rerun
    assert copy.read_bytes() == source.read_bytes()

    assert main(["check", str(demo), "--lock", "local", "--checksums"]) == 0
    assert "validate local       6 valid (2.4 MiB) (with checksums)" in capsys.readouterr().out
    relocated = {r.item_id: r for r in read_lock(results / "local.assets.lock.parquet")}
    assert relocated["flight-01"].file_checksum == sha256_multihash(
        hashlib.sha256(source.read_bytes()).digest()
    )


def test_verify_checksums_hashes_every_copy_before_trusting_it(demo, prefect_harness, capsys):
    _, copy, source = _paths(demo)
    assert main(["run", str(demo)]) == 0
    flip_byte_keeping_mtime(copy, offset=1000)
    capsys.readouterr()

    assert main(["run", str(demo), "--verify", "checksums", "--target", "local"]) == 0

    out = capsys.readouterr().out
    assert "relocate → local    5 skipped-verified, 1 copied (625.1 KiB)" in out
    assert copy.read_bytes() == source.read_bytes()


def test_verify_is_a_spec_setting_and_a_run_override(demo):
    from stacflow.flows.compile import compile_plan  # noqa: PLC0415
    from stacflow.flows.inputs import load_inputs, load_spec  # noqa: PLC0415
    from stacflow.flows.relocate import RunOverrides, apply_overrides  # noqa: PLC0415

    spec = load_spec(demo)
    assert compile_plan(load_inputs(demo, spec)).policy.verify == "facts"
    overridden = apply_overrides(spec, RunOverrides(verify="checksums"))
    assert compile_plan(load_inputs(demo, overridden)).policy.verify == "checksums"
    demo.write_text(
        demo.read_text().replace("chunk_size: 1MiB}", "chunk_size: 1MiB, verify: checksums}")
    )
    assert load_spec(demo).relocate.verify == "checksums"


def test_a_relocated_lock_that_lost_its_checksums_is_hashed_against_the_recorded_ones(
    demo, prefect_harness, capsys
):
    """stacpkg rewrites a lock without file_checksum: the copy's recorded checksum still holds."""
    results, copy, _ = _paths(demo)
    assert main(["run", str(demo)]) == 0
    lock = results / "local.assets.lock.parquet"
    write_lock(lock, [dataclasses.replace(r, file_checksum=None) for r in read_lock(lock)])
    flip_byte_keeping_mtime(copy, offset=1000)
    capsys.readouterr()

    assert main(["check", str(demo), "--lock", "local", "--checksums"]) == 1

    out = capsys.readouterr().out
    assert "flight-01/visual: invalid: checksum mismatch" in out
    lines = [json.loads(line) for line in (results / "validation" / "local.jsonl").open()]
    assert {line["checked"] for line in lines} == {"sha256 (copy)"}


def test_rows_without_a_checksum_say_so_instead_of_with_checksums(
    tmp_path, origin, prefect_harness, capsys
):
    origin.last_modified = LAST_MODIFIED_HTTP
    assets = {
        ("scene-1", "visual"): ("scenes/1/visual.tif", b"one" * 1000),
        ("scene-2", "visual"): ("scenes/2/visual.tif", b"two" * 1000),
    }
    package = make_package(tmp_path / "pkg", origin.root, assets)
    published = sha256_multihash(hashlib.sha256(b"two" * 1000).digest())
    items = [item_dict("scene-1"), item_dict("scene-2")]
    items[0]["assets"]["visual"] = {"href": f"{ORIGIN}/scenes/1/visual.tif"}
    items[1]["assets"]["visual"] = {
        "href": f"{ORIGIN}/scenes/2/visual.tif",
        "file:checksum": published,
    }
    write_items_table(package / "items.parquet", table_from_items(items))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""name: proof
package: pkg
sources:
  https: {{prefix: "{ORIGIN}/", store: {{endpoint: "{origin.url}/", allow_http: true}}}}
validate: {{locks: [https], checksums: true}}
outputs: out
"""
    )

    assert main(["check", str(spec)]) == 0

    out = capsys.readouterr().out
    assert "with checksums" not in out
    assert (
        "validate https       2 valid (2.9 KiB) (checksums: 1 hashed, 1 with no checksum recorded)"
        in out
    )
    lines = {
        line["item_id"]: line
        for line in map(json.loads, (tmp_path / "out" / "validation" / "https.jsonl").open())
    }
    assert lines["scene-1"]["checked"] == "no checksum recorded"
    assert lines["scene-2"]["checked"] == "sha256 (items)"
