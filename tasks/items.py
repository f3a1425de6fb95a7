"""STAC items as stacpkg stores them: a stac-geoparquet table, one row per Item.

The table is the interchange format (stacpkg reads it, stac-geoparquet reads it); Item dicts are
what STAC tools and users see. Struct columns are unions across items, so an absent field reads
back as null: the dict side drops those nulls, the table side never writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacflow.tasks.atomic import atomic_write
from stacflow.tasks.errors import InputError
from stacflow.tasks.geometry import GeometryError, geojson_to_wkb, wkb_to_geojson
from stacflow.tasks.locks import read_parquet

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

TOP_LEVEL = ("stac_version", "stac_extensions", "id", "links", "assets", "collection")
# Every column that is not an Item's own field is a property.
ITEM_FIELDS = frozenset({*TOP_LEVEL, "type", "datetime", "bbox", "geometry"})
# The properties stac-geoparquet converts between string and timestamp in both directions.
DATETIME_PROPERTIES = frozenset(
    {"datetime", "start_datetime", "end_datetime", "created", "updated"}
    | {"expires", "published", "unpublished"}
)
TIMESTAMP = pa.timestamp("us", tz="UTC")
GEOMETRY_FIELD_METADATA = {b"ARROW:extension:name": b"geoarrow.wkb"}
LINK_FIELDS = ("href", "rel", "type", "title")
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
ALTERNATE_EXTENSION = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
PARQUET_MAGIC = b"PAR1"
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".geojsonl", ".geojsons")
PARQUET_SUFFIXES = (".parquet", ".geoparquet")


def _json_metadata(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# Exactly what stacpkg 0.1.4 writes (`crs: null`, no geometry types), so our tables diff cleanly.
ITEMS_METADATA = {
    b"stacpkg:schema-kind": b"items",
    b"stacpkg:schema-version": b"v1",
    b"stac_geoparquet:version": b"1.0.0",
    b"stac-geoparquet": _json_metadata({"version": "1.0.0"}),
    b"geo": _json_metadata(
        {
            "columns": {"geometry": {"crs": None, "encoding": "WKB", "geometry_types": []}},
            "primary_column": "geometry",
            "version": "1.0.0",
        }
    ),
}


def read_items_table(path: Path) -> pa.Table:
    table = read_parquet(path, "a stac-geoparquet items table")
    missing = [name for name in ("id", "assets") if name not in table.column_names]
    if missing:
        raise InputError(
            f"{path}: missing column {missing[0]!r} (a stac-geoparquet items table has one row "
            "per Item with at least 'id' and 'assets')"
        )
    if not pa.types.is_struct(table.schema.field("assets").type):
        raise InputError(
            f"{path}: column 'assets' has type {table.schema.field('assets').type}, "
            "expected a struct of assets"
        )
    return table


def write_items_table(path: Path, table: pa.Table) -> bool:
    """Returns whether the file changed (the same table leaves it alone)."""
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


# --- table → Item dicts ---------------------------------------------------------------------------


def items_from_table(table: pa.Table) -> list[dict[str, Any]]:
    """Rebuild proper STAC Items: `type` back, union nulls out, GeoJSON geometry, string times."""
    table = _timestamps_as_microseconds(table)
    items = []
    for row in table.to_pylist():
        item_id = row.get("id")
        try:
            items.append(_item_from_row(row))
        except GeometryError as error:
            raise InputError(f"items table: item {item_id!r}: geometry: {error}") from None
    return items


def _item_from_row(row: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": row.get("stac_version"),
        "stac_extensions": list(row.get("stac_extensions") or []),
        "id": row.get("id"),
    }
    if row.get("collection") is not None:
        item["collection"] = row["collection"]
    item["geometry"] = _geometry_from_wkb(row.get("geometry"))
    if row.get("bbox") is not None:
        item["bbox"] = _bbox_list(row["bbox"])
    properties = {"datetime": _plain(row.get("datetime"))}
    for name, value in row.items():
        if name not in ITEM_FIELDS and value is not None:
            properties[name] = _plain(value, name)
    item["properties"] = properties
    item["links"] = _plain(row.get("links") or [])
    item["assets"] = _plain(row.get("assets") or {})
    return item


def _plain(value: Any, name: str | None = None) -> Any:
    """JSON-ready value: union nulls dropped from every object, list entries kept as they are."""
    if isinstance(value, dict):
        return {k: _plain(v, k) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return _rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes) and name == "proj:geometry":
        return wkb_to_geojson(value)
    return value


def _rfc3339(value: datetime) -> str:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    spec = "microseconds" if value.microsecond else "seconds"
    text = value.replace(tzinfo=None).isoformat(timespec=spec)
    return (text.rstrip("0") if value.microsecond else text) + "Z"


def _geometry_from_wkb(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise GeometryError(f"expected WKB bytes, got {type(value).__name__}")
    return wkb_to_geojson(value)


def _bbox_list(bbox: dict[str, float] | list[float]) -> list[float]:
    if isinstance(bbox, list):
        return bbox
    if bbox.get("zmin") is not None and bbox.get("zmax") is not None:
        return [bbox[k] for k in ("xmin", "ymin", "zmin", "xmax", "ymax", "zmax")]
    return [bbox[k] for k in ("xmin", "ymin", "xmax", "ymax")]


def _timestamps_as_microseconds(table: pa.Table) -> pa.Table:
    """Nanosecond columns would come back as pandas objects; STAC times need no more than µs."""
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            column = table.column(index).cast(pa.timestamp("us", tz=field.type.tz), safe=False)
            table = table.set_column(index, field.with_type(column.type), column)
    return table


# --- Item dicts → table ---------------------------------------------------------------------------


def table_from_items(items: Iterable[dict[str, Any]]) -> pa.Table:
    """Lay Items out as stacpkg does: fixed columns, then every property, sorted, as a column."""
    rows = [_row_from_item(item, index) for index, item in enumerate(items)]
    if not any(row["assets"] for row in rows):
        raise InputError("items: no item has an asset, so there is nothing to lay out")
    property_names = sorted({name for row in rows for name in row} - ITEM_FIELDS)
    fields = [
        pa.field("stac_version", pa.string()),
        pa.field("stac_extensions", pa.list_(pa.string())),
        pa.field("id", pa.string()),
        pa.field("links", _links_type(rows)),
        pa.field("assets", _inferred(rows, "assets")),
        pa.field("collection", pa.string()),
        pa.field("datetime", TIMESTAMP),
        pa.field("bbox", _bbox_type(rows)),
        pa.field("geometry", pa.binary(), metadata=GEOMETRY_FIELD_METADATA),
    ]
    fields += [
        pa.field(name, TIMESTAMP if name in DATETIME_PROPERTIES else _inferred(rows, name))
        for name in property_names
    ]
    schema = pa.schema([f.with_type(_compliant(f.type)) for f in fields], metadata=ITEMS_METADATA)
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(f"items: cannot lay the items out as a table: {error}") from None


def _row_from_item(item: dict[str, Any], index: int) -> dict[str, Any]:
    where = f"item {item.get('id')!r}" if isinstance(item, dict) else f"item #{index + 1}"
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise InputError(f"items: {where}: expected a STAC Item object with a string 'id'")
    properties = item.get("properties") or {}
    collisions = sorted(set(properties) & (ITEM_FIELDS - {"datetime"}))
    if collisions:
        raise InputError(
            f"items: {where}: properties {', '.join(map(repr, collisions))} collide with the "
            "Item's own fields and cannot be stored as stac-geoparquet columns"
        )
    try:
        geometry = item.get("geometry")
        row = {
            "stac_version": item.get("stac_version"),
            "stac_extensions": item.get("stac_extensions") or [],
            "id": item["id"],
            "links": [_compact(link) for link in item.get("links") or []],
            "assets": _compact(item.get("assets") or {}),
            "collection": item.get("collection"),
            "datetime": _timestamp(properties.get("datetime"), "datetime"),
            "bbox": _bbox_struct(item.get("bbox")),
            "geometry": geojson_to_wkb(geometry) if geometry is not None else None,
        }
        for name, value in properties.items():
            if name in DATETIME_PROPERTIES:
                row[name] = _timestamp(value, name)
            elif (compact := _compact(value, name)) is not None:
                row[name] = compact
    except (ValueError, TypeError) as error:
        raise InputError(f"items: {where}: {error}") from None
    return row


def _compact(value: Any, name: str | None = None) -> Any:
    """Sorted keys (as stacpkg writes them), no nulls and no empty objects (parquet cannot)."""
    if isinstance(value, dict):
        if name == "proj:geometry":
            return geojson_to_wkb(value)
        pairs = ((k, _compact(v, k)) for k, v in sorted(value.items()))
        return {k: v for k, v in pairs if v is not None} or None
    if isinstance(value, list | tuple):
        return [_compact(v) for v in value]
    return value


def _timestamp(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"property {name!r} is not an RFC 3339 datetime: {value!r}") from None
    else:
        raise ValueError(f"property {name!r} must be an RFC 3339 string, got {value!r}")
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _bbox_struct(bbox: object) -> dict[str, float] | None:
    if bbox is None:
        return None
    if not isinstance(bbox, list | tuple) or len(bbox) not in (4, 6):
        raise ValueError(f"bbox must be 4 or 6 numbers, got {bbox!r}")
    names = ("xmin", "ymin", "xmax", "ymax") if len(bbox) == 4 else _BBOX_3D
    return dict(zip(names, map(float, bbox), strict=True))


_BBOX_3D = ("xmin", "ymin", "zmin", "xmax", "ymax", "zmax")


def _bbox_type(rows: list[dict[str, Any]]) -> pa.DataType:
    is_3d = any(row["bbox"] is not None and "zmin" in row["bbox"] for row in rows)
    names = _BBOX_3D if is_3d else ("xmin", "ymin", "xmax", "ymax")
    return pa.struct([pa.field(name, pa.float64()) for name in names])


def _links_type(rows: list[dict[str, Any]]) -> pa.DataType:
    """stacpkg's link struct first (it casts links to it), then whatever else the links carry."""
    inferred = _inferred(rows, "links")
    value_type = inferred.value_type if pa.types.is_list(inferred) else pa.null()
    extra = list(value_type) if pa.types.is_struct(value_type) else []
    fields = [pa.field(name, pa.string()) for name in LINK_FIELDS]
    fields += [f for f in extra if f.name not in LINK_FIELDS]
    return pa.list_(pa.struct(fields))


