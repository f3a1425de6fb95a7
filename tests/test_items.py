from __future__ import annotations

import copy
import json
import struct
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pystac
import pytest
import shapely
from stac_geoparquet.arrow import stac_table_to_items

from stacflow.tasks.atomic import TEMP_MARKER
from stacflow.tasks.errors import InputError
from stacflow.tasks.geometry import GeometryError, geojson_to_wkb, wkb_to_geojson
from stacflow.tasks.items import (
    ALTERNATE_EXTENSION,
    FILE_EXTENSION,
    Alternate,
    asset_hrefs,
    enrich_items,
    items_from_table,
    promote_alternate,
    read_item_dicts,
    read_items_table,
    table_from_items,
    write_items_table,
)
from stacflow.tasks.locks import read_lock

DATA = Path(__file__).parent / "data" / "oam-austria"
PKG_ITEMS = DATA / "openaerialmap-austria.pkg" / "items.parquet"
ENRICHED_ITEMS = DATA / "openaerialmap-austria.enriched.items.parquet"
SEARCH = DATA / "search.itemcollection.json"
S3_LOCK = DATA / "openaerialmap-austria.s3.assets.lock.parquet"
ITEM_A, ITEM_B = "631ee6653cdf1c0006b63c5b", "631ee8593cdf1c0006b63c5f"
ORIGIN = "https://oin-hotosm-temp.s3.amazonaws.com"
KEY_A = "631ee60c3cdf1c0006b63c56/0/631ee60c3cdf1c0006b63c57"
KEY_B = "631ee8403cdf1c0006b63c5d/0/631ee8403cdf1c0006b63c5e"
PROJECTION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
CHECKSUM = "1220" + "ab" * 32


@pytest.fixture
def pkg_table():
    return read_items_table(PKG_ITEMS)


@pytest.fixture
def enriched_table():
    return read_items_table(ENRICHED_ITEMS)


def search_items():
    return json.loads(SEARCH.read_text())["features"]


def item(item_id="i1", **overrides):
    base = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": item_id,
        "geometry": {"type": "Point", "coordinates": [16.4, 47.6]},
        "bbox": [16.4, 47.6, 16.4, 47.6],
        "properties": {"datetime": "2022-07-28T13:20:34Z"},
        "links": [],
        "assets": {"data": {"href": f"https://h.example/{item_id}.tif", "roles": ["data"]}},
    }
    base.update(overrides)
    return base


def local_alternates(table, *, name="local", checksum=None):
    return [
        Alternate(item_id, asset_key, "local", f"file:///mirror/{item_id}/{asset_key}", name,
                  size_bytes=1000 + index, file_checksum=checksum)
        for index, (item_id, asset_key, _) in enumerate(asset_hrefs(table))
        if asset_key != "metadata"
    ]  # fmt: skip


def assets_of(table, item_id):
    return next(i for i in items_from_table(table) if i["id"] == item_id)["assets"]


def null_typed_fields(data_type, path="assets"):
    if pa.types.is_null(data_type):
        return [path]
    if pa.types.is_struct(data_type):
        return [p for f in data_type for p in null_typed_fields(f.type, f"{path}.{f.name}")]
    if pa.types.is_list(data_type):
        return null_typed_fields(data_type.value_type, f"{path}[]")
    return []


# --- reading stacpkg's tables ---------------------------------------------------------------------


def test_pkg_items_read_back_as_the_searched_items(pkg_table):
    assert items_from_table(pkg_table) == search_items()


def test_every_item_is_accepted_by_pystac(pkg_table, enriched_table):
    for table in (pkg_table, enriched_table):
        for stac_item in items_from_table(table):
            parsed = pystac.Item.from_dict(stac_item)
            assert parsed.to_dict(transform_hrefs=False)["assets"] == stac_item["assets"]


