"""A loopback HTTP origin that answers like a public S3 bucket or nginx, with faults on demand.

Stdlib only, so it also runs on its own for demos: `python -m tests.servers.origin ROOT --port N`.
It gives obstore's HTTPStore what it needs (Content-Length, ETag, single Range, If-Match) and can
break each of those on purpose, per path and for a number of requests, to reproduce what real
origins do to a long copy. It can also behave like a remote origin (`latency` before each
response's headers, `rate` bytes/s per TCP connection), and, run as its own process for the
benchmarks, answer `GET /__stats` (request counts) and `POST /__reset` (forget the log).
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import fnmatch
import hashlib
import json
import mimetypes
import os
import re
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, NamedTuple, Self
from urllib.parse import quote, unquote, urlsplit

from . import FAST_RETRY

if TYPE_CHECKING:
    from types import TracebackType

_ACTIONS = {"status", "reset", "truncate", "stall"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CHUNK = 1 << 20
_PACE = 64 << 10  # bytes per paced sendfile: fine enough to hold a per-connection rate
_STATS, _RESET = "/__stats", "/__reset"


class Request(NamedTuple):
    """One request as the origin saw it.

    `status` is None while no response has been sent: the connection was dropped, or the
    request is still stalled before its headers.
    """

    method: str
    path: str
    range: str | None
    status: int | None


@dataclass
class _Entry:
    """A log row, recorded on arrival so stalled requests are counted too."""

    method: str
    path: str
    range: str | None
    status: int | None = None
    target: str = ""
    sent: int = 0
    at: float = 0.0
    """Arrival, on the monotonic clock."""
    generation: int = 0
    """Which `clear()` it arrived after: a request a previous test left stalled is not counted
    as in flight for the next one."""


@dataclass
class _Fault:
    pattern: str
    kind: str
    method: str | None
    remaining: int | None
    status: int = 503
    retry_after: int | None = None
    after_bytes: int | None = None
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        # A HEAD has no body to cut or to stall in, so body faults wait for the GET.
        if method == "HEAD" and (self.kind == "truncate" or self.after_bytes is not None):
            return False
        return path == self.pattern or fnmatch.fnmatchcase(path, self.pattern)


@dataclass
class _Plan:
    """The faults that apply to one request: at most one action plus any header modifiers."""

    action: _Fault | None = None
    no_etag: bool = False
    no_range: bool = False
    no_length: bool = False


class Origin:
    """Serves files under `root` on 127.0.0.1 in a background thread until `close()`.

    `last_modified` fixes the Last-Modified of every object (else the file's mtime).
    `etag_style` is "md5" (S3's single-part ETag, hashed once per file version) or "nginx"
    (`"mtime-size"`, free to compute, for benchmarks on GiB-sized files).
    `latency` (seconds before each response's headers) and `rate` (body bytes per second on
    each TCP connection) make loopback behave like an origin across a real network, where
    one stream is capped and parallel streams add up.
    `control` serves the request counters at `/__stats` and clears them on `POST /__reset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        last_modified: str | None = None,
        etag_style: Literal["md5", "nginx"] = "md5",
        port: int = 0,
        verbose: bool = False,
        latency: float = 0.0,
        rate: float | None = None,
        control: bool = False,
    ) -> None:
        self.root = Path(root)
        self.last_modified = last_modified
        self.etag_style = etag_style
        self.latency = latency
        self.rate = rate
        self.control = control
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._log: list[_Entry] = []
        self._in_flight = 0
        self._peak_in_flight = 0
        self._generation = 0
        self._etags: dict[tuple[str, int, int, int], str] = {}
        self._signed: dict[str, str] = {}
        self._closing = threading.Event()
        self._stalls_end = threading.Event()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.origin = self
        self._server.verbose = verbose
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def root(self) -> Path:
        return self._root

    @root.setter
    def root(self, value: str | os.PathLike[str]) -> None:
        self._root = Path(value).resolve()

    def href(self, key: str) -> str:
        """The URL of `key` (a path under root), as an item's asset href would name it."""
        return f"{self.url}/{quote(key.lstrip('/'))}"

    def write(self, key: str, data: bytes) -> Path:
        """Put (or swap) the bytes served at `key` under the current root.

        The swap is atomic, so a response already under way keeps the old bytes (as S3 does).
        Two writes within one kernel clock tick can share an mtime, so the new mtime is bumped
        past the old one: the ETag cache and Last-Modified always see the change.
        """
        target = self.root / key.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        before = target.stat().st_mtime_ns if target.exists() else 0
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(data)
        staged = Path(tmp.name)
        if staged.stat().st_mtime_ns <= before:
            os.utime(staged, ns=(before + 1000, before + 1000))
        staged.replace(target)
        return target

    # --- faults -------------------------------------------------------------------------

    def fail(
        self,
        path: str,
        status: int = 503,
        *,
        times: int | None = None,
        retry_after: int | None = None,
        method: str | None = None,
    ) -> None:
        """Answer `status` (with `Retry-After` when given) instead of the object."""
        self._add(path, "status", times, method, status=status, retry_after=retry_after)

    def reset_connection(
        self, path: str, *, times: int | None = None, method: str | None = None
    ) -> None:
        """Drop the connection (TCP RST) without sending a byte of response."""
        self._add(path, "reset", times, method)

    def truncate(
        self, path: str, after_bytes: int, *, times: int | None = None, method: str | None = None
    ) -> None:
        """Promise the full Content-Length, send `after_bytes` of body, then close."""
        self._add(path, "truncate", times, method, after_bytes=after_bytes)

    def stall(
        self,
        path: str,
        seconds: float,
        *,
        after_bytes: int | None = None,
        times: int | None = None,
        method: str | None = None,
    ) -> None:
        """Sleep before the headers, or after `after_bytes` of body, then carry on normally."""
        self._add(path, "stall", times, method, seconds=seconds, after_bytes=after_bytes)

    def end_stalls(self) -> None:
        """End the stalls in progress now, each request carrying on normally: a test holds a
        request until what it waits for has happened, instead of guessing a stall's length."""
        ending, self._stalls_end = self._stalls_end, threading.Event()
        ending.set()

    def no_etag(self, path: str, *, times: int | None = None, method: str | None = None) -> None:
        """Omit ETag (like `python -m http.server`), which stops obstore's body resume."""
        self._add(path, "no_etag", times, method)

    def no_range(self, path: str, *, times: int | None = None, method: str | None = None) -> None:
        """Ignore Range and answer 200 with the whole object."""
        self._add(path, "no_range", times, method)

    def no_length(self, path: str, *, times: int | None = None, method: str | None = None) -> None:
        """Send the body chunked, without Content-Length (obstore's HTTPStore refuses this)."""
        self._add(path, "no_length", times, method)

    def sign(self, path: str, query: str) -> None:
        """Serve `path` only to requests whose query string is exactly `query` (a signed URL's
        signature), and answer 403 to any other, as S3 does to an unsigned or expired one."""
        with self._lock:
            self._signed[path if path.startswith("/") else f"/{path}"] = query

    def clear(self) -> None:
        """Forget every fault, signature and the request log."""
        with self._lock:
            self._faults.clear()
            self._signed.clear()
            self._log.clear()
            self._generation += 1
            self._in_flight = self._peak_in_flight = 0

    # --- request log --------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return [Request(e.method, e.path, e.range, e.status) for e in self._log]

    @property
    def targets(self) -> list[str]:
        """Each request's target exactly as sent: percent-encoding and query string included."""
        with self._lock:
            return [e.target for e in self._log]

    def stats(self) -> dict[str, int]:
        """Requests per method and body bytes sent, for the benchmarks' `/__stats`."""
        with self._lock:
            counts = {"GET": 0, "HEAD": 0, "bytes": 0}
            for entry in self._log:
                counts[entry.method] = counts.get(entry.method, 0) + 1
                counts["bytes"] += entry.sent
        return counts

    def times(self, method: str | None = None, path: str | None = None) -> list[float]:
        """When each matching request arrived (monotonic seconds), in order."""
        path = path if path is None or path.startswith("/") else f"/{path}"
        with self._lock:
            return [
                e.at
                for e in self._log
                if (method is None or e.method == method)
                and (path is None or e.path == path or fnmatch.fnmatchcase(e.path, path))
            ]

    @property
    def peak_in_flight(self) -> int:
        """The most requests the origin was answering at the same moment since `clear()`."""
        with self._lock:
            return self._peak_in_flight

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests matched `method` and `path` (exact or glob)."""
        path = path if path is None or path.startswith("/") else f"/{path}"
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and (path is None or r.path == path or fnmatch.fnmatchcase(r.path, path))
        )

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        self._closing.set()
        self._stalls_end.set()
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

    # --- used by the handler ------------------------------------------------------------

    def _add(
        self, path: str, kind: str, times: int | None, method: str | None, **params: Any
    ) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for every request)")
        pattern = path if path.startswith("/") else f"/{path}"
        fault = _Fault(pattern, kind, method and method.upper(), times, **params)
        with self._lock:
            self._faults.append(fault)

    def _take(self, entry: _Entry) -> _Plan:
        """Log one request, pick its faults and use up one of each of their counts."""
        method, path = entry.method, entry.path
        plan = _Plan()
        with self._lock:
            self._log.append(entry)
            entry.generation = self._generation
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            for fault in list(self._faults):
                if not fault.matches(method, path):
                    continue
                if fault.kind in _ACTIONS:
                    if plan.action is not None:
                        continue
                    plan.action = fault
                else:
                    setattr(plan, fault.kind, True)
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
        return plan

    def _left(self, entry: _Entry) -> None:
        with self._lock:
            if entry.generation == self._generation:
                self._in_flight -= 1

    def _etag(self, path: Path, f: BinaryIO, st: os.stat_result) -> str:
        if self.etag_style == "nginx":
            return nginx_etag(st)
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            cached = self._etags.get(key)
        if cached is None:
            f.seek(0)
            cached = f'"{hashlib.file_digest(f, "md5").hexdigest()}"'
            with self._lock:
                self._etags[key] = cached
        return cached

    def _resolve(self, path: str) -> Path | None:
        """The file behind a decoded URL path, or None when it is missing or outside root."""
        try:
            target = (self.root / path.lstrip("/")).resolve()
            if target.is_relative_to(self.root) and target.is_file():
                return target
        except (OSError, ValueError):
            pass
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stalled handler must not hold up close()
    request_queue_size = 128  # the default 5 drops SYNs under parallel benchmark clients
    origin: Origin
    verbose: bool


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as obstore's connection pool expects
    disable_nagle_algorithm = True  # else a small body waits ~40 ms behind its headers
    timeout = 60  # idle keep-alive connections hold a thread each; let them go eventually
    server: _Server
    _entry: _Entry

    def do_GET(self) -> None:
        if self.server.origin.control and self.path == _STATS:
            self._send_json(json.dumps(self.server.origin.stats()).encode())
            return
        self._serve(send_body=True)

    def do_POST(self) -> None:
        if self.server.origin.control and self.path == _RESET:
            with self.server.origin._lock:
                self.server.origin._log.clear()
            self._send_json(b"{}")
            return
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    def _send_json(self, body: bytes) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def _serve(self, *, send_body: bool) -> None:
        origin = self.server.origin
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        self._entry = _Entry(
            self.command, path, self.headers.get("Range"), target=self.path, at=time.monotonic()
        )
        plan = origin._take(self._entry)
        action = plan.action
        try:
            if action and action.kind == "stall" and action.after_bytes is None:
                origin._stalls_end.wait(action.seconds)
            if origin.latency:
                origin._closing.wait(origin.latency)
            if origin._signed.get(path, parts.query) != parts.query:
                self._send_status(HTTPStatus.FORBIDDEN, send_body=send_body)
            elif action and action.kind == "reset":
                self._reset()
            elif action and action.kind == "status":
                extra = {"Retry-After": str(action.retry_after)} if action.retry_after else {}
                self._send_status(action.status, send_body=send_body, headers=extra)
            else:
                self._serve_file(path, plan, send_body=send_body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            origin._left(self._entry)

    def _serve_file(self, path: str, plan: _Plan, *, send_body: bool) -> None:
        origin = self.server.origin
        target = origin._resolve(path)
        if target is None:
            self._send_status(HTTPStatus.NOT_FOUND, send_body=send_body)
            return
        with target.open("rb") as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            etag = None if plan.no_etag else origin._etag(target, f, st)
            status, start, length = self._precondition(etag, size, ignore_range=plan.no_range)
            if status in (HTTPStatus.PRECONDITION_FAILED, HTTPStatus.NOT_MODIFIED):
                self._send_status(status, send_body=send_body, headers={"ETag": etag or ""})
                return
            if status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
                headers = {"Content-Range": f"bytes */{size}"}
                self._send_status(status, send_body=send_body, headers=headers)
                return
            self._start(status)
            if plan.no_length:
                if send_body:
                    self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(length))
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
            if etag:
                self.send_header("ETag", etag)
            modified = origin.last_modified or email.utils.formatdate(st.st_mtime, usegmt=True)
            self.send_header("Last-Modified", modified)
            self.send_header("Accept-Ranges", "bytes")
            kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_header("Content-Type", kind)
            self.end_headers()
            if send_body:
                self._send_body(f, start, length, plan)

    def _precondition(
        self, etag: str | None, size: int, *, ignore_range: bool
    ) -> tuple[int, int, int]:
        """(status, start, length) after If-Match, If-None-Match and Range, as S3 orders them."""
        if etag is not None:
            if_match = self.headers.get("If-Match")
            if if_match and not _etag_in(etag, if_match):
                return HTTPStatus.PRECONDITION_FAILED, 0, 0
            if_none_match = self.headers.get("If-None-Match")
            if if_none_match and _etag_in(etag, if_none_match):
                return HTTPStatus.NOT_MODIFIED, 0, 0
        header = self.headers.get("Range")
        if ignore_range or not header:
            return HTTPStatus.OK, 0, size
        span = _parse_range(header, size)
        if span is None:
            return HTTPStatus.OK, 0, size
        if span == ():
            return HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, 0, 0
        start, end = span
        return HTTPStatus.PARTIAL_CONTENT, start, end - start + 1

    def _send_body(self, f: BinaryIO, start: int, length: int, plan: _Plan) -> None:
        action = plan.action
        if plan.no_length:
            self._send_chunked(f, start, length)
        elif action and action.kind == "truncate":
            self.connection.sendfile(f, start, min(action.after_bytes or 0, length))
            self.close_connection = True
        elif action and action.kind == "stall" and action.after_bytes is not None:
            head = min(action.after_bytes, length)
            self.connection.sendfile(f, start, head)
            self.server.origin._stalls_end.wait(action.seconds)
            self.connection.sendfile(f, start + head, length - head)
        elif length:
            self._sendfile(f, start, length)

    def _sendfile(self, f: BinaryIO, start: int, length: int) -> None:
        """Send the span, paced to the origin's per-connection `rate` when it has one."""
        rate = self.server.origin.rate
        if not rate:
            self._entry.sent += self.connection.sendfile(f, start, length)
            return
        began, done = time.monotonic(), 0
        while done < length:
            done += self.connection.sendfile(f, start + done, min(_PACE, length - done))
            self._entry.sent = done
            ahead = began + done / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def _send_chunked(self, f: BinaryIO, start: int, length: int) -> None:
        f.seek(start)
        while length > 0:
            chunk = f.read(min(_CHUNK, length))
            if not chunk:
                break
            length -= len(chunk)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _send_status(
        self, status: int, *, send_body: bool, headers: dict[str, str] | None = None
    ) -> None:
        body = b"" if status == HTTPStatus.NOT_MODIFIED else f"{int(status)}\n".encode()
        self._start(status)
        for name, value in (headers or {}).items():
            if value:
                self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _start(self, status: int) -> None:
        """Log the status before the first byte goes out, so a caller with an answer sees it."""
        self._entry.status = int(status)
        self.send_response(status)

    def _reset(self) -> None:
        """Close with SO_LINGER 0, so the client sees a reset rather than a clean end of stream."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


def nginx_etag(st: os.stat_result) -> str:
    """nginx's shape (mtime-size): free to compute, stable while the file is unchanged."""
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def _etag_in(etag: str, header: str) -> bool:
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or etag in candidates


def _parse_range(header: str, size: int) -> tuple[int, int] | tuple[()] | None:
    """Inclusive (start, end); () when unsatisfiable; None when the header should be ignored.

    Like S3, a multi-range or malformed header is ignored and the whole object is sent.
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return ()
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size:
        return ()
    if end < start:
        return None
    return start, end


def http_store(url: str, **client_options: Any) -> Any:
    """An obstore HTTPStore on `url`, configured as the product's tests want it (fast retries)."""
    from obstore.store import HTTPStore  # noqa: PLC0415 - the origin itself stays stdlib-only

    return HTTPStore(
        url, client_options={"allow_http": True, **client_options}, retry_config=FAST_RETRY
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="directory to serve")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--etag", choices=["md5", "nginx"], default="md5")
    parser.add_argument(
        "--last-modified", help='fixed Last-Modified, e.g. "Mon, 12 Sep 2022 09:43:21 GMT"'
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="wait before each response")
    parser.add_argument("--rate-mbps", type=float, help="cap each connection at this many MB/s")
    parser.add_argument("--control", action="store_true", help="serve /__stats and /__reset")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    with Origin(
        args.root,
        last_modified=args.last_modified,
        etag_style=args.etag,
        port=args.port,
        verbose=not args.quiet,
        latency=args.latency_ms / 1000,
        rate=args.rate_mbps * 1e6 if args.rate_mbps else None,
        control=args.control,
    ) as origin:
        print(origin.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
