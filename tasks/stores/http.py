"""HTTP(S) origins, read with the standard library's http.client.

obstore's HTTPStore hides response headers, so it cannot honour `Retry-After`, and it resumes a cut
body only in some cases; here every header is ours: facts come from the response that carried the
bytes, a cut body resumes with `Range` + `If-Match` (so a changed object is never stitched), and
each worker thread keeps its own keep-alive connection per host.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from email.utils import parsedate_to_datetime
from typing import NoReturn
from urllib.parse import quote, urljoin, urlsplit

from stacflow.tasks.buffers import read_buffer
from stacflow.tasks.errors import AssetError, ErrorClass, Reach, redact
from stacflow.tasks.stores.base import (
    Backend,
    Capabilities,
    Endpoint,
    Facts,
    StoreRef,
    Writer,
    iso,
    status_error,
)

REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 5
MAX_RESUMES = 3
PCHAR_SAFE = "/!$&'()*+,;=:@~"
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


class HttpStore:
    """A read-only origin: `container` is `scheme://host[:port]`, `root` an optional path prefix."""

    def __init__(self, ref: StoreRef) -> None:
        self.ref = ref
        parts = urlsplit(ref.container or "")
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise AssetError(
                ErrorClass.PERMANENT, f"not an http(s) origin: {redact(ref.container or '')!r}"
            )
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._fixed_target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._root = ref.root.strip("/")
        self._local = threading.local()
        self._check_scheme(parts.scheme, parts.netloc)

    def describe(self, path: str) -> str:
        return redact(self._origin + self._target(path))

    def head(self, path: str) -> Facts:
        response, connection = self._request("HEAD", path, {})
        with _closing(response, connection):
            refused = response.status in {405, 501}
            if response.status >= 300 and not refused:
                raise self._refusal(response, path)
            facts = _facts(response)
        # The refusal is read to its end first: an unread response blocks the connection.
        return self._facts_by_get(path) if refused else facts

    @contextmanager
    def open(self, path: str) -> Iterator[_HttpReader]:
        response, connection = self._request("GET", path, {})
        if response.status >= 300:
            with _closing(response, connection):
                raise self._refusal(response, path)
        reader = _HttpReader(self, path, response, connection)
        try:
            yield reader
        finally:
            reader.release()

    def writer(self, path: str) -> AbstractContextManager[Writer]:
        raise AssetError(ErrorClass.PERMANENT, f"http origins are read-only: {self.describe(path)}")

    def sweep(self, paths: Iterable[str]) -> int:  # noqa: ARG002 - nothing is staged on an origin
        return 0

    def flush(self) -> None:
        """Nothing is ever written to an origin."""

    def _facts_by_get(self, path: str) -> Facts:
        """Origins that refuse HEAD still answer a one-byte ranged GET with the same headers."""
        response, connection = self._request("GET", path, {"Range": "bytes=0-0"})
        with _closing(response, connection):
            if response.status >= 300:
                raise self._refusal(response, path)
            return _facts(response)

    def _refusal(self, response: http.client.HTTPResponse, path: str) -> AssetError:
        """The error for a refused request; a signed URL refused access has most likely
        expired, and the message says what to do about it."""
        what = self.describe(path)
        if response.status in {401, 403} and "?" in self._fixed_target:
            what += " (a signed URL: its signature may have expired; sign the Items again, "
            what += "derive their lock again, and rerun)"
        return status_error(response.status, what, _retry_after(response))

    def _target(self, path: str) -> str:
        if self._fixed_target and not path and not self._root:
            return self._fixed_target
        joined = "/".join(
            part for part in (self._fixed_target.strip("/"), self._root, path) if part
        )
        return "/" + as_sent(joined)

    def _request(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        origin, target = self._origin, self._target(path)
        for _ in range(MAX_REDIRECTS + 1):
            response, connection = self._send(origin, method, target, headers)
            location = response.getheader("Location")
            if response.status not in REDIRECTS or not location:
                return response, connection
            response.read()
            parts = urlsplit(urljoin(origin + target, location))  # Location may be relative
            self._check_scheme(parts.scheme, parts.netloc)
            origin = f"{parts.scheme}://{parts.netloc}"
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        raise AssetError(ErrorClass.PERMANENT, f"too many redirects: {self.describe(path)}")

    def _send(
        self, origin: str, method: str, target: str, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        headers = {"User-Agent": "stacflow", **headers}
        connection = self._connection(origin)
        if connection.sock is None:
            _connect(connection, origin)
        for attempt in (1, 2):
            reused = connection.stacflow_reused
            try:
                connection.request(method, target, headers=headers)
                response = connection.getresponse()
            except _NETWORK_ERRORS as exc:
                connection.close()
                if reused and attempt == 1 and not isinstance(exc, TimeoutError):
                    # A kept-alive connection the server had closed while idle: reconnect once.
                    # No answer came, so this is no retry; retries are tasks/retry.py's.
                    continue
                _raise_network(exc, redact(origin + target))
            connection.stacflow_reused = True
            return response, connection
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self, origin: str) -> _Connection:
        pool: dict[str, _Connection] = self._local.__dict__.setdefault("pool", {})
        if origin not in pool:
            parts = urlsplit(origin)
            assert parts.hostname is not None, "an origin is built from a URL with a host"
            access = self.ref.access
            timeout = access.connect_timeout.total_seconds()
            if parts.scheme == "https":
                context = ssl.create_default_context()
                connection: _Connection = _TlsConnection(
                    parts.hostname, parts.port, timeout=timeout, context=context
                )
            else:
                connection = _Connection(parts.hostname, parts.port, timeout=timeout)
            connection.read_timeout = access.read_timeout.total_seconds()
            pool[origin] = connection
        return pool[origin]

    def _check_scheme(self, scheme: str, netloc: str) -> None:
        if scheme == "http" and not self.ref.access.allow_http:
            raise AssetError(
                ErrorClass.PERMANENT,
                f"plain http:// to {netloc} is refused: set allow_http: true on this store",
            )
        if scheme not in {"http", "https"}:
            raise AssetError(ErrorClass.PERMANENT, f"redirect to unsupported scheme {scheme!r}")


def as_sent(path: str) -> str:
    """A key as the lock holds it, on the request line: its percent-encoding kept exactly as
    written (stacpkg's keys are the href's path), only what a request line cannot carry
    encoded (spaces, non-ASCII, a `%` that starts no escape, `?` and `#`)."""
    return quote(_LONE_PERCENT.sub("%25", path), safe=PCHAR_SAFE + "%")


class _Connection(http.client.HTTPConnection):
    """Reads time out apart from the connect (a stall detector), and a closed one reconnects."""

    read_timeout = 60.0
    stacflow_reused = False

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self.read_timeout)

    def close(self) -> None:
        super().close()
        self.stacflow_reused = False


class _TlsConnection(_Connection, http.client.HTTPSConnection):
    pass


class _HttpReader:
    """One GET's body in chunks, resumed with Range + If-Match when the connection drops."""

    def __init__(
        self,
        store: HttpStore,
        path: str,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
    ) -> None:
        self.store, self.path = store, path
        self.response, self.connection = response, connection
        self.facts = _facts(response)
        self._complete = False

    def chunks(self) -> Iterator[memoryview]:
        """Yield views into one reused buffer: consume each chunk before asking for the next."""
        expected = self.facts.size
        with read_buffer(self.store.ref.chunk_size, expected) as buffer:
            yield from self._read_into(buffer, expected)
        self._complete = True

    def _read_into(self, buffer: memoryview, expected: int | None) -> Iterator[memoryview]:
        size = len(buffer)
        received, resumes = 0, 0
        deadline = time.monotonic() + self.store.ref.access.timeout.total_seconds()
        while expected is None or received < expected:
            want = size if expected is None else min(size, expected - received)
            try:
                count = self.response.readinto(buffer[:want])
            except TimeoutError:
                count, cause = -1, "stalled"
            except _NETWORK_ERRORS as exc:
                count, cause = -1, f"connection error ({exc.__class__.__name__})"
            else:
                cause = "cut off"
            if count == 0 and expected is None:
                break
            if count <= 0:
                if resumes >= MAX_RESUMES or not self._resume(received):
                    self._fail(f"body {cause} after {received} of {expected} bytes")
                resumes += 1
                continue
            if time.monotonic() > deadline:
                self._fail(f"timed out after {self.store.ref.access.timeout} (whole request)")
            received += count
            yield buffer[:count]

    def release(self) -> None:
        if self._complete:
            self.response.read()  # an empty read lets http.client reuse the connection
        else:
            self.response.close()
            self.connection.close()  # unread body bytes must never reach the next request

    def _resume(self, offset: int) -> bool:
        etag, ranges = self.facts.etag, self.response.getheader("Accept-Ranges", "")
        if not etag or "bytes" not in ranges.lower():
            return False
        self.response.close()
        self.connection.close()
        headers = {"Range": f"bytes={offset}-", "If-Match": etag}
        try:
            response, connection = self.store._request("GET", self.path, headers)  # noqa: SLF001
        except AssetError:
            return False
        if response.status == 412:
            response.read()
            raise status_error(412, self.store.describe(self.path))
        content_range = response.getheader("Content-Range", "")
        if response.status != 206 or not content_range.startswith(f"bytes {offset}-"):
            response.close()
            connection.close()  # its unread body must never reach the next request
            return False
        self.response, self.connection = response, connection
        return True

    def _fail(self, problem: str) -> NoReturn:
        self.response.close()
        self.connection.close()
        raise AssetError(ErrorClass.TRANSIENT, f"{problem}: {self.store.describe(self.path)}")


