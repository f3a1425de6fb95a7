"""Buckets and containers through obstore (S3, GCS, Azure), with its errors classified once, here.

obstore raises the builtin FileNotFoundError for 404s and a plain GenericError for nearly every
transient failure, told apart only by its message; `_classify` is the only place that reads them.
Each backend module (`s3.py`, `gcs.py`, `azure.py`) builds its client with the options below and
declares its own settings; what they share (the byte path, the classification, the settings'
checks) lives here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import (
    BaseError,
    GenericError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from pydantic import AfterValidator

from stacflow.tasks.access import Access
from stacflow.tasks.buffers import MAX_READ
from stacflow.tasks.errors import AssetError, ErrorClass, Reach, redact
from stacflow.tasks.stores.base import Chunk, Facts, StoreRef, iso

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ClientConfig, RetryConfig

MIN_PART_SIZE = 5 * 1024 * 1024
PART_CONCURRENCY = 2
BUFFERS_PER_ASSET = 5
"""Chunk-sized buffers of one asset copied into a bucket: the read buffer and the multipart
writer's parts (at least `MIN_PART_SIZE`, `PART_CONCURRENCY` in flight)."""
MAX_KEY_BYTES = 1024
_TRANSIENT = re.compile(
    r"non-2xx status code: (5\d\d|429)|error sending request|request or response body error|"
    r"timed out|connection (reset|closed)|operation timed out",
    re.IGNORECASE,
)
_STATUS = re.compile(r"status(?: code)?:? (\d{3})")
_NOT_SENT = "error sending request"


class _NotSent(AssetError):
    """A request obstore could not send, with no cause said (its writer drops it): the store
    may not answer at all, or a connection was cut; `_write_error` finds out which. Told apart
    by its class, where it was classified, so no later step reads its message."""


class ObjectStore:
    """One bucket or container under a key prefix; a backend's subclass builds `client`."""

    scheme = ""
    """The scheme of its hrefs (`s3`, `gs`, `az`)."""

    def __init__(self, ref: StoreRef, client: Any) -> None:
        self.ref = ref
        self.store = client

    def describe(self, path: str) -> str:
        key = "/".join(p for p in (self.ref.root.strip("/"), path) if p)
        return redact(f"{self.scheme}://{self.ref.container}/{key}")

    def head(self, path: str) -> Facts:
        try:
            meta = obstore.head(self.store, path)
        except Exception as exc:  # noqa: BLE001 - every obstore failure is classified here
            raise _classify(exc, self.describe(path)) from None
        return _facts(meta)

    def listing(self) -> Iterator[tuple[str, Facts]]:
        """Every object under the store's root with its facts: one request per 1,000 objects,
        where a rerun would otherwise HEAD each of its keys."""
        try:
            for page in obstore.list(self.store, chunk_size=1000):
                for meta in page:
                    yield meta["path"], _listed_facts(meta)
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, self.describe("")) from None

    @contextmanager
    def open(self, path: str) -> Iterator[_ObjectReader]:
        try:
            result = obstore.get(self.store, path)
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, self.describe(path)) from None
        yield _ObjectReader(result, self.ref.chunk_size, self.describe(path))

    @contextmanager
    def writer(self, path: str) -> Iterator[_ObjectWriter]:
        part = max(self.ref.chunk_size, MIN_PART_SIZE)
        where = self.describe(path)
        try:
            with obstore.open_writer(
                self.store, path, buffer_size=part, max_concurrency=PART_CONCURRENCY
            ) as handle:
                yield _ObjectWriter(handle, where, self._write_error)
        except AssetError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._write_error(exc, where) from None

    def sweep(self, paths: Iterable[str]) -> int:  # noqa: ARG002 - S3 overrides it
        """Nothing a client can see: only S3 lists the multipart uploads a killed run left."""
        return 0

    def flush(self) -> None:
        """An object is durable once its PUT (or multipart completion) is answered."""

    def endpoint_url(self) -> str | None:
        """The service's URL, where the spec names it (a backend knows its default)."""
        return self.ref.access.endpoint

    def _write_error(self, exc: BaseException, where: str) -> AssetError:
        """obstore's writer drops the cause of "error sending request": a store that does not
        answer at all is told from one that cut a request off by opening a connection to it."""
        error = _classify(exc, where)
        if isinstance(error, _NotSent):
            endpoint = self.endpoint_url()
            cause = unreachable(endpoint, self.ref.access.connect_timeout.total_seconds())
            if endpoint is not None and cause is not None:
                return AssetError(ErrorClass.TRANSIENT, f"{cause}: {where}", reach=Reach.CONNECTION)
        return error


class _ObjectReader:
    def __init__(self, result: Any, chunk_size: int, where: str) -> None:
        self._result = result
        self._chunk_size = chunk_size
        self._where = where
        self.facts = _facts(result.meta)

    def chunks(self) -> Iterator[Any]:
        try:
            yield from self._result.stream(min_chunk_size=min(self._chunk_size, MAX_READ))
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc, self._where) from None


class _ObjectWriter:
    """obstore keeps each buffer it is given, uncopied, until its part is sent; readers reuse
    theirs for the next chunk, so a chunk is copied here. Errors are classified like the rest."""

    def __init__(
        self, handle: Any, where: str, classify: Callable[[BaseException, str], AssetError]
    ) -> None:
        self._handle = handle
        self._where = where
        self._classify = classify

    def write(self, chunk: Chunk) -> None:
        try:
            self._handle.write(bytes(chunk))
        except Exception as exc:  # noqa: BLE001
            raise self._classify(exc, self._where) from None


