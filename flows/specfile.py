"""Load a YAML file into a validated pydantic model, with errors that name file, line and field.

`yaml.safe_load` forgets where each value was written and silently keeps the last of two duplicate
keys; pydantic names a problem by a location tuple. A spec author needs one line instead:
`spec.yaml:12: targets.local.layout: expected one of 'item-asset', 'source-key', got 'flat'`.
So the document is composed into nodes, turned into plain values here while the line of every
path is recorded, and the first pydantic error in document order becomes one `SpecError`.

YAML accepted: one document whose top level is a mapping with string keys. Anchors, aliases and
merge keys (`<<: *defaults`; keys written next to it win, then the earlier merged mapping) are
resolved. Timestamps stay strings. Duplicate keys, non-string keys and tags outside YAML's core
schema are refused.

Interpolation: `${VAR}` and `${VAR:-default}` (the default applies when VAR is unset or empty) in
string values, from `env` (default `os.environ`); `$${` is a literal `${`; keys are never
interpolated. Values stay strings; pydantic converts them like any other. A field refuses
interpolation when `refuse_interpolation(path)` returns a problem instead of None: credentials
must not be copied from the environment into a spec model that may be logged.

A message repeats what the author wrote (`got 'flat'`), except below a `credentials` key: a typo
there may be the secret itself. A value taken from the environment is shown as `${NAME}`, in
every message of the process (`errors.redact`): the spec does not say whether it is a secret.
A model may take a list as the short form of one of its fields (`validate: [a, b]` for
`{locks: [a, b]}`); a problem inside it is blamed on the list as written.

A model validator that checks a cross-field rule blames the right line with `SpecFieldError`, whose
`loc` is relative to the model being validated and written with the spec's keys:

    @model_validator(mode="after")
    def _root_outside_source(self) -> Self:
        if inside(self.store.root, self.source):
            raise SpecFieldError(("store", "root"), "the target root lies inside the source folder")
        return self
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stacflow.tasks.errors import MAX_SHOWN, SpecError, hide_environment_value, shorten

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo
    from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]
"""A path into a document: mapping keys and list indices, outermost first."""
RefuseInterpolation = Callable[[Loc], str | None]
"""Given a value's path, the problem to report if it uses `${...}` there, or None to allow it."""

MAX_VALUES = 100_000
"""Aliases can expand a small file exponentially; no spec needs this many values."""
MAX_BYTES = 1024 * 1024
"""A spec names its tables; lists of Items belong in them. Checked before parsing: YAML costs
about 2.5 s and 60 MB per MiB to compose, a 3 MB file of plain keys took a minute to refuse."""

_CORE = "tag:yaml.org,2002:"
_MAP, _SEQ, _STR, _MERGE = f"{_CORE}map", f"{_CORE}seq", f"{_CORE}str", f"{_CORE}merge"
_AS_WRITTEN = {_STR, f"{_CORE}timestamp", _MERGE, f"{_CORE}value"}
_CONSTRUCTED = {f"{_CORE}{name}" for name in ("null", "bool", "int", "float")}
_REFERENCE = re.compile(
    r"\$\$\{|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>(?:[^}$]|\$(?!\{))*))?\}|\$\{"
)


class SpecFieldError(ValueError):
    """Raised by a validator to blame `loc` (one key, or a path) below what it validates."""

    def __init__(self, loc: str | Sequence[str | int], problem: str) -> None:
        super().__init__(problem)
        self.loc: Loc = (loc,) if isinstance(loc, str) else tuple(loc)


@dataclass(frozen=True)
class LineIndex:
    """Where each value of a loaded document was written (1-based lines), by path.

    `values` holds, for a scalar, the line it starts on and, for a mapping or list, the line of
    the key that holds it (its own first line at the top or in a list): where a reader looks.
    """

    values: Mapping[Loc, int] = field(default_factory=dict)
    keys: Mapping[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc, *, key: bool = False) -> int | None:
        """The line of `loc` (of its key when `key`); a missing path gets its nearest parent's."""
        if key and loc in self.keys:
            return self.keys[loc]
        for end in range(len(loc), -1, -1):
            if (line := self.values.get(loc[:end])) is not None:
                return line
        return None


def load_model(
    model: type[M],
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    context: dict[str, Any] | None = None,
    refuse_interpolation: RefuseInterpolation | None = None,
) -> M:
    """Read, interpolate and validate a spec file; every user mistake raises one `SpecError`."""
    data, lines = load_yaml(path, env=env, refuse_interpolation=refuse_interpolation)
    return validate(model, data, lines, str(path), context)


