"""Which spec writes into a target root: one owner per root, recorded in the root itself.

Two specs writing the same keys overwrite each other's copies, each lock stops matching the
files, and every rerun copies everything again; a sweep after a kill could remove the other's
writes in flight. So the first run into a root leaves `.stacflow-owner` there (the spec's name
and outputs folder, which holds its state), and a plan of any other spec that would write into
that root, or under a root another spec owns, is refused, naming the owner and the remedy.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, replace
from pathlib import Path

from stacflow.tasks.errors import AssetError, Conflict, UsageError, scrub
from stacflow.tasks.stores import StoreRef, capabilities, open_store

OWNER_FILE = ".stacflow-owner"


@dataclass(frozen=True, slots=True)
class Owner:
    """A spec as the writer of its targets: identified by its outputs folder (its state)."""

    id: str
    name: str
    outputs: str

    @classmethod
    def of(cls, name: str, outputs: Path | str) -> Owner:
        """`name` as messages show it: a name taken from the environment as its variable."""
        return cls(owner_id(outputs), scrub(name), str(outputs))


def owner_id(outputs: Path | str) -> str:
    """Short and stable: it also marks the owner's temp files."""
    return hashlib.sha256(str(outputs).encode()).hexdigest()[:12]


def foreign_owner(target: str, store: StoreRef, owner: Owner) -> Conflict | None:
    """Why `owner` may not write into this target's root (another spec owns it, or a root
    around it), or None."""
    for root in _roots_around(store):
        found = _read_owner(replace(store, root=root))
        if found is not None and found.get("id") != owner.id:
            where = open_store(replace(store, root=root)).describe(OWNER_FILE)
            return Conflict(
                f"target {target}: {_described(store)} is written by spec "
                f"{found.get('name')!r} (outputs {found.get('outputs')}); two specs writing one "
                "root overwrite each other's copies: give this target a root of its own, or, "
                f"if that spec no longer writes there, delete {where}",
                target,
            )
    return None


def claim(target: str, store: StoreRef, owner: Owner) -> None:
    """Record `owner` in the target's root before its first write; refuse a foreign root."""
    problem = foreign_owner(target, store, owner)
    if problem:
        raise UsageError(problem)
    if _read_owner(store) is not None:
        return
    record = {"id": owner.id, "name": owner.name, "outputs": owner.outputs}
    target_store = open_store(store)
    with target_store.writer(OWNER_FILE) as writer:
        writer.write(json.dumps(record, indent=2).encode() + b"\n")
    settled = _read_owner(store)  # two specs claiming at once: the last write wins
    if settled is None or settled.get("id") != owner.id:
        raise UsageError(foreign_owner(target, store, owner) or f"target {target}: claim lost")


def _described(store: StoreRef) -> str:
    if capabilities(store).file_system:
        return store.root
    return open_store(store).describe("").rstrip("/")


def _roots_around(store: StoreRef) -> list[str]:
    """The root and every root that holds it: an owner of a folder owns its sub-folders too."""
    roots = []
    if capabilities(store).file_system:
        path = Path(store.root)
        roots = [str(path), *(str(parent) for parent in path.parents)]
    else:
        prefix = store.root.strip("/")
        while True:
            roots.append(prefix)
            if not prefix:
                break
            prefix = posixpath.dirname(prefix)
    return roots


def _read_owner(store: StoreRef) -> dict[str, str] | None:
    """The owner record at this root; None where there is none, or none can be read (a root
    that cannot be reached fails its writes with the real cause)."""
    try:
        with open_store(store).open(OWNER_FILE) as reader:
            data = b"".join(bytes(chunk) for chunk in reader.chunks())
    except AssetError:
        return None
    try:
        found = json.loads(data)
    except ValueError:
        return {"id": "", "name": "unknown (unreadable owner record)", "outputs": "?"}
    return found if isinstance(found, dict) else None


def claim_targets(
    targets: list[tuple[str, StoreRef]], owner: Owner, *, write: bool
) -> dict[str, AssetError]:
    """Refuse the run if another spec owns a target's root; with `write`, claim the roots.

    A root that cannot be written (not a folder, a bucket that is not there, a store that does
    not answer) does not stop the run: it is returned by target name, so that target's assets
    end at once with the cause while the others copy.
    """
    unusable: dict[str, AssetError] = {}
    for name, store in targets:
        if not write:
            if problem := foreign_owner(name, store, owner):
                raise UsageError(problem)
            continue
        try:
            claim(name, store, owner)
        except AssetError as exc:
            unusable[name] = exc
    return unusable
