"""The one narrow interface every byte goes through, and the factory that builds stores from refs.

A `StoreRef` names a store without holding a secret, so plans and Prefect parameters can carry it;
`open_store` builds the real client inside the task, once per process, reading credentials then.
Every implementation raises `AssetError` with an `ErrorClass`: errors are classified here, once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from stacflow.tasks.access import Access
from stacflow.tasks.errors import AssetError, ErrorClass

Chunk = bytes | bytearray | memoryview
FACT_NAMES = frozenset({"size", "etag", "last_modified"})


@dataclass(frozen=True, slots=True)
class Facts:
    """What a store says about an object: the lock's size, ETag and Last-Modified columns."""

    size: int | None
    etag: str | None
    last_modified: str | None


class Reader(Protocol):
    """An open object: its facts as the response reported them, and its bytes in chunks."""

    facts: Facts

    def chunks(self) -> Iterator[Chunk]: ...


class Writer(Protocol):
    def write(self, chunk: Chunk) -> None: ...


class Store(Protocol):
    """Paths are relative to the store's root; a missing object raises a permanent AssetError."""

    def head(self, path: str) -> Facts: ...

    def open(self, path: str) -> AbstractContextManager[Reader]: ...

    def writer(self, path: str) -> AbstractContextManager[Writer]:
        """Write atomically: visible at `path` only if the block exits cleanly, else aborted."""
        ...

    def sweep(self, paths: Iterable[str]) -> int:
        """Remove what earlier, killed writes to `paths` left (temp files, open multipart
        uploads); returns how many. Called once per batch with all its keys."""
        ...

    def flush(self) -> None:
        """Make every object this process wrote durable (a no-op where a write already is)."""
        ...

    def describe(self, path: str) -> str:
        """A human-readable, secret-free name of an object, for messages."""
        ...


@dataclass(frozen=True, slots=True)
class StoreRef:
    """A store by name and settings: hashable, picklable, free of secrets."""

    kind: str
    container: str | None = None
    root: str = ""
    access: Access = field(default_factory=Access)
    chunk_size: int = 8 * 1024 * 1024
    compare: frozenset[str] = FACT_NAMES
    """Which lock facts this store reproduces (a mirror may keep sizes but not ETags)."""


def open_store(ref: StoreRef) -> Store:
    """The client for a ref, built once per process: clients are costly and thread-safe."""
    return _open_cached(ref)


@functools.lru_cache(maxsize=256)
def _open_cached(ref: StoreRef) -> Store:
    from stacflow.tasks.stores.file import FileStore  # noqa: PLC0415 - each backend loads what it needs
    from stacflow.tasks.stores.http import HttpStore  # noqa: PLC0415
    from stacflow.tasks.stores.object_store import ObjectStore  # noqa: PLC0415

    if ref.kind == "file":
        return FileStore(ref)
    if ref.kind in {"http", "https"}:
        return HttpStore(ref)
    if ref.kind in {"s3", "gs", "az"}:
        return ObjectStore(ref)
    raise AssetError(ErrorClass.PERMANENT, f"unsupported store type {ref.kind!r}")


def iso(moment: datetime) -> str:
    """Last-Modified as the lock holds it: `datetime.isoformat()` in UTC, like stacpkg."""
    return moment.astimezone(UTC).isoformat()


def status_error(status: int, what: str, retry_after: float | None = None) -> AssetError:
    """Classify an HTTP status the same way for every backend."""
    if status in {404, 410}:
        return AssetError(ErrorClass.PERMANENT, f"not found (HTTP {status}): {what}", status=status)
    if status in {401, 403}:
        return AssetError(
            ErrorClass.PERMANENT, f"access denied (HTTP {status}): {what}", status=status
        )
    if status == 412:
        return AssetError(
            ErrorClass.DRIFT, f"object changed while reading (HTTP 412): {what}", status=status
        )
    if status == 429 or status >= 500:
        return AssetError(
            ErrorClass.TRANSIENT,
            f"HTTP {status} from {what}",
            status=status,
            retry_after=retry_after,
        )
    return AssetError(ErrorClass.PERMANENT, f"HTTP {status} from {what}", status=status)