def test_union_nulls_are_dropped_but_values_kept(enriched_table):
    assets = assets_of(enriched_table, ITEM_A)
    assert assets["metadata"] == {
        "href": f"{ORIGIN}/{KEY_A}_meta.json",
        "roles": ["metadata"],
        "title": "Metadata",
        "type": "application/json",
    }
    assert assets["visual"]["file:size"] == 262147
    assert assets["visual"]["alternate"] == {
        "s3": {
            "href": f"s3://oin-hotosm-temp/{KEY_A}.tif",
            "store_endpoint_url": "https://s3.amazonaws.com",
        }
    }


def test_item_shape(enriched_table):
    first = items_from_table(enriched_table)[0]
    assert first["type"] == "Feature"
    assert first["bbox"] == [
        16.424781179177423,
        47.65142855573096,
        16.434781179177424,
        47.66142855573096,
    ]
    assert first["geometry"]["type"] == "Polygon"
    assert first["geometry"]["coordinates"][0][0] == [16.424781179177423, 47.65142855573096]
    assert first["properties"]["datetime"] == "2022-07-28T13:20:34Z"
    assert first["properties"]["proj:epsg"] == 4326
    assert first["links"] == [
        {
            "href": "https://api.imagery.hotosm.org/stac/collections/openaerialmap",
            "rel": "collection",
            "type": "application/json",
        }
    ]
    assert "gsd" not in first
    assert "end_datetime" not in first


# --- writing stacpkg's layout ---------------------------------------------------------------------


def test_searched_items_lay_out_exactly_as_stacpkg_build_did(pkg_table):
    table = table_from_items(search_items())
    assert table.schema.equals(pkg_table.schema, check_metadata=True)
    assert table.equals(pkg_table)


def test_written_table_reads_back_identical(tmp_path, pkg_table):
    path = tmp_path / "out" / "items.parquet"
    write_items_table(path, table_from_items(search_items()))
    assert pq.read_table(path).equals(pkg_table)
    assert pq.read_schema(path).equals(pkg_table.schema, check_metadata=True)
    assert [p.name for p in path.parent.iterdir() if TEMP_MARKER in p.name] == []


@pytest.mark.parametrize("path", [PKG_ITEMS, ENRICHED_ITEMS], ids=["pkg", "enriched"])
def test_dict_table_dict_round_trip(path):
    items = items_from_table(read_items_table(path))
    assert items_from_table(table_from_items(items)) == items


def _normalised(stac_item):
    """stac-geoparquet keeps union nulls and prints times with microseconds; compare the content."""

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str) and value.endswith("Z") and value[:4].isdigit():
            return datetime.fromisoformat(value)
        return value

    stac_item = clean(stac_item)
    stac_item.pop("type", None)
    return stac_item


@pytest.mark.parametrize("path", [PKG_ITEMS, ENRICHED_ITEMS], ids=["pkg", "enriched"])
def test_stac_geoparquet_reads_our_table_with_every_property(tmp_path, path):
    items = items_from_table(read_items_table(path))
    out = tmp_path / "items.parquet"
    write_items_table(out, table_from_items(items))
    theirs = list(stac_table_to_items(pq.read_table(out)))
    assert [_normalised(i) for i in theirs] == [_normalised(i) for i in items]
    assert set(theirs[0]["properties"]) == set(items[0]["properties"])


def test_items_with_different_assets_and_properties_union_cleanly():
    one = item("one", properties={"datetime": "2022-01-01T00:00:00Z", "gsd": 0.5})
    two = item(
        "two",
        properties={"datetime": None, "start_datetime": "2022-01-01T00:00:00Z",
                    "end_datetime": "2022-01-02T00:00:00Z", "platform": "uav",
                    "eo:cloud_cover": 12},
        assets={"thumb": {"href": "t.png", "type": "image/png"},
                "data": {"href": "d.tif", "file:size": 5, "alternate": {"s3": {"href": "s3://b/d"}}}},
    )  # fmt: skip
    table = table_from_items([one, two])
    assert table.schema.field("gsd").type == pa.float64()
    assert table.schema.field("eo:cloud_cover").type == pa.int64()
    assert null_typed_fields(table.schema.field("assets").type) == []
    assert items_from_table(table) == [one, two]
    for stac_item in items_from_table(table):
        pystac.Item.from_dict(stac_item)


