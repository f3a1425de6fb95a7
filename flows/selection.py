"""Which lock rows a run touches, and why it leaves each other row alone: decided before any copy.

`select` keeps rows by item, collection and asset key. Each source stands for some rows: those
under its `prefix`, those its `lock` holds, or (with neither) the lock's own remote locations and
the files inside the package's or the Items' folder. A run reads only the stores its spec declares
so: a row no source stands for is refused by name (a lock cannot point a run at `/etc`), and a row
left out is counted with its reason in the plan, the summary and the report.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from stacflow.flows.spec import Source, Spec
from stacflow.tasks.errors import InputError, shorten, strip_url_secrets
from stacflow.tasks.locations import Location, to_href
from stacflow.tasks.locks import LockRow
from stacflow.tasks.report import Outcome, Result, Step
from stacflow.tasks.stores import backend_for

EXAMPLES = 3
HREF_SHOWN = 200


@dataclass(frozen=True, slots=True)
class NotSelected:
    """A locked asset this run leaves alone, and why."""

    item_id: str
    asset_key: str
    reason: str


def select_rows(
    spec: Spec, rows: Sequence[LockRow], collections: Mapping[str, str | None]
) -> tuple[list[LockRow], list[NotSelected]]:
    """The rows `select` keeps, and the others with the rule that left each out."""
    chosen = spec.select
    kept: list[LockRow] = []
    dropped: list[NotSelected] = []

    def rule(row: LockRow) -> str | None:
        if chosen.items and not _matches(row.item_id, chosen.items):
            return "select.items"
        if chosen.collections and collections.get(row.item_id) not in chosen.collections:
            return "select.collections"
        if chosen.assets.include and not _matches(row.asset_key, chosen.assets.include):
            return "select.assets.include"
        if _matches(row.asset_key, chosen.assets.exclude):
            return "select.assets.exclude"
        return None

    for row in rows:
        left_out = rule(row)
        if left_out is None:
            kept.append(row)
        else:
            dropped.append(NotSelected(row.item_id, row.asset_key, f"filtered by {left_out}"))
    return kept, dropped


class SourceMap:
    """Which declared sources stand for a lock row: the only stores a run may read from."""

    def __init__(self, spec: Spec, base: Path, source_locks: Mapping[str, list[LockRow]]) -> None:
        self.sources = spec.sources
        self.prefixes = {
            name: prefix_href(source.prefix, base)
            for name, source in spec.sources.items()
            if source.prefix is not None
        }
        self.locked = {
            name: {(r.item_id, r.asset_key) for r in source_locks.get(name, [])}
            for name, source in spec.sources.items()
            if source.lock is not None or source.plan is not None
        }
        self.folders = [
            path.resolve()
            for path in (
                base / spec.package if spec.package is not None else None,
                (base / spec.stac).parent if spec.stac is not None else None,
            )
            if path is not None
        ]

    def sources_of(self, row: LockRow) -> list[str]:
        """Names of the sources that stand for `row`; raises InputError if it has no href."""
        href = row.href
        return [
            name for name, source in self.sources.items() if self._covers(name, source, row, href)
        ]

    def covers(self, name: str, row: LockRow) -> bool:
        return self._covers(name, self.sources[name], row, row.href)

    def _covers(self, name: str, source: Source, row: LockRow, href: str) -> bool:
        if name in self.locked:  # a lock read from a file, or planned from the package's
            return (row.item_id, row.asset_key) in self.locked[name]
        if source.prefix is not None:
            return under(href, self.prefixes[name])
        found = backend_for(row.store_type)
        if found is not None and found.capabilities.file_system:
            path = Path(row.key or "/")
            return any(path.is_relative_to(folder) for folder in self.folders)
        return True


@dataclass(frozen=True)
class Sorted:
    """The selected rows of a lock, sorted by the source they come from."""

    relocated: list[LockRow]
    """Rows under the relocation source, in lock order."""
    elsewhere: list[NotSelected]
    """Rows under another declared source only."""
    problems: list[str]
    """Rows outside every declared source, and rows without a usable href: plan conflicts."""


def sort_rows(selected: Sequence[LockRow], sources: SourceMap, relocate_from: str) -> Sorted:
    relocated: list[LockRow] = []
    elsewhere: list[NotSelected] = []
    outside: list[LockRow] = []
    unusable: list[str] = []
    for row in selected:
        try:
            names = sources.sources_of(row)
        except InputError as error:
            unusable.append(f"{_asset(row)}: {error}")
            continue
        if _has_userinfo(row.href):
            unusable.append(
                f"{_asset(row)} at {shown_href(row.href)}: credentials in an href are not "
                "supported (they would reach logs and locks); configure them on the store"
            )
            continue
        if relocate_from in names:
            relocated.append(row)
        elif names:
            reason = f"under source {names[0]}, not the relocation source {relocate_from}"
            elsewhere.append(NotSelected(row.item_id, row.asset_key, reason))
        else:
            outside.append(row)
    problems = []
    if unusable:
        problems.append(
            f"{len(unusable)} locked asset(s) have no usable location: "
            + "; ".join(unusable[:EXAMPLES])
            + (" …" if len(unusable) > EXAMPLES else "")
        )
    if outside:
        problems.append(outside_every_source(outside))
    return Sorted(relocated, elsewhere, problems)


def outside_every_source(rows: Sequence[LockRow]) -> str:
    examples = ", ".join(f"{_asset(row)} at {shown_href(row.href)}" for row in rows[:EXAMPLES])
    more = f" and {len(rows) - EXAMPLES} more" if len(rows) > EXAMPLES else ""
    return (
        f"{len(rows)} locked asset(s) outside every declared source ({examples}{more}): a run "
        "reads only the stores its spec declares; add a source whose prefix covers them, or "
        "leave them out with select"
    )


def nothing_to_relocate(
    name: str,
    source: Source,
    *,
    locked: int,
    selected: Sequence[LockRow],
    lock_path: str,
) -> str:
    """Why the relocation source stands for no row: said as what is actually wrong."""
    if not locked:
        return f"source {name}: the lock {lock_path} has no rows: there is nothing to relocate"
    if not selected:
        return f"source {name}: select leaves none of the {locked} locked assets"
    if source.lock is not None:
        return f"source {name}: its lock {source.lock} has no row for the selected assets"
    if source.plan is not None:
        return f"source {name}: its planned lock has no row for the selected assets"
    if source.prefix is not None:
        example = next((row.href for row in selected if _has_href(row)), None)
        seen = f"; hrefs look like {shown_href(example)}" if example else ""
        return f"source {name}: no locked href starts with {source.prefix}{seen}"
    return f"source {name}: none of the selected assets is a remote object or a file it covers"


def prefix_href(prefix: str, base: Path) -> str:
    """A source prefix as the href it covers: a folder (a path, relative to the spec file, or a
    file:// URL) becomes the file:// href of its absolute path, as lock rows spell theirs."""
    parts = urlsplit(prefix)
    if parts.scheme not in {"", "file"}:
        return prefix
    folder = (base / (unquote(parts.path) if parts.scheme == "file" else prefix)).resolve()
    return to_href(Location("file", None, None, str(folder)))


def under(href: str, prefix: str) -> bool:
    """Whole path segments: `https://host/a` covers `https://host/a/x.tif`, not `…/ab.tif`."""
    stem = prefix.rstrip("/")
    return href == stem or href.startswith(stem + "/")


def shown_href(href: str) -> str:
    """An href for a message: no userinfo, no query string (either may be a secret), short."""
    return shorten(strip_url_secrets(href), HREF_SHOWN)


def _has_userinfo(href: str) -> bool:
    try:
        parts = urlsplit(href)
    except ValueError:
        return False
    return parts.username is not None or parts.password is not None


def not_selected_outcomes(
    not_selected: Iterable[NotSelected], targets: Sequence[str]
) -> list[Outcome]:
    """Every locked asset ends with an outcome: those a run leaves alone say why, per target."""
    return [
        Outcome(
            row.item_id,
            row.asset_key,
            target,
            Step.RELOCATE,
            Result.NOT_SELECTED,
            message=row.reason,
        )
        for row in not_selected
        for target in targets
    ]


def without_item_note(assets: Sequence[str]) -> list[str]:
    """What a reader must know about relocated assets whose Item the items table lacks."""
    if not assets:
        return []
    more = f" and {len(assets) - EXAMPLES} more" if len(assets) > EXAMPLES else ""
    note = (
        f"{len(assets)} locked asset(s) name an Item the items table lacks "
        f"({', '.join(assets[:EXAMPLES])}{more}): relocated and locked, but no Item carries "
        "their alternate"
    )
    return [note]


def counted(not_selected: Iterable[NotSelected]) -> dict[str, list[NotSelected]]:
    """Not-selected rows by reason, in first-seen order."""
    by_reason: dict[str, list[NotSelected]] = {}
    for row in not_selected:
        by_reason.setdefault(row.reason, []).append(row)
    return by_reason


def _asset(row: LockRow) -> str:
    return f"{shorten(row.item_id)}/{shorten(row.asset_key)}"


def _has_href(row: LockRow) -> bool:
    try:
        row.href  # noqa: B018 - building it is the test
    except InputError:
        return False
    return True


def _matches(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)
