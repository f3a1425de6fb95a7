"""Compile a spec and its tables into a `Plan`: every move and check, decided before a byte moves.

Pure: no I/O. Everything that could go wrong with keys is found here and refused as a whole
(two assets mapped to one key, a key that would leave its root, a source that matches nothing),
so that `stacflow plan` and `stacflow run` agree, and a run never stops half-way for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from stacflow.flows.inputs import Inputs
from stacflow.flows.layouts import (
    fits_store,
    nesting_conflicts,
    shown_key,
    target_location,
    target_path,
)
from stacflow.flows.planned import plan_source_locks
from stacflow.flows.selection import (
    NotSelected,
    SourceMap,
    nothing_to_relocate,
    outside_every_source,
    select_rows,
    sort_rows,
    under,
)
from stacflow.flows.spec import Source, Spec
from stacflow.tasks.errors import Conflict, InputError, PlanConflict
from stacflow.tasks.locations import Location
from stacflow.tasks.locks import LockRow, missing_fields
from stacflow.tasks.moves import Check, Leg, Move, Record
from stacflow.tasks.owners import owner_id
from stacflow.tasks.relocate import CopyPolicy
from stacflow.tasks.retry import RetryPolicy
from stacflow.tasks.stores import Endpoint, StoreRef, backend_for, capabilities


@dataclass(frozen=True, slots=True)
class TargetPlan:
    name: str
    store: StoreRef
    alternate_key: str
    alternate_name: str | None


@dataclass(frozen=True, slots=True)
class LockAlternate:
    """A source's lock (read or planned) that the Items gain as an alternate; no byte moves."""

    source: str
    key: str
    name: str | None
    rows: tuple[LockRow, ...]


@dataclass(frozen=True, slots=True)
class LockChecks:
    name: str
    checks: tuple[Check, ...]
    checksums: bool


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a run will do, in order; a typed object, snapshot-tested as JSON."""

    name: str
    slug: str
    source: str
    moves: tuple[Move, ...]
    targets: tuple[TargetPlan, ...]
    source_checks: tuple[LockChecks, ...]
    validate_targets: tuple[str, ...]
    checksum_targets: frozenset[str]
    policy: CopyPolicy
    batch_assets: int
    batch_bytes: int
    not_selected: tuple[NotSelected, ...] = field(default=())
    """Locked assets this run leaves alone, each with its reason."""
    without_item: tuple[str, ...] = field(default=())
    """`item/asset` of relocated assets whose Item the items table lacks: no alternate for them."""
    conflicts: tuple[Conflict, ...] = field(default=())
    """Why the plan refuses to run; each names the target it concerns, if any, as data."""
    planned_locks: dict[str, tuple[LockRow, ...]] = field(default_factory=dict)
    """The lock of each planned source (`sources.<name>.plan`), as stacpkg's dry run plans it."""
    lock_alternates: tuple[LockAlternate, ...] = field(default=())
    """Sources whose rows for the selected assets the Items gain as alternates."""

    @property
    def bytes(self) -> int:
        return sum(m.expected_size or 0 for m in self.moves)

    @property
    def unselected(self) -> int:
        return len(self.not_selected)

    def refuse_conflicts(self) -> None:
        if self.conflicts:
            raise PlanConflict(list(self.conflicts))

    def batches(self) -> list[tuple[Move, ...]]:
        """One Prefect task run per batch: bounded by asset count and by bytes."""
        return batches(self.moves, self.batch_assets, self.batch_bytes)


def batches(moves: Sequence[Move], assets: int, size_limit: int) -> list[tuple[Move, ...]]:
    """Consecutive moves, at most `assets` and `size_limit` bytes per batch (a larger move
    alone)."""
    found: list[tuple[Move, ...]] = []
    current: list[Move] = []
    size = 0
    for move in moves:
        grows = size + (move.expected_size or 0)
        if current and (len(current) >= assets or grows > size_limit):
            found.append(tuple(current))
            current, size = [], 0
        current.append(move)
        size += move.expected_size or 0
    if current:
        found.append(tuple(current))
    return found


