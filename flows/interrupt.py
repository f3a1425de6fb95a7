"""Ctrl-C and SIGTERM: the first stops the run in order, a second ends the command at once.

While a flow body runs (`stop_on_signals`), SIGINT and SIGTERM only set the stop request
(tasks/stop.py): copies in flight are cut short and cleaned up, the run writes its report and
ends with `Interrupted` (exit 130 in the CLI, a Cancelled flow run in Prefect). SIGTERM is what a
Prefect worker sends when a run is cancelled from the UI, so both signals are treated alike
(Prefect's own SIGTERM handler would raise inside the flow and leave the copy threads running).
Outside a flow body the first signal raises KeyboardInterrupt, as by default: nothing has
started that needs an orderly stop. A second signal exits with 130 at once; the temporary Prefect
server sees its lifeline close and stops too (flows/api_server.py), and the next run sweeps what
the copies in flight left (its run lock says this one did not end).

Plain module: the CLI installs it before Prefect is imported.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from stacflow.tasks.stop import STOP

EXIT_INTERRUPTED = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)
AT_ONCE = "interrupted again: stopped at once; rerun to resume (it cleans up what this run left)"

_depth = 0
"""How many flow bodies that obey the stop request are running in this process."""


def install() -> None:
    """The command's own handlers, from its first line (the main thread)."""
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within a flow body: the first SIGINT or SIGTERM asks the run to stop in order.

    The outermost one starts from a clear request (a worker or a test session runs many flows in
    one process). Signal handlers can only be set from the main thread; elsewhere the body still
    obeys a stop that the process asks for.
    """
    global _depth  # noqa: PLW0603 - one count per process, like the handlers themselves
    in_main = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS} if in_main else {}
    if _depth == 0:
        STOP.reset()
    for signum in previous:
        signal.signal(signum, _on_signal)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - signal's API
    if STOP.is_set():
        _leave_now()
    if _depth == 0:
        raise KeyboardInterrupt
    STOP.request(signal.Signals(signum).name)


def _leave_now() -> None:
    sys.stderr.write(AT_ONCE + "\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)
