"""Awkward names, byte for byte as stacpkg 0.1.4 handles them (references in tests/data/stacpkg).

A lock stacpkg built from Items with spaces, accents, `+`, leading dots, percent signs,
extensions in the asset key (or none, or two) and a signed URL: every key reaches the origin
exactly as the lock holds it, every copy lands at the key stacpkg's own `relocate --dry-run`
planned for it, rows without facts are relocated with the response's, and names that stacpkg's
layout sends to one key are refused before anything moves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from stacflow.flows.compile import compile_plan
from stacflow.flows.inputs import Inputs
from stacflow.flows.layouts import target_path
from stacflow.flows.selection import SourceMap
from stacflow.flows.spec import Spec
from stacflow.tasks.errors import PlanConflict
from stacflow.tasks.locks import LockRow, read_lock, rows_from_table
from tests.servers import s3
from tests.stacpkg_refs import (
    AWKWARD,
    COLLIDE,
    CORPUS_BUCKET,
    CORPUS_S3_ENDPOINT,
    LOCAL_ROOT,
    SIGNATURE,
    corpus,
    corpus_bytes,
    package_at,
    plan,
    rows,
    serve_corpus,
)

LOCK = read_lock(AWKWARD / "package" / "assets.lock.parquet")


def _relative(key: str, root: str) -> str:
    assert key.startswith(root + "/"), key
    return key[len(root) + 1 :]


def test_the_corpus_is_awkward_and_partly_without_facts():
    assert len(LOCK) >= 30
    keys = [row.key for row in LOCK]
    assert "scene%2001/ortho%20image.tif" in keys  # stacpkg keeps the href's encoding
    assert any(row.size_bytes is None and row.etag is None for row in LOCK)
    (signed,) = [row for row in LOCK if row.key == ""]
    assert SIGNATURE in signed.store_container


@pytest.mark.parametrize(
    ("layout", "reference", "root"),
    [
        ("item-asset", "file.item-asset", LOCAL_ROOT),
        ("source-key", "file.source-key", LOCAL_ROOT),
        ("item-asset", "s3.item-asset", "copies"),
    ],
)
def test_every_key_is_the_one_stacpkg_planned(layout, reference, root):
    planned = plan(reference)
    assert [(p["item_id"], p["asset_key"]) for p in planned] == [
        (r.item_id, r.asset_key) for r in LOCK
    ]
    ours = [target_path(layout, row, None) for row in LOCK]
    assert ours == [_relative(p["key"], root) for p in planned]


def test_the_planned_rows_are_stacpkgs_for_a_folder_and_a_bucket():
    spec = Spec.model_validate(
        {
            "name": "awkward",
            "package": "pkg",
            "sources": {"origin": {"prefix": "https://assets.example.test/"}},
            "targets": {
                "folder": {"store": {"type": "file", "root": LOCAL_ROOT}},
                "bucket": {
                    "store": {
                        "type": "s3",
                        "bucket": CORPUS_BUCKET,
                        "prefix": "copies",
                        "endpoint": CORPUS_S3_ENDPOINT + "/",
                    }
                },
            },
            "outputs": "out",
        }
    )
    compiled = compile_plan(Inputs(spec, Path("/specs/awkward.yaml"), LOCK, None))
    assert compiled.conflicts == ()
    location = ("store_type", "store_container", "store_endpoint_url", "key")
    for target, reference in (("folder", "file.item-asset"), ("bucket", "s3.item-asset")):
        planned = [
            next(leg.row for leg in move.legs if leg.target == target) for move in compiled.moves
        ]
        assert [tuple(getattr(row, c) for c in location) for row in planned] == [
            tuple(p[c] for c in location) for p in plan(reference)
        ]


def test_names_stacpkg_sends_to_one_key_are_refused_at_plan_time():
    lock = read_lock(COLLIDE / "package" / "assets.lock.parquet")
    planned = rows(COLLIDE / "plan.file.item-asset.assets.lock.parquet")
    shared = {p["key"] for p in planned if [q["key"] for q in planned].count(p["key"]) > 1}
    assert len(shared) == 3  # stacpkg's own plan puts two assets at each of these keys
    spec = Spec.model_validate(
        {
            "name": "collide",
            "package": "pkg",
            "sources": {"origin": {}},
            "targets": {"local": {"store": {"type": "file", "root": LOCAL_ROOT}}},
            "outputs": "out",
        }
    )
    compiled = compile_plan(Inputs(spec, Path("/specs/collide.yaml"), lock, None))
    assert sorted(compiled.conflicts) == [
        f"target local: a/b/x and a_b/x both map to {LOCAL_ROOT}/a_b/x.tif",
        f"target local: same/data and same/data.tif both map to {LOCAL_ROOT}/same/data.tif",
        f"target local: scene 01/v and scene_01/v both map to {LOCAL_ROOT}/scene_01/v.tif",
    ]
    with pytest.raises(PlanConflict, match="3 conflict"):
        compiled.refuse_conflicts()


def test_rows_are_read_without_stacpkgs_optional_columns():
    table = pa.table(
        {
            "item_id": ["i"],
            "asset_key": ["a"],
            "store_type": ["file"],
            "key": ["/data/a.tif"],
        }
    )
    (row,) = rows_from_table(table)
    assert (row.store_container, row.store_endpoint_url, row.size_bytes) == (None, None, None)


# --- the whole run ------------------------------------------------------------------------


def test_awkward_package_is_relocated_to_stacpkgs_keys(
    tmp_path, origin, moto_endpoint, s3_bucket, prefect_harness
):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    serve_corpus(origin)
    package = package_at(tmp_path / "pkg", origin.url)
    spec = tmp_path / "awkward.yaml"
    spec.write_text(
        f"""name: awkward
