"""Outputs that cannot be written: one line (`ERROR: cannot write outputs to …: <cause>`), exit 1,
no traceback, and every earlier output left exactly as it was.

An outputs folder under a regular file can always be made; a full and a read-only one are small
tmpfs mounts in a user+mount namespace (tests/mounts.py), around two reruns of a good run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.tasks.errors import OutputsUnwritable
from stacflow.tasks.writable import writing_outputs
from tests.mounts import UNSHARE, namespace_problem
from tests.packages import ORIGIN, make_package

REPO = Path(__file__).resolve().parents[1]
ASSETS = {
    ("scene-1", "visual"): ("scenes/1/visual.tif", os.urandom(20_000)),
    ("scene-2", "visual"): ("scenes/2/visual.tif", os.urandom(25_000)),
}


def write_spec(folder: Path, package: Path, origin_url: str, outputs: Path) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: outputs
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{origin_url}/", allow_http: true}}
    compare: [size]
targets:
  local: {{store: {{type: file, root: "{folder / "assets"}"}}}}
outputs: {outputs}
"""
    )
    return spec


def test_outputs_under_a_file_is_one_line_and_exit_1(tmp_path, origin, prefect_harness, capsys):
    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    (tmp_path / "a-file").write_text("keep me")
    spec = write_spec(tmp_path, package, origin.url, tmp_path / "a-file" / "out")
    assert main(["run", str(spec)]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines()[-1] == (
        f"ERROR: cannot write outputs to {tmp_path / 'a-file' / 'out'}: "
        f"Not a directory: {tmp_path / 'a-file'} (a file, where a folder must be)"
    )
    assert "Traceback" not in out + err
    assert (tmp_path / "a-file").read_text() == "keep me"
    assert origin.count("GET") == 0  # refused before a byte moved


def test_a_flow_run_whose_outputs_cannot_be_written_fails_in_one_line(
    tmp_path, origin, prefect_harness
):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    (tmp_path / "a-file").write_text("keep me")
    spec = write_spec(tmp_path, package, origin.url, tmp_path / "a-file" / "out")
    state = relocate_package(spec_path=str(spec), return_state=True)
    assert state.is_failed()
    assert state.message.startswith(f"cannot write outputs to {tmp_path / 'a-file' / 'out'}")


def test_an_os_error_under_the_outputs_becomes_one_line_any_other_stays(tmp_path):
    outputs = tmp_path / "out"
    unwritable = pytest.raises(OutputsUnwritable, match=f"cannot write outputs to {outputs}: ")
    with unwritable, writing_outputs(outputs):
        (outputs / "report.parquet").open()
    with pytest.raises(FileNotFoundError), writing_outputs(outputs):
        (tmp_path / "elsewhere").open()


def test_full_and_read_only_outputs_leave_every_earlier_output_as_it_was(
    tmp_path, origin, prefect_harness
):
    if problem := namespace_problem():
        pytest.skip(f"full and read-only outputs need small tmpfs mounts: {problem}")
    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    outputs = tmp_path / "out"
    outputs.mkdir()
    spec = write_spec(tmp_path, package, origin.url, outputs)
    run = f"{sys.executable} -m stacflow.flows.cli run {spec}"
    script = f"""
mount -t tmpfs -o size=1m tmpfs {outputs} || exit 99
{run} > {tmp_path}/first.log 2>&1; echo $? > {tmp_path}/first.rc
(cd {outputs} && find . -type f | sort | xargs sha256sum) > {tmp_path}/before.txt
dd if=/dev/zero of={outputs}/.fill bs=4k 2>/dev/null
{run} > {tmp_path}/full.log 2>&1; echo $? > {tmp_path}/full.rc
rm -f {outputs}/.fill
mount -o remount,ro {outputs}
{run} > {tmp_path}/ro.log 2>&1; echo $? > {tmp_path}/ro.rc
(cd {outputs} && find . -type f | sort | xargs sha256sum) > {tmp_path}/after.txt
"""
    subprocess.run(
        [*UNSHARE, "sh", "-c", script],
        timeout=300,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert (tmp_path / "first.rc").read_text().strip() == "0", (tmp_path / "first.log").read_text()
    for name, cause in (("full", "No space left on device"), ("ro", "Read-only file system")):
        log = (tmp_path / f"{name}.log").read_text()
        assert (tmp_path / f"{name}.rc").read_text().strip() == "1", log
        assert "Traceback" not in log
        lines = [line for line in log.splitlines() if line.startswith("ERROR:")]
        assert lines == [f"ERROR: cannot write outputs to {outputs}: {cause}: {outputs}"]
    before = (tmp_path / "before.txt").read_text()
    assert "report.parquet" in before
    assert before == (tmp_path / "after.txt").read_text()
