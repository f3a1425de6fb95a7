"""How a flow run ends when the failure was expected: said once, and no traceback.

A run whose assets failed, a spec error found on a worker, outputs that cannot be written: each is
logged once, as the summary or one line, and ends the flow run Failed through a returned state
(raising would log it again with a traceback, and once more in the state message). The error
rides in the state's data, so an in-process caller (the CLI) still receives it as an exception and
maps it to an exit code. Anything else is a bug and keeps Prefect's traceback.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import get_run_logger
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.states import Failed

from stacflow.tasks.errors import StacflowError

P = ParamSpec("P")
R = TypeVar("R")
SAID = "stacflow_said"
"""Marks a log record that says an expected failure: the CLI prints it itself."""
STATE_MESSAGE_CHARS = 200


def ends_in_verdict(body: Callable[P, R]) -> Callable[P, R]:
    """Wrap a flow's body: an expected failure is logged once and ends the run Failed.

    Callers still get `R` or an exception: Prefect raises a returned Failed state's `data`.
    """

    @functools.wraps(body)
    def run(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return body(*args, **kwargs)
        except StacflowError as error:
            get_run_logger().error("%s", error, extra={SAID: True})
            return Failed(message=state_message(str(error)), data=error)

    # Prefect reads the parameters' types from the wrapper: resolve them where the body was
    # written, or a type named only there (RunOverrides) cannot be found.
    run.__signature__ = inspect.signature(body, eval_str=True)  # type: ignore[attr-defined]
    run.__annotations__ = typing.get_type_hints(body, include_extras=True)
    return run


def state_message(text: str) -> str:
    """The first line, shortened: what the UI shows beside the state's name."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= STATE_MESSAGE_CHARS else line[: STATE_MESSAGE_CHARS - 1] + "…"


class _NotSaid(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, SAID, False)


def quiet_said_failures() -> None:
    """On a terminal the CLI prints the failure itself: keep Prefect's console from printing
    it a second time (the flow run's log, through the API handler, still has it)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, _NotSaid) for f in handler.filters
        ):
            handler.addFilter(_NotSaid())