package: pkg
sources:
  origin: {{prefix: "{origin.url}/", store: {{allow_http: true}}}}
targets:
  folder: {{store: {{type: file, root: folder}}}}
  flat: {{store: {{type: file, root: flat}}, layout: source-key}}
  bucket:
    store: {{type: s3, bucket: {s3_bucket}, prefix: copies, endpoint: "{moto_endpoint}",
             allow_http: true, region: {s3.REGION}}}
validate: [origin, folder, flat, bucket]
outputs: out
"""
    )
    result = relocate_package(spec_path=str(spec))
    assert result["ok"], result["text"]
    for target in ("folder", "flat", "bucket"):
        assert result["counts"][f"relocate:{target}:copied"] == len(LOCK)
        assert result["counts"][f"validate:{target}:valid"] == len(LOCK)

    # The origin was asked for each key exactly as the lock holds it, and answered every time.
    locked = {(r.item_id, r.asset_key): r for r in read_lock(package / "assets.lock.parquet")}
    sent = set(origin.targets)
    for row in locked.values():
        assert (row.store_container + "/" + row.key if row.key else row.store_container)[
            len(origin.url) :
        ] in sent
    assert {r.status for r in origin.requests} == {200}

    expected = {(e["item_id"], e["asset_key"]): corpus_bytes(e) for e in corpus()}
    for target, reference in (("folder", "file.item-asset"), ("flat", "file.source-key")):
        root = tmp_path / target
        relocated = {
            (r.item_id, r.asset_key): r
            for r in read_lock(tmp_path / "out" / f"{target}.assets.lock.parquet")
        }
        for planned in plan(reference):
            asset = (planned["item_id"], planned["asset_key"])
            copy = root / _relative(planned["key"], LOCAL_ROOT)
            assert copy.read_bytes() == expected[asset], asset
            row = relocated[asset]
            assert row.key == str(copy)
            assert row.size_bytes == len(expected[asset])  # the response's, where the lock had none
            assert row.etag is not None
    client = s3.client(moto_endpoint)
    for planned in plan("s3.item-asset"):
        body = client.get_object(Bucket=s3_bucket, Key=planned["key"])["Body"].read()
        assert body == expected[(planned["item_id"], planned["asset_key"])]

    # The signature reached the origin, and nothing stacflow wrote but the user's own items.
    assert any(SIGNATURE in target for target in sent)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.name != "items.parquet":
            text = path.read_bytes().decode("utf-8", errors="replace")
            if path.suffix == ".parquet":
                import pyarrow.parquet as pq  # noqa: PLC0415

                text += json.dumps(pq.read_table(path).to_pylist(), default=str)
            assert SIGNATURE not in text, path


@pytest.mark.parametrize("prefix", ["my files/", "my files", "file://{root}/my%20files/"])
def test_file_rows_match_a_folder_prefix_however_it_is_written(tmp_path, prefix):
    inside = tmp_path / "my files" / "a b.tif"
    beside = tmp_path / "my files2" / "c.tif"
    lock = [
        LockRow("i", "inside", "file", None, None, str(inside)),
        LockRow("i", "beside", "file", None, None, str(beside)),
    ]
    spec = Spec.model_validate(
        {
            "name": "folders",
            "package": "pkg",
            "sources": {"files": {"prefix": prefix.format(root=tmp_path)}},
            "outputs": "out",
        }
    )
    sources = SourceMap(spec, tmp_path, {})
    assert [sources.covers("files", row) for row in lock] == [True, False]
