"""The items a run writes: every target's alternates, whatever subset ran; promotion as stacpkg."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.tasks.items import items_from_table, read_items_table

REPO = Path(__file__).resolve().parents[1]
DEMO_ORIGIN = "https://demo-imagery.stacflow.invalid/uploads"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("out"))
    return tmp_path / "specs" / "demo.yaml"


def _items(path: Path) -> dict[str, dict]:
    return {item["id"]: item for item in items_from_table(read_items_table(path))}


def test_a_run_for_some_targets_keeps_the_other_targets_alternates(demo, prefect_harness, capsys):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    results = demo.parent / "demo" / "out" / "results"
    assert main(["run", str(demo)]) == 0
    before = _items(results / "items.parquet")

    assert main(["run", str(demo), "--target", "archive"]) == 0
    assert _items(results / "items.parquet") == before
    relocate_package(spec_path=str(demo), targets=["local"])  # as the UI's `targets` does
    assert _items(results / "items.parquet") == before
    capsys.readouterr()

    for item in before.values():
        for asset in ("visual", "thumbnail"):
            assert set(item["assets"][asset]["alternate"]) == {"local", "archive"}


def test_the_promoted_table_switches_hrefs_as_stacpkg_does(demo, prefect_harness, capsys):
    """stacpkg's `promote-alternate --alternate-key local --mode switch`: the primary href and
    alternate.local trade places; the demoted original is named `original`."""
    out = demo.parent / "demo" / "out"
    assert main(["run", str(demo)]) == 0
    capsys.readouterr()
    enriched = _items(out / "results" / "items.parquet")
    promoted = _items(out / "results" / "local.primary.items.parquet")

    asset = promoted["flight-01"]["assets"]["visual"]
    assert asset["href"] == (out / "local-assets" / "flight-01" / "visual.tif").as_uri()
    assert asset["alternate:name"] == "local mirror"
    assert asset["alternate"]["local"] == {
        "href": f"{DEMO_ORIGIN}/flight-01/ortho.tif",
        "alternate:name": "original",
    }
    assert (
        asset["alternate"]["archive"]
        == enriched["flight-01"]["assets"]["visual"]["alternate"]["archive"]
    )
    assert "original" not in asset["alternate"]


def test_the_documented_promotion_is_the_one_written():
    """README, docs/spec.md and the schema said the original moved to alternate.original."""
    from stacflow.flows.schema import spec_schema  # noqa: PLC0415

    described = spec_schema()["$defs"]["Target"]["properties"]["promote"]["description"]
    assert "under the target's alternate key, named 'original'" in described
    for doc in (REPO / "README.md", REPO / "docs" / "spec.md", REPO / "stacflow.schema.json"):
        assert "alternate.original" not in doc.read_text(), doc
