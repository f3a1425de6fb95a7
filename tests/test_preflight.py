"""What can be found before a run is found before: `plan` and the run look at every store.

A mistyped mirror folder, a source that refuses connections, a target root under a regular file
and a bucket that does not exist are shown by `plan` per store, without writing anything; a run
fails an unusable target's assets at once with the cause (no request, no retry) while the other
targets copy, and still reports, exit 1.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.tasks.preflight import folder_problem
from stacflow.tasks.report import read_report
from tests.packages import ORIGIN, make_package

ASSETS = {
    ("scene-1", "visual"): ("scenes/1/visual.tif", os.urandom(20_000)),
    ("scene-1", "thumbnail"): ("scenes/1/thumb.png", os.urandom(3_000)),
    ("scene-2", "visual"): ("scenes/2/visual.tif", os.urandom(25_000)),
}


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def write_spec(folder: Path, package: Path, endpoint: str, targets: dict[str, str]) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: preflight
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{endpoint}", allow_http: true}}
    compare: [size]
targets:
"""
        + "".join(f"  {name}:\n    store: {store}\n" for name, store in targets.items())
        + f"""relocate: {{max_workers: 2, retry: {{attempts: 3, initial_backoff: 10ms}}}}
outputs: {folder / "out"}
"""
    )
    return spec


def plan_json(spec: Path, capsys) -> dict:
    assert main(["plan", str(spec), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_names_a_mistyped_mirror_and_a_target_under_a_file(tmp_path, capsys):
    package = make_package(tmp_path / "pkg", tmp_path / "origin", ASSETS)
    (tmp_path / "a-file").write_text("not a folder")
    spec = write_spec(
        tmp_path,
        package,
        str(tmp_path / "orign"),
        {
            "blocked": f'{{type: file, root: "{tmp_path / "a-file" / "assets"}"}}',
            "local": f'{{type: file, root: "{tmp_path / "new" / "assets"}"}}',
        },
    )
    stores = {(s["role"], s["name"]): s for s in plan_json(spec, capsys)["stores"]}
    assert stores["source", "https"]["ok"] is False
    assert stores["source", "https"]["problem"] == f"folder not found: {tmp_path / 'orign'}"
    assert stores["target", "blocked"]["ok"] is False
    assert "Not a directory" in stores["target", "blocked"]["problem"]
    assert str(tmp_path / "a-file") in stores["target", "blocked"]["problem"]
    assert stores["target", "local"]["ok"] is True

    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert f"✗ source https: folder not found: {tmp_path / 'orign'}" in out
    assert "✓ target local writable" in out
    assert not (tmp_path / "new").exists()  # looked at, nothing written
    assert not (tmp_path / "out").exists()


def test_plan_names_a_source_refusing_connections(tmp_path, closed_port, capsys):
    package = make_package(tmp_path / "pkg", tmp_path / "origin", ASSETS)
    spec = write_spec(
        tmp_path,
        package,
        f"http://127.0.0.1:{closed_port}/",
        {"local": f'{{type: file, root: "{tmp_path / "assets"}"}}'},
    )
    (source,) = [s for s in plan_json(spec, capsys)["stores"] if s["role"] == "source"]
    assert source["ok"] is False
    assert "connection refused" in source["problem"]


def test_plan_names_a_missing_bucket(tmp_path, moto_endpoint, s3_bucket, origin, capsys):
    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    bucket = "{{type: s3, bucket: {}, endpoint: '{}', allow_http: true}}"
    spec = write_spec(
        tmp_path,
        package,
        origin.url + "/",
        {
            "gone": bucket.format("no-such-bucket-here", moto_endpoint),
            "there": bucket.format(s3_bucket, moto_endpoint),
        },
    )
    stores = {(s["role"], s["name"]): s for s in plan_json(spec, capsys)["stores"]}
    assert stores["source", "https"]["ok"] is True
    assert stores["target", "there"]["ok"] is True
    assert "NoSuchBucket" in stores["target", "gone"]["problem"]


def test_a_run_fails_an_unusable_target_at_once_and_copies_the_others(
    tmp_path, origin, moto_endpoint, prefect_harness, capsys
):
    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    (tmp_path / "a-file").write_text("not a folder")
    spec = write_spec(
        tmp_path,
        package,
        origin.url + "/",
        {
            "blocked": f'{{type: file, root: "{tmp_path / "a-file" / "assets"}"}}',
            "gone": f"{{type: s3, bucket: no-such-bucket, endpoint: '{moto_endpoint}', "
            "allow_http: true}",
            "local": f'{{type: file, root: "{tmp_path / "assets"}"}}',
        },
    )
    assert main(["run", str(spec)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    rows = [r for r in read_report(tmp_path / "out" / "report.parquet") if r.step == "relocate"]
    by_target = {name: [r for r in rows if r.store == name] for name in ("blocked", "gone")}
    by_target["local"] = [r for r in rows if r.store == "local"]
    assert {r.outcome for r in by_target["local"]} == {"copied"}
    assert len(by_target["local"]) == len(ASSETS)
    for name, cause in (("blocked", "Not a directory"), ("gone", "NoSuchBucket")):
        assert len(by_target[name]) == len(ASSETS)
        for row in by_target[name]:
            assert row.outcome == "failed"
            assert cause in row.message
            assert row.attempts == 0  # found before the run: no request, no retry
    for key, _ in ASSETS.values():
        assert origin.count("GET", f"/{key}") == 1  # read once, teed into the usable target
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_a_folder_that_cannot_be_created_is_said_without_writing(tmp_path):
    (tmp_path / "a-file").write_text("x")
    problem = folder_problem(tmp_path / "a-file" / "deep" / "root")
    assert problem is not None
    assert problem.message.startswith(f"Not a directory: {tmp_path / 'a-file'}")
    assert folder_problem(tmp_path / "new" / "root") is None
    assert not (tmp_path / "new").exists()


def test_a_dry_run_writes_nothing_at_all(tmp_path, origin, prefect_harness, capsys):
    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    spec = write_spec(
        tmp_path, package, origin.url + "/", {"local": f'{{type: file, root: "{tmp_path / "a"}"}}'}
    )
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["run", str(spec), "--dry-run"]) == 0
    assert "plan only (dry run)" in capsys.readouterr().out
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no run.lock
