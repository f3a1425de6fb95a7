"""The Prefect API a command talks to, and the temporary server a command starts when it has none.

Prefect's own ephemeral mode starts its server on first use, in whichever thread asks first,
imports the server's code into the command (~1.4 s), waits for it (~3 s) only once the flow is
about to run, and leaves it running when the command is killed. Here a command that needs an
API and has none starts one server from its first line, in the background, while it imports,
reads and compiles; at most one per command; the server watches a pipe from the command and
stops when that pipe closes, which the kernel does however the command ends (SIGKILL included).

Which API: `PREFECT_API_URL` (environment or Prefect profile: an empty value means none), else
the local server `stacflow server start` left running, else a temporary one. Plain module: it
imports Prefect only to drain its client before a temporary server stops.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacflow.flows.server_db import migration_env, remember_migrated
from stacflow.tasks.errors import UsageError

if TYPE_CHECKING:
    from prefect.settings.legacy import Setting

API_URL = "PREFECT_API_URL"
HEARTBEAT = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 5.0
DRAIN_TIMEOUT_S = 5.0
"""Per worker (logs, then events): a loopback server takes a command's backlog in well under a
second; a worker still trying after that is sending to a server that is gone, and at 30 s each a
command could sit a minute after its last line (seen as ~65 s tests in the full suite)."""
# What Prefect's ephemeral mode sets for its server: no UI, only the services a run needs.
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
WARM_IMPORTS = (
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "anyio._backends._asyncio",
    "fastapi.encoders",
    "pandas",
)
"""What a flow run imports on first use (~0.5 s): Prefect's engines, what it serialises
parameters with, and pandas, which pyarrow imports the first time it converts Python lists to
a table. A command waiting for its temporary server imports them meanwhile, not in the run."""


def prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def configured_api_url() -> str | None:
    """The API URL Prefect would use, read without importing Prefect (~1 s): the environment,
    then the active profile. None for ephemeral mode (unset, or set to empty on purpose).
    Once Prefect is imported (a caller in the same process), its current settings decide."""
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL  # noqa: PLC0415 - imported already

        return PREFECT_API_URL.value() or None
    if API_URL in os.environ:
        return os.environ[API_URL] or None
    profiles = prefect_home() / "profiles.toml"
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
        data = tomllib.loads(profiles.read_text())
        name = os.environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
        value = data.get("profiles", {}).get(name, {}).get(API_URL)
        return str(value) if value else None
    return None


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    probe = f"{api_url.rstrip('/')}/health"
    with (
        contextlib.suppress(OSError, urllib.error.URLError, ValueError),
        urllib.request.urlopen(probe, timeout=timeout) as answer,  # noqa: S310 - an API URL
    ):
        status: int = answer.status
        return status == 200
    return False


@dataclass
class TemporaryServer:
    """A Prefect API server owned by this command: it stops when `release()` or `stop()` runs,
    or we die."""

    url: str
    process: subprocess.Popen[bytes]
    lifeline: int
    log: Path
    migrates: bool = True

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        warm_imports()  # the run would import them anyway: now they cost nothing
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise UsageError(
                    f"the temporary Prefect server exited with {self.process.returncode} before "
                    f"it answered (its log: {self.log}):\n{tail}"
                )
            if healthy(self.url, timeout=1.0):
                if self.migrates:
                    remember_migrated(prefect_home())
                return
            time.sleep(0.05)
        raise UsageError(f"the temporary Prefect server did not answer within {timeout:.0f} s")

    def release(self) -> None:
        """Close the lifeline and go: the server stops itself, gracefully (it has everything:
        the client was drained), while the command exits. Waiting for that cost each command
        ~0.2 s; `_watch` kills a server that has not stopped within STOP_TIMEOUT_S."""
        with contextlib.suppress(OSError):
            os.close(self.lifeline)

    def stop(self) -> None:
        """Close the lifeline (the server stops itself, gracefully), then make sure."""
        with contextlib.suppress(OSError):
            os.close(self.lifeline)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def warm_imports() -> None:
    """Import `WARM_IMPORTS` now, while this command has nothing else to do."""
    for name in WARM_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def start_server(log: Path | None = None) -> TemporaryServer:
    """Start a server on a loopback port we hold already (no race for it), in its own session
    (a Ctrl-C at the terminal reaches the command, which stops it in order), watching a pipe."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    lifeline_r, lifeline_w = os.pipe()
    log = log or prefect_home() / "stacflow-temporary-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", __name__, "--fd", str(listener.fileno())]
    command += ["--lifeline", str(lifeline_r)]
    skip = migration_env(prefect_home())
    try:
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - our own module, by this interpreter
                command,
                pass_fds=(listener.fileno(), lifeline_r),
                env={**os.environ, **SERVER_ENV, **skip},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    finally:
        listener.close()
        os.close(lifeline_r)
    url = f"http://127.0.0.1:{port}/api"
    return TemporaryServer(url, process, lifeline_w, log, migrates=not skip)


