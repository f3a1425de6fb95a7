"""The run lock on object storage: a lease that two runs can never both believe they hold.

A bucket has no `flock`; it has conditional writes. A run creates the lock object only if it is
absent (`If-None-Match: *`) and rewrites it only while it still holds the version it last wrote
(`If-Match: <ETag>`): of two runs racing for it, the second PUT gets 412 and that run is refused.
The object names its holder and a lease, renewed by a heartbeat while the run lasts. A run that
finds the lease run out (its holder was killed, or lost the network for a whole lease) takes it
over, again by `If-Match` on the ETag it read, so two runs taking over at once cannot both win,
and it learns that the previous run was killed. Release writes the lock back as free, by
`If-Match` too: a plain DELETE could remove a lock another run has taken since.

Expiry is judged from the object's Last-Modified (the store's clock) against this host's clock:
hosts whose clocks differ by a good part of a lease could take over a live run's lock.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import obstore
from obstore.exceptions import AlreadyExistsError, PreconditionError

from stacflow.tasks.errors import UsageError, shorten
from stacflow.tasks.stores.object_store import ObjectStore

LOCK_KEY = ".stacflow/run.lock"
LEASE = timedelta(minutes=5)
RENEWALS_PER_LEASE = 4
"""A lease is renewed this often within its length: three renewals may fail before it runs out."""
TAKE_ATTEMPTS = 3
log = logging.getLogger("stacflow")


@dataclass(frozen=True, slots=True)
class Found:
    """The lock object as read: its body, its version, and when the store last wrote it."""

    body: dict[str, Any]
    etag: str
    written: datetime

    def expired(self, now: datetime) -> bool:
        return now > self.written + timedelta(seconds=float(self.body.get("lease_s", 0)))

    def holder(self) -> str:
        return str(self.body.get("holder", "an unknown run"))


class Lease:
    """A lock this run holds, at the version it last wrote; renewed until released."""

    def __init__(self, store: ObjectStore, etag: str, holder: str, length: timedelta) -> None:
        self.store = store
        self.etag = etag
        self.holder = holder
        self.length = length
        self.lost: str | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._heart = threading.Thread(target=self._beat, name="stacflow-lease", daemon=True)

    def start(self) -> None:
        self._heart.start()

    def renew(self) -> None:
        """Rewrite the lease while it is still ours; a 412 means another run took it over."""
        with self._guard:
            if self.lost is not None:
                return
            try:
                self.etag = _put(self.store, _body("held", self.holder, self.length), self.etag)
            except PreconditionError:
                self.lost = "another run took it over after its lease ran out"
                log.error(  # noqa: TRY400 - the 412 is the expected answer, not a crash
                    "lost the run lock %s: %s; this run's copies stay journaled, but its "
                    "outputs may race with that run's",
                    self.store.describe(LOCK_KEY),
                    self.lost,
                )

    def release(self) -> None:
        self._stop.set()
        if self._heart.is_alive():
            self._heart.join()
        with self._guard:
            if self.lost is not None:
                return
            try:
                _put(self.store, _body("free", self.holder, timedelta(0)), self.etag)
            except PreconditionError:
                log.error("the run lock %s changed hands before release", self._where())  # noqa: TRY400

    def _beat(self) -> None:
        while not self._stop.wait(self.length.total_seconds() / RENEWALS_PER_LEASE):
            try:
                self.renew()
            except UsageError as exc:  # a transient failure: the next beat tries again
                log.warning("could not renew the run lock %s: %s", self._where(), shorten(exc))

    def _where(self) -> str:
        return self.store.describe(LOCK_KEY)


@contextmanager
def run_lease(store: ObjectStore, *, length: timedelta = LEASE) -> Iterator[bool]:
    """Held for a whole run; yields True when the previous run was killed before it ended."""
    lease, killed = take(store, length)
    lease.start()
    try:
        yield killed
    finally:
        lease.release()


def take(store: ObjectStore, length: timedelta = LEASE) -> tuple[Lease, bool]:
    """The lock, if no live run holds it, and whether the run before was killed; else a
    UsageError naming the holder and when its lease runs out."""
    holder = f"{socket.gethostname()} pid {os.getpid()} run {uuid.uuid4().hex[:12]}"
    for _ in range(TAKE_ATTEMPTS):
        try:
            return Lease(
                store, _put(store, _body("held", holder, length), None), holder, length
            ), False
        except AlreadyExistsError:
            pass
        found = read(store)
        if found is None:
            continue  # released and removed by hand between our two requests: create again
        held = found.body.get("state") == "held"
        if held and not found.expired(datetime.now(UTC)):
            expiry = found.written + timedelta(seconds=float(found.body.get("lease_s", 0)))
            raise UsageError(
                f"another stacflow run is writing to {store.describe('')} ({found.holder()}, "
                f"its lease on {LOCK_KEY} runs to {expiry:%Y-%m-%dT%H:%M:%SZ} unless renewed): "
                "wait for it to end, or stop it"
            )
        try:
            etag = _put(store, _body("held", holder, length), found.etag)
        except PreconditionError:
            continue  # another run changed it first: read it again
        if held:
            log.warning(
                "took over the run lock %s from %s, whose lease ran out (a killed run)",
                store.describe(LOCK_KEY),
                found.holder(),
            )
        return Lease(store, etag, holder, length), held
    raise UsageError(
        f"could not take the run lock {store.describe(LOCK_KEY)}: other runs keep taking it"
    )


def read(store: ObjectStore) -> Found | None:
    try:
        result = obstore.get(store.store, LOCK_KEY)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - any other failure: the lock cannot be known
        raise _unusable(store, exc) from None
    try:
        body = json.loads(bytes(result.bytes()))
    except ValueError:
        body = {"state": "held", "holder": "an unreadable lock", "lease_s": 0}
    return Found(body, str(result.meta["e_tag"]), result.meta["last_modified"])


def _put(store: ObjectStore, body: bytes, etag: str | None) -> str:
    """PUT the lock only if absent (`etag` None) or still at `etag`; its new ETag."""
    mode: Any = "create" if etag is None else {"e_tag": etag}
    try:
        result = obstore.put(store.store, LOCK_KEY, body, mode=mode)
    except (AlreadyExistsError, PreconditionError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise _unusable(store, exc) from None
    return str(result["e_tag"])


def _body(state: str, holder: str, length: timedelta) -> bytes:
    data = {
        "state": state,
        "holder": holder,
        "lease_s": length.total_seconds(),
        "at": datetime.now(UTC).isoformat(),  # a new ETag for every write, renewals included
    }
    return json.dumps(data).encode()


def _unusable(store: ObjectStore, exc: BaseException) -> UsageError:
    summary = str(exc).split("\n\nDebug source:")[0]
    return UsageError(
        f"cannot use the run lock {store.describe(LOCK_KEY)}: {shorten(summary, 300)}"
    )