def test_time_properties_are_utc_timestamps_and_nothing_else_is():
    source = item(properties={
        "datetime": "2022-07-28T15:20:34.250+02:00",
        "created": "2023-01-01T00:00:00Z",
        "updated": "2023-01-02T00:00:00.000001Z",
        "version": "2022-01-01",
        "title": "2022-07-28T13:20:34Z",
    })  # fmt: skip
    table = table_from_items([source])
    timestamp = pa.timestamp("us", tz="UTC")
    for name in ("datetime", "created", "updated"):
        assert table.schema.field(name).type == timestamp
    assert table.schema.field("version").type == pa.string()
    assert table.schema.field("title").type == pa.string()
    assert items_from_table(table)[0]["properties"] == {
        "datetime": "2022-07-28T13:20:34.25Z",
        "created": "2023-01-01T00:00:00Z",
        "updated": "2023-01-02T00:00:00.000001Z",
        "version": "2022-01-01",
        "title": "2022-07-28T13:20:34Z",
    }


def test_any_timestamp_column_reads_back_as_an_rfc3339_string():
    """stacpkg stores every ISO-looking string property as a timestamp (even a title)."""
    table = table_from_items([item(properties={"datetime": None, "version": "2022-01-01"})])
    index = table.schema.get_field_index("version")
    as_stacpkg = table.column(index).cast(pa.date32()).cast(pa.timestamp("us", tz="UTC"))
    table = table.set_column(index, "version", as_stacpkg)
    assert items_from_table(table)[0]["properties"]["version"] == "2022-01-01T00:00:00Z"


def test_nanosecond_timestamps_are_read():
    table = table_from_items([item()])
    index = table.schema.get_field_index("datetime")
    table = table.set_column(index, "datetime", table.column(index).cast(pa.timestamp("ns", "UTC")))
    assert items_from_table(table)[0]["properties"]["datetime"] == "2022-07-28T13:20:34Z"


def test_null_datetime_is_kept_as_stac_requires():
    source = item(properties={"datetime": None, "start_datetime": "2020-01-01T00:00:00Z",
                              "end_datetime": "2020-12-31T00:00:00Z"})  # fmt: skip
    (back,) = items_from_table(table_from_items([source]))
    assert back["properties"]["datetime"] is None
    pystac.Item.from_dict(back)


def test_proj_geometry_is_stored_as_wkb(tmp_path):
    footprint = {
        "type": "Polygon",
        "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]],
    }
    source = item(properties={"datetime": "2022-01-01T00:00:00Z", "proj:geometry": footprint})
    source["assets"]["data"]["proj:geometry"] = footprint
    table = table_from_items([source])
    assert table.schema.field("proj:geometry").type == pa.binary()
    assert items_from_table(table) == [source]
    write_items_table(tmp_path / "i.parquet", table)
    (theirs,) = stac_table_to_items(pq.read_table(tmp_path / "i.parquet"))
    assert theirs["properties"]["proj:geometry"] == footprint


def test_null_geometry_and_3d_bbox():
    flat = item("flat", geometry=None)
    flat.pop("bbox")
    tall = item("tall", geometry={"type": "Point", "coordinates": [1.0, 2.0, 3.0]},
                bbox=[1.0, 2.0, 3.0, 1.0, 2.0, 3.0])  # fmt: skip
    table = table_from_items([flat, tall])
    assert table.schema.field("bbox").type.names == ["xmin", "ymin", "zmin", "xmax", "ymax", "zmax"]
    assert items_from_table(table) == [flat, tall]


