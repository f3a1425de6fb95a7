"""Every lock row ends with an outcome: relocated, refused at plan time, or not selected (why).

A run reads only the stores its spec declares: a row no source stands for is refused by name
before anything starts; rows left out by `select`, or under another declared source, are counted
with their reason in the plan, the summary, the report and the artifacts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.tasks.locations import parse_href
from stacflow.tasks.locks import LockRow, read_lock, write_lock
from stacflow.tasks.report import read_report
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package

ASSETS = {
    ("scene-1", "visual"): ("scenes/1/visual.tif", b"visual one" * 100),
    ("scene-1", "thumbnail"): ("scenes/1/thumb.png", b"thumb one"),
    ("scene-2", "visual"): ("scenes/2/visual.tif", b"visual two" * 100),
}


@pytest.fixture
def package(tmp_path: Path, origin) -> Path:
    origin.last_modified = LAST_MODIFIED_HTTP
    return make_package(tmp_path / "pkg", origin.root, ASSETS)


def _spec(folder: Path, origin_url: str, sources: str, more: str = "") -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""name: every-row
package: pkg
sources:
{sources}
targets:
  local: {{store: {{type: file, root: assets}}}}
outputs: out
{more}"""
    )
    return spec


def _https(origin_url: str, prefix: bool = True) -> str:
    line = f"    prefix: {ORIGIN}/\n" if prefix else ""
    return f"  https:\n{line}    store: {{endpoint: '{origin_url}/', allow_http: true}}\n"


def _add_rows(package: Path, *rows: LockRow) -> None:
    lock = package / "assets.lock.parquet"
    write_lock(lock, [*read_lock(lock), *rows])


def _row(item_id: str, asset_key: str, href: str, size: int = 3) -> LockRow:
    return LockRow.at(item_id, asset_key, parse_href(href), size_bytes=size)