def compile_plan(
    inputs: Inputs,
    previous: Mapping[str, Mapping[tuple[str, str], Record]] | None = None,
    only_targets: Sequence[str] | None = None,
    *,
    validate: Sequence[str] | None = None,
    checksums: bool | None = None,
) -> Plan:
    """`validate` and `checksums` override the spec's validate section (scheduled checks)."""
    spec = inputs.spec
    planned, conflicts = plan_source_locks(inputs)
    inputs = replace(inputs, source_locks={**inputs.source_locks, **planned})
    selected, not_selected = select_rows(spec, inputs.lock, inputs.collections)
    sources = SourceMap(spec, inputs.base, inputs.source_locks)
    source_name = spec.relocate_source
    source = spec.sources[source_name]
    by_source = sort_rows(selected, sources, source_name)
    conflicts.extend(by_source.problems)
    not_selected += by_source.elsewhere
    rows = source_rows(source_name, source, by_source.relocated, inputs)
    if not rows and not by_source.problems:
        lock_path = (
            str(inputs.base / spec.package / "assets.lock.parquet")
            if spec.package
            else "derived from the Items"
        )
        conflicts.append(
            nothing_to_relocate(
                source_name, source, locked=len(inputs.lock), selected=selected, lock_path=lock_path
            )
        )
    unknown = sorted(set(only_targets or ()) - set(spec.targets))
    if unknown:
        conflicts.append(
            f"no target named {', '.join(unknown)} (targets: {', '.join(spec.targets)})"
        )
    names = [n for n in spec.targets if not only_targets or n in only_targets]
    targets = tuple(
        TargetPlan(
            name,
            replace(
                spec.targets[name].store.ref(inputs.base, spec.relocate.chunk_size),
                owner=owner_id(inputs.outputs_id),
            ),
            spec.alternate_key(name),
            spec.alternate_name(name),
        )
        for name in names
    )
    moves, found = plan_moves(
        spec, rows, source_name=source_name, targets=targets, inputs=inputs, previous=previous or {}
    )
    conflicts.extend(found)
    names_to_validate = spec.validate_.locks if spec.validate_ else []
    if validate is not None:
        names_to_validate = list(validate)
    checks, validate_targets, checksum_targets = [], [], set()
    for name in names_to_validate:
        with_checksums = (
            checksums
            if checksums is not None
            else bool(spec.validate_ and spec.validate_.with_checksums(name))
        )
        if name in spec.targets:
            if name in names:
                validate_targets.append(name)
                if with_checksums:
                    checksum_targets.add(name)
            continue
        if name not in spec.sources:
            conflicts.append(f"no source or target named {name} to validate")
            continue
        covered = [row for row in selected if _covers(sources, name, row)]
        lock_rows = source_rows(name, spec.sources[name], covered, inputs)
        checks.append(
            LockChecks(name, tuple(source_checks(name, spec, lock_rows, inputs)), with_checksums)
        )
    return Plan(
        name=spec.name,
        slug=spec.slug,
        source=source_name,
        moves=moves,
        targets=targets,
        source_checks=tuple(checks),
        validate_targets=tuple(validate_targets),
        checksum_targets=frozenset(checksum_targets),
        policy=copy_policy(spec, targets),
        batch_assets=spec.relocate.batch.assets,
        batch_bytes=spec.relocate.batch.bytes,
        not_selected=tuple(not_selected),
        without_item=tuple(
            f"{m.source.item_id}/{m.source.asset_key}"
            for m in moves
            if inputs.items_path is not None and m.source.item_id not in inputs.collections
        ),
        conflicts=tuple(c if isinstance(c, Conflict) else Conflict(c) for c in conflicts),
        planned_locks={name: tuple(rows) for name, rows in planned.items()},
        lock_alternates=tuple(
            LockAlternate(
                name,
                spec.alternate_key(name),
                spec.alternate_name(name),
                tuple(
                    source_rows(
                        name,
                        spec.sources[name],
                        [row for row in selected if _covers(sources, name, row)],
                        inputs,
                    )
                ),
            )
            for name in spec.lock_alternates
        ),
    )


def source_rows(
    name: str, source: Source, covered: Sequence[LockRow], inputs: Inputs
) -> list[LockRow]:
    """The rows to read for the package rows a source covers: those rows themselves, or for a
    source with its own lock (read or planned), that lock's rows for the same assets."""
    if source.lock is None and source.plan is None:
        return list(covered)
    wanted = {(r.item_id, r.asset_key) for r in covered}
    return [r for r in inputs.source_locks[name] if (r.item_id, r.asset_key) in wanted]


def _covers(sources: SourceMap, name: str, row: LockRow) -> bool:
    try:
        return sources.covers(name, row)
    except InputError:
        return False  # a row without a usable href is a conflict of its own


