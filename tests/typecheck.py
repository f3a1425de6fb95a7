"""Run mypy --strict on the `stacflow` package: `python -m tests.typecheck` from the repository.

mypy cannot follow the editable install into `flows/` and `tasks/` (setuptools maps them to
`stacflow.flows` and `stacflow.tasks` through an import hook mypy does not run), so this builds
the package's real shape in a temporary folder, `stacflow/{flows,tasks}` as symlinks to the
repository's folders, and checks it there with the settings of `[tool.mypy]` in pyproject.toml.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_CHECKED = re.compile(r"(\d+) source files?")


def default_workdir() -> Path:
    """One folder per checkout, kept between runs: mypy's cache makes a rerun take seconds."""
    digest = hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"stacflow-mypy-{digest}"


def run_mypy(
    workdir: Path | None = None, target: Sequence[str] = ("-p", "stacflow")
) -> subprocess.CompletedProcess[str]:
    """Check `stacflow` as installed; `workdir` holds the symlinked tree and mypy's cache."""
    workdir = workdir or default_workdir()
    package = workdir / "stacflow"
    package.mkdir(parents=True, exist_ok=True)
    for name in ("flows", "tasks"):
        link = package / name
        if not link.exists():
            link.symlink_to(REPO / name, target_is_directory=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--cache-dir",
            str(workdir / ".mypy_cache"),
            *target,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )


def checked_files(output: str) -> int | None:
    """How many files mypy says it checked (`... in 61 source files`)."""
    found = _CHECKED.search(output)
    return int(found.group(1)) if found else None


def main() -> int:
    result = run_mypy()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
