"""One Prefect server per command, never left running; and the local server that outlives them.

Each test runs the installed command in a subprocess with no API configured (a fresh clone's
default) and a Prefect home of its own holding a migrated database, and watches the command's
children by PID and parent PID (never by name: other sessions run Prefect servers too).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package

SERVER_MODULE = b"stacflow.flows.api_server"


@pytest.fixture
def home(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A PREFECT_HOME with the session's migrated template DB (a fresh one migrates for ~10 s)."""
    from tests.conftest import _prefect_cache  # noqa: PLC0415
    from tests.servers.prefect_harness import template_db  # noqa: PLC0415 - imports Prefect

    home = tmp_path / "prefect-home"
    home.mkdir()
    cache = _prefect_cache(request, request.getfixturevalue("tmp_path_factory"))
    shutil.copyfile(template_db(cache), home / "prefect.db")
    return home


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_API_URL": "",
        "PREFECT_HOME": str(home),
        "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }


def _stacflow(args: list[str], home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "stacflow.flows.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(home),
    )


def _servers_under(pid: int) -> set[int]:
    """PIDs of our server module among the children of `pid`."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid and SERVER_MODULE in (stat.parent / "cmdline").read_bytes():
                found.add(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return {p for p in pids if _alive(p)}


def _spec(folder: Path, package: Path, origin_url: str, store: str) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: api-test
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  there:
    store: {store}
outputs: {folder / "out"}
"""
    )
    return spec


@pytest.fixture
def package(tmp_path: Path, origin) -> Path:
    origin.last_modified = LAST_MODIFIED_HTTP
    assets = {(f"scene-{i}", "visual"): (f"s/{i}.tif", os.urandom(1000)) for i in range(8)}
    return make_package(tmp_path / "pkg", origin.root, assets, checksums=True)


def test_a_sigkilled_run_leaves_no_server_running(tmp_path, home, origin, package):
    origin.stall("/s/0.tif", 30, after_bytes=500)  # the run stays in its byte phase
    spec = _spec(tmp_path, package, origin.url, f"{{type: file, root: {tmp_path / 'copies'}}}")
    command = _stacflow(["run", str(spec)], home)
    try:
        deadline = time.monotonic() + 60
        while not any("stacflow-tmp" in p.name for p in (tmp_path / "copies").rglob("*")):
            assert command.poll() is None, command.communicate()
            assert time.monotonic() < deadline, "the run never reached its byte phase"
            time.sleep(0.05)
        servers = _servers_under(command.pid)
        assert len(servers) == 1, servers
        command.send_signal(signal.SIGKILL)
        command.wait(10)
        assert _wait_gone(servers, 10) == set(), "the temporary server outlived its command"
    finally:
        command.kill()
        command.communicate()


def test_plan_naming_a_secret_block_starts_one_server_and_stops_it(tmp_path, home, package):
    store = (
        '{type: s3, bucket: bkt, endpoint: "http://127.0.0.1:9", allow_http: true, '
        "credentials: {prefect_secret: no-such-block}}"
    )
    spec = _spec(tmp_path, package, "http://127.0.0.1:9", store)
    command = _stacflow(["plan", str(spec)], home)
    seen: set[int] = set()
    while command.poll() is None:
        seen |= _servers_under(command.pid)
        time.sleep(0.02)
    out, err = command.communicate()
    assert command.returncode == 2, (out, err)
    lines = err.decode().strip().splitlines()
    expected = "ERROR: credentials.prefect_secret: no Secret block named 'no-such-block'"
    assert lines == [expected], lines
    assert len(seen) == 1, f"{len(seen)} servers started for one command"
    assert _wait_gone(seen, 10) == set()


def test_a_plan_without_secret_blocks_starts_no_server(tmp_path, home, origin, package):
    spec = _spec(tmp_path, package, origin.url, f"{{type: file, root: {tmp_path / 'copies'}}}")
    command = _stacflow(["plan", str(spec)], home)
    seen: set[int] = set()
    while command.poll() is None:
        seen |= _servers_under(command.pid)
        time.sleep(0.02)
    out, _ = command.communicate()
    assert command.returncode == 0
    assert "8 (7.8 KiB)" in out.decode()
    assert seen == set()


def test_local_server_serves_later_commands_until_stopped(tmp_path, home, origin, package):
    env = _env(home)

    def stacflow(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stacflow.flows.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert stacflow("server", "status").returncode == 1
    started = stacflow("server", "start", "--port", str(_free_port()))
    assert started.returncode == 0, started.stderr
    url = started.stdout.split(" at ", 1)[1].split()[0]
    try:
        assert url in stacflow("server", "status").stdout
        spec = _spec(tmp_path, package, origin.url, f"{{type: file, root: {tmp_path / 'c'}}}")
        run = subprocess.Popen(
            [sys.executable, "-m", "stacflow.flows.cli", "run", str(spec)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: set[int] = set()
        while run.poll() is None:
            seen |= _servers_under(run.pid)
            time.sleep(0.02)
        out, err = run.communicate()
        assert run.returncode == 0, out + err
        assert "8 copied" in out
        assert seen == set(), "a command started its own server beside the local one"
        runs = _post(f"{url}/flow_runs/filter")
        assert [r["state_type"] for r in runs] == ["COMPLETED"]
    finally:
        stopped = stacflow("server", "stop")
    assert stopped.returncode == 0
    assert stopped.stdout.strip() == "stopped"
    assert stacflow("server", "status").returncode == 1


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str) -> list[dict]:
    import json  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())
