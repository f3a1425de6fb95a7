"""fan_out: item order kept, width respected, the first error raised after the rest stop."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from stacflow.tasks.fanout import fan_out, shared_threads


def test_results_in_item_order_at_most_width_at_once():
    running, peak, lock = 0, 0, threading.Lock()

    def work(item: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.001 * (item % 3))
        with lock:
            running -= 1
        return item * item

    with ThreadPoolExecutor(8) as pool:
        assert fan_out(pool, 3, work, range(50)) == [i * i for i in range(50)]
    assert peak == 3


def test_the_first_error_is_raised_and_no_new_item_starts():
    started: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        if item == 2:
            raise ValueError("item 2 is bad")
        return item

    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="item 2 is bad"):
        fan_out(pool, 1, work, list(range(10)))
    assert started == [0, 1, 2]


def test_empty_input_and_a_shared_pool_per_name_and_width():
    assert fan_out(shared_threads("test-fanout", 2), 2, str, []) == []
    assert shared_threads("test-fanout", 2) is shared_threads("test-fanout", 2)
    assert shared_threads("test-fanout", 2) is not shared_threads("test-fanout", 3)