def load_yaml(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    refuse_interpolation: RefuseInterpolation | None = None,
) -> tuple[dict[str, Any], LineIndex]:
    """Plain values of a one-mapping YAML file, interpolated, and the line of every path."""
    file = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(file, None, "", f"cannot read the file ({exc.strerror or exc})") from exc
    if len(raw) > MAX_BYTES:
        problem = f"the file is larger than {MAX_BYTES // 1024} KiB, more than any spec needs"
        raise SpecError(file, None, "", problem)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(file, line, "", "the file is not UTF-8 text") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None or (isinstance(root, ScalarNode) and root.tag != _STR and not root.value):
            raise SpecError(file, 1, "", "the file is empty")
        if not isinstance(root, MappingNode):
            got = "a list" if isinstance(root, SequenceNode) else f"'{shorten(root.value)}'"
            raise SpecError(
                file, _line(root), "", f"expected a mapping at the top level, got {got}"
            )
        builder = _Builder(file, os.environ if env is None else env, refuse_interpolation)
        data = builder.build(root, ())
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(file, exc) from exc
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        problem = f"the file contains the control character #x{exc.character:04x}"
        raise SpecError(file, line, "", problem) from exc
    except RecursionError as exc:
        raise SpecError(file, None, "", "mappings and lists are nested too deeply") from exc
    return data, LineIndex(builder.values, builder.keys)


