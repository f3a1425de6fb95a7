"""Validation in stacpkg's shape and words, plus what stacpkg cannot see (checksums); and derive.

Each lock row becomes one JSON line; an unreachable object is a row with an error, never an
exception; no line, outcome or error ever carries a signed URL's query or a credential value.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from stacflow.tasks.access import Access, Credentials, EnvRef
from stacflow.tasks.checksum import sha256_multihash
from stacflow.tasks.derive import derive_facts
from stacflow.tasks.errors import ErrorClass, InputError
from stacflow.tasks.locks import LockRow, read_lock
from stacflow.tasks.moves import Check
from stacflow.tasks.report import Result, Step
from stacflow.tasks.stores import Facts, StoreRef, _open_cached
from stacflow.tasks.stores.file import stat_facts
from stacflow.tasks.validate import mismatches, missing_fields, validate_checks, validation_line
from tests.servers import s3

HTTPS_LOCK = "openaerialmap-austria.pkg/assets.lock.parquet"
S3_LOCK = "openaerialmap-austria.s3.assets.lock.parquet"
SAMPLE = "stacpkg-validate-sample.jsonl"
SAMPLE_ORIGIN = "http://127.0.0.1:43071"  # where stacpkg's origin was when it wrote the sample
LOCKED_AT = "2022-09-12T09:43:21+00:00"


@pytest.fixture(autouse=True)
def fresh_clients():
    """Stores are cached per ref; credentials are read when one is built, so build anew."""
    _open_cached.cache_clear()


def _http(origin) -> StoreRef:
    return StoreRef("http", origin.url, "", Access(allow_http=True))


def _by_key(validated) -> dict[tuple[str, str], object]:
    return {(v.line["item_id"], v.line["asset_key"]): v for v in validated}


# --- stacpkg's shape and words -------------------------------------------------------------


def test_mismatch_wording_is_stacpkgs():
    row = LockRow("i", "a", "https", "https://h", None, "k", 10, '"a"', LOCKED_AT)
    facts = Facts(12, '"b"', "2024-01-01T00:00:00+00:00")
    assert mismatches(row, facts) == [
        "size mismatch: expected 10, actual 12",
        'etag mismatch: expected "a", actual "b"',
        f"last_modified mismatch: expected {LOCKED_AT}, actual 2024-01-01T00:00:00+00:00",
    ]
    assert mismatches(row, facts, frozenset({"size"})) == ["size mismatch: expected 10, actual 12"]
    assert mismatches(row, Facts(None, None, None)) == []  # only where both have a value
    assert mismatches(replace(row, size_bytes=None, etag=None, last_modified=None), facts) == []


@pytest.mark.parametrize(
    ("row", "missing"),
    [
        (LockRow("i", "a", "s3", None, None, "k"), ["store_container"]),
        (LockRow("i", "a", "https", "", None, "k"), ["store_container"]),
        (LockRow("i", "a", None, None, None, "k"), ["store_type"]),
        (LockRow("i", "a", "s3", "b", None, None), ["key"]),
        (LockRow("i", "a", "s3", "b", None, ""), ["key"]),
        (LockRow("i", "a", "file", None, None, None), ["key"]),
        (LockRow("i", "a", "s3", None, None, None), ["store_container", "key"]),  # stacpkg's order
        (LockRow("i", "a", "file", None, None, "/data/x.tif"), []),
        # A whole-href container (stacpkg's `https://host/p?query`) carries the key "".
        (LockRow("i", "a", "https", "https://h/p?q=1", None, ""), []),
    ],
)
def test_missing_fields(row, missing):
    assert missing_fields(row) == missing


def test_a_line_names_the_endpoint_only_when_the_row_has_one():
    bare = LockRow("i", "a", "s3", "bucket", None, "k")
    assert "store_endpoint_url" not in validation_line(bare, [])
    line = validation_line(replace(bare, store_endpoint_url="https://s3.example"), ["e"])
    assert (line["store_endpoint_url"], line["errors"], line["valid"]) == (
        "https://s3.example",
        ["e"],
        False,
    )


def test_a_row_missing_fields_is_invalid_without_a_request(origin):
    row = LockRow("item", "visual", "s3", None, None, "a/b.tif", 10)
    (validated,) = validate_checks([Check(row, _http(origin), "a/b.tif")], "s3", checksums=False)
    assert validated.line == {
        "asset_key": "visual",
        "errors": ["missing fields: store_container"],
        "item_id": "item",
        "key": "a/b.tif",
        "store_container": None,
        "store_type": "s3",
        "valid": False,
    }
    assert origin.requests == []


def test_the_fixture_https_lock_validates_as_stacpkg_prints_it(oam_origin, oam_data):
    """The same rows against the same bytes give stacpkg's own lines, byte for byte."""
    rows = [
        replace(row, store_type="http", store_container=SAMPLE_ORIGIN)
        for row in read_lock(oam_data / HTTPS_LOCK)
    ]
    validated = validate_checks(
        [Check(row, _http(oam_origin), row.key) for row in rows], "https", checksums=False
    )
    ours = sorted(json.dumps(v.line, sort_keys=True) for v in validated)
    assert ours == sorted((oam_data / SAMPLE).read_text().splitlines())
    assert oam_origin.count("HEAD") == 4
    assert oam_origin.count("GET") == 0


