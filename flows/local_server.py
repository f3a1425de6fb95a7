"""`stacflow server start|stop|status`: one local Prefect server that outlives single commands.

Each `stacflow run` without a configured API starts a temporary server (~3 s, overlapped with
its own work). Whoever runs many small jobs can keep one running instead: `stacflow server
start` leaves it in the background (with the UI), records where in `$PREFECT_HOME`, and every
later `stacflow` command without PREFECT_API_URL uses it, until `stacflow server stop`. Nothing
starts it implicitly: a fresh clone still needs no server, and the default leaves no process.
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
from pathlib import Path
from typing import TypedDict

from stacflow.flows.api_server import STARTUP_TIMEOUT_S, healthy, prefect_home
from stacflow.tasks.errors import UsageError

DEFAULT_PORT = 4200
STOP_TIMEOUT_S = 15.0
_MODULE = "stacflow.flows.api_server"


def state_file() -> Path:
    return prefect_home() / "stacflow-server.json"


def running_url() -> str | None:
    """The API URL of the local server when it is ours, alive and answering; else None."""
    state = _state()
    if state is None or not _ours(state["pid"]):
        return None
    return state["url"] if healthy(state["url"], timeout=1.0) else None


def start(port: int | None = None) -> str:
    """Start the local server (or find it running); its API URL."""
    url = running_url()
    if url is not None:
        return url
    listener = _listen(port)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    log = prefect_home() / "stacflow-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_UI_API_URL": url, "PREFECT_API_URL": url}
    try:
        with log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - our own module, by this interpreter
                [sys.executable, "-m", _MODULE, "--fd", str(listener.fileno())],
                pass_fds=(listener.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not ended by the terminal that started it
            )
    finally:
        listener.close()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not healthy(url, timeout=1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            _end(process.pid)
            tail = log.read_text(errors="replace")[-1500:]
            raise UsageError(f"the local Prefect server did not start (log: {log}):\n{tail}")
        time.sleep(0.1)
    state_file().write_text(json.dumps({"pid": process.pid, "url": url, "log": str(log)}))
    return url


def stop() -> bool:
    """Stop the local server; False when none was running."""
    state = _state()
    state_file().unlink(missing_ok=True)
    if state is None or not _ours(state["pid"]):
        return False
    _end(state["pid"])
    return True


def status() -> str | None:
    """A line about the running local server, or None."""
    url = running_url()
    if url is None:
        return None
    state: _ServerState | dict[str, object] = _state() or {}
    ui = url.removesuffix("/api")
    return f"running at {url} (UI {ui}, pid {state.get('pid')}, log {state.get('log')})"


def _listen(port: int | None) -> socket.socket:
    listener = socket.socket()
    for candidate in [port] if port is not None else [DEFAULT_PORT, 0]:
        try:
            listener.bind(("127.0.0.1", candidate))
            break
        except OSError:
            if port is not None:
                listener.close()
                raise UsageError(f"port {port} is in use on 127.0.0.1; pick another") from None
    listener.listen(128)
    return listener


class _ServerState(TypedDict):
    pid: int
    url: str
    log: str | None


def _state() -> _ServerState | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(state_file().read_text())
        return {"pid": int(data["pid"]), "url": str(data["url"]), "log": data.get("log")}
    return None


def _ours(pid: int) -> bool:
    """That PID is still our server (PIDs are reused): its command line names our module."""
    try:
        return _MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _end(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