def _inferred(rows: list[dict[str, Any]], name: str) -> pa.DataType:
    try:
        return pa.array([row.get(name) for row in rows]).type
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(
            f"items: {name!r} holds values of different types across items ({error})"
        ) from None


def _compliant(data_type: pa.DataType) -> pa.DataType:
    """Name list children `element`, as parquet reads them back, so written == read schemas."""
    if pa.types.is_list(data_type):
        return pa.list_(pa.field("element", _compliant(data_type.value_type)))
    if pa.types.is_struct(data_type):
        return pa.struct([f.with_type(_compliant(f.type)) for f in data_type])
    return data_type


# --- alternates -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alternate:
    """Another place that holds an asset's exact bytes, to list under `asset.alternate[key]`.

    `store_endpoint_url` is stacpkg's non-standard field: an S3-compatible href means nothing to a
    reader without the endpoint it lives behind.
    """

    item_id: str
    asset_key: str
    key: str
    href: str
    name: str | None = None
    size_bytes: int | None = None
    file_checksum: str | None = None
    store_endpoint_url: str | None = None


def enrich_items(table: pa.Table, alternates: Iterable[Alternate]) -> pa.Table:
    """Add alternates and file facts to the matching assets; pairs the table lacks are ignored.

    A provider's `file:checksum` is kept: it describes the same bytes and is the better witness.
    """
    wanted: dict[tuple[str, str], list[Alternate]] = {}
    for alternate in alternates:
        wanted.setdefault((alternate.item_id, alternate.asset_key), []).append(alternate)

    def enrich(item_id: str, asset_key: str, asset: dict[str, Any]) -> bool:
        matches = wanted.get((item_id, asset_key))
        if not matches:
            return False
        entries = dict(asset.get("alternate") or {})
        for alternate in matches:
            entry = {"href": alternate.href}
            if alternate.store_endpoint_url:
                entry["store_endpoint_url"] = alternate.store_endpoint_url
            if alternate.name is not None:
                entry["alternate:name"] = alternate.name
            entries[alternate.key] = entry
            if alternate.size_bytes is not None:
                asset["file:size"] = alternate.size_bytes
            if alternate.file_checksum and not asset.get("file:checksum"):
                asset["file:checksum"] = alternate.file_checksum
        asset["alternate"] = entries
        return True

    return _rewrite_assets(table, enrich)