def test_links_keep_stacpkg_fields_first_and_extra_fields():
    source = item(links=[{"rel": "self", "href": "https://x/y.json", "method": "GET"}])
    table = table_from_items([source])
    link_fields = table.schema.field("links").type.value_type.names
    assert link_fields == ["href", "rel", "type", "title", "method"]
    assert items_from_table(table) == [source]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([item(properties={"datetime": "yesterday"})], r"'i1': property 'datetime' is not an RFC"),
        ([item(properties={"datetime": None, "id": "x"})], r"item 'i1': properties 'id' collide"),
        ([item("a", properties={"datetime": None, "n": 1}),
          item("b", properties={"datetime": None, "n": "one"})], r"'n' holds values of different"),
        ([item(geometry={"type": "Circle", "coordinates": [0, 0]})], r"item 'i1': .*'Circle'"),
        ([item(bbox=[1, 2, 3])], r"item 'i1': bbox must be 4 or 6 numbers"),
        ([{"assets": {}}], r"item None: expected a STAC Item object with a string 'id'"),
        ([], "no item has an asset"),
    ],
)  # fmt: skip
def test_bad_items_are_input_errors(items, message):
    with pytest.raises(InputError, match=message):
        table_from_items(items)


# --- geometry -------------------------------------------------------------------------------------

GEOMETRIES = [
    "POINT (1 2)",
    "POINT Z (1 2 3)",
    "LINESTRING (0 0, 1 1, 2 0)",
    "LINESTRING Z (0 0 1, 1 1 2)",
    "POLYGON ((0 0, 1 0, 1 1, 0 0), (0.1 0.1, 0.2 0.1, 0.2 0.2, 0.1 0.1))",
    "POLYGON Z ((0 0 5, 1 0 5, 1 1 5, 0 0 5))",
    "MULTIPOINT ((0 0), (1 1))",
    "MULTIPOINT Z ((0 0 1), (1 1 2))",
    "MULTILINESTRING ((0 0, 1 1), (2 2, 3 3))",
    "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))",
    "MULTIPOLYGON Z (((0 0 1, 1 0 1, 1 1 1, 0 0 1)))",
    "GEOMETRYCOLLECTION (POINT (1 2), LINESTRING (0 0, 1 1))",
    "GEOMETRYCOLLECTION Z (POINT Z (1 2 3), POLYGON Z ((0 0 1, 1 0 1, 1 1 1, 0 0 1)))",
    "GEOMETRYCOLLECTION (POINT (1 2), GEOMETRYCOLLECTION (MULTIPOINT ((3 4))))",
    "POINT EMPTY",
    "LINESTRING EMPTY",
]


def _geojson(geometry):
    return json.loads(json.dumps(shapely.geometry.mapping(geometry)))


@pytest.mark.parametrize("wkt", GEOMETRIES)
@pytest.mark.parametrize("flavor", ["iso", "extended"])
@pytest.mark.parametrize("byte_order", [0, 1])
def test_wkb_decodes_like_shapely(wkt, flavor, byte_order):
    geometry = shapely.from_wkt(wkt)
    wkb = shapely.to_wkb(geometry, flavor=flavor, byte_order=byte_order, include_srid=False)
    assert wkb_to_geojson(wkb) == _geojson(geometry)


@pytest.mark.parametrize("wkt", GEOMETRIES)
def test_wkb_encodes_like_shapely_iso_little_endian(wkt):
    geometry = shapely.from_wkt(wkt)
    assert geojson_to_wkb(_geojson(geometry)) == shapely.to_wkb(
        geometry, flavor="iso", byte_order=1
    )


def test_ewkb_with_srid_is_read():
    geometry = shapely.set_srid(shapely.from_wkt("POINT (1 2)"), 4326)
    wkb = shapely.to_wkb(geometry, flavor="extended", include_srid=True)
    assert wkb_to_geojson(wkb) == {"type": "Point", "coordinates": [1.0, 2.0]}


