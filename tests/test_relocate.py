"""Relocation as a run does it, without Prefect: plans compiled from a spec, batches copied.

What is checked is what a user relies on: the source is read once for every target, a rerun
reads no body, drift and bad checksums keep nothing, one target's failure is its own, and no
secret reaches an outcome or a record.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import replace
from pathlib import Path

import obstore
import pytest

from stacflow.flows.compile import compile_plan
from stacflow.flows.inputs import Inputs
from stacflow.flows.spec import Spec
from stacflow.tasks.access import Access
from stacflow.tasks.atomic import TEMP_MARKER
from stacflow.tasks.checksum import sha256_multihash
from stacflow.tasks.errors import ErrorClass
from stacflow.tasks.locations import Location
from stacflow.tasks.locks import LockRow, read_lock
from stacflow.tasks.moves import Leg, Move, Record
from stacflow.tasks.relocate import NOT_ATTEMPTED, CopyPolicy, relocate_batch, relocate_one
from stacflow.tasks.report import Result
from stacflow.tasks.state import append_records, read_records
from stacflow.tasks.stores import StoreRef, iso
from stacflow.tasks.stores.file import stat_facts
from stacflow.tasks.stores.object_store import MIN_PART_SIZE
from stacflow.tasks.survey import PLANNED, survey
from tests.servers import s3

LAST_MODIFIED = "Mon, 12 Sep 2022 09:43:21 GMT"
LOCKED_AT = "2022-09-12T09:43:21+00:00"
CHUNK = 64 * 1024
FAST = CopyPolicy(workers=2, attempts=3, initial_backoff=0.01, max_backoff=1.0)
ASSETS = {
    "up/0/big.tif": os.urandom(MIN_PART_SIZE + 300_000),  # multipart on S3, many chunks
    "up/0/small.png": os.urandom(20_011),
    "up/1/other.tif": os.urandom(150_000),
}


@pytest.fixture
def served(origin):
    origin.last_modified = LAST_MODIFIED
    for key, data in ASSETS.items():
        origin.write(key, data)
    return origin


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'  # S3's single-part ETag, not security


def _sha(data: bytes) -> str:
    return sha256_multihash(hashlib.sha256(data).digest())


def _lock(origin, assets=ASSETS, **facts) -> list[LockRow]:
    """The lock as stacpkg wrote it from this origin: one row per asset."""
    return [
        LockRow(
            f"item-{key.split('/')[1]}",
            key.rsplit("/", 1)[1].split(".")[0],
            "http",
            origin.url,
            None,
            key,
            len(data),
            _etag(data),
            LOCKED_AT,
            **facts,
        )
        for key, data in assets.items()
    ]


def _plan(tmp_path: Path, origin, rows, targets: dict, previous=None, **relocate):
    """Compile as a run does: a spec with one http source and the given targets."""
    spec = Spec.model_validate(
        {
            "name": "relocate-test",
            "package": "pkg",
            "sources": {"origin": {"prefix": f"{origin.url}/", "store": {"allow_http": True}}},
            "targets": targets,
            "relocate": {
                "chunk_size": "64KiB",
                "memory_limit": "4MiB",
                "retry": {"attempts": 3, "initial_backoff": "10ms", "max_backoff": "1s"},
                **relocate,
            },
            "outputs": "out",
        }
    )
    plan = compile_plan(Inputs(spec, tmp_path / "spec.yaml", rows, None), previous)
    assert plan.conflicts == ()
    return plan


def _local(root: Path) -> dict:
    return {"store": {"type": "file", "root": str(root)}}


def _s3(endpoint: str, bucket: str, **more) -> dict:
    return {
        "store": {
            "type": "s3",
            "bucket": bucket,
            "prefix": "mirror/v1",
            "endpoint": endpoint,
            "allow_http": True,
            **more,
        }
    }


def _files(root: Path) -> dict[str, bytes]:
    """Everything under a target root: a partial or temp file would show up here."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _move(origin, root: Path, key: str, data: bytes, **facts) -> Move:
    row = LockRow(
        "item", key, "http", origin.url, None, key, len(data), _etag(data), LOCKED_AT, **facts
    )
    source = StoreRef("http", origin.url, "", Access(allow_http=True), CHUNK)
    target = StoreRef("file", None, str(root), Access(), CHUNK)
    path = f"item/{key.replace('/', '_')}"
    where = Location("file", None, None, str(root / path))
    leg = Leg("local", target, path, LockRow.at("item", key, where))
    return Move(row, source, key, (leg,), expected_checksum=row.file_checksum)  # as compiled


