"""Run a function over many items on a few threads, without a future per item.

`Executor.map` builds a Future (a Condition, an RLock) per item and wakes a thread for each; with
thousands of small assets per batch that bookkeeping held the GIL longer than the copies' own
Python. Here each of `width` jobs takes the next item until none is left.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def fan_out(pool: Executor, width: int, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`work` on every item, at most `width` at once on `pool`'s threads; results in item order.

    The first error stops the other jobs from starting new items and is raised once they end.
    """
    results: list[R | None] = [None] * len(items)
    errors: list[BaseException] = []
    lock = threading.Lock()
    upcoming = iter(range(len(items)))

    def job() -> None:
        while True:
            with lock:
                index = None if errors else next(upcoming, None)
            if index is None:
                return
            try:
                results[index] = work(items[index])
            except BaseException as error:  # noqa: BLE001 - raised in the caller's thread below
                with lock:
                    errors.append(error)
                return

    jobs = [pool.submit(job) for _ in range(max(1, min(width, len(items))))]
    for done in jobs:
        done.result()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  # every index was filled when no job failed


_SHARED: dict[tuple[str, int], ThreadPoolExecutor] = {}
_SHARED_LOCK = threading.Lock()


def shared_threads(name: str, workers: int) -> ThreadPoolExecutor:
    """One process-wide pool per purpose and width, shared by every batch running at once.

    It bounds the work in flight (and so the buffers) whatever the number of batches, and its
    threads outlive a batch, so each keeps its keep-alive connections for the next.
    """
    with _SHARED_LOCK:
        if (name, workers) not in _SHARED:
            _SHARED[name, workers] = ThreadPoolExecutor(workers, thread_name_prefix=name)
        return _SHARED[name, workers]
