"""Read buffers, reused across objects.

Allocating (and so zeroing and faulting in) a fresh chunk-sized buffer per object cost 0.4 ms of
CPU per object with 8 threads, more than everything else stacflow does for a 256 KiB asset
(benchmarks/profile.py): small objects get a buffer of their own size, and chunk-sized buffers
are kept in a pool, at most one per asset in flight.

Reads are at most `MAX_READ` whatever the spec's chunk_size (which still sizes multipart parts):
a slice that stays in the CPU cache while it is received, hashed and written costs the least
CPU of the sizes from 64 KiB to 8 MiB (1.35 s per GiB with 4 streams, against 1.43-1.91 s;
`python -m benchmarks.read_size`, docs/decisions.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

SMALL = 256 * 1024
MAX_READ = 1024 * 1024
_POOL: dict[int, list[bytearray]] = {}
_LOCK = threading.Lock()
KEEP = 32


@contextmanager
def read_buffer(chunk_size: int, expected: int | None) -> Iterator[memoryview]:
    """A buffer for reading an object of `expected` bytes (None: unknown) in `chunk_size` reads,
    or `MAX_READ` ones where the chunk is larger."""
    chunk_size = min(chunk_size, MAX_READ)
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