def promote_alternate(table: pa.Table, key: str) -> pa.Table:
    """stacpkg's `promote-alternate --mode switch`: primary href and `alternate[key]` trade places.

    Applying it twice puts every href back where it was.
    """

    def switch(_item_id: str, _asset_key: str, asset: dict[str, Any]) -> bool:
        entries = asset.get("alternate") or {}
        promoted = entries.get(key)
        if not promoted or not promoted.get("href"):
            return False
        demoted = {"href": asset.get("href")}
        demoted["alternate:name"] = asset.get("alternate:name") or "original"
        if asset.get("store_endpoint_url"):
            demoted["store_endpoint_url"] = asset["store_endpoint_url"]
        asset["href"] = promoted["href"]
        asset["alternate:name"] = promoted.get("alternate:name") or key
        asset.pop("store_endpoint_url", None)
        if promoted.get("store_endpoint_url"):
            asset["store_endpoint_url"] = promoted["store_endpoint_url"]
        asset["alternate"] = (
            {**entries, key: demoted}
            if demoted["href"]
            else {name: entry for name, entry in entries.items() if name != key}
        )
        return True

    return _rewrite_assets(table, switch)


def asset_hrefs(table: pa.Table) -> list[tuple[str, str, str]]:
    """(item_id, asset_key, href) of every asset that has an href, in table and asset order."""
    assets = table.column("assets").combine_chunks()
    hrefs = {
        field.name: pc.struct_field(pc.struct_field(assets, field.name), "href").to_pylist()
        for field in assets.type
        if pa.types.is_struct(field.type) and field.type.get_field_index("href") != -1
    }
    return [
        (item_id, asset_key, column[row])
        for row, item_id in enumerate(table.column("id").to_pylist())
        for asset_key, column in hrefs.items()
        if column[row]
    ]