def test_the_fixture_https_lock_validates_against_a_mirror(oam_origin, oam_data):
    rows = read_lock(oam_data / HTTPS_LOCK)
    validated = validate_checks(
        [Check(row, _http(oam_origin), row.key) for row in rows], "https", checksums=False
    )
    assert [v.line["valid"] for v in validated] == [True] * 4
    assert {v.line["store_container"] for v in validated} == {rows[0].store_container}
    outcome = validated[0].outcome
    assert (outcome.store, outcome.step, outcome.outcome) == ("https", Step.VALIDATE, Result.VALID)


def test_drift_at_the_origin_names_the_fact(oam_origin, oam_data):
    rows = read_lock(oam_data / HTTPS_LOCK)
    visual = next(r for r in rows if r.asset_key == "visual")
    oam_origin.write(visual.key, os.urandom(visual.size_bytes + 2))
    validated = _by_key(
        validate_checks(
            [Check(row, _http(oam_origin), row.key) for row in rows], "https", checksums=False
        )
    )
    line = validated[visual.item_id, "visual"].line
    assert line["valid"] is False
    assert line["errors"][0] == (
        f"size mismatch: expected {visual.size_bytes}, actual {visual.size_bytes + 2}"
    )
    assert line["errors"][1].startswith(f"etag mismatch: expected {visual.etag}, actual ")
    outcome = validated[visual.item_id, "visual"].outcome
    assert (outcome.outcome, outcome.error_class) == (Result.INVALID, ErrorClass.DRIFT)
    assert sum(v.line["valid"] for v in validated.values()) == 3


@pytest.mark.parametrize(
    ("status", "words"), [(404, "not found (HTTP 404)"), (403, "access denied (HTTP 403)")]
)
def test_an_unreachable_object_is_an_error_row(oam_origin, oam_data, status, words):
    rows = read_lock(oam_data / HTTPS_LOCK)
    oam_origin.fail(rows[0].key, status)
    validated = validate_checks(
        [Check(row, _http(oam_origin), row.key) for row in rows], "https", checksums=False
    )
    first = validated[0]
    assert first.line["valid"] is False
    assert first.line["errors"] == [f"{words}: {oam_origin.url}/{rows[0].key}"]
    assert (first.outcome.outcome, first.outcome.error_class) == (
        Result.INVALID,
        ErrorClass.PERMANENT,
    )
    assert [v.line["valid"] for v in validated[1:]] == [True] * 3
    assert oam_origin.count("HEAD", rows[0].key) == 1  # a permanent error is not retried


def test_a_transient_failure_is_retried(oam_origin, oam_data):
    row = read_lock(oam_data / HTTPS_LOCK)[0]
    oam_origin.fail(row.key, 503, times=1)
    (validated,) = validate_checks([Check(row, _http(oam_origin), row.key)], "h", checksums=False)
    assert validated.line["valid"] is True
    assert oam_origin.count("HEAD") == 2


# --- the S3-shaped lock on moto ------------------------------------------------------------


def _s3_checks(oam_data: Path, access: Access) -> list[Check]:
    return [
        Check(row, StoreRef("s3", row.store_container, "", access), row.key)
        for row in read_lock(oam_data / S3_LOCK)
    ]


