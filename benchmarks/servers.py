"""Loopback servers for the benchmarks, each in its own process (no GIL shared with the engine).

- `origin`: a stdlib HTTP/1.1 origin like tests/servers/origin.py (keep-alive, sendfile, HEAD,
  single Range, If-Match, fixed Last-Modified, nginx-style ETag), plus request counters:
  `GET /__stats` answers `{"GET": n, "HEAD": n, "bytes": n}`, `POST /__reset` zeroes them.
  Run it as `python -m benchmarks.servers ROOT --port N --last-modified "..."`.
- `moto`: `python -m moto.server` (S3 in RAM; reset between runs).
- `prefect`: `prefect server start` with its own PREFECT_HOME.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def origin_etag(stat: os.stat_result) -> str:
    """nginx's shape (mtime-size): free to compute, stable while the file is unchanged."""
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


class _Origin(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # parallel clients must not see SYNs dropped

    def __init__(self, address: tuple[str, int], root: Path, last_modified: str) -> None:
        super().__init__(address, _Handler)
        self.root = root.resolve()
        self.last_modified = last_modified
        self.lock = threading.Lock()
        self.stats = {"GET": 0, "HEAD": 0, "bytes": 0}

    def count(self, method: str, sent: int = 0) -> None:
        with self.lock:
            self.stats[method] = self.stats.get(method, 0) + 1
            self.stats["bytes"] += sent


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120
    server: _Origin

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        if self.path == "/__reset":
            with self.server.lock:
                self.server.stats = {"GET": 0, "HEAD": 0, "bytes": 0}
            self._plain(HTTPStatus.OK, b"{}")
        else:
            self._plain(HTTPStatus.METHOD_NOT_ALLOWED, b"")

    def do_GET(self) -> None:
        if self.path == "/__stats":
            with self.server.lock:
                body = json.dumps(self.server.stats).encode()
            self._plain(HTTPStatus.OK, body)
            return
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self, *, body: bool) -> None:
        method = "GET" if body else "HEAD"
        path = unquote(urlsplit(self.path).path).lstrip("/")
        target = self.server.root / path
        try:
            handle = target.open("rb")
        except OSError:
            self.server.count(method)
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with handle:
            stat = os.fstat(handle.fileno())
            etag = origin_etag(stat)
            size = stat.st_size
            status, start, length = HTTPStatus.OK, 0, size
            if_match = self.headers.get("If-Match")
            if if_match and etag not in [c.strip() for c in if_match.split(",")]:
                self.server.count(method)
                self.send_error(HTTPStatus.PRECONDITION_FAILED)
                return
            wanted = _RANGE.fullmatch((self.headers.get("Range") or "").strip())
            if wanted and wanted.group(1):
                first = int(wanted.group(1))
                last = min(int(wanted.group(2) or size - 1), size - 1)
                if first < size and last >= first:
                    status, start, length = HTTPStatus.PARTIAL_CONTENT, first, last - first + 1
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", self.server.last_modified)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            sent = 0
            if body and length:
                try:
                    sent = self.connection.sendfile(handle, start, length)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
            self.server.count(method, sent)


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
def origin(root: Path, last_modified: str, logs: Path) -> Iterator[Service]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "benchmarks.servers", str(root), "--port", str(port)]
    command += ["--last-modified", last_modified]
    service = Service("origin", command, url, logs / "origin.log", cwd=_repo())
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
    for method, path in (("POST", "/moto-api/reset"), ("PUT", f"/{bucket}")):
        request = urllib.request.Request(f"{url}{path}", method=method, data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="benchmark origin with request counters")
    parser.add_argument("root", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--last-modified", default="Tue, 02 Jan 2024 03:04:05 GMT")
    args = parser.parse_args(argv)
    server = _Origin(("127.0.0.1", args.port), args.root, args.last_modified)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
