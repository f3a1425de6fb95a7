"""Relocation against an origin that misbehaves the way real ones do, one fault at a time.

Each case ends in exactly one outcome with the expected attempts; a good asset lands
byte-identical, a failed one leaves nothing (no partial file, no temp) under the target root.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from stacflow.tasks.access import Access
from stacflow.tasks.errors import ErrorClass
from stacflow.tasks.locations import Location
from stacflow.tasks.locks import LockRow
from stacflow.tasks.moves import Leg, Move
from stacflow.tasks.relocate import CopyPolicy, relocate_batch, relocate_one
from stacflow.tasks.report import Result, Step
from stacflow.tasks.stores import StoreRef

KEY = "upload/0/scene.tif"
DATA = os.urandom(300_000)  # several chunks and socket buffers: cuts land mid-body
CHUNK = 64 * 1024
LAST_MODIFIED = "Mon, 12 Sep 2022 09:43:21 GMT"
LOCKED_AT = "2022-09-12T09:43:21+00:00"
POLICY = CopyPolicy(workers=2, attempts=4, initial_backoff=0.01, max_backoff=5.0)


@pytest.fixture
def served(origin):
    origin.last_modified = LAST_MODIFIED
    origin.write(KEY, DATA)
    return origin


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'  # S3's single-part ETag, not security


def _move(origin, root: Path, key: str = KEY, data: bytes = DATA, **access) -> Move:
    item = f"item-{key.replace('/', '-')}"
    row = LockRow(item, "visual", "http", origin.url, None, key, len(data), _etag(data), LOCKED_AT)
    source = StoreRef("http", origin.url, "", Access(allow_http=True, **access), CHUNK)
    target = StoreRef("file", None, str(root), Access(), CHUNK)
    path = f"{item}/visual.tif"
    where = Location("file", None, None, str(root / path))  # as compiled: the absolute path
    leg = Leg("local", target, path, LockRow.at(item, "visual", where))
    return Move(row, source, key, (leg,))


def _files(root: Path) -> dict[str, bytes]:
    """Everything under the target root: a temp or partial file would show up here."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def arrivals(origin, monkeypatch):
    """(monotonic time, method, range) of every request as the origin receives it."""
    seen: list[tuple[float, str, str | None]] = []
    take = origin._take

    def timed(entry):
        seen.append((time.monotonic(), entry.method, entry.range))
        return take(entry)

    monkeypatch.setattr(origin, "_take", timed)
    return seen


