"""Run mypy --strict on the `stacflow` package: `python -m tests.typecheck` from the repository.

mypy cannot follow the editable install into `flows/` and `tasks/` (setuptools maps them to
`stacflow.flows` and `stacflow.tasks` through an import hook mypy does not run), so this builds
the package's real shape in a temporary folder, `stacflow/{flows,tasks}` as symlinks to the
repository's folders, and checks it there with the settings of `[tool.mypy]` in pyproject.toml.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_mypy(workdir: Path) -> subprocess.CompletedProcess[str]:
    """Check `stacflow` as installed; `workdir` holds the symlinked tree and mypy's cache."""
    package = workdir / "stacflow"
    package.mkdir(exist_ok=True)
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
            "-p",
            "stacflow",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="stacflow-mypy-") as tmp:
        result = run_mypy(Path(tmp))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
