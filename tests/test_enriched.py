"""The items a run writes: every target's alternates, whatever subset ran."""

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
