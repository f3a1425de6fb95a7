"""Two specs and one target root: refused before either writes a byte, and no sweep of one
ever removes the other's writes in flight."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.tasks.access import Access
from stacflow.tasks.owners import OWNER_FILE, Owner, claim
from stacflow.tasks.stores import StoreRef
from stacflow.tasks.stores.file import FolderStore
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package
from tests.servers import s3

ASSETS = {
    ("scene-1", "visual"): ("scenes/1/visual.tif", os.urandom(50_000)),
    ("scene-2", "visual"): ("scenes/2/visual.tif", os.urandom(20_000)),
}


def _folder(root: Path, owner: str) -> FolderStore:
    return FolderStore(StoreRef("file", None, str(root), Access(), 64 * 1024, owner=owner))


def test_a_sweep_removes_only_its_own_temps_and_stacpkg_leftovers_of_its_keys(tmp_path):
    ours, theirs = _folder(tmp_path, "aaaaaaaaaaaa"), _folder(tmp_path, "bbbbbbbbbbbb")
    killed = ours.writer("item/visual.tif")
    killed.__enter__().write(b"ours, left by a kill")
    in_flight = theirs.writer("item/visual.tif")
    in_flight.__enter__().write(b"theirs, still being written")
    (tmp_path / "item" / "visual.tif#3").write_bytes(b"stacpkg's")
    (tmp_path / "item" / "other.tif#3").write_bytes(b"not a key of this batch")

    assert ours.sweep(["item/visual.tif"]) == 2

    left = sorted(p.name for p in (tmp_path / "item").iterdir())
    assert left == [".visual.tif.stacflow-tmp-bbbbbbbbbbbb." + left[0][-32:], "other.tif#3"]
    in_flight.__exit__(None, None, None)
    assert (tmp_path / "item" / "visual.tif").read_bytes() == b"theirs, still being written"
    del killed


def _spec(folder: Path, package: Path, origin_url: str, root: Path) -> Path:
    folder.mkdir(exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""name: {folder.name}
package: {package}
sources:
  https: {{prefix: "{ORIGIN}/", store: {{endpoint: "{origin_url}/", allow_http: true}}}}
targets:
  shared: {{store: {{type: file, root: {root}}}}}
outputs: out
"""
    )
    return spec


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("nested", [False, True])
def test_a_second_spec_writing_into_an_owned_root_is_refused(
    tmp_path, origin, prefect_harness, capsys, nested
):
    origin.last_modified = LAST_MODIFIED_HTTP
    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    root = tmp_path / "shared-assets"
    first = _spec(tmp_path / "first", package, origin.url, root)
    second = _spec(tmp_path / "second", package, origin.url, root / "sub" if nested else root)
    assert main(["run", str(first)]) == 0
    before = _tree(root)
    capsys.readouterr()

    assert main(["plan", str(second)]) == 2
    planned = capsys.readouterr().out
    assert main(["run", str(second)]) == 2
    refused = capsys.readouterr().err

    for said in (planned, refused):
        assert "is written by spec 'first'" in said
        assert f"(outputs {tmp_path / 'first' / 'out'})" in said
        assert "give this target a root of its own" in said
        assert f"delete {root / OWNER_FILE}" in said
    assert _tree(root) == before
    assert main(["run", str(first)]) == 0
    assert "relocate → shared   2 skipped-verified" in capsys.readouterr().out


def test_an_owned_bucket_prefix_is_refused_to_a_second_spec(
    tmp_path, origin, moto_endpoint, s3_bucket, capsys
):
    origin.last_modified = LAST_MODIFIED_HTTP
    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    access = Access(endpoint=moto_endpoint, allow_http=True, region=s3.REGION)
    claim(
        "archive", StoreRef("s3", s3_bucket, "mirror", access), Owner("0" * 12, "first", "/x/out")
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""name: second
package: {package}
sources:
  https: {{prefix: "{ORIGIN}/", store: {{endpoint: "{origin.url}/", allow_http: true}}}}
targets:
  archive:
    store: {{type: s3, bucket: {s3_bucket}, prefix: mirror/v2, endpoint: "{moto_endpoint}",
             allow_http: true, region: {s3.REGION}}}
outputs: out
"""
    )

    assert main(["plan", str(spec)]) == 2

    out = capsys.readouterr().out
    assert f"s3://{s3_bucket}/mirror/v2 is written by spec 'first' (outputs /x/out)" in out
    assert f"delete s3://{s3_bucket}/mirror/{OWNER_FILE}" in out