@pytest.mark.parametrize(
    ("wkb", "message"),
    [
        (bytes.fromhex("0101000000000000000000f03f"), "truncated"),
        (shapely.to_wkb(shapely.from_wkt("POINT (1 2)")) + b"\0", "1 trailing bytes"),
        (shapely.to_wkb(shapely.from_wkt("POINT M (1 2 3)"), flavor="iso"), "type code 2001"),
        (shapely.to_wkb(shapely.from_wkt("POINT M (1 2 3)"), flavor="extended"), "M values"),
        (b"\x02" + bytes(20), "byte order"),
        (struct.pack("<BI", 1, 17), "type code 17"),
        (struct.pack("<BII", 1, 4, 1) + struct.pack("<BI", 1, 2) + struct.pack("<I", 0),
         "a Point member cannot be a LineString"),
    ],
)  # fmt: skip
def test_bad_wkb(wkb, message):
    with pytest.raises(GeometryError, match=message):
        wkb_to_geojson(wkb)


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1, 1]]}, "mixes 2D and 3D"),
        ({"type": "Point", "coordinates": [1]}, "at least 2 numbers"),
        ({"type": "Point", "coordinates": ["a", "b"]}, "expected numbers"),
        ({"type": "Polygon", "coordinates": 5}, "must be an array"),
        ({"coordinates": [0, 0]}, "unsupported GeoJSON geometry type None"),
    ],
)
def test_bad_geojson(geometry, message):
    with pytest.raises(GeometryError, match=message):
        geojson_to_wkb(geometry)


def test_bad_wkb_in_a_table_names_the_item(pkg_table):
    index = pkg_table.schema.get_field_index("geometry")
    broken = pa.array([b"\x01\x01", b"\x01\x01"], pa.binary())
    table = pkg_table.set_column(index, pkg_table.schema.field(index), broken)
    with pytest.raises(InputError, match=f"item '{ITEM_A}': geometry: truncated"):
        items_from_table(table)


# --- enrich ---------------------------------------------------------------------------------------


def test_enrich_with_the_s3_lock_reproduces_stacpkg_enrich(pkg_table, enriched_table):
    alternates = [
        Alternate(row.item_id, row.asset_key, "s3", row.href, size_bytes=row.size_bytes,
                  store_endpoint_url=row.store_endpoint_url)
        for row in read_lock(S3_LOCK)
    ]  # fmt: skip
    assert items_from_table(enrich_items(pkg_table, alternates)) == items_from_table(enriched_table)


def test_enrich_adds_local_and_keeps_s3(enriched_table):
    out = enrich_items(enriched_table, local_alternates(enriched_table, checksum=CHECKSUM))
    visual = assets_of(out, ITEM_A)["visual"]
    assert visual["alternate"] == {
        "s3": {
            "href": f"s3://oin-hotosm-temp/{KEY_A}.tif",
            "store_endpoint_url": "https://s3.amazonaws.com",
        },
        "local": {"href": f"file:///mirror/{ITEM_A}/visual", "alternate:name": "local"},
    }
    assert visual["file:size"] == 1002
    assert visual["file:checksum"] == CHECKSUM
    assert visual["href"] == f"{ORIGIN}/{KEY_A}.tif"
    assert visual["roles"] == ["data", "visual"]
    assert "alternate" not in assets_of(out, ITEM_A)["metadata"]


def test_enrich_replaces_only_assets_and_extensions(enriched_table):
    out = enrich_items(enriched_table, local_alternates(enriched_table))
    assert out.column_names == enriched_table.column_names
    assert out.schema.metadata == enriched_table.schema.metadata
    for name in enriched_table.column_names:
        if name in ("assets", "stac_extensions"):
            continue
        assert out.column(name).equals(enriched_table.column(name)), name
        assert out.schema.field(name).equals(enriched_table.schema.field(name), check_metadata=True)
    assert out.schema.field("geometry").metadata == {b"ARROW:extension:name": b"geoarrow.wkb"}


