"""The benchmark is code too: its smoke run must keep working as stacflow changes.

`python -m benchmarks.run --quick` on tiny data, one cheap section, through the same loopback
origin the tests use (in its own process, with its request counters), into the JSON it writes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from benchmarks import run

if TYPE_CHECKING:
    from pathlib import Path


def test_quick_validation_section_measures_through_the_test_origin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "smoke.md"
    argv = ["--quick", "--only", "validation", "--no-rclone", "--no-drop-caches"]

    assert run.main([*argv, "--output", str(out)]) == 0

    facts = json.loads(out.with_suffix(".json").read_text())
    assert facts["suite"] == "quick"
    # no section broke, no engine failed: the only note says which sections ran
    assert facts["notes"] == ["Sections: only validation (`--only`)."]
    rows = [row for row in facts["rows"] if row["area"] == "validation"]
    assert [row["what"] for row in rows] == [
        "validate_checks, metadata only (HEAD)",
        "validate_checks, with checksums (HEAD + GET, SHA-256)",
    ]
    rows_per_lock = run.QUICK.validate_rows
    assert all(row["case"].startswith(f"{rows_per_lock:,}-row lock") for row in rows)
    # The origin's counters reached the table: every row of the lock was asked about once.
    assert f"origin 0 GET + {rows_per_lock} HEAD per run" in rows[0]["result"]
    assert f"origin {rows_per_lock} GET" in rows[1]["result"]
    assert "| validation |" in out.read_text()
    assert "validation done" in capsys.readouterr().out


def test_unknown_section_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run.main(["--only", "throughput-lokal"])
    assert exit_.value.code == 2
    assert "unknown section(s) throughput-lokal" in capsys.readouterr().err
