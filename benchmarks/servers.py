"""The loopback servers of the tests, each run in its own process for the benchmarks (no GIL
shared with the engine, and their CPU seconds counted apart).

- `origin`: tests/servers/origin.py (`python -m tests.servers.origin`) with nginx-style ETags,
  its request counters on (`GET /__stats`, `POST /__reset`), and optionally a remote-like
  network (latency before each response, a per-connection bandwidth cap).
- `moto`: `python -m moto.server` (S3 in RAM; reset between runs with tests/servers/s3.py).
- `prefect`: `prefect server start` with its own PREFECT_HOME.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.servers import s3

if TYPE_CHECKING:
    from collections.abc import Iterator


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every live process of a process group."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """A server subprocess in its own session; `stop()` ends it and whatever it spawned."""

    def __init__(self, name: str, command: list[str], url: str, log: Path, **kw: Any) -> None:
        self.name, self.url, self.log = name, url, log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw
            )

    def wait_ready(self, probe: str, timeout: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(probe, timeout=2) as response:
                    response.read()
                    return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout} s; see {self.log}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextmanager
def origin(
    root: Path,
    last_modified: str,
    logs: Path,
    *,
    latency_ms: float = 0.0,
    rate_mbps: float | None = None,
) -> Iterator[Service]:
    """The tests' origin on `root`; `latency_ms`/`rate_mbps` make it behave like a remote one."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tests.servers.origin", str(root), "--port", str(port)]
    command += ["--last-modified", last_modified, "--etag", "nginx", "--control", "--quiet"]
    if latency_ms:
        command += ["--latency-ms", str(latency_ms)]
    if rate_mbps:
        command += ["--rate-mbps", str(rate_mbps)]
    name = "origin" if not (latency_ms or rate_mbps) else "remote-like origin"
    service = Service(name, command, url, logs / f"{name.replace(' ', '-')}.log", cwd=_repo())
    try:
        service.wait_ready(f"{url}/__stats")
        yield service
    finally:
        service.stop()


def origin_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/__stats", timeout=10) as response:
        return json.loads(response.read())


def origin_reset(url: str) -> None:
    request = urllib.request.Request(f"{url}/__reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@contextmanager
def moto(logs: Path) -> Iterator[Service]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    service = Service("moto", command, url, logs / "moto.log")
    try:
        service.wait_ready(f"{url}/moto-api/")
        yield service
    finally:
        service.stop()


def moto_reset(url: str, bucket: str) -> None:
    """Drop everything moto holds (it keeps objects in RAM), then recreate the bucket."""
    s3.reset(url)
    s3.create_bucket(url, bucket)


@contextmanager
def prefect_server(home: Path, env: dict[str, str]) -> Iterator[Service]:
    """`prefect server start` on loopback with its own home (fresh SQLite DB, no UI)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_env = {
        **env,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    service = Service("prefect server", command, api, home / "server.log", env=server_env, cwd=home)
    try:
        service.started_in = service.wait_ready(f"{api}/health", timeout=180)
        yield service
    finally:
        service.stop()


def _repo() -> Path:
    return Path(__file__).resolve().parents[1]