def test_enrich_unifies_the_assets_type_without_null_types(enriched_table):
    out = enrich_items(enriched_table, local_alternates(enriched_table))
    visual = out.schema.field("assets").type.field("visual").type
    assert visual.names == ["href", "roles", "title", "type", "file:size", "alternate"]
    assert visual.field("alternate").type.names == ["s3", "local"]
    assert visual.field("alternate").type.field("local").type == pa.struct(
        [pa.field("href", pa.string()), pa.field("alternate:name", pa.string())]
    )
    assert null_typed_fields(out.schema.field("assets").type) == []


def test_enrich_twice_declares_extensions_once(enriched_table):
    alternates = local_alternates(enriched_table)
    out = enrich_items(enrich_items(enriched_table, alternates), alternates)
    for extensions in out.column("stac_extensions").to_pylist():
        assert extensions == [PROJECTION, FILE_EXTENSION, ALTERNATE_EXTENSION]
    assert items_from_table(out) == items_from_table(enrich_items(enriched_table, alternates))


def test_enrich_declares_extensions_on_a_fresh_table_only_where_used(pkg_table):
    alternates = [Alternate(ITEM_A, "visual", "local", "file:///m/v.tif")]
    out = enrich_items(pkg_table, alternates)
    assert out.column("stac_extensions").to_pylist() == [
        [PROJECTION, ALTERNATE_EXTENSION],
        [PROJECTION],
    ]
    assert assets_of(out, ITEM_A)["visual"]["alternate"] == {"local": {"href": "file:///m/v.tif"}}
    out = enrich_items(
        pkg_table, [Alternate(ITEM_B, "visual", "local", "file:///m/v.tif", size_bytes=9)]
    )
    assert out.column("stac_extensions").to_pylist()[1] == [
        PROJECTION,
        FILE_EXTENSION,
        ALTERNATE_EXTENSION,
    ]


def test_enrich_keeps_a_provider_checksum(tmp_path):
    theirs = "1220" + "cd" * 32
    source = item()
    source["assets"]["data"]["file:checksum"] = theirs
    table = table_from_items([source])
    out = enrich_items(
        table, [Alternate("i1", "data", "local", "file:///x", file_checksum=CHECKSUM)]
    )
    assert assets_of(out, "i1")["data"]["file:checksum"] == theirs


def test_enrich_ignores_pairs_the_table_lacks(pkg_table):
    out = enrich_items(pkg_table, [Alternate("nope", "visual", "local", "file:///x")])
    assert items_from_table(out) == items_from_table(pkg_table)


def test_enrich_refuses_a_field_of_the_wrong_type():
    source = item()
    source["assets"]["data"]["file:size"] = "big"
    table = table_from_items([source])
    with pytest.raises(InputError, match="assets cannot take the new fields"):
        enrich_items(table, [Alternate("i1", "data", "local", "file:///x", size_bytes=3)])


def test_enriched_table_is_read_by_stac_geoparquet_and_pystac(tmp_path, enriched_table):
    out = enrich_items(enriched_table, local_alternates(enriched_table, checksum=CHECKSUM))
    write_items_table(tmp_path / "e.parquet", out)
    theirs = list(stac_table_to_items(pq.read_table(tmp_path / "e.parquet")))
    assert [_normalised(i) for i in theirs] == [_normalised(i) for i in items_from_table(out)]
    for stac_item in items_from_table(out):
        asset = pystac.Item.from_dict(stac_item).assets["visual"]
        assert asset.extra_fields["alternate"]["local"]["alternate:name"] == "local"


# --- promote --------------------------------------------------------------------------------------


def test_promote_switches_href_and_alternate(enriched_table):
    enriched = enrich_items(enriched_table, local_alternates(enriched_table, name="Local copy"))
    out = promote_alternate(enriched, "local")
    visual = assets_of(out, ITEM_A)["visual"]
    assert visual["href"] == f"file:///mirror/{ITEM_A}/visual"
    assert visual["alternate:name"] == "Local copy"
    assert visual["alternate"]["local"] == {
        "href": f"{ORIGIN}/{KEY_A}.tif",
        "alternate:name": "original",
    }
    assert visual["alternate"]["s3"]["href"] == f"s3://oin-hotosm-temp/{KEY_A}.tif"
    assert assets_of(out, ITEM_A)["metadata"]["href"] == f"{ORIGIN}/{KEY_A}_meta.json"


