"""Read buffers, reused across objects.

Allocating (and so zeroing and faulting in) a fresh chunk-sized buffer per object cost 0.4 ms of
CPU per object with 8 threads, more than everything else stacflow does for a 256 KiB asset
(benchmarks/profile.py): small objects get a buffer of their own size, and chunk-sized buffers
are kept in a pool, at most one per asset in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

SMALL = 256 * 1024
_POOL: dict[int, list[bytearray]] = {}
_LOCK = threading.Lock()
KEEP = 32


@contextmanager
def read_buffer(chunk_size: int, expected: int | None) -> Iterator[memoryview]:
    """A buffer for reading an object of `expected` bytes (None: unknown) in `chunk_size` reads."""
    if expected is not None and expected <= min(SMALL, chunk_size):
        yield memoryview(bytearray(max(expected, 1)))
        return
    with _LOCK:
        free = _POOL.setdefault(chunk_size, [])
        buffer = free.pop() if free else None
    if buffer is None:
        buffer = bytearray(chunk_size)
    try:
        yield memoryview(buffer)
    finally:
        with _LOCK:
            if len(free) < KEEP:
                free.append(buffer)