def _by_target(results) -> dict[tuple[str, str], object]:
    return {(m.outcome.store, m.outcome.item_id, m.outcome.asset_key): m for m in results}


# --- one source read, many targets ---------------------------------------------------------


def test_two_targets_get_identical_bytes_from_one_read(served, tmp_path, moto_endpoint, s3_bucket):
    root = tmp_path / "local"
    rows = _lock(served)
    plan = _plan(
        tmp_path, served, rows, {"local": _local(root), "s3": _s3(moto_endpoint, s3_bucket)}
    )
    results = relocate_batch(plan.moves, plan.policy)
    assert [(m.outcome.outcome, m.outcome.attempts) for m in results] == [(Result.COPIED, 1)] * 6
    for key in ASSETS:
        assert served.count("GET", key) == 1
    assert served.count("HEAD") == 0
    raw = s3.s3_store(moto_endpoint, s3_bucket)
    moved = _by_target(results)
    for row, (key, data) in zip(rows, ASSETS.items(), strict=True):
        path = f"{row.item_id}/{row.asset_key}{Path(key).suffix}"
        assert (root / path).read_bytes() == data
        assert bytes(obstore.get(raw, f"mirror/v1/{path}").bytes()) == data
        local = moved["local", row.item_id, row.asset_key].record
        facts = stat_facts((root / path).stat())
        assert local.row == LockRow(
            row.item_id,
            row.asset_key,
            "file",
            None,
            None,
            str(root / path),
            len(data),
            facts.etag,
            facts.last_modified,
            _sha(data),
        )
        remote = moved["s3", row.item_id, row.asset_key].record
        meta = obstore.head(raw, f"mirror/v1/{path}")
        assert remote.row == LockRow(
            row.item_id,
            row.asset_key,
            "s3",
            s3_bucket,
            moto_endpoint,
            f"mirror/v1/{path}",
            len(data),
            meta["e_tag"],
            iso(meta["last_modified"]),
            _sha(data),
        )
        for record in (local, remote):
            assert (record.source_size, record.source_etag, record.source_last_modified) == (
                len(data),
                _etag(data),
                LOCKED_AT,
            )
    assert obstore.head(raw, "mirror/v1/item-0/big.tif")["e_tag"].endswith('-2"')  # multipart
    assert s3.list_multipart_uploads(moto_endpoint, s3_bucket) == []


def test_the_fixture_s3_lock_relocates_anonymously(oam_s3, oam_data, moto_endpoint, tmp_path):
    root = tmp_path / "local"
    access = Access(anonymous=True, endpoint=moto_endpoint, allow_http=True)
    target = StoreRef("file", None, str(root), Access(), CHUNK)
    moves = []
    for row in read_lock(oam_data / "openaerialmap-austria.s3.assets.lock.parquet"):
        path = f"{row.item_id}/{row.asset_key}{Path(row.key).suffix}"
        leg = Leg(
            "local",
            target,
            path,
            LockRow.at(row.item_id, row.asset_key, Location("file", None, None, str(root / path))),
        )
        moves.append(Move(row, StoreRef("s3", oam_s3, "", access, CHUNK), row.key, (leg,)))
    results = relocate_batch(moves, FAST)
    assert [m.outcome.outcome for m in results] == [Result.COPIED] * 4
    for move in moves:
        assert (root / move.legs[0].path).read_bytes() == (
            oam_data / "origin" / move.source_path
        ).read_bytes()