# Each case: what the origin does, then outcome, error class, attempts, GETs at the origin.
CASES = {
    "503-burst": (lambda o: o.fail(KEY, 503, times=2), Result.COPIED, None, 3, 3),
    "429-burst": (lambda o: o.fail(KEY, 429, times=2), Result.COPIED, None, 3, 3),
    "reset": (lambda o: o.reset_connection(KEY, times=2), Result.COPIED, None, 3, 3),
    "cut-with-etag-resumed": (
        lambda o: o.truncate(KEY, after_bytes=100_000, times=1),
        Result.COPIED,
        None,
        1,
        2,
    ),
    "cut-without-etag-redone": (
        lambda o: (o.no_etag(KEY), o.truncate(KEY, after_bytes=100_000, times=1)),
        Result.COPIED,
        None,
        2,
        2,
    ),
    "cut-without-range-redone": (
        lambda o: (o.no_range(KEY), o.truncate(KEY, after_bytes=100_000, times=1)),
        Result.COPIED,
        None,
        2,
        3,  # the refused resume (answered 200) counts, then the whole copy again
    ),
    "stall-mid-body-resumed": (
        lambda o: o.stall(KEY, 3.0, after_bytes=100_000, times=1),
        Result.COPIED,
        None,
        1,
        2,
    ),
    "stall-before-headers": (lambda o: o.stall(KEY, 3.0, times=1), Result.COPIED, None, 2, 2),
    "no-etag-no-range": (
        lambda o: (o.no_etag(KEY), o.no_range(KEY)),
        Result.COPIED,
        None,
        1,
        1,
    ),
    "no-content-length": (lambda o: o.no_length(KEY), Result.COPIED, None, 1, 1),
    "404": (lambda o: o.fail(KEY, 404), Result.FAILED, ErrorClass.PERMANENT, 1, 1),
    "403": (lambda o: o.fail(KEY, 403), Result.FAILED, ErrorClass.PERMANENT, 1, 1),
    "503-always": (lambda o: o.fail(KEY, 503), Result.FAILED, ErrorClass.TRANSIENT, 4, 4),
    "cut-always-without-etag": (
        lambda o: (o.no_etag(KEY), o.truncate(KEY, after_bytes=100_000)),
        Result.FAILED,
        ErrorClass.TRANSIENT,
        4,
        4,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_fault(served, tmp_path, case):
    arrange, result, error_class, attempts, gets = CASES[case]
    arrange(served)
    move = _move(served, tmp_path / "target", read_timeout=0.5)
    (moved,) = relocate_one(move, POLICY)
    outcome = moved.outcome
    assert (outcome.outcome, outcome.error_class, outcome.attempts) == (
        result,
        error_class,
        attempts,
    ), outcome.message
    assert (outcome.store, outcome.step) == ("local", Step.RELOCATE)
    assert served.count("GET", KEY) == gets
    if result == Result.COPIED:
        assert _files(tmp_path / "target") == {move.legs[0].path: DATA}
        assert outcome.bytes == len(DATA)
        assert moved.record.row.size_bytes == len(DATA)
        assert moved.record.row.file_checksum == "1220" + hashlib.sha256(DATA).hexdigest()
    else:
        assert _files(tmp_path / "target") == {}
        assert moved.record is None
        assert outcome.bytes == 0
        assert outcome.message


def test_resume_is_a_range_request_from_where_the_body_was_cut(served, tmp_path):
    served.truncate(KEY, after_bytes=100_000, times=1)
    (moved,) = relocate_one(_move(served, tmp_path), POLICY)
    assert moved.outcome.attempts == 1
    assert [(r.method, r.range, r.status) for r in served.requests] == [
        ("GET", None, 200),
        ("GET", "bytes=100000-", 206),
    ]


def test_object_replaced_mid_copy_is_drift_and_nothing_is_kept(served, tmp_path, monkeypatch):
    """The resume carries If-Match: a new object is never stitched onto the old bytes."""
    served.truncate(KEY, after_bytes=100_000, times=1)
    take = served._take

    def replace_before_resume(entry):
        if entry.range:
            served.write(KEY, os.urandom(len(DATA)))
        return take(entry)

    monkeypatch.setattr(served, "_take", replace_before_resume)
    (moved,) = relocate_one(_move(served, tmp_path / "target"), POLICY)
    assert (moved.outcome.outcome, moved.outcome.error_class) == (Result.DRIFTED, ErrorClass.DRIFT)
    assert moved.outcome.attempts == 1
    assert "412" in moved.outcome.message
    assert [r.status for r in served.requests] == [200, 412]
    assert _files(tmp_path / "target") == {}


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured(served, tmp_path, arrivals, status):
    served.fail(KEY, status, retry_after=1, times=1)
    (moved,) = relocate_one(_move(served, tmp_path), POLICY)
    assert (moved.outcome.outcome, moved.outcome.attempts) == (Result.COPIED, 2)
    (first, _, _), (second, _, _) = arrivals
    assert second - first >= 1.0


def test_without_retry_after_the_policy_backoff_applies(served, tmp_path, arrivals):
    """The counterpart of the test above: the 1 s there comes from the header, not the policy."""
    served.fail(KEY, 503, times=1)
    slow = CopyPolicy(attempts=2, initial_backoff=0.3, max_backoff=5.0)
    (moved,) = relocate_one(_move(served, tmp_path), slow)
    assert moved.outcome.outcome == Result.COPIED
    (first, _, _), (second, _, _) = arrivals
    assert second - first >= 0.3


def test_a_batch_of_faults_ends_with_one_outcome_each(origin, tmp_path):
    origin.last_modified = LAST_MODIFIED
    assets = {f"a/{n}.bin": os.urandom(150_000 + n) for n in range(7)}
    for key, data in assets.items():
        origin.write(key, data)
    origin.fail("a/0.bin", 503, times=1)
    origin.reset_connection("a/1.bin", times=1)
    origin.truncate("a/2.bin", after_bytes=70_000, times=1)
    origin.fail("a/3.bin", 404)
    origin.fail("a/4.bin", 403)
    origin.stall("a/5.bin", 3.0, after_bytes=70_000, times=1)
    root = tmp_path / "target"
    moves = [_move(origin, root, key, data, read_timeout=0.5) for key, data in assets.items()]
    results = relocate_batch(moves, CopyPolicy(workers=4, attempts=3, initial_backoff=0.01))
    outcomes = {m.outcome.item_id: m.outcome for m in results}
    assert [(o.outcome, o.error_class) for o in outcomes.values()] == [
        (Result.COPIED, None),
        (Result.COPIED, None),
        (Result.COPIED, None),
        (Result.FAILED, ErrorClass.PERMANENT),
        (Result.FAILED, ErrorClass.PERMANENT),
        (Result.COPIED, None),
        (Result.COPIED, None),
    ]
    assert "not found (HTTP 404)" in outcomes["item-a-3.bin"].message
    assert "access denied (HTTP 403)" in outcomes["item-a-4.bin"].message
    good = {"0", "1", "2", "5", "6"}
    assert _files(root) == {
        m.legs[0].path: assets[m.source_path]
        for m in moves
        if m.source_path.split("/")[1].split(".")[0] in good
    }