def _rewrite_assets(
    table: pa.Table, change: Callable[[str, str, dict[str, Any]], bool]
) -> pa.Table:
    """Apply `change` to each asset; only `assets` and `stac_extensions` are rebuilt."""
    ids = table.column("id").to_pylist()
    rows = table.column("assets").to_pylist()
    has_extensions = "stac_extensions" in table.column_names
    extensions = (
        table.column("stac_extensions").to_pylist() if has_extensions else [None] * len(ids)
    )
    for index, (item_id, assets) in enumerate(zip(ids, rows, strict=True)):
        changed = [
            change(item_id, asset_key, asset)
            for asset_key, asset in (assets or {}).items()
            if asset is not None
        ]
        if any(changed):
            extensions[index] = _declared(extensions[index], assets)
    assets_field = table.schema.field("assets")
    try:
        new_type = _unified(assets_field.type, pa.array(rows).type)
        new_assets = pa.array(rows, type=new_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(f"items table: the assets cannot take the new fields ({error})") from None
    table = table.set_column(
        table.schema.get_field_index("assets"), assets_field.with_type(new_type), new_assets
    )
    if has_extensions:
        field = table.schema.field("stac_extensions")
        return table.set_column(
            table.schema.get_field_index("stac_extensions"),
            field,
            pa.array(extensions, type=field.type),
        )
    return table.append_column(
        pa.field("stac_extensions", pa.list_(pa.field("element", pa.string()))), [extensions]
    )


def _declared(extensions: list[str] | None, assets: dict[str, Any]) -> list[str]:
    """Declare, once, every extension the row's assets now use."""
    declared = list(extensions or [])
    uses_file = any(
        name.startswith("file:") and value is not None
        for asset in assets.values()
        if asset
        for name, value in asset.items()
    )
    for extension in (FILE_EXTENSION,) * uses_file + (ALTERNATE_EXTENSION,):
        if extension not in declared:
            declared.append(extension)
    return declared


def _unified(old: pa.DataType, new: pa.DataType) -> pa.DataType:
    """The old struct with the new fields merged in; a field that is all null stays as it was."""
    schema = pa.unify_schemas(
        [pa.schema([pa.field("x", old)]), pa.schema([pa.field("x", new)])],
        promote_options="permissive",
    )
    return _compliant(schema.field("x").type)


# --- lock-less sources ----------------------------------------------------------------------------


def read_item_dicts(path: Path) -> list[dict[str, Any]]:
    """Items from a JSON Item or ItemCollection, NDJSON, or stac-geoparquet; hrefs as written."""
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "no such file"
        raise InputError(f"{path}: {problem} (expected STAC items: JSON, NDJSON or geoparquet)")
    with path.open("rb") as handle:
        is_parquet = handle.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC
    if is_parquet or path.suffix.lower() in PARQUET_SUFFIXES:
        return items_from_table(read_items_table(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if path.suffix.lower() in NDJSON_SUFFIXES:
        # Not splitlines(): U+2028 and friends may sit unescaped inside a JSON string.
        return [
            item
            for number, line in enumerate(text.split("\n"), start=1)
            if line.strip()
            for item in _document_items(_parsed(line, path, number), f"{path}:{number}")
        ]
    return _document_items(_parsed(text, path, None), str(path))


def _parsed(text: str, path: Path, line: int | None) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = f"{path}:{line}" if line else f"{path}:{error.lineno}"
        raise InputError(f"{where}: not valid JSON ({error.msg}, column {error.colno})") from None


def _document_items(document: object, where: str) -> list[dict[str, Any]]:
    kind = document.get("type") if isinstance(document, dict) else type(document).__name__
    if isinstance(document, dict) and kind in ("FeatureCollection", "ItemCollection"):
        features = document.get("features")
        if not isinstance(features, list):
            raise InputError(f"{where}: a {kind} needs a 'features' array")
        for number, feature in enumerate(features, start=1):
            _check_item(feature, f"{where}: feature {number}")
        return features
    return [_check_item(document, where)]


def _check_item(item: object, where: str) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("type") != "Feature":
        kind = item.get("type") if isinstance(item, dict) else type(item).__name__
        raise InputError(
            f"{where}: expected a STAC Item (type 'Feature'), an ItemCollection or a "
            f"FeatureCollection, got {kind!r}"
        )
    for name, expected in (("id", str), ("assets", dict)):
        if not isinstance(item.get(name), expected):
            raise InputError(
                f"{where}: a STAC Item needs {name!r} as a JSON {_JSON_NAMES[expected]}"
                + (f" (item {item['id']!r})" if isinstance(item.get("id"), str) else "")
            )
    return item


_JSON_NAMES = {str: "string", dict: "object"}