def test_the_fixture_s3_lock_validates_anonymously(oam_s3, oam_data, moto_endpoint):
    access = Access(anonymous=True, endpoint=moto_endpoint, allow_http=True)
    validated = validate_checks(_s3_checks(oam_data, access), "s3", checksums=False)
    assert [v.line["errors"] for v in validated] == [[]] * 4
    assert {v.line["store_endpoint_url"] for v in validated} == {"https://s3.amazonaws.com"}
    assert {v.line["store_container"] for v in validated} == {oam_s3}


def _keys_from(monkeypatch, key_id: str, secret: str) -> Credentials:
    monkeypatch.setenv("STACFLOW_TEST_KEY_ID", key_id)
    monkeypatch.setenv("STACFLOW_TEST_SECRET", secret)
    return Credentials(
        access_key_id=EnvRef(env="STACFLOW_TEST_KEY_ID"),
        secret_access_key=EnvRef(env="STACFLOW_TEST_SECRET"),
    )


def test_the_fixture_s3_lock_validates_with_keys_from_the_environment(
    oam_s3, oam_data, moto_endpoint, monkeypatch
):
    credentials = _keys_from(monkeypatch, "keyid-VALUE-0001", "secret-VALUE-0002")
    access = Access(endpoint=moto_endpoint, allow_http=True, credentials=credentials)
    checks = _s3_checks(oam_data, access)
    missing = replace(checks[0].row, key="nowhere/missing.tif")
    validated = validate_checks(
        [*checks, Check(missing, checks[0].store, missing.key)], "s3", checksums=False
    )
    assert [v.line["valid"] for v in validated] == [True, True, True, True, False]
    assert validated[-1].line["errors"] == [f"not found: s3://{oam_s3}/nowhere/missing.tif"]
    assert "VALUE" not in repr(validated)
    assert "VALUE" not in repr(checks)


def test_keys_reach_a_private_object_that_anonymous_access_cannot(
    s3_bucket, moto_endpoint, monkeypatch
):
    etag = s3.put_object(moto_endpoint, s3_bucket, "private/a.bin", b"private bytes")
    row = LockRow("item", "a", "s3", s3_bucket, moto_endpoint, "private/a.bin", 13, etag)
    anonymous = Access(anonymous=True, endpoint=moto_endpoint, allow_http=True)
    credentials = _keys_from(monkeypatch, s3.KEY_ID, s3.SECRET)
    signed = Access(endpoint=moto_endpoint, allow_http=True, credentials=credentials)
    lines = [
        validate_checks(
            [Check(row, StoreRef("s3", s3_bucket, "", a), row.key)], "s3", checksums=False
        )[0].line
        for a in (anonymous, signed)
    ]
    assert lines[0]["errors"] == [f"access denied: s3://{s3_bucket}/private/a.bin"]
    assert lines[1]["errors"] == []
    assert lines[1]["store_endpoint_url"] == moto_endpoint


def test_an_unset_credentials_variable_is_named(oam_s3, oam_data, moto_endpoint, monkeypatch):
    monkeypatch.delenv("STACFLOW_TEST_UNSET", raising=False)
    credentials = Credentials(
        access_key_id=EnvRef(env="STACFLOW_TEST_UNSET"),
        secret_access_key=EnvRef(env="STACFLOW_TEST_UNSET"),
    )
    access = Access(endpoint=moto_endpoint, allow_http=True, credentials=credentials)
    with pytest.raises(InputError, match="STACFLOW_TEST_UNSET"):
        validate_checks(_s3_checks(oam_data, access), "s3", checksums=False)


# --- checksums: what stacpkg cannot see ----------------------------------------------------


def test_a_same_size_rewrite_is_caught_only_with_checksums(tmp_path):
    path = tmp_path / "scene.tif"
    data = os.urandom(100_000)
    path.write_bytes(data)
    facts = stat_facts(path.stat())
    checksum = sha256_multihash(hashlib.sha256(data).digest())
    row = LockRow("item", "visual", "file", None, None, str(path), **_stat(path))
    row = replace(row, file_checksum=checksum)
    before = path.stat()
    with path.open("r+b") as handle:  # same inode, same size ...
        handle.write(b"\0" * 100)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ... and the old mtime
    assert stat_facts(path.stat()) == facts  # HEAD facts cannot tell
    check = Check(row, StoreRef("file", None, "/"), str(path).lstrip("/"))
    (plain,) = validate_checks([check], "local", checksums=False)
    assert plain.line["valid"] is True
    assert plain.outcome.bytes == 0
    (hashed,) = validate_checks([check], "local", checksums=True)
    actual = sha256_multihash(hashlib.sha256(path.read_bytes()).digest())
    assert hashed.line["errors"] == [f"checksum mismatch: expected {checksum}, actual {actual}"]
    assert (hashed.outcome.outcome, hashed.outcome.error_class) == (
        Result.INVALID,
        ErrorClass.DRIFT,
    )
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    (restored,) = validate_checks(
        [replace(check, row=replace(row, **_stat(path)))], "local", checksums=True
    )
    assert restored.line["valid"] is True
    assert restored.outcome.bytes == len(data)