def source_access(
    row: LockRow, source: Source, chunk_size: int, base: Path
) -> tuple[StoreRef, str]:
    """Where to fetch one locked row's bytes: its own store, a mirror, or an endpoint override.

    A mirror (`store.endpoint` on an http(s) source) serves the same keys elsewhere: another
    http(s) origin, or a folder (a path, relative to the spec file, or a file:// URL).
    """
    access = source.store
    compare = frozenset(source.compare)
    found = backend_for(row.store_type)
    if found is None:  # a row without a store type: validation names the missing field
        ref = StoreRef(row.store_type or "", row.store_container, "", access, chunk_size, compare)
        return ref, row.key or ""
    can = found.capabilities
    compare &= can.facts
    if can.endpoint is Endpoint.MIRROR and access.endpoint:
        if source.prefix and under(row.href, source.prefix):
            path = row.href[len(source.prefix.rstrip("/")) :].lstrip("/")
        else:
            path = row.key or ""
        mirror = mirror_store(access.endpoint, source, chunk_size, base)
        # A mirror origin gets the key as written; a folder holds the names an origin decodes.
        return mirror, unquote(path) if capabilities(mirror).file_system else path
    if can.endpoint is Endpoint.SERVICE and not access.endpoint and row.store_endpoint_url:
        access = access.model_copy(update={"endpoint": row.store_endpoint_url})
    if can.file_system:
        ref = StoreRef(found.name, None, "/", access, chunk_size, compare)
        return ref, (row.key or "").lstrip("/")
    return StoreRef(found.name, row.store_container, "", access, chunk_size, compare), row.key or ""


def mirror_store(endpoint: str, source: Source, chunk_size: int, base: Path) -> StoreRef:
    """The store a mirror endpoint names: an http(s) origin, or a folder (relative to `base`)."""
    mirror = urlsplit(endpoint)
    found = backend_for(mirror.scheme or "file")
    assert found is not None  # the spec accepts only these schemes
    compare = frozenset(source.compare) & found.capabilities.facts
    if found.capabilities.file_system:
        folder = base / (unquote(mirror.path) if mirror.scheme == "file" else endpoint)
        return StoreRef(found.name, None, str(folder.resolve()), source.store, chunk_size, compare)
    container = f"{mirror.scheme}://{mirror.netloc}"
    root = mirror.path.strip("/")
    return StoreRef(found.name, container, root, source.store, chunk_size, compare)


def plan_moves(
    spec: Spec,
    rows: Sequence[LockRow],
    *,
    source_name: str,
    targets: Sequence[TargetPlan],
    inputs: Inputs,
    previous: Mapping[str, Mapping[tuple[str, str], Record]],
) -> tuple[tuple[Move, ...], list[str]]:
    source = spec.sources[source_name]
    conflicts: list[str] = []
    moves: list[Move] = []
    claimed: dict[str, dict[str, tuple[str, str]]] = {t.name: {} for t in targets}
    adopt = {
        name: {(r.item_id, r.asset_key): r for r in rows}
        for name, rows in inputs.adopt_locks.items()
    }
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row.item_id, row.asset_key)
        if key in seen:
            conflicts.append(
                f"source {source_name}: the lock has more than one row for "
                f"{row.item_id}/{row.asset_key}"
            )
            continue
        seen.add(key)
        missing = missing_fields(row)
        if missing:
            conflicts.append(
                f"source {source_name}: {row.item_id}/{row.asset_key}: "
                f"missing fields: {','.join(missing)}"
            )
            continue
        legs = []
        for target in targets:
            try:
                path = target_path(
                    spec.targets[target.name].layout, row, inputs.collections.get(row.item_id)
                )
                fits_store(target.store, path)
            except ValueError as error:
                conflicts.append(
                    Conflict(
                        f"target {target.name}: {row.item_id}/{row.asset_key}: {error}", target.name
                    )
                )
                continue
            owner = claimed[target.name].setdefault(path, key)
            if owner != key:
                conflicts.append(
                    Conflict(
                        f"target {target.name}: {owner[0]}/{owner[1]} and {row.item_id}/"
                        f"{row.asset_key} both map to {shown_key(target.store, path)}",
                        target.name,
                    )
                )
                continue
            location = target_location(target.store, path)
            adoptable = adopt.get(target.name, {}).get(key)
            if adoptable and _place(adoptable.location) != _place(location):
                adoptable = None  # another tool's copy elsewhere (another layout) proves nothing
            legs.append(
                Leg(
                    target.name,
                    target.store,
                    path,
                    LockRow.at(row.item_id, row.asset_key, location),
                    previous.get(target.name, {}).get(key),
                    adoptable=adoptable,
                )
            )
        source_store, source_path = source_access(
            row, source, spec.relocate.chunk_size, inputs.base
        )
        if _plain_http(source_store) and not source_store.access.allow_http:
            conflicts.append(
                f"source {source_name}: {row.item_id}/{row.asset_key} is reached over plain "
                f"http:// ({_origin_of(source_store)}); set sources.{source_name}.store.allow_http"
            )
            continue
        moves.append(
            Move(
                source=row,
                source_store=source_store,
                source_path=source_path,
                legs=tuple(legs),
                expected_checksum=row.file_checksum or inputs.provider_checksums.get(key),
            )
        )
    for target in targets:
        conflicts.extend(
            Conflict(problem, target.name)
            for problem in nesting_conflicts(
                f"target {target.name}", target.store, claimed[target.name]
            )
        )
    return tuple(moves), conflicts


