"""mypy --strict is part of the test command: a type error fails the suite like a failing test."""

from __future__ import annotations

from tests.typecheck import REPO, checked_files, run_mypy


def test_mypy_strict_passes_on_every_module():
    result = run_mypy()
    assert result.returncode == 0, result.stdout + result.stderr
    # Every module was checked (and the `stacflow` namespace), not a tree the symlinks hid.
    modules = [p for folder in ("flows", "tasks") for p in (REPO / folder).rglob("*.py")]
    assert checked_files(result.stdout) == len(modules) + 1, result.stdout


def test_the_strict_settings_are_the_ones_in_force(tmp_path):
    """pyproject's [tool.mypy] is read: an unannotated function fails, as only --strict fails it."""
    (tmp_path / "untyped.py").write_text("def double(x):\n    return 2 * x\n")
    result = run_mypy(target=[str(tmp_path / "untyped.py")])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "untyped.py:1: error: Function is missing a type annotation" in result.stdout
    assert "[no-untyped-def]" in result.stdout
