"""A loopback proxy in front of another server (moto S3): it counts, times and breaks requests.

moto answers every request it gets; to see how often a client asks for a failing object, and
how many requests it has in flight at once, the tests point the S3 endpoint here instead. Each
request is forwarded as it came (method, path, query, headers, body) and its answer sent back,
unless a fault says to answer a status (with `Retry-After` when given) or to wait first.
"""

from __future__ import annotations

import fnmatch
import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from types import TracebackType

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}
_S3_ERROR = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code></Error>"


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it: arrival time (monotonic) and the status sent."""

    method: str
    path: str
    at: float
    status: int


@dataclass
class _Fault:
    pattern: str
    method: str | None
    status: int | None
    delay: float
    retry_after: int | None
    remaining: int | None = None

    def matches(self, method: str, path: str) -> bool:
        same_method = self.method is None or self.method == method
        return same_method and (path == self.pattern or fnmatch.fnmatchcase(path, self.pattern))


@dataclass
class _State:
    seen: list[Seen] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0


class Proxy:
    """Forwards 127.0.0.1:<port> to `upstream` (`http://host:port`) until `close()`."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.proxy = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def fail(
        self,
        path: str,
        status: int = 503,
        *,
        method: str | None = None,
        times: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer `status` to requests for `path` (exact or glob; `/bucket/key`)."""
        self._add(_Fault(path, method, status, 0.0, retry_after, times))

    def delay(self, path: str, seconds: float, *, method: str | None = None) -> None:
        """Hold requests for `path` for `seconds` before forwarding them (to see concurrency)."""
        self._add(_Fault(path, method, None, seconds, None))

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return len(self.seen(method, path))

    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self._state.seen
                if (method is None or s.method == method)
                and (path is None or s.path == path or fnmatch.fnmatchcase(s.path, path))
            ]

    @property
    def peak_in_flight(self) -> int:
        """The most requests this proxy was answering at the same moment."""
        with self._lock:
            return self._state.peak

    def clear(self) -> None:
        with self._lock:
            self._state = _State()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._state.faults.append(fault)

    def _arrive(self, method: str, path: str) -> tuple[float, int | None, int | None]:
        """(delay, status, retry_after) for this request; counts it in flight."""
        delay, status, retry_after = 0.0, None, None
        with self._lock:
            state = self._state
            state.in_flight += 1
            state.peak = max(state.peak, state.in_flight)
            for fault in list(state.faults):
                if not fault.matches(method, path):
                    continue
                if fault.status is None:
                    delay = max(delay, fault.delay)
                elif status is None:
                    status, retry_after = fault.status, fault.retry_after
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            state.faults.remove(fault)
        return delay, status, retry_after

    def _leave(self, seen: Seen) -> None:
        with self._lock:
            self._state.in_flight -= 1
            self._state.seen.append(seen)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: the tests read the proxy's own log."""

    def do_GET(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def do_PUT(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def do_DELETE(self) -> None:
        self._relay()

    def _relay(self) -> None:
        proxy: Proxy = self.server.proxy
        arrived = time.monotonic()
        path = unquote(urlsplit(self.path).path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        delay, status, retry_after = proxy._arrive(self.command, path)
        sent = 502
        try:
            if delay:
                time.sleep(delay)
            if status is not None:
                headers = {"Content-Type": "application/xml"}
                if retry_after is not None:
                    headers["Retry-After"] = str(retry_after)
                sent = status
                self._answer(status, headers, _S3_ERROR)
            else:
                sent = self._forward(body)
        finally:
            proxy._leave(Seen(self.command, path, arrived, sent))

    def _forward(self, body: bytes) -> int:
        host, port = self.server.proxy.upstream
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in {"PUT", "POST"}:
                headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            length = response.getheader("Content-Length")
            self._answer(response.status, kept, data, length=length)
            return response.status
        finally:
            upstream.close()

    def _answer(
        self, status: int, headers: dict[str, str], body: bytes, *, length: str | None = None
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header(
            "Content-Length", length if self.command == "HEAD" and length else str(len(body))
        )
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