@contextmanager
def _closing(
    response: http.client.HTTPResponse, connection: http.client.HTTPConnection
) -> Iterator[None]:
    try:
        yield
    finally:
        try:
            response.read()
        except _NETWORK_ERRORS:
            connection.close()


def _facts(response: http.client.HTTPResponse) -> Facts:
    content_range = response.getheader("Content-Range") or ""
    if "/" in content_range:
        size = _count(content_range.rsplit("/", 1)[1])
    else:
        size = _count(response.getheader("Content-Length") or "")
    modified = response.getheader("Last-Modified")
    last_modified = None
    if modified:
        try:
            last_modified = iso(parsedate_to_datetime(modified))
        except (TypeError, ValueError):
            last_modified = None
    return Facts(size=size, etag=response.getheader("ETag"), last_modified=last_modified)


def _count(value: str) -> int | None:
    """A byte count from a header; None for `*` or anything unparsable, as for no header."""
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _retry_after(response: http.client.HTTPResponse) -> float | None:
    value = response.getheader("Retry-After")
    if not value:
        return None
    if (seconds := _count(value)) is not None:
        return float(seconds)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _connect(connection: _Connection, origin: str) -> None:
    """Open the connection on its own, so a store that does not answer at all (refused, no such
    host, connect timeout) is told apart from one that fails mid-request: only the former
    counts toward declaring the store down."""
    try:
        connection.connect()
    except ssl.SSLCertVerificationError as exc:
        connection.close()
        raise AssetError(
            ErrorClass.PERMANENT, f"TLS certificate rejected by {redact(origin)}: {exc}"
        ) from None
    except ssl.SSLError:
        connection.close()
        raise  # a handshake cut off: retried like any failure mid-request
    except OSError as exc:
        connection.close()
        raise AssetError(
            ErrorClass.TRANSIENT, unreachable_cause(exc, origin), reach=Reach.CONNECTION
        ) from None


def unreachable_cause(exc: OSError, origin: str) -> str:
    """Why a connection could not be opened, in the words a user searches for."""
    host = urlsplit(origin).hostname or origin
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed for {host} ({exc.strerror}): {redact(origin)}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: {redact(origin)}"
    if isinstance(exc, TimeoutError):
        return f"connect timed out: {redact(origin)}"
    return f"cannot connect ({exc.strerror or exc.__class__.__name__}): {redact(origin)}"


def _raise_network(exc: BaseException, where: str) -> NoReturn:
    if isinstance(exc, ssl.SSLCertVerificationError):
        raise AssetError(ErrorClass.PERMANENT, f"TLS certificate rejected by {where}: {exc}")
    kind = "timed out" if isinstance(exc, TimeoutError) else f"{exc.__class__.__name__}"
    raise AssetError(ErrorClass.TRANSIENT, f"connection error ({kind}) talking to {where}")


BACKEND = Backend(
    name="http",
    store_types=("https", "http"),
    capabilities=Capabilities(writable=False, endpoint=Endpoint.MIRROR),
    build=HttpStore,
)