@pytest.mark.parametrize("size", [20_011, MIN_PART_SIZE + 300_000], ids=["one-put", "multipart"])
def test_a_target_failing_permanently_fails_alone(served, tmp_path, moto_endpoint, size):
    key, data = next((k, d) for k, d in ASSETS.items() if len(d) == size)
    root = tmp_path / "local"
    plan = _plan(
        tmp_path,
        served,
        _lock(served, {key: data}),
        {"local": _local(root), "s3": _s3(moto_endpoint, "no-such-bucket")},
    )
    local, remote = relocate_batch(plan.moves, plan.policy)
    assert (local.outcome.outcome, local.outcome.attempts) == (Result.COPIED, 1)
    assert list(_files(root).values()) == [data]
    assert (remote.outcome.outcome, remote.outcome.error_class) == (
        Result.FAILED,
        ErrorClass.PERMANENT,
    )
    assert remote.outcome.attempts == 1
    assert "not found" in remote.outcome.message
    assert "s3://no-such-bucket/mirror/v1/" in remote.outcome.message
    assert remote.record is None
    assert served.count("GET") == 1


def _refused_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_a_target_failing_transiently_is_retried_without_undoing_the_other(served, tmp_path):
    """Only the failing leg is tried again; the copied one keeps its outcome and record."""
    key, data = "up/1/other.tif", ASSETS["up/1/other.tif"]
    root = tmp_path / "local"
    plan = _plan(
        tmp_path,
        served,
        _lock(served, {key: data}),
        {"local": _local(root), "s3": _s3(_refused_endpoint(), "unreachable")},
    )
    local, remote = relocate_batch(plan.moves, plan.policy)
    assert (local.outcome.outcome, local.outcome.attempts) == (Result.COPIED, 1)
    assert local.record is not None
    assert list(_files(root).values()) == [data]
    assert (remote.outcome.outcome, remote.outcome.error_class, remote.outcome.attempts) == (
        Result.FAILED,
        ErrorClass.TRANSIENT,
        3,
    )
    assert served.count("GET") == 3


# --- reruns --------------------------------------------------------------------------------


def _journals(tmp_path: Path) -> dict[str, Path]:
    return {
        name: tmp_path / "out" / ".stacflow" / f"{name}.records.jsonl" for name in ("local", "s3")
    }


def test_rerun_of_a_completed_batch_reads_no_body(served, tmp_path, moto_endpoint, s3_bucket):
    targets = {"local": _local(tmp_path / "local"), "s3": _s3(moto_endpoint, s3_bucket)}
    rows = _lock(served)
    journals = _journals(tmp_path)
    plan = _plan(tmp_path, served, rows, targets)
    first = relocate_batch(plan.moves, plan.policy, journals)
    previous = {name: read_records(path) for name, path in journals.items()}
    assert {n: len(r) for n, r in previous.items()} == {"local": 3, "s3": 3}
    journal_text = {name: path.read_text() for name, path in journals.items()}
    served.clear()

    rerun = _plan(tmp_path, served, rows, targets, previous)
    again = relocate_batch(rerun.moves, rerun.policy, journals)
    assert [m.outcome.outcome for m in again] == [Result.SKIPPED_VERIFIED] * 6
    assert [m.record for m in again] == [m.record for m in first]
    assert served.requests == []
    assert {name: path.read_text() for name, path in journals.items()} == journal_text

    assert {o.outcome for o in survey(rerun.moves)} == {Result.SKIPPED_VERIFIED}  # dry run
    assert {o.outcome for o in survey(plan.moves)} == {PLANNED}  # without the records
    assert served.requests == []

    resumed = relocate_batch(plan.moves, plan.policy, journals, resume=True)  # a Prefect retry
    assert [m.outcome.outcome for m in resumed] == [Result.SKIPPED_VERIFIED] * 6
    assert served.requests == []


def test_rerun_copies_only_what_is_missing_or_changed(served, tmp_path):
    root = tmp_path / "local"
    journals = {"local": _journals(tmp_path)["local"]}
    rows = _lock(served)
    plan = _plan(tmp_path, served, rows, {"local": _local(root)})
    relocate_batch(plan.moves, plan.policy, journals)
    (root / "item-0" / "small.png").unlink()
    rewritten = root / "item-1" / "other.tif"
    rewritten.write_bytes(os.urandom(len(ASSETS["up/1/other.tif"])))
    served.clear()

    rerun = _plan(
        tmp_path, served, rows, {"local": _local(root)}, {"local": read_records(journals["local"])}
    )
    results = relocate_batch(rerun.moves, rerun.policy, journals)
    assert [m.outcome.outcome for m in results] == [
        Result.SKIPPED_VERIFIED,
        Result.COPIED,
        Result.COPIED,
    ]
    assert sorted(r.path for r in served.requests) == ["/up/0/small.png", "/up/1/other.tif"]
    assert _files(root) == {
        "item-0/big.tif": ASSETS["up/0/big.tif"],
        "item-0/small.png": ASSETS["up/0/small.png"],
        "item-1/other.tif": ASSETS["up/1/other.tif"],
    }
    latest = read_records(journals["local"])
    assert latest["item-1", "other"] == results[2].record


