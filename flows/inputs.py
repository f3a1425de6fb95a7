"""Load a spec and the tables it names: everything the compiler needs, read once, checked early.

This runs before Prefect starts (so a bad spec or table fails in a second with one line) and again
inside the flow run (so a deployment run needs nothing but the spec path).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from stacflow.flows.spec import Spec
from stacflow.flows.specfile import Loc, load_model
from stacflow.flows.workspace import outputs_folder, outputs_id
from stacflow.tasks.errors import UsageError
from stacflow.tasks.items import read_items_table
from stacflow.tasks.locks import LockRow, read_lock, written_by_stacflow
from stacflow.tasks.moves import Record
from stacflow.tasks.outputs import OutputPaths
from stacflow.tasks.state import journal_path, read_records

PACKAGE_ITEMS = "items.parquet"
PACKAGE_LOCK = "assets.lock.parquet"


@dataclass(frozen=True)
class Inputs:
    spec: Spec
    spec_path: Path
    lock: list[LockRow]
    items_path: Path | None
    collections: dict[str, str | None] = field(default_factory=dict)
    provider_checksums: dict[tuple[str, str], str] = field(default_factory=dict)
    source_locks: dict[str, list[LockRow]] = field(default_factory=dict)
    stacpkg_locks: frozenset[str] = frozenset()
    """Sources whose rows come from a lock stacpkg wrote: validated with its exact ETags."""
    adopt_locks: dict[str, list[LockRow]] = field(default_factory=dict)
    """Per target, the lock of copies another tool made there (`targets.<name>.adopt`)."""

    @property
    def base(self) -> Path:
        return self.spec_path.parent

    @property
    def outputs(self) -> Path:
        return outputs_folder(self.spec_path, self.spec)

    @property
    def outputs_id(self) -> str:
        """The outputs' name across hosts (a folder's path, a bucket's URL): owners use it."""
        return outputs_id(self.spec_path, self.spec)


def load_spec(path: Path, env: Mapping[str, str] | None = None) -> Spec:
    return load_model(
        Spec,
        path,
        env=env,
        context={"base_dir": path.parent},
        refuse_interpolation=_no_secret_interpolation,
    )


def load_inputs(
    spec_path: Path, spec: Spec, *, lock: list[LockRow] | None = None, items: Path | None = None
) -> Inputs:
    """The package's lock and items; for lock-less Items, the derived `lock` and `items` given."""
    base = spec_path.parent
    if spec.package is not None:
        package = base / spec.package
        lock = _lock(package / PACKAGE_LOCK)
        items = package / PACKAGE_ITEMS
    if spec.items is not None:
        items = base / spec.items
    collections, checksums = _item_facts(items) if items is not None else ({}, {})
    source_locks = {
        name: _lock(base / source.lock)
        for name, source in spec.sources.items()
        if source.lock is not None
    }
    package_lock = base / spec.package / PACKAGE_LOCK if spec.package is not None else None
    stacpkg_locks = frozenset(
        name
        for name, source in spec.sources.items()
        if (lock_path := base / source.lock if source.lock is not None else package_lock)
        and not written_by_stacflow(lock_path)
    )
    adopt_locks = {
        name: _lock(base / target.adopt)
        for name, target in spec.targets.items()
        if target.adopt is not None
    }
    return Inputs(
        spec,
        spec_path,
        lock or [],
        items,
        collections,
        checksums,
        source_locks,
        stacpkg_locks,
        adopt_locks,
    )


def _lock(path: Path) -> list[LockRow]:
    return list(_read_once(path, read_lock))


def _item_facts(path: Path) -> tuple[dict[str, str | None], dict[tuple[str, str], str]]:
    collections, checksums = _read_once(path, lambda p: _asset_facts(read_items_table(p)))
    return dict(collections), dict(checksums)


_READ: dict[tuple[str, Any], tuple[tuple[int, int, int, int], Any]] = {}


