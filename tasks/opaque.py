"""A value Prefect hands to a task untouched.

Prefect walks every list, dict and dataclass in a task's parameters, looking for futures to wait
on: about 4 s of GIL time per 10,000 moves in a flow (benchmarks/profile.py), on the same cores as
the copies. It does not walk a plain object. (`prefect.utilities.annotations.quote` does the same
in-process, but the Dask task runner passes the annotation through unwrapped.)
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Opaque(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value