def test_a_journal_torn_by_a_kill_keeps_every_whole_record(tmp_path):
    journal = tmp_path / "local.records.jsonl"
    row = LockRow("ïtem-日本", "visual", "file", None, None, "/t/x.tif", 3, '"e"', LOCKED_AT)
    record = Record(row, 3, '"s"', LOCKED_AT)
    append_records(journal, [record])
    with journal.open("ab") as handle:
        handle.write('{"item_id":"ï'.encode()[:-1])  # cut inside a multi-byte character
    assert read_records(journal) == {("ïtem-日本", "visual"): record}


def test_a_known_checksum_proves_an_existing_copy_without_the_origin(served, tmp_path):
    key, data = "up/1/other.tif", ASSETS["up/1/other.tif"]
    root = tmp_path / "local"
    move = _move(served, root, key, data, file_checksum=_sha(data))
    (root / "item").mkdir(parents=True)
    (root / move.legs[0].path).write_bytes(data)  # copied by an earlier, unjournaled run
    (moved,) = relocate_one(move, FAST)
    assert moved.outcome.outcome == Result.SKIPPED_VERIFIED
    assert moved.record.row.file_checksum == _sha(data)
    assert served.requests == []

    (root / move.legs[0].path).write_bytes(os.urandom(len(data)))  # same size, other bytes
    (moved,) = relocate_one(move, FAST)
    assert moved.outcome.outcome == Result.COPIED
    assert (root / move.legs[0].path).read_bytes() == data
    assert served.count("GET") == 1


# --- drift and integrity -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new_size", "named"),
    [(150_000, "etag mismatch"), (150_001, "size mismatch: expected 150000, actual 150001")],
    ids=["same-size", "other-size"],
)
def test_a_source_changed_since_locking_is_drift_and_nothing_is_written(
    served, tmp_path, new_size, named
):
    key, data = "up/1/other.tif", ASSETS["up/1/other.tif"]
    move = _move(served, tmp_path / "target", key, data)
    served.write(key, os.urandom(new_size))
    (moved,) = relocate_one(move, FAST)
    assert (moved.outcome.outcome, moved.outcome.error_class) == (Result.DRIFTED, ErrorClass.DRIFT)
    assert moved.outcome.attempts == 1
    assert named in moved.outcome.message
    assert moved.record is None
    assert _files(tmp_path / "target") == {}
    assert served.count("GET") == 1


@pytest.mark.parametrize("new_size", [150_000, 150_001], ids=["same-size", "other-size"])
def test_on_drift_copy_copies_and_says_so(served, tmp_path, new_size):
    key, data = "up/1/other.tif", ASSETS["up/1/other.tif"]
    move = _move(served, tmp_path / "target", key, data)
    changed = os.urandom(new_size)
    served.write(key, changed)
    (moved,) = relocate_one(move, CopyPolicy(attempts=2, initial_backoff=0.01, on_drift="copy"))
    outcome = moved.outcome
    assert (outcome.outcome, outcome.error_class) == (Result.COPIED, ErrorClass.DRIFT)
    assert outcome.message.startswith("copied despite drift (on_drift: copy): ")
    assert "etag mismatch" in outcome.message
    assert _files(tmp_path / "target") == {move.legs[0].path: changed}
    assert (moved.record.row.size_bytes, moved.record.row.file_checksum) == (
        new_size,
        _sha(changed),
    )
    assert (moved.record.source_size, moved.record.source_etag) == (new_size, _etag(changed))