def _stat(path: Path) -> dict:
    facts = stat_facts(path.stat())
    return {"size_bytes": facts.size, "etag": facts.etag, "last_modified": facts.last_modified}


# --- secrets -------------------------------------------------------------------------------

SIGNED_QUERY = "X-Amz-Signature=SIGSECRET&X-Amz-Credential=CREDSECRET"


@pytest.mark.parametrize("fault", [None, 403, 404])
def test_a_signed_url_row_never_shows_its_query(oam_origin, oam_data, fault):
    """stacpkg keeps a signed href whole in store_container (key ""); the line never repeats it."""
    locked = read_lock(oam_data / HTTPS_LOCK)[0]
    signed = f"{oam_origin.url}/{locked.key}?{SIGNED_QUERY}"
    row = replace(locked, store_type="http", store_container=signed, key="")
    if fault:
        oam_origin.fail(locked.key, fault)
    check = Check(row, StoreRef("http", signed, "", Access(allow_http=True)), "")
    (validated,) = validate_checks([check], "signed", checksums=False)
    text = json.dumps(validated.line) + repr(validated.outcome)
    assert "SECRET" not in text
    assert validated.line["store_container"] == f"{oam_origin.url}/{locked.key}?<redacted>"
    assert validated.line["valid"] is (fault is None)
    assert oam_origin.count("HEAD", locked.key) >= 1


# --- derive --------------------------------------------------------------------------------


def test_derive_reads_the_facts_stacpkg_locked(oam_origin, oam_data):
    locked = read_lock(oam_data / HTTPS_LOCK)
    bare = [replace(r, size_bytes=None, etag=None, last_modified=None) for r in locked]
    derived = derive_facts([Check(row, _http(oam_origin), row.key) for row in bare], "https")
    assert [d.row for d in derived] == locked
    assert {(d.outcome.step, d.outcome.outcome) for d in derived} == {(Step.DERIVE, Result.DERIVED)}
    assert oam_origin.count("HEAD") == 4
    assert oam_origin.count("GET") == 0


def test_derive_of_a_missing_object_is_a_failed_outcome(oam_origin, oam_data):
    row = replace(read_lock(oam_data / HTTPS_LOCK)[0], key="nowhere.tif", size_bytes=None)
    signed = f"{oam_origin.url}/nowhere.tif?{SIGNED_QUERY}"
    derived = derive_facts(
        [
            Check(row, _http(oam_origin), "nowhere.tif"),
            Check(replace(row, key=""), StoreRef("http", signed, "", Access(allow_http=True)), ""),
        ],
        "https",
    )
    for result in derived:
        assert result.row is None
        assert (result.outcome.outcome, result.outcome.error_class) == (
            Result.FAILED,
            ErrorClass.PERMANENT,
        )
        assert "not found (HTTP 404)" in result.outcome.message
        assert "SECRET" not in result.outcome.message


def test_a_file_etag_is_stacpkgs_unquoted_inode_mtime_size(tmp_path):
    from stacflow.tasks.stores.file import stat_facts  # noqa: PLC0415

    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    stat = path.stat()
    assert stat_facts(stat).etag == f"{stat.st_ino:x}-{stat.st_mtime_ns // 1000:x}-3e8"


def test_an_etag_with_or_without_its_quotes_is_the_same_tag():
    from stacflow.tasks.validate import mismatches  # noqa: PLC0415

    row = LockRow("i", "a", "file", None, None, "/x", 3, '"20e901-660c56e223c34-1"')
    assert mismatches(row, Facts(3, "20e901-660c56e223c34-1", None)) == []
    assert mismatches(row, Facts(3, '"20e901-660c56e223c34-2"', None)) == [
        'etag mismatch: expected "20e901-660c56e223c34-1", actual "20e901-660c56e223c34-2"'
    ]
    assert mismatches(row, Facts(3, 'W/"20e901-660c56e223c34-1"', None)) != []
