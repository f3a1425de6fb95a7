"""One process-wide stop request that the byte path obeys between chunks and on blocked reads.

A signal handler (flows/interrupt.py) only sets it. Copy threads see it between two chunks, before
each asset and each retry; a read blocked on a stalled origin is woken by shutting its socket
down (every HTTP connection of a store is tracked here while it is open), so an interrupted run
stops within seconds instead of waiting out a 60 s read timeout per asset. The writers abort as
for any failure: temp files removed, multipart uploads aborted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref

from stacflow.tasks.errors import StacflowError

INTERRUPTED_MESSAGE = "interrupted before it was copied; rerun to resume"


class Interrupted(StacflowError):
    """The run was asked to stop (Ctrl-C, SIGTERM, a cancel from the UI).

    Raised inside the byte path; a run that stopped ends with its report and this error, which
    the CLI maps to exit code 130 and a flow run to the Cancelled state.
    """

    exit_code = 130

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)

    def __reduce__(self) -> tuple[type[Interrupted], tuple[str]]:
        return (type(self), (str(self),))


class StopRequest:
    """Set once per process by a signal; copy threads poll it, blocked sockets are shut down."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.Lock()
        self.reason = ""

    def request(self, reason: str) -> None:
        """Ask every copy to stop; safe to call from a signal handler (no lock is waited on
        that a copy thread could hold for long)."""
        self.reason = self.reason or reason
        self._event.set()
        for sock in self._tracked():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked on a stalled peer

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `Interrupted` once a stop was requested."""
        if self._event.is_set():
            raise Interrupted(f"interrupted by {self.reason or 'a stop request'}; rerun to resume")

    def sleep(self, seconds: float) -> None:
        """A retry's backoff that a stop request cuts short."""
        self._event.wait(seconds)

    def track(self, sock: socket.socket) -> None:
        """Shut `sock` down when a stop is requested (at once if it was already)."""
        with self._lock:
            self._sockets.add(sock)
        if self._event.is_set():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _tracked(self) -> list[socket.socket]:
        while True:  # a copy thread may add one while we look: look again
            with contextlib.suppress(RuntimeError):
                return list(self._sockets)

    def __reduce__(self) -> str:
        """Pickled by name: a function shipped to a Dask worker by value finds that process's
        own request there (a lock cannot travel, and a copy would never be set)."""
        return "STOP"

    def reset(self) -> None:
        """Forget a stop request: a long-lived process (a worker, the test session) runs the
        next flow afresh."""
        self._event.clear()
        self.reason = ""


STOP = StopRequest()
