"""The proof that a target already holds an asset's bytes, without reading the source.

What lets a rerun copy only what is missing or wrong: either the journal's record of a verified
copy from this same lock row, with the target's facts unchanged since, or the target's own bytes
hashed to a known checksum.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

from stacflow.tasks.checksum import is_sha256_multihash, sha256_multihash
from stacflow.tasks.errors import AssetError, ErrorClass
from stacflow.tasks.moves import Leg, Move, Record
from stacflow.tasks.stores import Facts, Store, capabilities, open_store

FACTS = "facts"
CHECKSUMS = "checksums"
VERIFY_MODES = (FACTS, CHECKSUMS)
"""How far a run trusts a copy it finds: its recorded facts, or only its bytes hashed again."""


def verified_copy(move: Move, leg: Leg, verify: str = FACTS) -> Record | None:
    """The target's copy, if it provably holds the locked bytes; None when it must be copied.

    Proof without reading the source: the journal's record of a verified copy from this same lock
    row, with the target's facts unchanged since; or, where a checksum is known, the target's own
    bytes hashed to it. Facts alone are not enough when the copy's run was killed before flushing
    it to disk, when a validation found that very copy wrong (`refuted`), or with `verify:
    checksums`: then its bytes are hashed again.
    """
    target = open_store(leg.store)
    if leg.was_listed:
        facts = leg.listed
        if facts is None:
            return None
    else:
        try:
            facts = target.head(leg.path)
        except AssetError as error:
            if error.error_class == ErrorClass.PERMANENT and error.status in {None, 404}:
                return None
            raise
    previous = leg.previous
    hashed: set[str] = set()

    def hashes_to(checksum: str | None) -> bool:
        return _hashes_to(target, leg.path, checksum, hashed)

    if (
        previous is not None
        and previous.row.key == leg.row.key
        and (previous.row.size_bytes, previous.row.etag, previous.row.last_modified)
        == (facts.size, facts.etag, facts.last_modified)
        and _same_source(previous, move)
    ):
        if previous.durable and not previous.refuted and verify == FACTS:
            return previous
        if hashes_to(previous.row.file_checksum):
            return replace(previous, refuted=False)
    return adopted_copy(move, leg, facts, verify, hashes_to) or _hashed_copy(
        move, leg, facts, hashes_to
    )


def _hashed_copy(
    move: Move, leg: Leg, facts: Facts, hashes_to: Callable[[str], bool]
) -> Record | None:
    """A copy no record describes, proven by its bytes hashing to the asset's known checksum."""
    expected = move.expected_checksum
    if not (
        is_sha256_multihash(expected) and facts.size == move.expected_size and hashes_to(expected)
    ):
        return None
    return _found(move, leg, facts, expected, durable=_durable(leg))


def adopted_copy(
    move: Move, leg: Leg, facts: Facts, verify: str, hashes_to: Callable[[str], bool]
) -> Record | None:
    """A copy another tool made (stacpkg's relocate) that the target's `adopt` lock describes.

    Kept by stacpkg's own criterion: the file's size and ETag are still its row's (an ETag of a
    file changes with its inode and mtime), and its size is the source's. Where a checksum is
    known, its bytes must hash to it too; with `verify: checksums`, a copy no checksum can
    prove is copied again.
    """
    row = leg.adoptable
    if row is None or not row.etag or (facts.size, facts.etag) != (row.size_bytes, row.etag):
        return None
    if move.expected_size is not None and facts.size != move.expected_size:
        return None
    expected = move.expected_checksum if is_sha256_multihash(move.expected_checksum) else None
    if (expected is None and verify != FACTS) or (expected and not hashes_to(expected)):
        return None
    return _found(move, leg, facts, expected, durable=True)


def _found(move: Move, leg: Leg, facts: Facts, checksum: str | None, *, durable: bool) -> Record:
    """The record of a copy found in place rather than written: the target's facts, the
    source's."""
    row = replace(
        leg.row,
        size_bytes=facts.size,
        etag=facts.etag,
        last_modified=facts.last_modified,
        file_checksum=checksum,
    )
    source = move.source
    return Record(row, source.size_bytes, source.etag, source.last_modified, durable=durable)


def _durable(leg: Leg) -> bool:
    """A copy in a folder is durable once its run flushes it; elsewhere, once written."""
    return capabilities(leg.store).durable_writes


def _hashes_to(store: Store, path: str, checksum: str | None, tried: set[str]) -> bool:
    """Whether the object's bytes hash to `checksum`; `tried` keeps a second read from
    hashing the same object against the same checksum again."""
    if not is_sha256_multihash(checksum) or checksum in tried:
        return False
    tried.add(checksum)
    digest = hashlib.sha256()
    with store.open(path) as reader:
        for chunk in reader.chunks():
            digest.update(chunk)
    return sha256_multihash(digest.digest()) == checksum


def _same_source(previous: Record, move: Move) -> bool:
    locked = move.source
    if previous.source_size is None:
        return previous.row.size_bytes == locked.size_bytes
    return (
        previous.source_size == locked.size_bytes
        and locked.etag in {None, previous.source_etag}
        and locked.last_modified in {None, previous.source_last_modified}
    )
