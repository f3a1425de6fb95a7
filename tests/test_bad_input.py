"""Bad input gets one short line and exit 2, found before anything starts, whatever its size."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.flows.specfile import MAX_BYTES
from stacflow.tasks.locks import read_lock, write_lock
from tests.packages import ORIGIN, make_package


def _spec(folder: Path, package: Path, **extra: str) -> Path:
    spec = folder / "spec.yaml"
    more = "".join(f"{key}: {value}\n" for key, value in extra.items())
    spec.write_text(
        f"""name: bad-input
package: {package}
sources:
  https: {{prefix: "{ORIGIN}/"}}
targets:
  local: {{store: {{type: file, root: {folder / "assets"}}}}}
outputs: {folder / "out"}
{more}"""
    )
    return spec


@pytest.fixture
def package(tmp_path: Path) -> Path:
    assets = {
        ("scene-1", "visual"): ("scenes/1/visual.tif", b"one"),
        ("scene-2", "visual"): ("scenes/2/visual.tif", b"two"),
    }
    return make_package(tmp_path / "pkg", tmp_path / "origin", assets)


def test_a_negative_lock_size_is_a_bad_lock_naming_its_row(tmp_path, package, capsys):
    lock = package / "assets.lock.parquet"
    rows = read_lock(lock)
    write_lock(lock, [rows[0], dataclasses.replace(rows[1], size_bytes=-5)])

    assert main(["run", str(_spec(tmp_path, package))]) == 2

    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "row 2 (scene-2/visual): column 'size_bytes' is -5" in err
    assert "cannot be negative" in err
    assert "changed" not in err
    assert not (tmp_path / "out").exists()


def test_a_truncated_parquet_file_is_one_line_naming_it_once(tmp_path, package, capsys):
    lock = package / "assets.lock.parquet"
    lock.write_bytes(lock.read_bytes()[:-40])

    assert main(["plan", str(_spec(tmp_path, package))]) == 2

    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.count(str(lock)) == 1, err
    assert "not a readable parquet file" in err


def test_a_huge_spec_is_refused_before_it_is_parsed(tmp_path, package, capsys):
    spec = _spec(tmp_path, package)
    keys = "".join(f"key{i}: {i}\n" for i in range(300_000))
    spec.write_text(spec.read_text() + keys)
    assert spec.stat().st_size > MAX_BYTES

    started = time.monotonic()
    assert main(["plan", str(spec)]) == 2
    print(f"refused in {time.monotonic() - started:.2f} s")  # measured, not asserted

    err = capsys.readouterr().err.strip()
    assert err == f"ERROR: {spec}: the file is larger than 1024 KiB, more than any spec needs"


@pytest.mark.parametrize(
    ("written", "instead"),
    [
        ("name: bad-input", "name: n\n? " + "x" * 200_000 + "\n: 1"),  # an unknown key
        ("}}\noutputs", "}, layout: " + "n" * 200_000 + "}\noutputs"),  # quoted by a validator
        ("{type: file, root:", "{type: s3, bucket: " + "b" * 200_000 + ", prefix:"),
    ],
)
def test_a_message_never_quotes_a_whole_huge_value(tmp_path, package, capsys, written, instead):
    spec = _spec(tmp_path, package)
    spec.write_text(spec.read_text().replace(written, instead))

    assert main(["plan", str(spec)]) == 2

    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ERROR: {spec}:")
    assert len(err) < 1000, err[:300]
