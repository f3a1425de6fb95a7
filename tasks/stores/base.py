"""The one narrow interface every byte goes through, and what a backend declares to join it.

A `StoreRef` names a store without holding a secret, so plans and Prefect parameters can carry it;
`open_store` builds the real client inside the task, once per process, reading credentials then.
Every implementation raises `AssetError` with an `ErrorClass`: errors are classified there, once.
A `Backend` says what its store can do (`Capabilities`), so that no caller compares type names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from stacflow.tasks.access import Access
from stacflow.tasks.errors import AssetError, ErrorClass

Chunk = bytes | bytearray | memoryview
FACT_NAMES = frozenset({"size", "etag", "last_modified"})
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


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
    """The name of its backend (`file`, `http`, `s3`, `gcs`, `azure`)."""
    container: str | None = None
    root: str = ""
    access: Access = field(default_factory=Access)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    compare: frozenset[str] = FACT_NAMES
    """Which lock facts this store reproduces (a mirror may keep sizes but not ETags)."""
    owner: str = ""
    """Who writes through it (a target's, one per spec's outputs): its temp names carry this, so
    a sweep after a kill removes only its own, never another spec's in-flight writes."""


class ETag(StrEnum):
    """What a store's ETag says about the object it tags."""

    STAT = "file stat"
    """`<inode>-<mtime µs>-<size>` in hex (obstore's LocalStore): a rewrite or a copy changes it."""
    CONTENT_MD5 = "content MD5"
    """The bytes' MD5 for one PUT; `<MD5 of the parts' MD5s>-<parts>` for a multipart upload."""
    OPAQUE = "opaque"
    """A version tag the server chose."""


class Endpoint(StrEnum):
    """What `store.endpoint` on a source names, for a store of this type."""

    SERVICE = "service"
    """The server that speaks the store's API (an S3-compatible one); without it in the spec,
    the lock's `store_endpoint_url`."""
    MIRROR = "mirror"
    """Another place that serves the same keys: an http(s) origin, or a folder."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend's store can do: code asks these questions, never a store type's name."""

    writable: bool
    """It can be a target (an http origin is read-only)."""
    file_system: bool = False
    """Keys are paths in a folder tree: a key cannot be both a file and a folder, and a lock row
    holds the absolute path and no container."""
    durable_writes: bool = True
    """A finished write is durable; else only after `Store.flush` (a folder's one syncfs)."""
    listing: bool = False
    """One listing request per 1,000 keys can stand in for a HEAD per key."""
    leftovers: str | None = None
    """What a killed write leaves behind that `Store.sweep` removes (None: nothing it can see)."""
    etag: ETag = ETag.OPAQUE
    facts: frozenset[str] = FACT_NAMES
    """The lock facts its HEAD reports, which drift checks and validation can compare."""
    endpoint: Endpoint | None = None
    buffers_per_asset: int = 2
    """Chunk-sized buffers one asset holds while this store is its target, the read included: the
    memory budget allows `memory_limit / (buffers_per_asset x chunk_size)` assets at once."""
    max_name_bytes: int | None = None
    """The longest path segment it holds (a file system's NAME_MAX)."""
    max_key_bytes: int | None = None
    """The longest key it holds, the store's root prefix included."""


class TargetSettings(Protocol):
    """A target's `store:` mapping, parsed by its backend's settings model."""

    @property
    def type(self) -> str: ...

    def ref(self, base: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StoreRef:
        """The store it names; relative paths are under `base`, the spec file's folder."""
        ...


@dataclass(frozen=True, slots=True)
class Backend:
    """One store type: its name, the lock rows it reads, what it can do and how it is built."""

    name: str
    """`StoreRef.kind`, and the `type` of a target's `store:` mapping."""
    store_types: tuple[str, ...]
    """The lock's `store_type` values whose rows it reads; a relocated lock row gets the first."""
    capabilities: Capabilities
    build: Callable[[StoreRef], Store]
    """Its client for a ref (built once per process by `open_store`)."""
    settings: type[BaseModel] | None = None
    """The model of a target's `store:` mapping (a `TargetSettings`); None: never a target."""


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