def test_a_lock_cannot_point_a_run_at_local_files_the_spec_never_declared(
    tmp_path, origin, package, prefect_harness, capsys
):
    private = tmp_path / "private" / "id_rsa"
    private.parent.mkdir()
    private.write_bytes(b"-----BEGIN KEY-----")
    _add_rows(package, _row("scene-3", "visual", private.as_uri(), size=19))
    spec = _spec(tmp_path, origin.url, _https(origin.url, prefix=False))

    assert main(["run", str(spec)]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert (
        f"1 locked asset(s) outside every declared source (scene-3/visual at {private.as_uri()})"
        in err
    )
    assert "add a source whose prefix covers them, or leave them out with select" in err
    assert not (tmp_path / "assets").exists()
    assert not (tmp_path / "out").exists()


def test_rows_under_no_declared_prefix_are_refused_by_name(tmp_path, origin, package, capsys):
    _add_rows(
        package,
        _row("scene-3", "visual", "https://other.example.test/3.tif"),
        LockRow(
            "scene-4", "visual", "https", "https://user:hunter2@other.example.test", None, "4.tif"
        ),
    )
    spec = _spec(tmp_path, origin.url, _https(origin.url))

    assert main(["plan", str(spec), "--json"]) == 2

    plan = json.loads(capsys.readouterr().out)
    outside, userinfo = sorted(plan["conflicts"], key=lambda c: "outside" not in c)
    assert outside == (
        "1 locked asset(s) outside every declared source (scene-3/visual at "
        "https://other.example.test/3.tif): a run reads only the stores its spec declares; add "
        "a source whose prefix covers them, or leave them out with select"
    )
    assert userinfo == (
        "1 locked asset(s) have no usable location: scene-4/visual at "
        "https://<redacted>@other.example.test/4.tif: credentials in an href are not supported "
        "(they would reach logs and locks); configure them on the store"
    )
    assert "hunter2" not in json.dumps(plan)


def test_not_selected_rows_are_counted_with_their_reason(
    tmp_path, origin, package, prefect_harness, capsys
):
    s3_lock = tmp_path / "s3.lock.parquet"
    extra = _row("scene-3", "visual", "s3://mirror-bucket/3.tif")
    write_lock(s3_lock, [extra])
    _add_rows(package, extra)
    sources = _https(origin.url) + "  s3: {prefix: 's3://mirror-bucket/'}\n"
    spec = _spec(tmp_path, origin.url, sources, "select: {assets: {exclude: [thumbnail]}}\n")

    assert main(["plan", str(spec), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["unselected"] == 2
    assert plan["not_selected"] == [
        {
            "reason": "filtered by select.assets.exclude",
            "assets": 1,
            "examples": ["scene-1/thumbnail"],
        },
        {
            "reason": "under source s3, not the relocation source https",
            "assets": 1,
            "examples": ["scene-3/visual"],
        },
    ]
    assert plan["targets"]["local"]["to_copy"]["assets"] == 2
    assert main(["plan", str(spec)]) == 0
    text = capsys.readouterr().out
    assert "not selected: 1 (filtered by select.assets.exclude), e.g. scene-1/thumbnail" in text

    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "relocate → local    2 copied (2.0 KiB), 2 not-selected" in out
    assert (
        "not selected: 1 (under source s3, not the relocation source https), e.g. scene-3/visual"
        in out
    )
    report = read_report(tmp_path / "out" / "report.parquet")
    left = sorted(
        (o.item_id, o.asset_key, o.outcome, o.message)
        for o in report
        if o.outcome == "not-selected"
    )
    assert left == [
        ("scene-1", "thumbnail", "not-selected", "filtered by select.assets.exclude"),
        ("scene-3", "visual", "not-selected", "under source s3, not the relocation source https"),
    ]
    assert {(o.item_id, o.asset_key) for o in report} == {*ASSETS, ("scene-3", "visual")}
    _assert_summary_artifact_mentions(prefect_harness, "## Not selected", "filtered by select")


def test_a_locked_asset_whose_item_is_missing_is_relocated_and_reported(
    tmp_path, origin, package, prefect_harness, capsys
):
    origin.write("ghost/visual.tif", b"boo")
    ghost = _row("ghost", "visual", f"{ORIGIN}/ghost/visual.tif")
    _add_rows(package, ghost)
    spec = _spec(tmp_path, origin.url, _https(origin.url))

    assert main(["plan", str(spec)]) == 0
    note = "1 locked asset(s) name an Item the items table lacks (ghost/visual)"
    assert note in capsys.readouterr().out

    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert f"note: {note}: relocated and locked, but no Item carries their alternate" in out
    relocated = read_lock(tmp_path / "out" / "local.assets.lock.parquet")
    assert ("ghost", "visual") in {(r.item_id, r.asset_key) for r in relocated}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], "source https: the lock {lock} has no rows: there is nothing to relocate"),
        (
            [LockRow("scene-1", "visual", "https", None, None, "scenes/1/visual.tif", 3)],
            (
                "1 locked asset(s) have no usable location: scene-1/visual: location "
                "(store_type='https', key='scenes/1/visual.tif'): missing fields: store_container"
            ),
        ),
    ],
)
def test_an_empty_lock_or_one_without_urls_says_what_is_wrong(
    tmp_path, origin, package, capsys, rows, expected
):
    lock = package / "assets.lock.parquet"
    write_lock(lock, rows)
    spec = _spec(tmp_path, origin.url, _https(origin.url))

    assert main(["plan", str(spec)]) == 2

    out = capsys.readouterr().out
    assert f"✗ {expected.format(lock=lock)}" in out
    assert "starts with" not in out


def test_a_folder_prefix_covers_the_files_under_it(tmp_path, package, capsys):
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.tif").write_bytes(b"abc")
    write_lock(
        package / "assets.lock.parquet", [_row("scene-1", "visual", (files / "a.tif").as_uri())]
    )
    spec = _spec(tmp_path, "", "  folder: {prefix: files/}\n")

    assert main(["plan", str(spec)]) == 0
    assert "local         1 (3 B)" in capsys.readouterr().out


def _assert_summary_artifact_mentions(api_url: str, *texts: str) -> None:
    from prefect import get_client  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    summaries = [a.data for a in artifacts if a.key == "every-row-summary"]
    assert summaries, [a.key for a in artifacts]
    for text in texts:
        assert text in summaries[-1]
