"""The byte path: one read of a source, teed into every target's atomic writer.

SHA-256 is computed on the way; the source's facts are checked against its lock before a byte is
kept, and the size and checksum after the last one. A target whose writer fails is aborted alone.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from stacflow.tasks.checksum import is_sha256_multihash, sha256_multihash
from stacflow.tasks.errors import AssetError, ErrorClass
from stacflow.tasks.moves import Leg, Move, Record
from stacflow.tasks.stop import STOP
from stacflow.tasks.stores import Facts, Writer, capabilities, open_store
from stacflow.tasks.validate import mismatches

if TYPE_CHECKING:
    from stacflow.tasks.relocate import CopyPolicy


def copy_once(
    move: Move, legs: Sequence[Leg], policy: CopyPolicy, failures: dict[str, AssetError]
) -> tuple[dict[str, Record], str | None]:
    """One read of the source, teed into every leg's writer; records for the legs that verified.

    A failure of the source (or of the bytes against the lock) raises for all legs; a failure of
    one target's writer lands in `failures` and the other targets carry on.
    """
    source = open_store(move.source_store)
    with source.open(move.source_path) as reader:
        drift = "; ".join(mismatches(move.source, reader.facts, move.source_store.compare)) or None
        if drift and policy.on_drift == "refuse":
            raise AssetError(ErrorClass.DRIFT, f"source changed since it was locked: {drift}")
        writers = [_LegWriter(leg, failures) for leg in legs]
        try:
            digest = hashlib.sha256()
            received = 0
            for chunk in reader.chunks():
                STOP.check()  # between chunks: the writers below abort, nothing half is kept
                digest.update(chunk)
                for writer in writers:
                    writer.write(chunk)
                received += len(chunk)
            STOP.check()  # a stream without a length ends early when a stop shuts its socket
            checksum = _verified_checksum(move, reader.facts, drift, received, digest)
        except BaseException as error:
            for writer in writers:
                writer.abort(error)
            raise
        source_facts = reader.facts
    records = {}
    for writer in writers:
        row = writer.commit(received, checksum)
        if row is not None:
            records[writer.leg.target] = Record(
                row,
                source_facts.size,
                source_facts.etag,
                source_facts.last_modified,
                durable=capabilities(writer.leg.store).durable_writes,  # a folder: once flushed
            )
    return records, drift


def _verified_checksum(
    move: Move, facts: Facts, drift: str | None, received: int, digest: Any
) -> str:
    """The copy's checksum, once its size and bytes agree with the lock (or the drifted source)."""
    expected = facts.size if drift else move.expected_size
    if expected is not None and received != expected:
        kind = ErrorClass.TRANSIENT if facts.size is None else ErrorClass.INTEGRITY
        raise AssetError(kind, f"size mismatch: expected {expected}, received {received}")
    checksum = sha256_multihash(digest.digest())
    wanted = move.expected_checksum
    if not drift and is_sha256_multihash(wanted) and checksum != wanted:
        raise AssetError(
            ErrorClass.DRIFT, f"checksum mismatch: expected {wanted}, actual {checksum}"
        )
    return checksum


class _LegWriter:
    """One target's atomic writer inside a tee: its failure is recorded, not raised."""

    def __init__(self, leg: Leg, failures: dict[str, AssetError]) -> None:
        self.leg = leg
        self.failures = failures
        self.store = open_store(leg.store)
        self.context: AbstractContextManager[Writer] | None = None
        self.handle: Writer | None = None
        try:
            self.context = self.store.writer(leg.path)
            self.handle = self.context.__enter__()
        except AssetError as error:
            self._failed(error)

    def write(self, chunk: Any) -> None:
        if self.handle is None:
            return
        try:
            self.handle.write(chunk)
        except AssetError as error:
            self.abort(error)
            self._failed(error)
        except Exception as error:  # noqa: BLE001 - a writer's own error (e.g. obstore) ends the leg
            self.abort(error)
            self._failed(AssetError(ErrorClass.TRANSIENT, f"write failed: {error}"))

    def abort(self, error: BaseException) -> None:
        if self.context is not None and self.handle is not None:
            self.handle = None
            with contextlib.suppress(BaseException):  # the abort's own error adds nothing
                self.context.__exit__(type(error), error, error.__traceback__)

    def commit(self, received: int, checksum: str) -> Any:
        if self.handle is None or self.context is None:
            return None
        self.handle = None
        try:
            self.context.__exit__(None, None, None)
            facts = self.store.head(self.leg.path)
        except AssetError as error:
            self._failed(error)
            return None
        if facts.size != received:
            self._failed(
                AssetError(
                    ErrorClass.INTEGRITY,
                    f"size mismatch after writing: expected {received}, actual {facts.size}",
                )
            )
            return None
        return replace(
            self.leg.row,
            size_bytes=facts.size,
            etag=facts.etag,
            last_modified=facts.last_modified,
            file_checksum=checksum,
        )

    def _failed(self, error: AssetError) -> None:
        self.handle = None
        self.failures[self.leg.target] = error