def validate(
    model: type[M],
    data: Any,
    lines: LineIndex,
    file: str,
    context: dict[str, Any] | None = None,
) -> M:
    """`model.model_validate`, raising the first problem in document order as a `SpecError`."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = [_Problem.of(model, data, error, lines) for error in exc.errors()]
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        first = problems[0]
        others = len({p.path for p in problems} - {first.path})
        more = f" (and {others} more problem{'s' * (others > 1)})" if others else ""
        raise SpecError(file, first.line, _dotted(first.path), first.text + more) from exc


class _Builder:
    """Turns composed nodes into plain values, recording lines and refusing what YAML allows."""

    def __init__(
        self, file: str, env: Mapping[str, str], refuse: RefuseInterpolation | None
    ) -> None:
        self.file, self.env, self.refuse = file, env, refuse
        self.values: dict[Loc, int] = {}
        self.keys: dict[Loc, int] = {}
        self._open: set[int] = set()
        self._constructor = yaml.SafeLoader("")

    def build(self, node: Node, loc: Loc, key_line: int | None = None) -> Any:
        if len(self.values) >= MAX_VALUES:
            problem = f"more than {MAX_VALUES} values; check anchors and aliases"
            raise self._error(node, loc, problem)
        self.values[loc] = _line(node) if isinstance(node, ScalarNode) else key_line or _line(node)
        if isinstance(node, ScalarNode):
            return self._scalar(node, loc)
        if node.tag not in (_MAP, _SEQ):
            raise self._error(node, loc, f"unsupported tag {_tag(node)}")
        self._enter(node, loc, self.values[loc])
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode), "a composed node is a scalar, a list or a map"
            out = {}
            for key, (key_node, value_node) in self._entries(node, loc).items():
                self.keys[(*loc, key)] = _line(key_node)
                out[key] = self.build(value_node, (*loc, key), _line(key_node))
            return out
        finally:
            self._open.discard(id(node))

    def _enter(self, node: Node, loc: Loc, line: int) -> None:
        if id(node) in self._open:
            problem = "an alias refers to a mapping or list that contains it"
            raise SpecError(self.file, line, _dotted(loc), problem)
        self._open.add(id(node))

    def _entries(self, node: MappingNode, loc: Loc) -> dict[str, tuple[Node, Node]]:
        """Key → (key node, value node), merge keys resolved, duplicates refused."""
        written: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = "<<" if key_node.tag == _MERGE else self._key(key_node, loc)
            if key in written:
                first = _line(written[key][0])
                problem = f"duplicate key '{shorten(key)}' (first at line {first})"
                raise self._error(key_node, (*loc, key), problem)
            written[key] = (key_node, value_node)
            if key_node.tag == _MERGE:
                for source in self._merge_sources(value_node, loc):
                    self._enter(source, loc, _line(value_node))
                    try:
                        for name, entry in self._entries(source, loc).items():
                            merged.setdefault(name, entry)
                    finally:
                        self._open.discard(id(source))
        return merged | {k: entry for k, entry in written.items() if entry[0].tag != _MERGE}

    def _merge_sources(self, node: Node, loc: Loc) -> list[MappingNode]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        mappings = [source for source in sources if isinstance(source, MappingNode)]
        if len(mappings) != len(sources):
            raise self._error(node, loc, "a merge key '<<' takes a mapping or a list of mappings")
        return mappings

    def _key(self, node: Node, loc: Loc) -> str:
        if isinstance(node, ScalarNode) and node.tag == _STR:
            return str(node.value)
        if isinstance(node, ScalarNode):
            shown = shorten(node.value)
            problem = f"key {shown} is not a string; write it in quotes: '{shown}'"
        else:
            kind = "a mapping" if isinstance(node, MappingNode) else "a list"
            problem = f"a key must be a string, got {kind}"
        raise self._error(node, loc, problem)

    def _scalar(self, node: ScalarNode, loc: Loc) -> Any:
        if node.tag == _STR:
            return self._interpolate(node, loc)
        if node.tag in _AS_WRITTEN:
            return node.value
        if node.tag not in _CONSTRUCTED:
            raise self._error(node, loc, f"unsupported tag {_tag(node)}")
        try:
            return self._constructor.construct_object(node)
        except (ValueError, KeyError, yaml.YAMLError) as exc:
            problem = f"cannot read '{shorten(node.value)}' as {_tag(node)[1:-1]}"
            raise self._error(node, loc, problem) from exc

    def _interpolate(self, node: ScalarNode, loc: Loc) -> str:
        text: str = node.value
        if "${" not in text:
            return text
        if self.refuse and any(m["name"] for m in _REFERENCE.finditer(text)):
            problem = self.refuse(loc)
            if problem is not None:
                raise self._error(node, loc, problem)

        def substitute(match: re.Match[str]) -> str:
            name = match["name"]
            if match[0] == "$${":
                return "${"
            if name is None:
                problem = "a '${' must start ${NAME} or ${NAME:-default}; write '$${' for a '${'"
                raise self._error(node, loc, problem)
            value = self.env.get(name)
            if match["default"] is not None and not value:
                return match["default"]
            if value is None:
                raise self._error(node, loc, f"environment variable {name} is not set")
            hide_environment_value(name, value)
            return value

        return _REFERENCE.sub(substitute, text)

    def _error(self, node: Node, loc: Loc, problem: str) -> SpecError:
        return SpecError(self.file, _line(node), _dotted(loc), problem)


@dataclass(frozen=True)
class _Problem:
    """One pydantic error, placed in the document and put in plain words."""

    line: int | None
    path: Loc
    text: str

    @classmethod
    def of(
        cls, model: type[BaseModel], data: Any, error: ErrorDetails, lines: LineIndex
    ) -> _Problem:
        kind, loc, ctx = error["type"], error["loc"], error.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, SpecFieldError):
            loc = (*loc, *cause.loc)
        path, parent, at_key = _walk(model, data, loc)
        tag_key = str(ctx.get("discriminator", ""))
        if kind.startswith("union_tag_") and len(tag_key) > 2 and tag_key[0] == tag_key[-1] == "'":
            path = (*path, tag_key[1:-1])  # a key, not a callable discriminator
        if kind == "extra_forbidden":
            return cls(lines.line(path, key=True), path, _unknown_key(str(path[-1]), parent))
        if kind in ("missing", "union_tag_not_found"):
            return cls(lines.line(path), path, "required key missing")
        value = _HIDDEN if "credentials" in path else error.get("input")
        text = _plain(kind, error["msg"], ctx, value)
        if isinstance(value, str) and len(value) > MAX_SHOWN:  # a validator quoted it whole
            text = text.replace(value, shorten(value))
        return cls(lines.line(path, key=at_key), path, text)


_EXPECTED = {
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    "string_type": "a string",
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "a mapping"),
    **dict.fromkeys(("list_type", "tuple_type", "set_type", "frozen_set_type"), "a list"),
}


def _plain(kind: str, msg: str, ctx: Mapping[str, Any], value: Any) -> str:
    """A pydantic message as a spec author reads it: what was expected, what was written."""
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_show(value)}"
    if kind in ("literal_error", "enum"):
        head, _, last = str(ctx.get("expected", "")).rpartition(" or ")
        expected = f"one of {head}, {last}" if head else last
        return f"expected {expected}, got {_show(value)}"
    if kind == "union_tag_invalid":
        return f"expected one of {ctx.get('expected_tags')}, got {_show(ctx.get('tag'))}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if match := re.fullmatch(r"[A-Z]\w* should (.*)", msg):  # "Input should be greater than 0"
        got = "" if isinstance(value, (Mapping, list, tuple)) else f", got {_show(value)}"
        return f"must {match[1]}{got}"
    return msg


_SECRET_KEY = re.compile(
    r"(?i)secret|password|passwd|token|access[_-]?key|api[_-]?key|private[_-]?key|signature"
)


def _unknown_key(key: str, parent: Any) -> str:
    spellings = _spellings(parent)
    if "credentials" in spellings and _SECRET_KEY.search(key):
        return (
            f"unknown key '{shorten(key)}': a secret never goes in a spec (specs are checked in "
            "and logged); use credentials: {env: VAR}, e.g. credentials: {access_key_id: {env: "
            "AWS_ACCESS_KEY_ID}, secret_access_key: {env: AWS_SECRET_ACCESS_KEY}}"
        )
    match = difflib.get_close_matches(key, spellings, n=1)
    if match:
        return f"unknown key '{shorten(key)}' (did you mean '{spellings[match[0]]}'?)"
    allowed = ", ".join(dict.fromkeys(spellings.values()))
    return f"unknown key '{shorten(key)}'" + (f" (expected one of: {allowed})" if allowed else "")


def _spellings(tp: Any) -> dict[str, str]:
    """Every key a model (or union of models) accepts → the spelling to suggest for it."""
    out: dict[str, str] = {}
    for member in _members(tp):
        if _is_model(member):
            for name, info in member.model_fields.items():
                shown = _key_of(name, info)
                out.setdefault(shown, shown)
                out.setdefault(name, shown)
    return out


def _walk(model: type[BaseModel], data: Any, loc: Sequence[str | int]) -> tuple[Loc, Any, bool]:
    """Follow a pydantic loc through the model and the data.

    Returns the data path (union tags removed), the type holding its last step, and whether the
    error is about a mapping key (pydantic's `[key]` step) rather than its value. A model that
    accepts a list as the short form of one field (`validate: [a, b]` for `{locks: [a, b]}`)
    gets a loc through that field; the path stays on the list the author wrote.
    """
    path: list[str | int] = []
    tp: Any = model
    parent: Any = None
    node = data
    at_key = False
    for step in loc:
        if step == "[key]":
            at_key = True
            continue
        members = _members(tp)
        if isinstance(node, list) and isinstance(step, str):
            tp = _child(members, step)  # a list written for a model: the short form of `step`
            continue
        chosen = _tagged(members, step, node) if len(members) > 1 else None
        if chosen is not None:
            tp = chosen
            continue
        parent, tp = tp, _child(members, step)
        path.append(step)
        node = _child_value(node, step)
    return tuple(path), parent, at_key


def _members(tp: Any) -> list[Any]:
    """The alternatives of a (possibly Annotated, Optional or nested) union, None dropped."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        return [m for arg in get_args(tp) for m in _members(arg)]
    return [] if tp is None or tp is type(None) else [tp]


def _tagged(members: list[Any], step: str | int, node: Any) -> Any:
    """The union member that pydantic named by `step` in a loc, if `step` is such a tag.

    Discriminated unions use the tag value (which the data holds under the tag's key); other
    unions use the member's name (`FileStore`, `int`, `list[int]`).
    """
    for member in members:
        if _is_model(member):
            if member.__name__ == step:
                return member
            for name, info in member.model_fields.items():
                key = _key_of(name, info)
                if (
                    isinstance(node, dict)
                    and node.get(key) == step
                    and step in _literal_values(info.annotation)
                ):
                    return member
        elif step in (getattr(member, "__name__", None), str(member)):
            return member
    return None


def _child(members: list[Any], step: str | int) -> Any:
    """The type found at `step` inside any of `members`, or None when unknown."""
    for member in members:
        origin, args = get_origin(member), get_args(member)
        if _is_model(member) and isinstance(step, str):
            fields = member.model_fields.items()
            found = [i.annotation for n, i in fields if step in (n, _key_of(n, i))]
        elif isclass(origin) and issubclass(origin, Mapping) and len(args) == 2:
            found = [args[1]]
        elif origin is tuple and isinstance(step, int) and Ellipsis not in args:
            found = [args[step]] if step < len(args) else []
        elif isclass(origin) and issubclass(origin, (Sequence, set, frozenset)) and args:
            found = [args[0]]
        else:
            found = []
        if found:
            return found[0]
    return None


def _child_value(node: Any, step: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(step)
    if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
        return node[step]
    return None


def _literal_values(tp: Any) -> tuple[Any, ...]:
    return tuple(v for m in _members(tp) if get_origin(m) is Literal for v in get_args(m))


def _is_model(tp: Any) -> bool:
    return isclass(tp) and issubclass(tp, BaseModel)


def _key_of(name: str, info: FieldInfo) -> str:
    """The key a spec author writes for a field: its validation alias or alias, else its name."""
    alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
    return alias or name


def _dotted(path: Sequence[str | int]) -> str:
    """`targets.local.layout`, `validate[2]`: how a spec author names a place in the file."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else str(step)
    return out


_HIDDEN = object()
"""Stands for a value under `credentials`: a typo there may be a secret, never to be echoed."""


def _show(value: Any) -> str:
    """A value as the spec author wrote it, short."""
    if value is _HIDDEN:
        return "a value not shown here (credentials are never echoed)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str) and len(value) > 60:
        value = value[:57] + "..."
    return repr(value)


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _tag(node: Node) -> str:
    return "'" + node.tag.replace(_CORE, "!!", 1) + "'"


# (pattern over "context|problem", the same in plain words, blame the context's line)
_SYNTAX: tuple[tuple[str, str, bool], ...] = (
    (r".*\|could not find expected ':'", "expected 'key: value', but this line has no ':'", True),
    (
        r".*\|found character '\\t' that cannot start any token",
        "a tab cannot indent a line or start a value; use spaces",
        False,
    ),
    (
        r".*\|found character (.*) that cannot start any token",
        r"a value cannot start with \1; put the value in quotes",
        False,
    ),
    (
        r".*\|mapping values are not allowed here",
        "unexpected ':'; check the indentation, or quote a value that contains ': '",
        False,
    ),
    (r".*\|found undefined alias '(.*)'", r"alias *\1 has no anchor &\1 before it", False),
    (r"found duplicate anchor '(.*)'; first occurrence\|.*", r"anchor &\1 is defined twice", False),
    (
        r".*\|expected <block end>, but found .*",
        "this line does not line up with the lines above it; check the indentation",
        False,
    ),
    (
        r".*flow (?:mapping|sequence)\|expected ',' or '[]}]', but got '{'",
        "quote a value that contains '{' inside [...] or {...}, e.g. '${VAR}'",
        False,
    ),
    (r".*\|but found another document", "the file holds more than one YAML document", False),
    (r".*quoted scalar\|found unexpected end of stream", "a quoted value is never closed", True),
    (r".*flow mapping\|.*'<stream end>'", "a '{' is never closed", True),
    (r".*flow sequence\|.*'<stream end>'", "a '[' is never closed", True),
    (r".*flow sequence\|expected ',' or '\]', but got '}'", "a '[' is closed with '}'", False),
    (r".*flow mapping\|expected ',' or '}', but got '\]'", "a '{' is closed with ']'", False),
    (
        r".*flow mapping\|expected ',' or '}', but got .*",
        "a '{' is not closed on its line, or a ',' is missing between its entries",
        True,
    ),
    (
        r".*flow sequence\|expected ',' or '\]', but got .*",
        "a '[' is not closed on its line, or a ',' is missing between its values",
        True,
    ),
    (
        r"\|expected '<document start>', but found '<block mapping start>'",
        "this line starts the 'key: value' lines, but the text above it has no ':'",
        False,
    ),
)


def _syntax_error(file: str, exc: yaml.MarkedYAMLError) -> SpecError:
    problem = exc.problem or "invalid YAML"
    mark = exc.problem_mark or exc.context_mark
    for pattern, plain, at_context in _SYNTAX:
        if match := re.fullmatch(pattern, f"{exc.context or ''}|{problem}"):
            problem = match.expand(plain)
            mark = exc.context_mark if at_context and exc.context_mark else mark
            break
    else:
        problem = f"{problem} ({exc.context})" if exc.context else problem
    return SpecError(file, mark.line + 1 if mark else None, "", f"YAML syntax error: {problem}")
