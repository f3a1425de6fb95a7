"""Every kind of source and target, through the real flow: the bytes, sizes and lock rows land.

Sources: a package (see test_flow_tutorial), Items without a lock as a JSON Item, an
ItemCollection with relative hrefs, NDJSON and stac-geoparquet, and another lock (S3) to copy
from. Targets: a folder (relative to the spec), an S3 bucket with a prefix, a template layout, and
two targets at once, read from the source once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import obstore
import pytest

from stacflow.tasks.items import items_from_table, read_items_table
from stacflow.tasks.locks import read_lock
from tests.servers.s3 import s3_store

OAM_ORIGIN = "https://oin-hotosm-temp.s3.amazonaws.com/"


def relocate(spec: Path) -> dict:
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415 - Prefect only in flow tests

    return relocate_package(spec_path=str(spec))


def write_spec(folder: Path, text: str) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(text)
    return spec


def oam_items(oam_data: Path) -> list[dict]:
    return json.loads((oam_data / "search.itemcollection.json").read_text())["features"]


def origin_bytes(oam_data: Path, href: str) -> bytes:
    return (oam_data / "origin" / href.removeprefix(OAM_ORIGIN)).read_bytes()


def test_item_collection_with_relative_hrefs_is_locked_then_relocated(
    tmp_path, prefect_harness, oam_data
):
    data = tmp_path / "survey"
    shutil.copytree(oam_data / "origin", data)
    items = oam_items(oam_data)
    for item in items:
        for asset in item["assets"].values():
            asset["href"] = "./" + asset["href"].removeprefix(OAM_ORIGIN)
    (data / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    spec = write_spec(
        tmp_path,
        """
name: relative-items
stac: survey/items.json
sources: {files: {}}
targets:
  local: {store: {type: file, root: copies}}
validate: {locks: [files, local], checksums: true}
outputs: out
""",
    )
    result = relocate(spec)

    assert result["counts"]["derive:files:derived"] == 4  # metadata assets are not locked
    assert result["counts"]["relocate:local:copied"] == 4
    package = read_lock(tmp_path / "out" / "package" / "assets.lock.parquet")
    assert {r.store_type for r in package} == {"file"}
    assert all(Path(r.key).is_relative_to(data) for r in package)
    for row in read_lock(tmp_path / "out" / "local.assets.lock.parquet"):
        source = next(
            r for r in package if (r.item_id, r.asset_key) == (row.item_id, row.asset_key)
        )
        assert Path(row.key).read_bytes() == Path(source.key).read_bytes()
        assert Path(row.key).is_relative_to(tmp_path / "copies")


@pytest.mark.parametrize("form", ["item", "ndjson", "geoparquet"])
def test_lockless_items_over_https_into_an_s3_bucket(
    form, tmp_path, prefect_harness, oam_data, oam_origin, moto_endpoint, s3_bucket
):
    items = oam_items(oam_data)
    if form == "item":
        items = items[:1]
        (tmp_path / "items.json").write_text(json.dumps(items[0]))
        source = "items.json"
    elif form == "ndjson":
        (tmp_path / "items.ndjson").write_text("".join(json.dumps(i) + "\n" for i in items))
        source = "items.ndjson"
    else:
        shutil.copy(
            oam_data / "openaerialmap-austria.pkg" / "items.parquet", tmp_path / "items.parquet"
        )
        source = "items.parquet"
    spec = write_spec(
        tmp_path,
        f"""
name: lockless-{form}
stac: {source}
sources:
  oam:
    prefix: {OAM_ORIGIN}
    store: {{endpoint: "{oam_origin.url}/", allow_http: true}}
targets:
  bucket:
    store:
      type: s3
      bucket: {s3_bucket}
      prefix: mirrors/oam
      endpoint: {moto_endpoint}
      allow_http: true
      credentials:
        access_key_id: {{env: AWS_ACCESS_KEY_ID}}
        secret_access_key: {{env: AWS_SECRET_ACCESS_KEY}}
    alternate: {{key: mirror}}
