"""One small family of errors, mapped to exit codes by the CLI.

`UsageError`s are the user's to fix (exit 2, one line, no traceback); `RunFailed` means the work ran
and some of it failed (exit 1). `AssetError` never escapes a run: it becomes a report row.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from stacflow.tasks.summary import Summary

MAX_SHOWN = 80
"""The most of one value a message quotes: a 2 MB key must not become a 2 MB line."""
MAX_DETAIL = 300
"""The most of a library's own error text a message carries."""
MAX_MESSAGE = 2000
"""The most of any one spec message: each value in it is cut already; this is the backstop."""


def shorten(value: object, limit: int = MAX_SHOWN) -> str:
    """A value for a message, cut to `limit` characters with the total length said."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


class StacflowError(Exception):
    """Base of every error stacflow raises on purpose; its message is redacted, so that no
    secret reaches a terminal, a log or a flow run's state through it."""

    exit_code = 1

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(arg) if isinstance(arg, str) else arg for arg in args))


class UsageError(StacflowError):
    """The spec, a command line or an input file is wrong; nothing was changed."""

    exit_code = 2


class SpecError(UsageError):
    """A spec file is wrong at a known place."""

    def __init__(self, file: str, line: int | None, field: str, problem: str) -> None:
        field, problem = shorten(field, 2 * MAX_SHOWN), shorten(problem, MAX_MESSAGE)
        self.file, self.line, self.field, self.problem = file, line, field, problem
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")


class InputError(UsageError):
    """A table or file named by the spec is missing or is not what it should be."""


class Conflict(str):
    """One reason a plan refuses to run: its message, and as data the target it concerns (None
    for a source, the selection or the plan as a whole), so no reader parses the message for
    it. A `str`, so it prints, sorts and serialises as the message it is."""

    __slots__ = ("target",)
    target: str | None

    def __new__(cls, message: str, target: str | None = None) -> Self:
        conflict = super().__new__(cls, message)
        conflict.target = target
        return conflict


class PlanConflict(UsageError):
    """The compiled plan would overwrite, escape or collide; refused before any byte moves."""

    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        shown = "; ".join(conflicts[:5])
        more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        super().__init__(f"{len(conflicts)} conflict(s) in the plan: {shown}{more}")


class RunFailed(StacflowError):
    """The run finished its work but some assets failed, drifted or did not validate.

    `summary` (a `Summary`) lets the caller render the verdict with its own timing.
    """

    def __init__(self, message: str, summary: Summary | None = None) -> None:
        super().__init__(message)
        self.summary = summary

    def __reduce__(self) -> tuple[type[RunFailed], tuple[str, Summary | None]]:
        return (type(self), (str(self), self.summary))


class ErrorClass(StrEnum):
    """How an asset-level failure should be treated: only `transient` is retried."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    INTEGRITY = "integrity"
    DRIFT = "drift"


class Reach(StrEnum):
    """How far a failure reaches beyond the asset it happened to.

    `connection`: the store did not answer at all (refused, DNS failure, connect timeout); a few
    in a row mean it is down. `store`: the store refuses every write (disk full, read-only, no
    such bucket, root not a folder); one means every later write fails the same way.
    """

    ASSET = "asset"
    CONNECTION = "connection"
    STORE = "store"


class AssetError(StacflowError):
    """One asset failed at one store; carried into the report, never shown as a traceback."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        reach: Reach = Reach.ASSET,
    ) -> None:
        self.error_class = error_class
        self.message = redact(message)
        self.status = status
        self.retry_after = retry_after
        self.reach = reach
        super().__init__(self.message)


_QUERY = re.compile(r"(?P<url>\b[a-z][a-z0-9+.-]*://[^\s?#\"']+)\?[^\s#\"']*", re.IGNORECASE)
_SECRET_PARAM = re.compile(
    r"(?i)\b(x-amz-(?:signature|credential|security-token)|signature|sig|token|"
    r"access_key_id|secret_access_key|session_token|password|authorization)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;]+)"
)


_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^\s/?#@\"']*@", re.IGNORECASE)
MIN_HIDDEN = 6
"""Environment values shorter than this are not hidden: `true` or `4` are no secret, and
replacing them would garble every message."""
_FROM_ENVIRONMENT: dict[str, str] = {}


def hide_environment_value(name: str, value: str) -> None:
    """A spec took `value` from the environment variable `name`: from now on, messages of this
    process show `${name}` in its place (it may be a secret; the spec never says)."""
    if len(value) >= MIN_HIDDEN:
        _FROM_ENVIRONMENT[value] = name


def forget_environment_values() -> None:
    """For a process that loads specs for unrelated runs one after another (a test session)."""
    _FROM_ENVIRONMENT.clear()


def redact(text: str) -> str:
    """Remove secrets from text bound for a log, lock or report that may quote what a store or a
    library said: what `scrub` removes, and `name=value` secrets (`token=…`, `Signature: …`)."""
    return _SECRET_PARAM.sub(r"\1\2<redacted>", scrub(text))


def scrub(text: str) -> str:
    """Remove the secrets that can reach a message stacflow writes itself: URL query strings
    (signed URLs carry their credentials there), URL userinfo, and any value a spec took from
    the environment (shown as `${NAME}`)."""
    for value in sorted(_FROM_ENVIRONMENT, key=len, reverse=True):
        if value in text:
            text = text.replace(value, f"${{{_FROM_ENVIRONMENT[value]}}}")
    return strip_url_secrets(text)


def strip_url_secrets(text: str) -> str:
    """URL query strings and userinfo out, for data (a lock, a validation line): what the
    environment gave stays, as a table must hold real locations."""
    text = _QUERY.sub(r"\g<url>?<redacted>", text)
    return _USERINFO.sub(r"\g<scheme><redacted>@", text)
