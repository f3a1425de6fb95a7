"""Local (or mounted) folders: `{type: file, root}` targets and `file://` rows (or plain paths).

Written to a temp name and renamed, described as obstore does.

No reader ever sees a partial file (the rename is atomic). Durability is the run's business, not
each file's: one `syncfs` per target folder at the end of the byte phase flushes every copy at
once, where an fsync per file and per folder cost a third of a small asset's time on a disk
(benchmarks/profile.py). Facts use the LocalStore conventions of the obstore stacpkg 0.1.4 runs
on (ETag `<inode>-<mtime µs>-<size>`, unquoted; µs Last-Modified): checked with the real stacpkg,
its `asset-lock validate` passes on the locks we write.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import io
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stacflow.tasks.access import Access, SpecPath
from stacflow.tasks.atomic import TEMP_MARKER
from stacflow.tasks.buffers import read_buffer
from stacflow.tasks.errors import AssetError, ErrorClass
from stacflow.tasks.stores.base import (
    DEFAULT_CHUNK_SIZE,
    Backend,
    Capabilities,
    Chunk,
    ETag,
    Facts,
    StoreRef,
    iso,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2): flush one file system, not every mounted one as sync(2) does."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).syncfs
    except (OSError, AttributeError, TypeError):
        return None


_syncfs = _load_syncfs()
OWNER_CHARS = 12
# `.` + name + marker + owner + `.` + uuid hex fit NAME_MAX
MAX_STAGED_NAME = 255 - 1 - len(TEMP_MARKER) - OWNER_CHARS - 1 - 32


def stat_facts(stat: os.stat_result) -> Facts:
    mtime_us = stat.st_mtime_ns // 1000
    return Facts(
        size=stat.st_size,
        etag=f"{stat.st_ino:x}-{mtime_us:x}-{stat.st_size:x}",
        last_modified=iso(_EPOCH + timedelta(microseconds=mtime_us)),
    )


class FileStore(BaseModel):
    """A local (or mounted) folder."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    type: Literal["file"] = Field(description="A local or mounted folder.")
    root: SpecPath = Field(
        description="Folder that receives the assets; relative to the spec file. It cannot be "
        "the outputs folder, contain it, or overlap an input or another target's root."
    )

    def ref(self, base: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StoreRef:
        return StoreRef("file", None, str((base / self.root).resolve()), Access(), chunk_size)


class FolderStore:
    """Paths are relative to `root`; none may climb out of it."""

    def __init__(self, ref: StoreRef) -> None:
        self.ref = ref
        self.root = Path(ref.root or "/")

    def describe(self, path: str) -> str:
        return str(self._full(path))

    def head(self, path: str) -> Facts:
        try:
            return stat_facts(self._full(path).stat())
        except FileNotFoundError:
            raise AssetError(ErrorClass.PERMANENT, f"not found: {self.describe(path)}") from None
        except OSError as exc:
            raise _os_error(exc, self.describe(path)) from None

    @contextmanager
    def open(self, path: str) -> Iterator[_FileReader]:
        try:
            handle = self._full(path).open("rb", buffering=0)
        except FileNotFoundError:
            raise AssetError(ErrorClass.PERMANENT, f"not found: {self.describe(path)}") from None
        except OSError as exc:
            raise _os_error(exc, self.describe(path)) from None
        with handle:
            yield _FileReader(handle, self.ref.chunk_size)

    @contextmanager
    def writer(self, path: str) -> Iterator[_FileWriter]:
        final = self._full(path)
        temp = final.with_name(
            f"{_staging_stem(final.name)}{TEMP_MARKER}{_owned(self.ref.owner)}{uuid.uuid4().hex}"
        )
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise _os_error(exc, self.describe(path)) from None
        committed = False
        try:
            with os.fdopen(descriptor, "wb", buffering=0) as handle:
                yield _FileWriter(handle)
            temp.replace(final)
            committed = True
        except OSError as exc:
            raise _os_error(exc, self.describe(path)) from None
        finally:
            if not committed:
                temp.unlink(missing_ok=True)

    def sweep(self, paths: Iterable[str]) -> int:
        """Remove what killed writes to `paths` left: one listing per folder, not one per path
        (per path, a flat folder's sweep grew with the square of its size)."""
        wanted: dict[Path, set[str]] = {}
        for path in paths:
            try:
                final = self._full(path)
            except AssetError:
                continue  # an unsafe path: its write reports it
            wanted.setdefault(final.parent, set()).add(final.name)
        owner = self.ref.owner
        return sum(_sweep_folder(folder, names, owner) for folder, names in wanted.items())

    def flush(self) -> None:
        """Make every copy written under the root durable: one syncfs for the whole folder."""
        if _syncfs is None:
            os.sync()
            return
        descriptor = os.open(self.root, os.O_RDONLY)
        try:
            if _syncfs(descriptor) != 0:
                os.sync()
        finally:
            os.close(descriptor)

    def _full(self, path: str) -> Path:
        parts = [part for part in path.split("/") if part]
        if not parts or any(part in {".", ".."} for part in parts):
            raise AssetError(ErrorClass.PERMANENT, f"unsafe path {path!r} under {self.root}")
        return self.root.joinpath(*parts)


class _FileReader:
    def __init__(self, handle: io.FileIO, chunk_size: int) -> None:
        self._handle = handle
        self._chunk_size = chunk_size
        self.facts = stat_facts(os.fstat(handle.fileno()))

    def chunks(self) -> Iterator[memoryview]:
        with read_buffer(self._chunk_size, self.facts.size) as buffer:
            while count := self._handle.readinto(buffer):
                yield buffer[:count]


class _FileWriter:
    def __init__(self, handle: io.FileIO) -> None:
        self._handle = handle

    def write(self, chunk: Chunk) -> None:
        view = memoryview(chunk)
        while view:
            view = view[self._handle.write(view) :]


def _sweep_folder(folder: Path, names: set[str], owner: str) -> int:
    stems = {_staging_stem(name) for name in names}
    try:
        with os.scandir(folder) as entries:
            debris = [e.name for e in entries if _is_debris(e.name, names, stems, owner)]
    except FileNotFoundError:
        return 0
    for name in debris:
        (folder / name).unlink(missing_ok=True)
    return len(debris)


def _is_debris(entry: str, names: set[str], stems: set[str], owner: str) -> bool:
    """A temp of one of `names` that `owner` staged (stem, marker, owner, hex; or, from before
    temps named their owner, stem, marker, hex), or a numbered one (`name#3`, as obstore's
    LocalStore and stacpkg stage). Another owner's temp may be a write in flight: it stays."""
    stem, marker, rest = entry.rpartition(TEMP_MARKER)
    if marker and stem in stems:
        staged_by, dot, _ = rest.rpartition(".")
        return staged_by == owner if dot else True
    base, hash_sign, number = entry.rpartition("#")
    return bool(hash_sign) and base in names and number.isdigit()


def _owned(owner: str) -> str:
    return f"{owner[:OWNER_CHARS]}." if owner else ""


def _staging_stem(name: str) -> str:
    """`.name`, the temp's prefix; shortened with a digest of the name where the marker and
    suffix would push it past the 255-byte limit of a file name."""
    if len(os.fsencode(name)) <= MAX_STAGED_NAME:
        return f".{name}"
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    head = os.fsencode(name)[: MAX_STAGED_NAME - len(digest) - 1].decode(errors="ignore")
    return f".{head}~{digest}"


def _os_error(exc: OSError, where: str) -> AssetError:
    kind = ErrorClass.PERMANENT
    return AssetError(kind, f"{exc.strerror or exc.__class__.__name__}: {where}")


BACKEND = Backend(
    name="file",
    store_types=("file",),
    capabilities=Capabilities(
        writable=True,
        file_system=True,
        durable_writes=False,
        leftovers="temp files",
        etag=ETag.STAT,
        buffers_per_asset=2,
        max_name_bytes=255,
    ),
    build=FolderStore,
    settings=FileStore,
)