def test_promote_uses_the_key_when_the_alternate_has_no_name(pkg_table):
    enriched = enrich_items(pkg_table, [Alternate(ITEM_A, "visual", "local", "file:///v.tif")])
    visual = assets_of(promote_alternate(enriched, "local"), ITEM_A)["visual"]
    assert visual["alternate:name"] == "local"


def test_promote_moves_the_endpoint_with_the_href(enriched_table):
    visual = assets_of(promote_alternate(enriched_table, "s3"), ITEM_A)["visual"]
    assert visual["href"] == f"s3://oin-hotosm-temp/{KEY_A}.tif"
    assert visual["store_endpoint_url"] == "https://s3.amazonaws.com"
    assert visual["alternate"]["s3"] == {
        "href": f"{ORIGIN}/{KEY_A}.tif",
        "alternate:name": "original",
    }


def test_promote_twice_restores_every_href(enriched_table):
    twice = promote_alternate(promote_alternate(enriched_table, "s3"), "s3")
    assert asset_hrefs(twice) == asset_hrefs(enriched_table)
    visual = assets_of(twice, ITEM_A)["visual"]
    assert "store_endpoint_url" not in visual
    assert visual["alternate"]["s3"]["store_endpoint_url"] == "https://s3.amazonaws.com"


def test_promote_of_an_absent_key_changes_nothing(enriched_table):
    out = promote_alternate(enriched_table, "local")
    assert items_from_table(out) == items_from_table(enriched_table)
    assert out.column("stac_extensions").equals(enriched_table.column("stac_extensions"))


# --- asset_hrefs ----------------------------------------------------------------------------------


def test_asset_hrefs_in_table_order(pkg_table):
    assert asset_hrefs(pkg_table) == [
        (ITEM_A, "metadata", f"{ORIGIN}/{KEY_A}_meta.json"),
        (ITEM_A, "thumbnail", f"{ORIGIN}/{KEY_A}.png"),
        (ITEM_A, "visual", f"{ORIGIN}/{KEY_A}.tif"),
        (ITEM_B, "metadata", f"{ORIGIN}/{KEY_B}_meta.json"),
        (ITEM_B, "thumbnail", f"{ORIGIN}/{KEY_B}.png"),
        (ITEM_B, "visual", f"{ORIGIN}/{KEY_B}.tif"),
    ]


def test_asset_hrefs_skip_absent_assets_and_chunking_does_not_matter():
    one = item("one", assets={"a": {"href": "x/a.tif"}})
    two = item("two", assets={"b": {"href": "x/b.tif"}, "c": {"title": "no href"}})
    table = pa.concat_tables([table_from_items([one, two])] * 2)
    assert asset_hrefs(table) == [("one", "a", "x/a.tif"), ("two", "b", "x/b.tif")] * 2


# --- reading item files ---------------------------------------------------------------------------


def test_read_item_collection():
    assert read_item_dicts(SEARCH) == search_items()


def test_read_single_item_keeps_relative_hrefs(tmp_path):
    source = item(assets={"data": {"href": "./data/x.tif"}})
    path = tmp_path / "item.json"
    path.write_text(json.dumps(source))
    assert read_item_dicts(path) == [source]


def test_read_feature_collection_with_bom(tmp_path):
    path = tmp_path / "fc.geojson"
    collection = {"type": "FeatureCollection", "features": [item("a"), item("b")]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(collection).encode())
    assert [i["id"] for i in read_item_dicts(path)] == ["a", "b"]