def test_a_lock_checksum_that_does_not_match_the_bytes_is_drift(served, tmp_path):
    key, data = "up/1/other.tif", ASSETS["up/1/other.tif"]
    wrong = _sha(b"what the provider published")
    move = _move(served, tmp_path / "target", key, data, file_checksum=wrong)
    (moved,) = relocate_one(move, FAST)
    assert (moved.outcome.outcome, moved.outcome.error_class) == (Result.DRIFTED, ErrorClass.DRIFT)
    assert moved.outcome.message == f"checksum mismatch: expected {wrong}, actual {_sha(data)}"
    assert moved.outcome.attempts == 1
    assert _files(tmp_path / "target") == {}


def test_a_matching_lock_checksum_is_kept(served, tmp_path):
    key, data = "up/1/other.tif", ASSETS["up/1/other.tif"]
    move = _move(served, tmp_path / "target", key, data, file_checksum=_sha(data))
    (moved,) = relocate_one(move, FAST)
    assert moved.outcome.outcome == Result.COPIED
    assert moved.record.row.file_checksum == _sha(data)


# --- fail fast -----------------------------------------------------------------------------


def test_fail_fast_leaves_later_assets_not_attempted(served, tmp_path):
    root = tmp_path / "target"
    served.fail("up/0/small.png", 404)
    moves = [
        _move(served, root, "up/1/other.tif", ASSETS["up/1/other.tif"]),
        _move(served, root, "up/0/small.png", ASSETS["up/0/small.png"]),
        _move(served, root, "up/0/big.tif", ASSETS["up/0/big.tif"]),
    ]
    policy = CopyPolicy(workers=1, attempts=2, initial_backoff=0.01, fail_fast=True)
    results = relocate_batch(moves, policy)
    assert [(m.outcome.outcome, m.outcome.error_class) for m in results] == [
        (Result.COPIED, None),
        (Result.FAILED, ErrorClass.PERMANENT),
        (Result.FAILED, None),
    ]
    assert results[2].outcome.message == NOT_ATTEMPTED
    assert results[2].record is None
    assert served.count("GET", "up/0/big.tif") == 0
    assert list(_files(root)) == [moves[0].legs[0].path]


def test_without_fail_fast_every_asset_is_attempted(served, tmp_path):
    served.fail("up/0/small.png", 404)
    moves = [_move(served, tmp_path / "target", k, d) for k, d in ASSETS.items()]
    results = relocate_batch(moves, CopyPolicy(workers=1, attempts=2, initial_backoff=0.01))
    assert [m.outcome.outcome for m in results] == [Result.COPIED, Result.FAILED, Result.COPIED]


# --- secrets -------------------------------------------------------------------------------

SIGNED_QUERY = (
    "X-Amz-Signature=SIGSECRET&X-Amz-Credential=CREDSECRET&X-Amz-Security-Token=TOKSECRET"
)


@pytest.mark.parametrize(
    "fault",
    [
        None,
        lambda o: o.fail("up/1/other.tif", 403),
        lambda o: o.fail("up/1/other.tif", 404),
        lambda o: o.fail("up/1/other.tif", 503),
        lambda o: (o.no_etag("up/1/other.tif"), o.truncate("up/1/other.tif", 1000)),
        lambda o: o.write("up/1/other.tif", b"drifted"),
    ],
    ids=["copied", "403", "404", "503", "cut", "drift"],
)
def test_a_signed_url_never_reaches_an_outcome_or_a_record(served, tmp_path, fault):
    key, data = "up/1/other.tif", ASSETS["up/1/other.tif"]
    signed = f"{served.url}/{key}?{SIGNED_QUERY}"
    move = _move(served, tmp_path / "target", key, data)
    source = StoreRef("http", signed, "", Access(allow_http=True), CHUNK)
    move = replace(move, source_store=source, source_path="")
    if fault:
        fault(served)
    (moved,) = relocate_one(move, FAST)
    assert served.count("GET", key) >= 1  # the signed URL itself was fetched
    assert "SECRET" not in repr(moved)
    if moved.outcome.outcome == Result.COPIED:
        assert (tmp_path / "target" / move.legs[0].path).read_bytes() == data
    else:
        assert moved.outcome.message


