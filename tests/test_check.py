"""`stacflow check` never says OK about nothing: unknown locks, nothing to validate, no run yet."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stacflow.flows.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("out"))
    return tmp_path / "specs" / "demo.yaml"


def test_an_unknown_lock_name_is_a_usage_error_naming_the_names(demo, prefect_harness, capsys):
    assert main(["check", str(demo), "--lock", "nosuch"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"ERROR: {demo}: no source or target named 'nosuch' to validate "
        "(names: https, local, archive)\n"
    )


def test_a_spec_without_a_validate_list_has_nothing_to_validate(demo, prefect_harness, capsys):
    text = demo.read_text()
    start = text.index("validate:")
    demo.write_text(text[:start] + text[text.index("outputs:") :])

    assert main(["check", str(demo)]) == 2
    captured = capsys.readouterr()
    assert "OK" not in captured.out + captured.err
    assert captured.err.startswith(f"ERROR: {demo}: nothing to validate: the spec has no validate")
    assert "--lock NAME (https, local, archive)" in captured.err


def test_check_before_any_run_validates_what_exists_and_says_what_does_not(
    demo, prefect_harness, capsys
):
    assert main(["check", str(demo)]) == 0
    out = capsys.readouterr().out
    assert "stacflow: demo-drone-survey: OK for what exists (local, archive not validated)" in out
    assert "validate https       6 valid" in out
    assert (
        "validate local       not validated: no relocated lock yet for target local "
        "(run `stacflow run` first)"
    ) in out
    assert "not validated: no relocated lock yet for target archive" in out


def test_check_of_only_unwritten_locks_is_a_usage_error(demo, prefect_harness, capsys):
    assert main(["check", str(demo), "--lock", "local"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"ERROR: {demo}: nothing to validate yet: no relocated lock yet for target local "
        "(run `stacflow run` first)\n"
    )
