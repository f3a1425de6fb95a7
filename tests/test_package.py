"""The installed distribution is one import package, `stacflow`: a user's own `flows/` or
`tasks/` package (common in Prefect repos) must never collide with ours."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_stacflow_as_its_only_top_level_package(tmp_path):
    source = tmp_path / "source"  # setuptools builds in place: keep build/ out of the repo
    for name in ("flows", "tasks"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=180,
    )
    [wheel] = tmp_path.glob("stacflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    code = [n for n in names if ".dist-info/" not in n]
    assert {n.split("/")[0] for n in code} == {"stacflow"}
    assert "stacflow/flows/cli.py" in code
    assert "stacflow/tasks/relocate.py" in code
    assert "stacflow/tasks/stores/s3.py" in code  # subpackages are listed in pyproject.toml
    assert "stacflow/tasks/py.typed" in code
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "stacflow = stacflow.flows.cli:console" in scripts


def test_a_users_own_flows_and_tasks_packages_import_beside_stacflow(tmp_path):
    for name in ("flows", "tasks"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OWNER = 'the user: {name}'\n")
    probe = (
        "import flows, tasks; from stacflow.flows import cli; from stacflow.tasks import stores;"
        "print(flows.OWNER, tasks.OWNER, cli.main.__module__)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert shown.split() == ["the", "user:", "flows", "the", "user:", "tasks", "stacflow.flows.cli"]


def test_nothing_imports_the_folders_by_their_repository_names():
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("flows", "tasks", "tests", "benchmarks", "specs")
        for path in (REPO / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.lstrip().startswith(("from flows", "from tasks", "import flows", "import tasks"))
    ]
    assert offenders == []
