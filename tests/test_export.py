"""`stacflow export`: the enriched Items as STAC JSON that pystac and stac-geoparquet read as is.

The items here are stacpkg's own enriched table of the tutorial (tests/data/stacpkg/tutorial),
put where a run of the tutorial spec writes its items; the fixture's source Items
(search.itemcollection.json) are what every field but the enrichment must equal.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pystac
import pytest
from stac_geoparquet.arrow import parse_stac_ndjson_to_arrow, stac_table_to_items

from stacflow.flows.cli import main
from tests.stacpkg_refs import TUTORIAL

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "openaerialmap-austria.yaml"
ENRICHED = ("file:size", "alternate")
EXTENSIONS = [
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json",
]


@pytest.fixture
def enriched(tmp_path, oam_data, monkeypatch):
    """The tutorial spec's outputs, holding stacpkg's s3 + local items; the source Items."""
    monkeypatch.delenv("STACPKG_TUTORIAL", raising=False)
    monkeypatch.setenv("STACFLOW_OUT", str(tmp_path))
    outputs = tmp_path / "openaerialmap-austria"
    outputs.mkdir()
    shutil.copy(
        TUTORIAL / "openaerialmap-austria.s3-local.items.parquet", outputs / "items.parquet"
    )
    return json.loads((oam_data / "search.itemcollection.json").read_text())["features"]


def _as_source(item: dict) -> dict:
    """An exported Item without what enrichment added, to compare with the source Item."""
    item = json.loads(json.dumps(item))
    assert item["stac_extensions"][-2:] == EXTENSIONS
    item["stac_extensions"] = item["stac_extensions"][:-2]
    for key, asset in item["assets"].items():
        assert set(asset.get("alternate", {})) == (set() if key == "metadata" else {"s3", "local"})
        for field in ENRICHED:
            asset.pop(field, None)
    return item


def test_export_an_item_collection_pystac_reads(enriched, tmp_path, capsys):
    out = tmp_path / "items.json"
    assert main(["export", str(SPEC), "--format", "json", "-o", str(out)]) == 0
    assert capsys.readouterr().err == f"wrote 2 Items to {out}\n"

    exported = json.loads(out.read_text())
    assert exported["type"] == "FeatureCollection"
    assert [_as_source(item) for item in exported["features"]] == enriched
    collection = pystac.ItemCollection.from_file(str(out))
    assert [item.id for item in collection] == [item["id"] for item in enriched]
    for item in collection:
        assert item.datetime is not None
        assert item.geometry["type"] == "Polygon"
        s3 = item.assets["visual"].extra_fields["alternate"]["s3"]
        assert s3 == {
            "href": item.assets["visual"].href.replace(
                "https://oin-hotosm-temp.s3.amazonaws.com/", "s3://oin-hotosm-temp/"
            ),
            "store_endpoint_url": "https://s3.amazonaws.com",
        }


def test_export_ndjson_that_pystac_and_stac_geoparquet_read(enriched, tmp_path):
    out = tmp_path / "items.ndjson"
    assert main(["export", str(SPEC), "-o", str(out)]) == 0

    lines = out.read_text().splitlines()
    items = [pystac.Item.from_dict(json.loads(line)) for line in lines]
    assert [item.id for item in items] == [item["id"] for item in enriched]
    table = parse_stac_ndjson_to_arrow(out).read_all()
    again = list(stac_table_to_items(table))
    assert [item["id"] for item in again] == [item["id"] for item in enriched]
    assert again[0]["assets"]["visual"]["alternate"]["local"]["href"].startswith("file:///")


def test_export_before_a_run_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STACFLOW_OUT", str(tmp_path))
    assert main(["export", str(SPEC)]) == 2
    assert "no enriched items yet" in capsys.readouterr().err