def _read_once(path: Path, read: Callable[[Path], Any]) -> Any:
    """A table is read once per command although the preflight and the flow both load inputs:
    reading is keyed by the file's identity (device, inode, size, mtime), so an edited or
    replaced file is read again. Only the latest read of each path and reader is kept."""
    try:
        stat = path.stat()
        identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    except OSError:
        return read(path)  # the reader says what is wrong, as before
    key = (str(path.resolve()), getattr(read, "__qualname__", read))
    cached = _READ.get(key)
    if cached is None or cached[0] != identity:
        cached = _READ[key] = (identity, read(path))
    return cached[1]


def _asset_facts(
    table: pa.Table,
) -> tuple[dict[str, str | None], dict[tuple[str, str], str]]:
    """Each item's collection (for selection), and the checksums providers already published."""
    ids = table.column("id").to_pylist()
    collections = (
        table.column("collection").to_pylist()
        if "collection" in table.column_names
        else [None] * len(ids)
    )
    checksums = {}
    for item_id, assets in zip(ids, table.column("assets").to_pylist(), strict=True):
        for key, asset in (assets or {}).items():
            if asset and asset.get("file:checksum"):
                checksums[(item_id, key)] = asset["file:checksum"]
    return dict(zip(ids, collections, strict=True)), checksums


def with_items_table(inputs: Inputs, table: pa.Table, path: Path) -> Inputs:
    """`inputs` with Items that are to be written at `path` but are not yet: their facts are
    read from the table in memory, so that a plan can be refused before anything is written."""
    collections, checksums = _asset_facts(table)
    return dataclasses.replace(
        inputs, items_path=path, collections=collections, provider_checksums=checksums
    )


def _no_secret_interpolation(loc: Loc) -> str | None:
    if "credentials" in loc:
        return (
            "credentials cannot use ${...}: that would copy the secret into the spec; "
            "write {env: VARIABLE_NAME} and the value is read at run time"
        )
    return None


def previous_records(inputs: Inputs) -> dict[str, dict[tuple[str, str], Record]]:
    """What each target held after earlier runs, from its journal (or its relocated lock)."""
    paths = OutputPaths(inputs.outputs)
    return {
        name: read_records(journal_path(inputs.outputs, name), fallback_lock=paths.lock(name))
        for name in inputs.spec.targets
    }


def locks_to_validate(spec_path: Path, spec: Spec, requested: list[str] | None) -> list[str]:
    """The names `check` validates: those asked for, else the spec's validate list; a name that
    is no source or target, or an empty choice, is a usage error naming what exists."""
    names = [*spec.sources, *spec.targets]
    chosen = list(requested) if requested else (spec.validate_.locks if spec.validate_ else [])
    unknown = [name for name in chosen if name not in names]
    if unknown:
        raise UsageError(
            f"{spec_path}: no source or target named {', '.join(map(repr, unknown))} "
            f"to validate (names: {', '.join(names)})"
        )
    if not chosen:
        raise UsageError(
            f"{spec_path}: nothing to validate: the spec has no validate list; add one, or "
            f"name locks with --lock NAME ({', '.join(names)})"
        )
    return chosen


def unwritten_locks(spec_path: Path, spec: Spec, names: list[str]) -> dict[str, str]:
    """Of `names`, the locks no run has written yet (relocated locks, a derived package), and
    what to do about it: validation checks the rest and says which these are."""
    outputs = OutputPaths(outputs_folder(spec_path, spec))
    waiting = {}
    for name in names:
        if name in spec.targets and not outputs.lock(name).is_file():
            waiting[name] = f"no relocated lock yet for target {name} (run `stacflow run` first)"
        elif name in spec.sources and spec.stac is not None and not outputs.package.is_dir():
            waiting[name] = (
                f"no lock yet for source {name}: `stacflow run` derives it from the Items first"
            )
    return waiting