@pytest.mark.parametrize("suffix", [".ndjson", ".jsonl"])
def test_read_ndjson(tmp_path, suffix):
    tricky = item("b", properties={"datetime": None, "title": "line\u2028separator"})
    path = tmp_path / f"items{suffix}"
    path.write_text(
        json.dumps(item("a")) + "\n\n" + json.dumps(tricky, ensure_ascii=False) + "\r\n",
        encoding="utf-8",
    )
    assert read_item_dicts(path) == [item("a"), tricky]


def test_read_geoparquet():
    assert read_item_dicts(ENRICHED_ITEMS) == items_from_table(read_items_table(ENRICHED_ITEMS))


def test_read_geoparquet_without_parquet_suffix(tmp_path):
    path = tmp_path / "items.data"
    path.write_bytes(PKG_ITEMS.read_bytes())
    assert read_item_dicts(path) == search_items()


def _written(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("items.json", '{\n  "type": "Feature",\n  "id": nope\n}',
         r"items\.json:3: not valid JSON.*column 9"),
        ("items.ndjson", json.dumps(item()) + "\n" + json.dumps(item()) + "\n{oops\n",
         r"items\.ndjson:3: not valid JSON"),
        ("items.ndjson", json.dumps(item()) + '\n{"type": "Collection"}\n',
         r"items\.ndjson:2: expected a STAC Item \(type 'Feature'\).*got 'Collection'"),
        ("items.json", "[]", r"expected a STAC Item.*got 'list'"),
        ("items.json", json.dumps({"type": "FeatureCollection"}), "needs a 'features' array"),
        ("items.json", json.dumps({"type": "FeatureCollection", "features": [item(), {"id": 1}]}),
         r"feature 2: expected a STAC Item"),
        ("items.json", json.dumps({**item(), "assets": None}),
         r"needs 'assets' as a JSON object \(item 'i1'\)"),
        ("items.json", json.dumps({**item(), "id": 7}), "needs 'id' as a JSON string"),
        ("items.parquet", "{}", r"items\.parquet: not a readable parquet file"),
    ],
)  # fmt: skip
def test_bad_item_files(tmp_path, name, text, message):
    with pytest.raises(InputError, match=message):
        read_item_dicts(_written(tmp_path, name, text))


def test_missing_item_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.json: no such file"):
        read_item_dicts(tmp_path / "nope.json")


def test_item_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "items.json"
    path.write_bytes(b'{"id": "\xff"}')
    with pytest.raises(InputError, match="not UTF-8"):
        read_item_dicts(path)


# --- reading items tables -------------------------------------------------------------------------


def test_read_items_table_errors(tmp_path, pkg_table):
    with pytest.raises(InputError, match="no such file"):
        read_items_table(tmp_path / "missing.parquet")
    with pytest.raises(InputError, match="is a directory"):
        read_items_table(tmp_path)
    pq.write_table(pkg_table.drop_columns(["assets"]), tmp_path / "a.parquet")
    with pytest.raises(InputError, match=r"a\.parquet: missing column 'assets'"):
        read_items_table(tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": ["x"], "assets": ['{"a": {}}']}), tmp_path / "b.parquet")
    with pytest.raises(InputError, match=r"column 'assets' has type string, expected a struct"):
        read_items_table(tmp_path / "b.parquet")


def test_failed_write_keeps_the_old_table(tmp_path, pkg_table):
    path = tmp_path / "items.parquet"
    write_items_table(path, pkg_table)
    bad = pa.table({"s": pa.array([{}], pa.struct([]))})
    with pytest.raises(pa.ArrowNotImplementedError):
        write_items_table(path, bad)
    assert pq.read_table(path).equals(pkg_table)
    assert [p.name for p in tmp_path.iterdir()] == ["items.parquet"]


def test_items_from_table_does_not_mutate_between_calls(enriched_table):
    first = items_from_table(enriched_table)
    snapshot = copy.deepcopy(first)
    first[0]["assets"]["visual"]["href"] = "changed"
    assert items_from_table(enriched_table) == snapshot
