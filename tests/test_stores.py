"""The store boundary: atomic local writes and their sweep, and S3 through obstore on moto.

Every byte a run keeps goes through `Store.writer`, so these tests pin what a reader may see:
the old object or the new one, never a part of it, and no staging left behind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import obstore
import pytest

from stacflow.tasks.access import Access
from stacflow.tasks.atomic import TEMP_MARKER
from stacflow.tasks.errors import AssetError, ErrorClass
from stacflow.tasks.stores import StoreRef, open_store
from stacflow.tasks.stores.file import FolderStore, stat_facts
from stacflow.tasks.stores.object_store import MIN_PART_SIZE
from stacflow.tasks.stores.s3 import S3Bucket
from tests.servers import s3

CHUNK = 64 * 1024


class Boom(Exception):
    pass


def _file_store(root: Path) -> FolderStore:
    return FolderStore(StoreRef("file", None, str(root), Access(), CHUNK))


def _object_store(endpoint: str, bucket: str, prefix: str = "") -> S3Bucket:
    access = Access(endpoint=endpoint, allow_http=True, region=s3.REGION)
    return S3Bucket(StoreRef("s3", bucket, prefix, access, CHUNK))


def _names(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _aborted(store, path: str, data: bytes, during=None) -> None:
    """Write `data` into `path`, then fail before the writer is committed."""
    with store.writer(path) as writer:
        _written_in_reused_buffer(writer, data, CHUNK)
        if during is not None:
            during()
        raise Boom


def _written_in_reused_buffer(writer, data: bytes, size: int) -> None:
    """Feed `data` as the readers do: views into one buffer, overwritten for every chunk."""
    buffer = memoryview(bytearray(size))
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        buffer[: len(piece)] = piece
        writer.write(buffer[: len(piece)])


# --- FolderStore ---------------------------------------------------------------------------


def test_file_writer_commits_whole_and_reports_stat_facts(tmp_path):
    store = _file_store(tmp_path)
    data = os.urandom(3 * CHUNK + 5)
    with store.writer("item/asset.tif") as writer:
        _written_in_reused_buffer(writer, data, CHUNK)
        assert not (tmp_path / "item" / "asset.tif").exists()  # invisible until committed
    final = tmp_path / "item" / "asset.tif"
    assert final.read_bytes() == data
    assert _names(tmp_path) == ["item/asset.tif"]
    facts = store.head("item/asset.tif")
    assert facts == stat_facts(final.stat())
    assert facts.size == len(data)
    with store.open("item/asset.tif") as reader:
        assert reader.facts == facts
        assert b"".join(bytes(c) for c in reader.chunks()) == data


def test_file_writer_abort_keeps_the_old_file_and_no_temp(tmp_path):
    store = _file_store(tmp_path)
    final = tmp_path / "item" / "asset.tif"
    final.parent.mkdir()
    final.write_bytes(b"old bytes")
    staged = []

    def look() -> None:
        staged.extend(p.name for p in final.parent.iterdir() if TEMP_MARKER in p.name)
        assert final.read_bytes() == b"old bytes"  # the old file stays visible meanwhile

    with pytest.raises(Boom):
        _aborted(store, "item/asset.tif", b"new bytes, half", during=look)
    assert [name.startswith(".asset.tif" + TEMP_MARKER) for name in staged] == [True]
    assert final.read_bytes() == b"old bytes"
    assert _names(tmp_path) == ["item/asset.tif"]


def test_file_writer_abort_of_a_new_object_leaves_nothing(tmp_path):
    store = _file_store(tmp_path)
    with pytest.raises(Boom):
        _aborted(store, "item/asset.tif", b"partial")
    assert _names(tmp_path) == []


def test_sweep_removes_only_staging_leftovers_of_that_name(tmp_path):
    folder = tmp_path / "item"
    folder.mkdir()
    leftovers = [
        ".visual.tif" + TEMP_MARKER + "0123abcd",  # ours, from a killed run
        "visual.tif#3",  # obstore LocalStore / stacpkg staging
        "visual.tif#12",
    ]
    kept = ["visual.tif", "visual.tif#x", "other.tif#3", ".other.tif" + TEMP_MARKER + "ff"]
    for name in leftovers + kept:
        (folder / name).write_bytes(b"x")
    assert _file_store(tmp_path).sweep(["item/visual.tif"]) == len(leftovers)
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept)


def test_sweep_of_a_name_without_extension(tmp_path):
    folder = tmp_path / "item"
    folder.mkdir()
    for name in ("data#1", ".data" + TEMP_MARKER + "aa", "data"):
        (folder / name).write_bytes(b"x")
    assert _file_store(tmp_path).sweep(["item/data"]) == 2
    assert [p.name for p in folder.iterdir()] == ["data"]


@pytest.mark.parametrize("name", ["visual.tif", "a" * 240 + ".tif"])
def test_sweep_removes_the_staging_of_a_killed_write(tmp_path, name):
    store = _file_store(tmp_path)
    killed = store.writer(f"item/{name}")
    killed.__enter__().write(b"partial")  # never exited: the process died here
    assert [TEMP_MARKER in n for n in _names(tmp_path)] == [True]
    assert store.sweep([f"item/{name}"]) == 1
    assert _names(tmp_path) == []
    del killed


def test_sweep_of_many_paths_lists_each_folder_once(tmp_path, monkeypatch):
    from stacflow.tasks.stores import file as file_store  # noqa: PLC0415

    names = [f"a{i}.tif" for i in range(50)]
    for folder in ("flat", "other"):
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"kept")
            (tmp_path / folder / f".{name}{TEMP_MARKER}{'0' * 32}").write_bytes(b"debris")
    (tmp_path / "flat" / "a1.tif#7").write_bytes(b"debris")
    listings = []
    real = file_store.os.scandir
    monkeypatch.setattr(file_store.os, "scandir", lambda p: listings.append(p) or real(p))

    paths = [f"{folder}/{name}" for folder in ("flat", "other") for name in names[:40]]
    assert _file_store(tmp_path).sweep([*paths, "../escape.tif"]) == 81
    assert len(listings) == 2
    for folder in ("flat", "other"):
        left = sorted(p.name for p in (tmp_path / folder).iterdir())
        debris = sorted(f".{name}{TEMP_MARKER}{'0' * 32}" for name in names[40:])
        assert left == sorted([*debris, *names])


def test_sweep_of_a_missing_folder_is_a_no_op(tmp_path):
    assert _file_store(tmp_path).sweep(["nowhere/visual.tif"]) == 0


def test_a_long_name_can_still_be_staged_and_swept(tmp_path):
    """A name near the file system's 255-byte limit must not fail only because of its temp."""
    store = _file_store(tmp_path)
    name = "a" * 240 + ".tif"
    with pytest.raises(Boom):
        _aborted(store, f"item/{name}", b"partial")
    with store.writer(f"item/{name}") as writer:
        writer.write(b"whole")
    assert _names(tmp_path) == [f"item/{name}"]
    assert (tmp_path / "item" / name).read_bytes() == b"whole"


