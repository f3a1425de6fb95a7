"""Signed URLs: fetched while their signature is valid, never written into a table stacflow builds.

A STAC API hands out Items whose hrefs carry a signature in their query string (S3 presigned URLs,
Azure SAS tokens). A run reads the bytes through the signed URL; the package it writes from
those Items (lock and items alike) names the unsigned objects, and no lock, report, validation
line or log holds the signature. An expired signature fails its assets with what to do.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stacflow.tasks.errors import RunFailed
from stacflow.tasks.items import (
    items_from_table,
    read_items_table,
    table_from_items,
    write_items_table,
)
from stacflow.tasks.locations import Location, unsigned, unsigned_href
from stacflow.tasks.locks import LOCK_METADATA, STACPKG_LOCK_FIELDS, read_lock
from tests.packages import item_dict

SIGNATURE = "5d1e0c3b7a9f42e8b6d4c2a0e8f6d4b2"
QUERY = f"se=2030-01-01&sp=r&sv=2024-05-04&sr=b&sig={SIGNATURE}"
DATA = b"signed bytes\n" * 500
STACPKG_LOCK = pa.schema(STACPKG_LOCK_FIELDS, metadata=LOCK_METADATA)


@pytest.fixture
def signed_items(tmp_path, origin):
    """Items whose one asset is a signed URL the origin answers only with its signature."""
    origin.write("scenes/1/visual.tif", DATA)
    origin.sign("scenes/1/visual.tif", QUERY)
    item = _item(origin.url)
    item["links"] = [{"rel": "self", "href": f"{origin.url}/items/scene-1?{QUERY}"}]
    (tmp_path / "items.json").write_text(json.dumps(item))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""name: signed
stac: items.json
sources:
  api: {{prefix: "{origin.url}/", store: {{allow_http: true}}}}
targets:
  local: {{store: {{type: file, root: copies}}}}
validate: [local]
outputs: out
"""
    )
    return spec


def _run(spec):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415 - Prefect only here

    return relocate_package(spec_path=str(spec))


def test_a_signed_url_is_fetched_and_the_package_names_the_unsigned_object(
    tmp_path, origin, signed_items, prefect_harness
):
    result = _run(signed_items)

    assert result["ok"], result["text"]
    assert (tmp_path / "copies" / "scene-1" / "visual.tif").read_bytes() == DATA
    assert any(SIGNATURE in target for target in origin.targets)  # fetched while valid
    (row,) = read_lock(tmp_path / "out" / "package" / "assets.lock.parquet")
    assert (row.store_type, row.store_container, row.key) == (
        "http",
        origin.url,
        "scenes/1/visual.tif",
    )
    assert row.size_bytes == len(DATA)
    for table in ("package/items.parquet", "items.parquet"):
        (item,) = items_from_table(read_items_table(tmp_path / "out" / table))
        assert item["assets"]["visual"]["href"] == f"{origin.url}/scenes/1/visual.tif"
        assert item["links"][0]["href"] == f"{origin.url}/items/scene-1"
    assert _files_holding(tmp_path / "out", SIGNATURE) == []
    assert SIGNATURE in (tmp_path / "items.json").read_text()  # the user's own Items keep theirs


def test_an_expired_signature_fails_its_asset_saying_what_to_do(tmp_path, origin, prefect_harness):
    """A stacpkg lock keeps the signed URL whole (key ""): accepted, and refused by the origin
    once its signature no longer holds."""
    origin.write("scenes/1/visual.tif", DATA)
    origin.sign("scenes/1/visual.tif", "sig=a-newer-one")
    package = tmp_path / "pkg"
    package.mkdir()
    write_items_table(package / "items.parquet", table_from_items([_item(origin.url)]))
    signed = f"{origin.url}/scenes/1/visual.tif?{QUERY}"
    row = {"item_id": "scene-1", "asset_key": "visual", "store_type": "http"}
    row |= {"store_container": signed, "store_endpoint_url": None, "key": "", "size_bytes": None}
    row |= {"etag": None, "last_modified": None}
    pq.write_table(
        pa.Table.from_pylist([row], schema=STACPKG_LOCK), package / "assets.lock.parquet"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""name: expired
package: pkg
sources:
  api: {{prefix: "{origin.url}/", store: {{allow_http: true}}}}
targets:
  local: {{store: {{type: file, root: copies}}}}
outputs: out
"""
    )

    with pytest.raises(RunFailed) as failed:
        _run(spec)

    message = str(failed.value)
    assert "access denied (HTTP 403)" in message
    assert "its signature may have expired; sign the Items again" in message
    assert SIGNATURE not in message
    # The items are the user's own table, enriched: it keeps its hrefs; nothing else holds them.
    assert _files_holding(tmp_path / "out", SIGNATURE) == [str(tmp_path / "out" / "items.parquet")]


def _item(origin_url):
    item = item_dict("scene-1")
    item["assets"]["visual"] = {"href": f"{origin_url}/scenes/1/visual.tif?{QUERY}"}
    return item


def _files_holding(root, secret):
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="replace")
        if path.suffix == ".parquet":
            text += json.dumps(pq.read_table(path).to_pylist(), default=str)
        if secret in text:
            found.append(str(path))
    return found


# --- the rule, on its own ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (
            Location("https", f"https://h.example/a%20b/x.tif?{QUERY}", None, ""),
            Location("https", "https://h.example", None, "a%20b/x.tif"),
        ),
        (Location("https", "https://h.example", None, "x.tif"), None),
        (Location("s3", "bucket", "https://s3.example", "x?.tif"), None),
    ],
)
def test_unsigned_keeps_the_location_and_drops_its_query(location, expected):
    assert unsigned(location) == (expected or location)


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        (f"https://h.example/x.tif?{QUERY}", "https://h.example/x.tif"),
        ("https://h.example/x.tif", "https://h.example/x.tif"),
        ("s3://bucket/x.tif", "s3://bucket/x.tif"),
        ("/data/x.tif?not-a-query", "/data/x.tif?not-a-query"),
    ],
)
def test_unsigned_href(href, expected):
    assert unsigned_href(href) == expected
