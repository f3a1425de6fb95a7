"""Commands that run nothing never import Prefect (~1 s): plan, check of a bad spec, schema, help.

Each runs in a fresh interpreter, which reports its exit code and whether `prefect` was imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys
from stacflow.flows.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
print(json.dumps({"code": code, "prefect": "prefect" in sys.modules}))
"""


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("out"))
    return tmp_path / "specs" / "demo.yaml"


def _probe(*args: str) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": ""},
        timeout=60,
        check=False,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "code"), [(["--help"], 0), (["schema"], 0), (["run", "--help"], 0)]
)
def test_help_and_schema_import_no_prefect(args, code):
    result, output = _probe(*args)
    assert result == {"code": code, "prefect": False}, output


def test_plan_imports_no_prefect(demo):
    result, output = _probe("plan", str(demo))
    assert result == {"code": 0, "prefect": False}, output
    assert "plan for demo-drone-survey" in output


def test_check_of_a_bad_spec_imports_no_prefect(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\npackage: nowhere\ntargets: {}\noutputs: out\n")
    result, output = _probe("check", str(spec))
    assert result == {"code": 2, "prefect": False}, output
    assert output.count("ERROR: ") == 1
    assert str(spec) in output


def test_check_of_a_lock_file_and_export_import_no_prefect(tmp_path, monkeypatch):
    from stacflow.tasks.locks import LockRow, write_lock  # noqa: PLC0415

    monkeypatch.setenv("STACFLOW_OUT", str(tmp_path / "out"))  # no run wrote any items there
    (tmp_path / "a.tif").write_bytes(b"abc")
    lock = tmp_path / "lock.parquet"
    write_lock(lock, [LockRow("i", "a", "file", None, None, str(tmp_path / "a.tif"), 3)])
    result, output = _probe("check", "--lock", str(lock))
    assert result == {"code": 0, "prefect": False}, output
    result, output = _probe("export", str(REPO / "specs" / "openaerialmap-austria.yaml"))
    assert result == {"code": 2, "prefect": False}, output


def test_plan_reads_its_tables_without_pandas(demo):
    """`pq.read_table` goes through pyarrow.dataset, which imports pandas: ~0.25 s of a `plan`,
    which reads a lock and an items table (each one file, read whole) and writes none."""
    slow = '"slow": sorted({"pandas", "pyarrow.dataset"} & set(sys.modules))'
    probe = PROBE.replace('"prefect": "prefect" in sys.modules', slow)
    done = subprocess.run(
        [sys.executable, "-c", probe, "plan", str(demo)],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": ""},
        timeout=60,
        check=False,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "slow": []}, done.stdout + done.stderr
