"""Ctrl-C and SIGTERM stop a `stacflow run` in seconds, in order, and a rerun resumes it.

Each run copies three assets, one of which the loopback origin stalls for ten minutes after its
first megabyte: without an orderly stop the command would hang on it. The signal goes to the
command alone (its own session, as a terminal's Ctrl-C reaches the foreground command).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacflow.flows.interrupt import AT_ONCE
from stacflow.tasks.headline import headline
from stacflow.tasks.owners import OWNER_FILE
from stacflow.tasks.report import Outcome, read_report
from stacflow.tasks.state import read_records
from stacflow.tasks.summary import Summary
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package
from tests.servers.origin import Origin
from tests.servers.s3 import client as s3_client
from tests.servers.s3 import list_multipart_uploads
from tests.test_api_server import _servers_under, _wait_gone, home  # noqa: F401 - a fixture

STALLED = "scenes/1/visual.tif"
ASSETS = {
    ("scene-1", "visual"): (STALLED, os.urandom(3 * 1024 * 1024)),
    ("scene-1", "thumbnail"): ("scenes/1/thumb.png", os.urandom(30_000)),
    ("scene-2", "visual"): ("scenes/2/visual.tif", os.urandom(70_000)),
}
EXPECTED_TREE = {
    "scene-1/visual.tif": ASSETS["scene-1", "visual"][1],
    "scene-1/thumbnail.png": ASSETS["scene-1", "thumbnail"][1],
    "scene-2/visual.tif": ASSETS["scene-2", "visual"][1],
}
STOPPED_WITHIN_S = 30  # generous: the stalled origin would hold the run for 600 s
ONE_LINE = "interrupted: 2 copied, 1 left; rerun to resume"


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Origin]:
    """An origin of this test's own: closing it ends its ten-minute stalls, which would
    otherwise count as requests in flight in the session's origin for later tests."""
    with Origin(tmp_path / "origin-root") as own:
        yield own


@pytest.fixture
def package(tmp_path: Path, origin) -> Path:
    origin.last_modified = LAST_MODIFIED_HTTP
    return make_package(tmp_path / "pkg", origin.root, ASSETS, checksums=True)