def test_credential_values_never_reach_an_outcome(served, tmp_path, moto_endpoint, monkeypatch):
    monkeypatch.setenv("STACFLOW_TEST_KEY_ID", "keyid-VALUE-0001")
    monkeypatch.setenv("STACFLOW_TEST_SECRET", "secret-VALUE-0002")
    credentials = {
        "access_key_id": {"env": "STACFLOW_TEST_KEY_ID"},
        "secret_access_key": {"env": "STACFLOW_TEST_SECRET"},
    }
    key, data = "up/1/other.tif", ASSETS["up/1/other.tif"]
    plan = _plan(
        tmp_path,
        served,
        _lock(served, {key: data}),
        {"s3": _s3(moto_endpoint, "no-such-bucket", credentials=credentials)},
    )
    (moved,) = relocate_batch(plan.moves, plan.policy)
    assert moved.outcome.outcome == Result.FAILED
    assert "VALUE" not in repr(moved)
    assert "VALUE" not in repr(plan)


def test_no_temp_file_survives_any_outcome(served, tmp_path):
    served.fail("up/0/small.png", 503)
    served.write("up/1/other.tif", os.urandom(10))  # drift
    root = tmp_path / "target"
    moves = [_move(served, root, k, d) for k, d in ASSETS.items()]
    relocate_batch(moves, FAST)
    assert [p.name for p in root.rglob("*") if TEMP_MARKER in p.name] == []
    assert _files(root) == {moves[0].legs[0].path: ASSETS["up/0/big.tif"]}


@pytest.mark.parametrize("sweep", [True, False])
def test_a_batch_first_removes_what_a_killed_run_left_beside_its_keys(served, tmp_path, sweep):
    root = tmp_path / "target"
    moves = [_move(served, root, k, d) for k, d in ASSETS.items()]
    debris = []
    for move in moves:
        final = root / move.legs[0].path
        final.parent.mkdir(parents=True, exist_ok=True)
        debris += [final.with_name(f".{final.name}{TEMP_MARKER}{'ab' * 16}")]
        debris += [final.with_name(f"{final.name}#3")]
    for path in debris:
        path.write_bytes(b"left by a killed run")
    unrelated = debris[0].with_name("unrelated#3")
    unrelated.write_bytes(b"not ours")

    results = relocate_batch(moves, replace(FAST, sweep=sweep))
    assert {m.outcome.outcome for m in results} == {Result.COPIED}
    assert [path.exists() for path in debris] == [not sweep] * len(debris)
    assert unrelated.read_bytes() == b"not ours"


def test_records_are_built_only_from_verified_copies(served, tmp_path):
    moves = [_move(served, tmp_path / "target", k, d) for k, d in ASSETS.items()]
    served.fail("up/0/small.png", 404)
    results = relocate_batch(moves, FAST)
    assert [type(m.record) for m in results] == [Record, type(None), Record]


# --- durability: a copy is trusted without rereading only once its run flushed it -------------


