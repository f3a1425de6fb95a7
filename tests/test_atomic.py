from __future__ import annotations

import os

import pytest

from stacflow.tasks.atomic import TEMP_MARKER, atomic_write, write_bytes_atomic, write_text_atomic


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if TEMP_MARKER in p.name]


def test_write_lands_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    write_bytes_atomic(target, b"abc" * 1000)
    assert target.read_bytes() == b"abc" * 1000
    assert _leftovers(tmp_path) == []


def test_temp_file_is_a_hidden_sibling_named_with_the_marker(tmp_path):
    target = tmp_path / "lock.parquet"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert not target.exists()
        tmp.write_bytes(b"x")

    atomic_write(target, write)
    (tmp,) = seen
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(".lock.parquet" + TEMP_MARKER)
    assert len(tmp.name.removeprefix(".lock.parquet" + TEMP_MARKER)) == 32


def test_two_writes_use_different_temp_names(tmp_path):
    names = []
    for _ in range(2):
        atomic_write(tmp_path / "a", lambda tmp: (names.append(tmp.name), tmp.write_bytes(b"")))
    assert names[0] != names[1]


def test_replaces_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomic(target, "néw\n")
    assert target.read_bytes() == "néw\n".encode()


def test_creates_missing_parent_directories(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    write_text_atomic(target, "x")
    assert target.read_text() == "x"


def test_failure_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def half_write(tmp):
        tmp.write_text("partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, half_write)
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_failure_before_temp_exists_is_reraised_untouched(tmp_path):
    target = tmp_path / "out.txt"

    def fail(tmp):
        raise ValueError("nothing written")

    with pytest.raises(ValueError, match="nothing written"):
        atomic_write(target, fail)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    target = tmp_path / "out.txt"

    def interrupted(tmp):
        tmp.write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_rename_failure_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "occupied").write_text("x")  # a non-empty directory cannot be replaced by a file

    with pytest.raises(OSError):  # noqa: PT011 - the OS picks IsADirectoryError or similar
        write_bytes_atomic(target, b"new")
    assert (target / "occupied").read_text() == "x"
    assert _leftovers(tmp_path) == []


def test_file_is_synced_before_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    write_bytes_atomic(tmp_path / "out", b"x")
    assert len(synced) == 2  # the file, then its directory