validate: {{locks: [oam, bucket], checksums: true}}
outputs: out
""",
    )
    result = relocate(spec)

    assert result["ok"], result["text"]
    rows = read_lock(tmp_path / "out" / "bucket.assets.lock.parquet")
    assert len(rows) == 2 * len(items)
    store = s3_store(moto_endpoint, s3_bucket)
    hrefs = {(i["id"], k): a["href"] for i in items for k, a in i["assets"].items()}
    for row in rows:
        assert (row.store_type, row.store_container) == ("s3", s3_bucket)
        assert row.store_endpoint_url == moto_endpoint
        ext = ".tif" if row.asset_key == "visual" else ".png"
        assert row.key == f"mirrors/oam/{row.item_id}/{row.asset_key}{ext}"
        body = bytes(obstore.get(store, row.key).bytes())
        assert body == origin_bytes(oam_data, hrefs[(row.item_id, row.asset_key)])
        assert row.size_bytes == len(body)
        assert row.etag.startswith('"')
    enriched = items_from_table(read_items_table(tmp_path / "out" / "items.parquet"))
    alternate = enriched[0]["assets"]["visual"]["alternate"]["mirror"]
    assert alternate["href"] == f"s3://{s3_bucket}/mirrors/oam/{enriched[0]['id']}/visual.tif"
    assert alternate["store_endpoint_url"] == moto_endpoint


def test_another_lock_as_the_source_copies_from_s3(
    tmp_path, prefect_harness, oam_data, oam_s3, moto_endpoint
):
    spec = write_spec(
        tmp_path,
        f"""
name: from-s3
package: {oam_data / "openaerialmap-austria.pkg"}
sources:
  https: {{prefix: {OAM_ORIGIN}}}
  s3:
    lock: {oam_data / "openaerialmap-austria.s3.assets.lock.parquet"}
    store: {{anonymous: true, endpoint: {moto_endpoint}, allow_http: true}}
targets:
  local:
    store: {{type: file, root: copies}}
    layout: source-key
relocate: {{source: s3}}
validate: [s3, local]
outputs: out
""",
    )
    result = relocate(spec)

    assert result["ok"], result["text"]
    for row in read_lock(tmp_path / "out" / "local.assets.lock.parquet"):
        relative = Path(row.key).relative_to(tmp_path / "copies").as_posix()
        assert Path(row.key).read_bytes() == (oam_data / "origin" / relative).read_bytes()


def test_two_targets_read_the_source_once_and_validate_three_locks(
    tmp_path, prefect_harness, oam_data, oam_origin, moto_endpoint, s3_bucket
):
    spec = write_spec(
        tmp_path,
        f"""
name: two-targets
package: {oam_data / "openaerialmap-austria.pkg"}
items: {oam_data / "openaerialmap-austria.enriched.items.parquet"}
sources:
  https:
    prefix: {OAM_ORIGIN}
    store: {{endpoint: "{oam_origin.url}/", allow_http: true}}
targets:
  local:
    store: {{type: file, root: local-assets}}
  bucket:
    store: {{type: s3, bucket: {s3_bucket}, endpoint: {moto_endpoint}, allow_http: true}}
    alternate: {{key: mirror, name: our bucket}}
    layout: "{{collection}}/{{item_id}}/{{source_name}}"
validate: {{locks: [https, local, bucket], checksums: [local, bucket]}}
outputs: out
""",
    )
    result = relocate(spec)

    assert result["ok"], result["text"]
    assert oam_origin.count("GET") == 4  # one read per asset feeds both targets
    for lock in ("https", "local", "bucket"):
        assert result["counts"][f"validate:{lock}:valid"] == 4
    bucket_rows = read_lock(tmp_path / "out" / "bucket.assets.lock.parquet")
    assert {r.key.split("/")[0] for r in bucket_rows} == {"openaerialmap"}
    items = items_from_table(read_items_table(tmp_path / "out" / "items.parquet"))
    thumbnail = items[0]["assets"]["thumbnail"]["alternate"]
    assert set(thumbnail) == {"s3", "local", "mirror"}
    assert thumbnail["mirror"]["alternate:name"] == "our bucket"