def test_a_copy_a_killed_run_did_not_flush_is_hashed_again_before_it_is_trusted(served, tmp_path):
    root = tmp_path / "local"
    key, data = "up/0/small.png", ASSETS["up/0/small.png"]
    journal = tmp_path / "journal.jsonl"
    move = _move(served, root, key, data)
    [first] = relocate_batch([move], FAST, {"local": journal})
    assert first.record.durable is False  # written, not yet flushed: as a killed run leaves it
    assert read_records(journal)[("item", key)].durable is False

    # The bytes changed in place, size, inode and mtime kept: only a hash can tell.
    target = root / move.legs[0].path
    before = target.stat()
    target.write_bytes(bytes(b ^ 0xFF for b in data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    gets = served.count("GET")
    unflushed = replace(move, legs=(replace(move.legs[0], previous=first.record),))
    [again] = relocate_batch([unflushed], FAST, {"local": journal})
    assert again.outcome.outcome == Result.COPIED
    assert served.count("GET") == gets + 1
    assert target.read_bytes() == data

    flushed = replace(
        move, legs=(replace(move.legs[0], previous=replace(again.record, durable=True)),)
    )
    [skipped] = relocate_batch([flushed], FAST, {"local": journal})
    assert skipped.outcome.outcome == Result.SKIPPED_VERIFIED
    assert served.count("GET") == gets + 1


def test_a_second_run_of_the_same_outputs_is_refused_and_a_killed_one_is_noticed(tmp_path):
    from stacflow.tasks.errors import UsageError  # noqa: PLC0415
    from stacflow.tasks.state import run_lock  # noqa: PLC0415

    with run_lock(tmp_path) as killed:
        assert killed is False
        with (
            pytest.raises(UsageError, match="another stacflow run is writing to"),
            run_lock(tmp_path),
        ):
            pass
    with run_lock(tmp_path) as killed:
        assert killed is False  # the first one ended normally
    (tmp_path / ".stacflow" / "run.lock").write_bytes(b"running")  # as a SIGKILL leaves it
    with run_lock(tmp_path) as killed:
        assert killed is True


def test_a_first_run_into_an_empty_s3_prefix_lists_it_instead_of_a_head_per_key(
    served, tmp_path, moto_endpoint, s3_bucket
):
    from stacflow.tasks.survey import with_listings  # noqa: PLC0415

    rows = [
        replace(row, file_checksum=sha256_multihash(hashlib.sha256(ASSETS[row.key]).digest()))
        for row in _lock(served)
    ]
    target = {"bucket": _s3(moto_endpoint, s3_bucket, prefix="mirror/x")}
    moves = with_listings(_plan(tmp_path, served, rows, target).moves)
    assert all(leg.was_listed and leg.listed is None for m in moves for leg in m.legs)
    results = relocate_batch(moves, FAST)
    assert {m.outcome.outcome for m in results} == {Result.COPIED}
    bucket = s3.s3_store(moto_endpoint, s3_bucket)
    for move in moves:
        stored = obstore.get(bucket, f"mirror/x/{move.legs[0].path}").bytes()
        assert bytes(stored) == ASSETS[move.source.key]


def test_a_prefix_crowded_with_other_objects_is_not_listed_to_its_end(
    served, tmp_path, moto_endpoint, s3_bucket, monkeypatch
):
    from stacflow.tasks import survey  # noqa: PLC0415

    monkeypatch.setattr(survey, "LIST_PER_KEY", 1)
    monkeypatch.setattr(survey, "LIST_PAGE", 2)
    bucket = s3.s3_store(moto_endpoint, s3_bucket)
    for i in range(6):  # more than 1 per key + 2 for the 3 keys of the lock
        obstore.put(bucket, f"mirror/x/someone-else/{i}.tif", b"x")
    target = {"bucket": _s3(moto_endpoint, s3_bucket, prefix="mirror/x")}
    moves = survey.with_listings(_plan(tmp_path, served, _lock(served), target).moves)
    assert not any(leg.was_listed for m in moves for leg in m.legs)
    assert {m.outcome.outcome for m in relocate_batch(moves, FAST)} == {Result.COPIED}


def test_a_rerun_into_s3_lists_the_target_once_instead_of_a_head_per_key(
    served, tmp_path, moto_endpoint, s3_bucket
):
    from stacflow.tasks.survey import with_listings  # noqa: PLC0415

    rows = _lock(served)
    target = {"bucket": _s3(moto_endpoint, s3_bucket, prefix="mirror/x")}
    first = relocate_batch(_plan(tmp_path, served, rows, target).moves, FAST)
    records = {(m.outcome.item_id, m.outcome.asset_key): m.record for m in first}
    moves = _plan(tmp_path, served, rows, target, previous={"bucket": records}).moves

    listed = with_listings(moves)
    assert all(leg.was_listed and leg.listed is not None for m in listed for leg in m.legs)
    assert [leg.listed.etag for m in listed for leg in m.legs] == [
        records[m.key].row.etag for m in listed
    ]
    gets = served.count("GET")
    results = relocate_batch(listed, FAST)
    assert {m.outcome.outcome for m in results} == {Result.SKIPPED_VERIFIED}
    assert served.count("GET") == gets

    gone = next(iter(records.values())).row.key
    obstore.delete(s3.s3_store(moto_endpoint, s3_bucket), gone)
    relisted = with_listings(moves)
    missing = [leg for m in relisted for leg in m.legs if leg.listed is None]
    assert [leg.row.key for leg in missing] == [gone]
    results = relocate_batch(relisted, FAST)
    assert sorted(m.outcome.outcome for m in results).count(Result.COPIED) == 1
