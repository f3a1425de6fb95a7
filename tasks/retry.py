"""The one retry layer: every request stacflow makes is tried `attempts` times at most, here.

Copies, derives (HEAD), surveys of the targets and validation all retry through `retrying`,
configured by the spec's `relocate.retry`; the store clients never retry on their own (obstore's
`max_retries` is 0), so a persistently failing object is requested exactly `attempts` times. Only
`transient` errors are retried, and a server's `Retry-After` is honoured (up to `max_backoff`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from stacflow.tasks.errors import AssetError, ErrorClass

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one request (or one whole copy) is tried."""

    attempts: int = 5
    initial_backoff: float = 1.0
    max_backoff: float = 60.0


ONCE = RetryPolicy(attempts=1)
"""For a caller that reports what it finds and must not wait (a CLI preflight)."""


def retrying(policy: RetryPolicy) -> Retrying:
    """A tenacity loop (`for attempt in retrying(p): with attempt: ...`) that reraises the last
    error once `policy.attempts` are spent or the error is not transient."""
    return Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_backoff(policy),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )


def with_retries(policy: RetryPolicy, call: Callable[[], T]) -> T:
    """`call()`, tried again on transient errors as `policy` says."""
    for attempt in retrying(policy):
        with attempt:
            return call()
    raise AssertionError("unreachable")  # pragma: no cover - tenacity returns or reraises


def is_transient(error: BaseException) -> bool:
    return isinstance(error, AssetError) and error.error_class == ErrorClass.TRANSIENT


def _backoff(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    """A server's Retry-After, else exponential from `initial_backoff` with jitter in proportion
    (tenacity's fixed 1 s jitter would swamp a short initial backoff)."""

    def wait(state: RetryCallState) -> float:
        error: Any = state.outcome.exception() if state.outcome else None
        if isinstance(error, AssetError) and error.retry_after is not None:
            return min(error.retry_after, policy.max_backoff)
        initial = policy.initial_backoff
        jitter = random.uniform(0, initial)  # noqa: S311 - spreads retries, not a secret
        return min(initial * 2.0 ** (state.attempt_number - 1) + jitter, policy.max_backoff)

    return wait