def _spec(folder: Path, package: Path, origin_url: str, target: str | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    target = target or f"{{type: file, root: {folder / 'assets'}}}"
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: interrupt-test
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  local:
    store: {target}
relocate: {{max_workers: 2, chunk_size: 256KiB}}
validate: {{locks: [https, local], checksums: [local]}}
outputs: {folder / "out"}
"""
    )
    return spec


def _stacflow(
    spec: Path, env: dict[str, str] | None = None, command: str = "run"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "stacflow.flows.cli", command, str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={
            **os.environ,
            **(env or {}),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        },
    )


def _wait_until_copying(command: subprocess.Popen[bytes], folder: Path) -> None:
    """Until the stalled asset's temp file holds its first bytes and the two small assets are
    journaled: the run is in its byte phase with exactly one copy left (a wait on the journal,
    not a sleep, so a loaded machine cannot make the stop come before they land)."""
    deadline = time.monotonic() + 120
    while not (_stalled_copy_started(folder) and len(_journaled(folder)) == 2):
        assert command.poll() is None, command.communicate()
        assert time.monotonic() < deadline, "the stalled asset never started to land"
        time.sleep(0.05)


def _stalled_copy_started(folder: Path) -> bool:
    return any(p.stat().st_size for p in (folder / "assets").rglob(".visual.tif.stacflow-tmp-*"))


def _journaled(folder: Path) -> dict:
    return read_records(folder / "out" / ".stacflow" / "local.records.jsonl")


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != OWNER_FILE
    }


def _debris(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".stacflow-tmp-" in p.name]


def _resumes(folder: Path, package: Path, origin, env: dict[str, str] | None = None) -> None:
    """A rerun copies only what the stop left, and the tree is what an uninterrupted run makes."""
    origin.clear()
    rerun = _stacflow(_spec(folder, package, origin.url), env)
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, (out + err).decode()
    copied = [o for o in read_report(folder / "out" / "report.parquet") if o.outcome == "copied"]
    assert [(o.item_id, o.asset_key) for o in copied] == [("scene-1", "visual")]
    assert _tree(folder / "assets") == EXPECTED_TREE
    assert _debris(folder / "assets") == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_stops_a_stalled_run_in_order_and_a_rerun_resumes_it(
    tmp_path, origin, package, prefect_harness, signum
):
    origin.stall(f"/{STALLED}", 600, after_bytes=1024 * 1024)
    folder = tmp_path / "run"
    command = _stacflow(_spec(folder, package, origin.url))
    try:
        _wait_until_copying(command, folder)
        command.send_signal(signum)
        signalled = time.monotonic()
        out, err = command.communicate(timeout=STOPPED_WITHIN_S)
        stopped_s = time.monotonic() - signalled
    finally:
        command.kill()
    text = (out + err).decode()
    assert command.returncode == 130, text
    assert stopped_s < STOPPED_WITHIN_S
    assert out.decode().strip() == ONE_LINE
    assert "Traceback" not in text, text
    assert "Crash" not in text, text
    assert _debris(folder / "assets") == [], "the copy in flight left its temp file"
    assert not (folder / "assets" / "scene-1" / "visual.tif").exists()
    # The journal names exactly the two copies that landed, and the report says what was left.
    journaled = read_records(folder / "out" / ".stacflow" / "local.records.jsonl")
    assert sorted(journaled) == [("scene-1", "thumbnail"), ("scene-2", "visual")]
    left = [o for o in read_report(folder / "out" / "report.parquet") if o.error_class]
    assert [(o.item_id, o.asset_key, o.error_class) for o in left] == [
        ("scene-1", "visual", "interrupted")
    ]
    _resumes(folder, package, origin)


def test_a_second_ctrl_c_exits_at_once_and_takes_the_temporary_server_with_it(
    tmp_path,
    origin,
    package,
    home,  # noqa: F811 - the fixture imported above
):
    """No API configured: the command runs its own temporary Prefect server, which must go too."""
    env = {"PREFECT_API_URL": "", "PREFECT_HOME": str(home)}
    env["PREFECT_API_BLOCKS_REGISTER_ON_START"] = "false"
    origin.stall(f"/{STALLED}", 600, after_bytes=1024 * 1024)
    folder = tmp_path / "run"
    command = _stacflow(_spec(folder, package, origin.url), env)
    try:
        _wait_until_copying(command, folder)
        servers = _servers_under(command.pid)
        assert len(servers) == 1, servers
        command.send_signal(signal.SIGINT)
        time.sleep(0.05)  # two signals at the same instant would arrive as one
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=STOPPED_WITHIN_S)
    finally:
        command.kill()
    text = (out + err).decode()
    assert command.returncode == 130, text
    assert AT_ONCE in err.decode()
    assert "Traceback" not in text, text
    assert _wait_gone(servers, STOPPED_WITHIN_S) == set(), "the temporary server outlived it"
    _resumes(folder, package, origin, env)


def test_a_stopped_copy_into_s3_aborts_its_open_multipart_upload(
    tmp_path, origin, prefect_harness, moto_endpoint, s3_bucket
):
    """Two 5 MiB parts are sent before the origin stalls: the stop must abort that upload."""
    origin.last_modified = LAST_MODIFIED_HTTP
    large = {("scene-1", "visual"): (STALLED, os.urandom(14 * 1024 * 1024))}
    package = make_package(tmp_path / "pkg", origin.root, large, checksums=True)
    origin.stall(f"/{STALLED}", 600, after_bytes=11 * 1024 * 1024)
    bucket = (
        f"{{type: s3, bucket: {s3_bucket}, prefix: copies, endpoint: '{moto_endpoint}', "
        "allow_http: true}"
    )
    command = _stacflow(_spec(tmp_path / "run", package, origin.url, bucket))
    try:
        deadline = time.monotonic() + 120
        while not list_multipart_uploads(moto_endpoint, s3_bucket):
            assert command.poll() is None, command.communicate()
            assert time.monotonic() < deadline, "no multipart upload was ever opened"
            time.sleep(0.1)
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=STOPPED_WITHIN_S)
    finally:
        command.kill()
    assert command.returncode == 130, (out + err).decode()
    assert out.decode().strip() == "interrupted: 0 copied, 1 left; rerun to resume"
    assert list_multipart_uploads(moto_endpoint, s3_bucket) == []
    listed = s3_client(moto_endpoint).list_objects_v2(Bucket=s3_bucket, Prefix="copies/")
    assert [o["Key"] for o in listed.get("Contents", [])] == ["copies/.stacflow-owner"]


def test_a_validation_stopped_on_a_stalled_head_says_so_without_a_traceback(
    tmp_path, origin, package, prefect_harness
):
    """`stacflow check` reads no bytes but waits on HEADs: a stop wakes those too."""
    stalled = "/scenes/2/visual.tif"
    origin.stall(stalled, 600, method="HEAD")
    command = _stacflow(_spec(tmp_path / "run", package, origin.url), command="check")
    try:
        deadline = time.monotonic() + 120
        while not any(r.method == "HEAD" and r.path == stalled for r in origin.requests):
            assert command.poll() is None, command.communicate()
            assert time.monotonic() < deadline, "the validation never asked the origin"
            time.sleep(0.05)
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=STOPPED_WITHIN_S)
    finally:
        command.kill()
    text = (out + err).decode()
    assert command.returncode == 130, text
    assert out.decode().strip() == "interrupted by SIGINT; rerun to resume"
    assert "Traceback" not in text, text


def test_the_summary_of_a_stopped_run_says_interrupted_not_failed():
    outcomes = (
        Outcome("scene-2", "visual", "local", "relocate", "copied", bytes=70_000),
        Outcome("scene-1", "visual", "local", "relocate", "failed", error_class="interrupted"),
    )
    summary = Summary(name="interrupt-test", outcomes=outcomes, elapsed_s=1.0)
    assert "interrupt-test: INTERRUPTED (1 copy left; rerun to resume)" in summary.markdown()
    assert "FAILED" not in summary.text()
    assert headline(summary) == "INTERRUPTED: 1 of 2 assets left; rerun to resume"
