"""A rerun that copies nothing rewrites nothing: the locks, items and validation lines stay put."""

from __future__ import annotations

import shutil
from pathlib import Path

from stacflow.flows.cli import main
from stacflow.tasks.atomic import atomic_write

REPO = Path(__file__).resolve().parents[1]


def _identities(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and ".stacflow" not in p.parts  # the run's own state, not an output
    }


def test_a_noop_rerun_leaves_every_unchanged_output_in_place(tmp_path, prefect_harness, capsys):
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("out"))
    spec = tmp_path / "specs" / "demo.yaml"
    results = tmp_path / "specs" / "demo" / "out" / "results"
    assert main(["run", str(spec)]) == 0
    assert "wrote" in capsys.readouterr().out
    before = _identities(results)
    assert main(["run", str(spec)]) == 0
    printed = capsys.readouterr().out
    assert "6 skipped-verified" in printed
    after = _identities(results)
    changed = sorted(name for name in before if after.get(name) != before[name])
    assert changed == ["report.parquet"]  # durations differ; the rest is byte for byte the same
    said = {line.split()[-1]: line.split()[0] for line in printed.splitlines() if "/" in line}
    assert said == {
        str(results / "report.parquet"): "wrote",
        **{str(results / name): "unchanged" for name in before if name != "report.parquet"},
    }, printed
    for name in ("local.assets.lock.parquet", "items.parquet", "validation/https.jsonl"):
        assert name in before


def test_atomic_write_of_the_same_bytes_keeps_the_file(tmp_path):
    target = tmp_path / "out.bin"
    assert atomic_write(target, lambda tmp: tmp.write_bytes(b"same")) is True
    identity = (target.stat().st_ino, target.stat().st_mtime_ns)
    assert atomic_write(target, lambda tmp: tmp.write_bytes(b"same")) is False
    assert (target.stat().st_ino, target.stat().st_mtime_ns) == identity
    assert atomic_write(target, lambda tmp: tmp.write_bytes(b"other")) is True
    assert target.read_bytes() == b"other"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