def unreachable(endpoint: str | None, timeout: float) -> str | None:
    """Why no TCP connection to `endpoint` opens within `timeout` (None: it does, or there is
    no endpoint to try)."""
    if endpoint is None:
        return None
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return None
    except socket.gaierror:
        return "DNS lookup failed"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return "connect timed out"
    except OSError as exc:
        return f"cannot connect ({exc.strerror or exc.__class__.__name__})"


def _facts(meta: ObjectMeta) -> Facts:
    return Facts(
        size=meta["size"], etag=meta.get("e_tag"), last_modified=iso(meta["last_modified"])
    )


def _listed_facts(meta: ObjectMeta) -> Facts:
    """A listing's facts in HEAD's terms: Azure's and GCS's listings give the ETag unquoted
    (`0x8D...`) where HEAD, and so the lock, has it quoted (`"0x8D..."`)."""
    facts = _facts(meta)
    etag = facts.etag
    if etag is None or etag.startswith(('"', 'W/"')):
        return facts
    return Facts(size=facts.size, etag=f'"{etag}"', last_modified=facts.last_modified)


def client_options(access: Access) -> ClientConfig:
    return {
        "allow_http": access.allow_http,
        "timeout": access.timeout,
        "connect_timeout": access.connect_timeout,
    }


RETRY_CONFIG: RetryConfig = {
    "max_retries": 0,
    "backoff": {
        "init_backoff": timedelta(milliseconds=100),
        "max_backoff": timedelta(seconds=2),
        "base": 2,
    },
    "retry_timeout": timedelta(seconds=60),
}
"""obstore never retries on its own: `tasks/retry.py` is the one retry layer, configured by the
spec, so a failing object is requested exactly `relocate.retry.attempts` times (obstore's 2
retries under 5 attempts made 15). A transient failure of one multipart part fails that attempt,
and the whole copy is tried again."""


def key_prefix(ref: StoreRef) -> str | None:
    return ref.root.strip("/") or None


def _classify(exc: BaseException, where: str) -> AssetError:
    if (whole_store := _store_failure(exc, where)) is not None:
        return whole_store
    if isinstance(exc, FileNotFoundError):
        return AssetError(ErrorClass.PERMANENT, f"not found: {where}", status=404)
    if isinstance(exc, UnauthenticatedError | PermissionDeniedError | PermissionError):
        return AssetError(ErrorClass.PERMANENT, f"access denied: {where}", status=403)
    if isinstance(exc, PreconditionError):
        return AssetError(ErrorClass.DRIFT, f"object changed while reading: {where}", status=412)
    summary = str(exc).split("\n\nDebug source:")[0]
    status = _STATUS.search(summary)
    code = int(status.group(1)) if status else None
    # The buffered writer reports what GenericError would say as a plain OSError.
    if isinstance(exc, GenericError | OSError) and _TRANSIENT.search(summary):
        kind = _NotSent if _NOT_SENT in summary else AssetError
        return kind(ErrorClass.TRANSIENT, f"{summary}: {where}", status=code)
    if isinstance(exc, BaseError | ValueError | OSError):
        return AssetError(ErrorClass.PERMANENT, f"{summary}: {where}", status=code)
    raise exc


def _store_failure(exc: BaseException, where: str) -> AssetError | None:
    """A failure of the whole store, not of one object: its bucket is missing, or no
    connection to it could be opened."""
    if not isinstance(exc, FileNotFoundError | GenericError):
        return None
    text = str(exc)
    for code, what in (("NoSuchBucket", "bucket"), ("ContainerNotFound", "container")):
        if f"<Code>{code}</Code>" in text:
            return AssetError(
                ErrorClass.PERMANENT,
                f"{what} not found ({code}): {where}",
                status=404,
                reach=Reach.STORE,
            )
    if isinstance(exc, GenericError) and (cause := _connect_failure(text)):
        return AssetError(ErrorClass.TRANSIENT, f"{cause}: {where}", reach=Reach.CONNECTION)
    return None


def _connect_failure(text: str) -> str | None:
    """Why no connection could be opened, from the debug text of obstore's error (its only
    record of it); None when the store did answer."""
    if "ConnectError(" not in text and "kind: Connect," not in text:
        return None
    if "dns error" in text:
        return "DNS lookup failed"
    if "ConnectionRefused" in text:
        return "connection refused"
    if "timed out" in text.lower() or "TimedOut" in text:
        return "connect timed out"
    return "cannot connect"


def clean_prefix(value: str) -> str:
    parts = [part for part in value.split("/") if part]
    if any(part in {".", ".."} for part in parts):
        raise ValueError("a key prefix cannot contain '.' or '..' segments")
    return "/".join(parts)


KeyPrefix = Annotated[str, AfterValidator(clean_prefix)]
"""A key prefix in a bucket: leading, trailing and repeated '/' dropped; no '.' or '..'."""


def service_endpoint(value: str | None, a_store: str) -> str | None:
    """A bucket's endpoint is a server's http(s):// URL (a folder is a mirror of http only)."""
    if value is not None and urlsplit(value).scheme not in {"http", "https"}:
        raise ValueError(f"{a_store} endpoint is an http(s):// URL, got {value!r}")
    return value


def is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
