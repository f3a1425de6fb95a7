"""The real Prefect engine for tests: an in-session API server, and a `prefect server start`.

Both start from a migrated, block-registered SQLite template cached per Prefect version, so a
session pays for migrations once per machine (~12 s) instead of on every run. Importing this
module imports Prefect (~1 s), so conftest only imports it inside the fixtures that need it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import prefect
import prefect.settings as ps
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import temporary_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

STARTUP_TIMEOUT = 120
DRAIN_TIMEOUT = 30


def template_db(cache_dir: Path) -> Path:
    """A migrated, block-registered database for this Prefect version, built on first use.

    Built under a file lock: xdist workers starting together wait for one build (~10 s of CPU)
    instead of each paying for its own."""
    template = cache_dir / f"prefect-{prefect.__version__}.db"
    if template.exists():
        return template
    with (cache_dir / "template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            _build_template(template, cache_dir)
    return template


def _build_template(template: Path, cache_dir: Path) -> None:
    building = cache_dir / f"building-{os.getpid()}.db"
    url = f"sqlite+aiosqlite:///{building}"
    # A throwaway home, or block registration leaves its memo in the developer's ~/.prefect.
    with (
        tempfile.TemporaryDirectory() as home,
        temporary_settings(
            {ps.PREFECT_HOME: Path(home), ps.PREFECT_SERVER_DATABASE_CONNECTION_URL: url}
        ),
    ):
        # A port of its own: SubprocessASGIServer is a singleton per port, and port=None is the
        # session harness's instance, which stop() would kill under the running tests.
        server = SubprocessASGIServer(port=_free_port())
        server.start(timeout=STARTUP_TIMEOUT)
        server.stop()
    # The server leaves the schema in the WAL; fold it in, or a copied file is an empty DB.
    con = sqlite3.connect(building)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")
    finally:
        con.close()
    building.replace(template)  # atomic, so a parallel session never reads half a file


@contextmanager
def harness(cache_dir: Path, home: Path) -> Iterator[str]:
    """Run an API server on a copy of the template with PREFECT_API_URL set; yield that URL.

    Heartbeats are off: each sync flow would otherwise wait up to 1 s for its heartbeat thread.
    """
    home.mkdir(parents=True, exist_ok=True)
    db = home / "prefect.db"
    shutil.copyfile(template_db(cache_dir), db)
    with temporary_settings(
        {
            ps.PREFECT_HOME: home,
            ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            ps.PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{db}",
            ps.PREFECT_API_BLOCKS_REGISTER_ON_START: False,
        }
    ):
        server = SubprocessASGIServer(port=None)
        server.start(timeout=STARTUP_TIMEOUT)
        try:
            with temporary_settings({ps.PREFECT_API_URL: server.api_url}):
                yield server.api_url
                drain_workers()
        finally:
            server.stop()


def drain_workers() -> None:
    """Flush queued logs and events, and stop every client-side service, while the server is up.

    Without it, teardown can hang for ~70 s while the workers retry against a dead server. The
    services hold a client bound to the API URL they started with: a test that switches to
    another server must stop them first, or its next tagged task run waits forever for a
    concurrency slot from the old one.
    """
    from prefect.concurrency.services import (  # noqa: PLC0415
        ConcurrencySlotAcquisitionWithLeaseService,
    )
    from prefect.events.worker import EventsWorker  # noqa: PLC0415
    from prefect.logging.handlers import APILogWorker  # noqa: PLC0415

    with contextlib.suppress(RuntimeError):  # no log worker was ever started
        APILogWorker.drain_all(timeout=DRAIN_TIMEOUT)
    EventsWorker.drain_all(timeout=DRAIN_TIMEOUT)
    ConcurrencySlotAcquisitionWithLeaseService.drain_all(timeout=DRAIN_TIMEOUT)


@contextmanager
def prefect_server(cache_dir: Path, home: Path) -> Iterator[str]:
    """Run `prefect server start` on a free loopback port with its own home; yield its API URL.

    The process gets its own session, so teardown can stop the server and anything it spawned.
    """
    home.mkdir(parents=True, exist_ok=True)
    db = home / "prefect.db"
    shutil.copyfile(template_db(cache_dir), db)
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}",
        "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
        "PREFECT_UI_ENABLED": "false",
        # A run held back by its deployment's concurrency limit is rescheduled this long after
        # (default 30 s): the queued-second-run test would sit idle for most of it.
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    log = home / "server.log"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=home,  # a developer's .env or prefect.toml in the repo must not apply
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(api_url, process, log)
        yield api_url
    finally:
        _stop(process)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(api_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"prefect server exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"prefect server not healthy after {STARTUP_TIMEOUT} s; see {log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left of it (a stuck child included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