@dataclass
class Api:
    """The API URL a command uses (None: none configured, none started) and, when the command
    started it, its temporary server."""

    url: str | None
    server: TemporaryServer | None = None

    def ready(self) -> None:
        """Block until a temporary server answers; a configured one is the user's to run."""
        if self.server is not None:
            self.server.wait_ready()


@contextmanager
def prefect_api(*, temporary: bool = True) -> Iterator[Api]:
    """The API this command uses; with `temporary`, a server of its own when it has none.

    Enter it first thing: the server starts while the command imports and reads its tables,
    and `Api.ready()` waits for it just before the first API call. Prefect reads
    PREFECT_API_URL when it is imported, so this sets it before that.
    """
    url = configured_api_url() or local_server_url()
    if url is not None or not temporary:
        if url is not None:
            os.environ[API_URL] = url
        yield Api(url)
        return
    server = start_server()
    previous = os.environ.get(API_URL)
    os.environ[API_URL] = server.url
    _refresh_prefect_settings()
    try:
        yield Api(server.url, server)
    finally:
        drain_prefect_client()
        server.release()
        if previous is None:
            os.environ.pop(API_URL, None)
        else:
            os.environ[API_URL] = previous
        _refresh_prefect_settings()


def _refresh_prefect_settings() -> None:
    """Prefect, when imported already, read the environment then: every thread must see ours."""
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context  # noqa: PLC0415

        refresh_global_settings_context()


@contextmanager
def run_settings(api: Api) -> Iterator[None]:
    """Prefect settings for a flow run started by a command: this API (also where Prefect was
    imported before the environment said so), and no heartbeats unless asked for: a command
    waits for its run, and the heartbeat thread cost up to a second at the end of each run."""
    from prefect.settings import (  # noqa: PLC0415 - Prefect is imported by then
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    updates: dict[Setting, Any] = {}
    if api.url is not None:
        updates[PREFECT_API_URL] = api.url
    if HEARTBEAT not in os.environ:
        updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
    api.ready()
    with temporary_settings(updates):
        yield


def local_server_url() -> str | None:
    from stacflow.flows.local_server import running_url  # noqa: PLC0415 - a small module

    return running_url()


def drain_prefect_client() -> None:
    """Send what Prefect's client still holds (events, logs) while the server is there to take
    it; at exit, against a stopped server, its workers would retry for a long time."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker  # noqa: PLC0415
    from prefect.logging.handlers import APILogWorker  # noqa: PLC0415

    with contextlib.suppress(RuntimeError):  # no log worker ever started
        APILogWorker.drain_all(timeout=DRAIN_TIMEOUT_S)
    EventsWorker.drain_all(timeout=DRAIN_TIMEOUT_S)


# --- the server process -------------------------------------------------------------------


def _watch(lifeline: int) -> None:
    """The command closed its end (it finished, or died): stop gracefully, or at all."""
    with contextlib.suppress(OSError):
        while os.read(lifeline, 1):
            pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(STOP_TIMEOUT_S)
    os._exit(1)


def serve(fd: int, lifeline: int | None) -> None:
    import uvicorn  # noqa: PLC0415 - only the server process needs it

    if lifeline is not None:
        threading.Thread(target=_watch, args=(lifeline,), daemon=True).start()
    config = uvicorn.Config(
        "prefect.server.api.server:create_app",
        factory=True,
        log_level="error",
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a Prefect API server on an inherited socket")
    parser.add_argument("--fd", type=int, required=True, help="a listening socket's descriptor")
    parser.add_argument("--lifeline", type=int, help="stop when this pipe closes")
    args = parser.parse_args(argv)
    serve(args.fd, args.lifeline)


if __name__ == "__main__":
    main()