@pytest.mark.parametrize("path", ["../escape", "a/../../escape", "./a", "", "/", "a/./b"])
def test_file_paths_never_leave_the_root(tmp_path, path):
    store = _file_store(tmp_path / "root")
    with pytest.raises(AssetError) as caught:
        store.head(path)
    assert caught.value.error_class == ErrorClass.PERMANENT
    assert "unsafe path" in caught.value.message


def test_file_head_and_open_of_a_missing_object_are_permanent(tmp_path):
    store = _file_store(tmp_path)
    for call in (store.head, lambda p: store.open(p).__enter__()):
        with pytest.raises(AssetError) as caught:
            call("item/missing.tif")
        assert caught.value.error_class == ErrorClass.PERMANENT
        assert str(tmp_path / "item" / "missing.tif") in caught.value.message


# --- S3Bucket on moto ----------------------------------------------------------------------


def test_object_store_round_trip_with_the_s3_etag(moto_endpoint, s3_bucket):
    store = _object_store(moto_endpoint, s3_bucket, prefix="mirror/v1")
    data = os.urandom(100_000)
    with store.writer("item/asset.tif") as writer:
        _written_in_reused_buffer(writer, data, CHUNK)
    facts = store.head("item/asset.tif")
    assert facts.size == len(data)
    assert facts.etag == f'"{hashlib.md5(data).hexdigest()}"'  # single part: the MD5
    raw = s3.s3_store(moto_endpoint, s3_bucket)
    assert bytes(obstore.get(raw, "mirror/v1/item/asset.tif").bytes()) == data
    with store.open("item/asset.tif") as reader:
        assert reader.facts == facts
        assert b"".join(bytes(c) for c in reader.chunks()) == data
    assert store.describe("item/asset.tif") == f"s3://{s3_bucket}/mirror/v1/item/asset.tif"


def test_multipart_upload_from_a_reused_buffer_keeps_every_byte(moto_endpoint, s3_bucket):
    """Readers hand out views into one buffer; a writer that kept them would upload garbage."""
    store = _object_store(moto_endpoint, s3_bucket)
    data = os.urandom(2 * MIN_PART_SIZE + 12_345)
    with store.writer("big.bin") as writer:
        _written_in_reused_buffer(writer, data, CHUNK)
    raw = s3.s3_store(moto_endpoint, s3_bucket)
    assert bytes(obstore.get(raw, "big.bin").bytes()) == data
    facts = store.head("big.bin")
    assert facts.size == len(data)
    assert facts.etag.endswith('-3"')  # three parts of MIN_PART_SIZE at most
    assert s3.list_multipart_uploads(moto_endpoint, s3_bucket) == []


def test_aborted_multipart_writer_leaves_no_object_and_no_upload(moto_endpoint, s3_bucket):
    store = _object_store(moto_endpoint, s3_bucket)
    with pytest.raises(Boom):
        _aborted(store, "big.bin", os.urandom(MIN_PART_SIZE + CHUNK))
    with pytest.raises(AssetError) as caught:
        store.head("big.bin")
    assert caught.value.status == 404
    assert s3.list_multipart_uploads(moto_endpoint, s3_bucket) == []


def test_missing_object_and_missing_bucket_are_permanent(moto_endpoint, s3_bucket):
    with pytest.raises(AssetError) as caught:
        _object_store(moto_endpoint, s3_bucket).head("nothing.bin")
    assert (caught.value.error_class, caught.value.status) == (ErrorClass.PERMANENT, 404)
    assert f"s3://{s3_bucket}/nothing.bin" in caught.value.message
    missing = _object_store(moto_endpoint, "no-such-bucket-here")
    for size in (10, MIN_PART_SIZE + CHUNK):  # fails at close (one PUT), or mid-write (multipart)
        with pytest.raises(AssetError) as caught, missing.writer("a.bin") as writer:
            _written_in_reused_buffer(writer, os.urandom(size), CHUNK)
        assert caught.value.error_class == ErrorClass.PERMANENT
        assert "s3://no-such-bucket-here/a.bin" in caught.value.message


def test_open_store_builds_each_ref_once(tmp_path):
    ref = StoreRef("file", None, str(tmp_path))
    assert open_store(ref) is open_store(StoreRef("file", None, str(tmp_path)))
    with pytest.raises(AssetError) as caught:
        open_store(StoreRef("ftp", "ftp://example"))
    assert "unsupported store type 'ftp'" in caught.value.message