def source_checks(name: str, spec: Spec, rows: Iterable[LockRow], inputs: Inputs) -> list[Check]:
    """Checks of a source lock; a row without a checksum is held to the one its provider
    published on the Item (`file:checksum`), if any; a stacpkg lock's ETags are compared as
    stacpkg compares them."""
    source = spec.sources[name]
    checks = []
    for row in rows:
        store, path = source_access(row, source, spec.relocate.chunk_size, inputs.base)
        published = inputs.provider_checksums.get((row.item_id, row.asset_key))
        exact = name in inputs.stacpkg_locks
        if row.file_checksum or not published:
            checks.append(Check(row, store, path, exact_etag=exact))
        else:
            checks.append(Check(row, store, path, published, "items", exact_etag=exact))
    return checks


def derive_checks(spec: Spec, rows: Sequence[LockRow], base: Path) -> list[Check]:
    """HEAD each asset of lock-less Items through the first source that stands for it; an asset
    no source stands for is refused first (a run reads only the stores its spec declares)."""
    sources = SourceMap(spec, base, {})
    names = [n for n, s in spec.sources.items() if s.lock is None and s.plan is None]
    checks, outside = [], []
    for row in rows:
        source = next((spec.sources[n] for n in names if sources.covers(n, row)), None)
        if source is None:
            outside.append(row)
            continue
        checks.append(Check(row, *source_access(row, source, spec.relocate.chunk_size, base)))
    if outside:
        raise PlanConflict([outside_every_source(outside)])
    return checks


def target_checks(
    target: TargetPlan, rows: Iterable[LockRow], recorded: Mapping[tuple[str, str], Record]
) -> list[Check]:
    """Checks of a relocated lock: its keys are read back relative to the target's root. A row
    that lost its checksum (stacpkg rewrites locks without it) is held to the one recorded when
    the copy was made, for the same key and size."""
    root = target.store.root.strip("/")
    checks = []
    for row in rows:
        key = (row.key or "").strip("/")
        path = key[len(root) :].lstrip("/") if root and key.startswith(root + "/") else key
        copy = recorded.get((row.item_id, row.asset_key))
        if (
            row.file_checksum is None
            and copy is not None
            and (copy.row.key, copy.row.size_bytes) == (row.key, row.size_bytes)
            and copy.row.file_checksum
        ):
            checks.append(Check(row, target.store, path, copy.row.file_checksum, "copy"))
        else:
            checks.append(Check(row, target.store, path))
    return checks


def copy_policy(spec: Spec, targets: Sequence[TargetPlan]) -> CopyPolicy:
    """As many workers as asked, but never more than the memory budget has buffers for."""
    options = spec.relocate
    buffers = max((capabilities(t.store).buffers_per_asset for t in targets), default=2)
    affordable = max(1, options.memory_limit // (buffers * options.chunk_size))
    retry = retry_policy(spec)
    return CopyPolicy(
        workers=min(options.max_workers, affordable),
        attempts=retry.attempts,
        initial_backoff=retry.initial_backoff,
        max_backoff=retry.max_backoff,
        on_drift=options.on_drift,
        fail_fast=options.fail_fast,
        verify=options.verify,
    )


def retry_policy(spec: Spec) -> RetryPolicy:
    """The spec's one retry policy (`relocate.retry`), for every request of a run: copies,
    derives, surveys and validation."""
    retry = spec.relocate.retry
    return RetryPolicy(
        retry.attempts, retry.initial_backoff.total_seconds(), retry.max_backoff.total_seconds()
    )


def _place(location: Location) -> tuple[str | None, str | None, str | None]:
    """Where an object is, whichever endpoint a lock wrote for its service."""
    return (location.store_type, location.store_container, location.key)


def _plain_http(store: StoreRef) -> bool:
    return _plain_http_url(store) is not None


def _origin_of(store: StoreRef) -> str:
    return urlsplit(_plain_http_url(store) or "").netloc


def _plain_http_url(store: StoreRef) -> str | None:
    """The plain http:// URL a store is reached at: an origin's, or a bucket's endpoint."""
    for url in (store.container, store.access.endpoint):
        if url and urlsplit(url).scheme == "http":
            return url
    return None
