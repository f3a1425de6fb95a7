"""The run's outputs folder must be writable: found before the run where it can be, said in
one line where it cannot (`ERROR: cannot write outputs to …: <cause>`, exit 1).

An outputs folder that was full, read-only or under a regular file ended in a Prefect traceback
and no report. Every output is replaced atomically (a temp sibling, then a rename), so a write
that fails leaves the earlier file as it was; what remains is to say so once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stacflow.tasks.errors import OutputsUnwritable
from stacflow.tasks.preflight import folder_problem


def require_writable(outputs: Path) -> None:
    """Refuse a run whose outputs folder cannot be created or written (nothing is written)."""
    if (problem := folder_problem(outputs)) is not None:
        raise OutputsUnwritable(outputs, problem.message)


@contextmanager
def writing_outputs(outputs: Path) -> Iterator[None]:
    """Around a run: checked first; an OSError met writing under `outputs` becomes one line.
    Any other OSError is not ours to explain and keeps its traceback."""
    require_writable(outputs)
    try:
        yield
    except OSError as error:
        if not _about(error, outputs):
            raise
        raise OutputsUnwritable(outputs, error.strerror or str(error)) from None


def _about(error: OSError, outputs: Path) -> bool:
    """Whether the error is a write under `outputs` (pyarrow's name no file, only the text)."""
    named = [str(name) for name in (error.filename, error.filename2) if name]
    if named:
        return any(Path(name).is_relative_to(outputs) for name in named)
    return str(outputs) in str(error)
