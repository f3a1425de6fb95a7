"""Write-then-rename, so no reader ever sees a partial output and a failed run clobbers nothing."""

from __future__ import annotations

import contextlib
import filecmp
import os
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TEMP_MARKER = ".stacflow-tmp-"


def temp_sibling(path: Path) -> Path:
    """A unique hidden name beside `path`: same filesystem (so rename is atomic), and sweepable."""
    return path.with_name(f".{path.name}{TEMP_MARKER}{uuid.uuid4().hex}")


def atomic_write(path: Path, write: Callable[[Path], object]) -> bool:
    """Let `write` fill a temp sibling, then rename it onto `path` once it is durable.

    When `path` already holds exactly those bytes, it is left alone (no fsync, no rename: a
    rerun that changed nothing rewrites nothing); returns whether `path` was replaced.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        write(tmp)
        if _same_bytes(tmp, path):
            tmp.unlink()
            return False
        _fsync_file(tmp)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    return True


def _same_bytes(new: Path, old: Path) -> bool:
    try:
        if new.stat().st_size != old.stat().st_size:
            return False
    except FileNotFoundError:
        return False
    return filecmp.cmp(new, old, shallow=False)


def write_bytes_atomic(path: Path, data: bytes) -> bool:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str) -> bool:
    return write_bytes_atomic(path, text.encode("utf-8"))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make the rename itself durable; some platforms cannot open a directory, which is fine."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
