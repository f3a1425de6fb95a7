"""A store that is down is recognised as down: one breaker per store, shared by a process.

Without it, an origin refusing connections made every asset try five times with backoff, one
after another (300 of 2,000 assets after 12 minutes). A store that fails at the connection level
(refused, DNS failure, connect timeout) `CONNECTION_FAILURES` times in a row, with no answer in
between, is down; a failure that reaches the whole store (disk full, read-only, no such bucket,
root not a folder) puts it down at once. While it is down, every asset that needs it ends at once
with the cause. After `DOWN_FOR_S`, one request may try again: a store that came back is used
again, one that did not is down again at its first failure. 5xx, 429 and cut bodies are answers:
they are retried per asset as before and reset the count.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from stacflow.tasks.errors import AssetError, ErrorClass, Reach
from stacflow.tasks.stores import Facts, Store, StoreRef

CONNECTION_FAILURES = 5
DOWN_FOR_S = 60.0


class StoreDown(AssetError):
    """A request not made: its store is down. Not an attempt, and not news to the breaker."""


@dataclass
class _State:
    failures: int = 0
    cause: AssetError | None = None
    down_since: float | None = None


class Breakers:
    """The state of every store this process has talked to; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[StoreRef, _State] = {}

    def refusal(self, store: StoreRef, role: str) -> StoreDown | None:
        """The error a request to `store` ends in while it is down (`role`: origin or target,
        for the message); None when the store may be tried."""
        with self._lock:
            state = self._states.get(store)
            if state is None or state.down_since is None or state.cause is None:
                return None
            if time.monotonic() - state.down_since >= DOWN_FOR_S:
                state.down_since = None  # one more try; its first failure puts it down again
                state.failures = CONNECTION_FAILURES - 1
                return None
            cause = state.cause
        how = "unreachable" if cause.reach == Reach.CONNECTION else "unusable"
        return StoreDown(ErrorClass.PERMANENT, f"{role} {how}: {cause.message}", reach=cause.reach)

    def record(self, store: StoreRef, error: AssetError | None) -> None:
        """What one request to `store` ended in: an answer (None, or an error of the asset's
        own), a connection failure, or a failure of the whole store."""
        with self._lock:
            state = self._states.setdefault(store, _State())
            if error is None or error.reach == Reach.ASSET:
                state.failures, state.cause, state.down_since = 0, None, None
                return
            state.failures += 1
            if error.reach == Reach.STORE or state.failures >= CONNECTION_FAILURES:
                state.cause = error
                state.down_since = time.monotonic()

    def trip(self, store: StoreRef, cause: AssetError) -> None:
        """Put `store` down at once: found unusable before any asset needed it."""
        with self._lock:
            self._states[store] = _State(CONNECTION_FAILURES, cause, time.monotonic())

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


BREAKERS = Breakers()


def watched_head(store: Store, ref: StoreRef, path: str, role: str) -> Facts:
    """A HEAD, unless the store is down (then its rows end at once); the answer goes to its
    breaker. `role` names the store in the refusal (origin, target, store)."""
    if (down := BREAKERS.refusal(ref, role)) is not None:
        raise down
    try:
        facts = store.head(path)
    except AssetError as error:
        BREAKERS.record(ref, error)
        raise
    BREAKERS.record(ref, None)
    return facts
