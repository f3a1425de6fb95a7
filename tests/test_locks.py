from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stacflow.tasks.atomic import TEMP_MARKER
from stacflow.tasks.errors import InputError
from stacflow.tasks.locations import Location
from stacflow.tasks.locks import (
    LOCK_COLUMNS,
    LOCK_SCHEMA,
    LockRow,
    lock_table,
    read_lock,
    rows_from_table,
    write_lock,
)

DATA = Path(__file__).parent / "data" / "oam-austria"
HTTPS_LOCK = DATA / "openaerialmap-austria.pkg" / "assets.lock.parquet"
S3_LOCK = DATA / "openaerialmap-austria.s3.assets.lock.parquet"
ORIGIN = "https://oin-hotosm-temp.s3.amazonaws.com"
ITEM_A, ITEM_B = "631ee6653cdf1c0006b63c5b", "631ee8593cdf1c0006b63c5f"
KEY_A = "631ee60c3cdf1c0006b63c56/0/631ee60c3cdf1c0006b63c57"
KEY_B = "631ee8403cdf1c0006b63c5d/0/631ee8403cdf1c0006b63c5e"
STACPKG_COLUMNS = LOCK_COLUMNS[:9]

HTTPS_ROWS = [
    LockRow(ITEM_A, "thumbnail", "https", ORIGIN, None, f"{KEY_A}.png", 20011,
            '"243d4551b05789ab578ab7b7a76b0988"', "2022-09-12T09:43:21+00:00"),
    LockRow(ITEM_A, "visual", "https", ORIGIN, None, f"{KEY_A}.tif", 262147,
            '"1827ef4c480e8b5338b370231b661398"', "2022-09-12T09:43:21+00:00"),
    LockRow(ITEM_B, "thumbnail", "https", ORIGIN, None, f"{KEY_B}.png", 15013,
            '"e934dafc469494bb32666d29dc266feb"', "2022-09-12T09:43:21+00:00"),
    LockRow(ITEM_B, "visual", "https", ORIGIN, None, f"{KEY_B}.tif", 393221,
            '"d977bcb8deb732e3ea952cc589c90c3a"', "2022-09-12T09:43:21+00:00"),
]  # fmt: skip
CHECKSUM = "1220" + "ab" * 32


def _write(path, table):
    pq.write_table(table, path)
    return path


# --- the schema -----------------------------------------------------------------------------------


def test_columns_are_stacpkgs_nine_then_file_checksum():
    assert LOCK_COLUMNS == (
        "item_id",
        "asset_key",
        "store_type",
        "store_container",
        "store_endpoint_url",
        "key",
        "size_bytes",
        "etag",
        "last_modified",
        "file_checksum",
    )
    assert tuple(f.name for f in dataclasses.fields(LockRow)) == LOCK_COLUMNS
    assert LOCK_SCHEMA.names == list(LOCK_COLUMNS)


def test_schema_types_nullability_and_metadata():
    assert [(f.name, str(f.type), f.nullable) for f in LOCK_SCHEMA] == [
        ("item_id", "string", False),
        ("asset_key", "string", False),
        ("store_type", "string", True),
        ("store_container", "string", True),
        ("store_endpoint_url", "string", True),
        ("key", "string", True),
        ("size_bytes", "int64", True),
        ("etag", "string", True),
        ("last_modified", "string", True),
        ("file_checksum", "string", True),
    ]
    assert LOCK_SCHEMA.metadata == {
        b"stacpkg:schema-kind": b"asset-lock",
        b"stacpkg:schema-version": b"v1",
    }


# --- reading the fixture --------------------------------------------------------------------------


def test_read_https_fixture_lock():
    assert read_lock(HTTPS_LOCK) == HTTPS_ROWS


def test_read_s3_fixture_lock():
    rows = read_lock(S3_LOCK)
    assert rows == [
        dataclasses.replace(
            row,
            store_type="s3",
            store_container="oin-hotosm-temp",
            store_endpoint_url="https://s3.amazonaws.com",
            etag=None,
            last_modified=None,
        )
        for row in HTTPS_ROWS
    ]
    assert rows[1].href == f"s3://oin-hotosm-temp/{KEY_A}.tif"


def test_row_location_and_href():
    row = HTTPS_ROWS[1]
    assert row.location == Location("https", ORIGIN, None, f"{KEY_A}.tif")
    assert row.href == f"{ORIGIN}/{KEY_A}.tif"


def test_row_at_location_with_facts():
    location = Location("s3", "bucket", "http://127.0.0.1:9000", "a/b.tif")
    row = LockRow.at("item", "visual", location, size_bytes=3, file_checksum=CHECKSUM)
    assert row == LockRow("item", "visual", "s3", "bucket", "http://127.0.0.1:9000", "a/b.tif",
                          3, None, None, CHECKSUM)  # fmt: skip
    assert row.location == location


# --- writing --------------------------------------------------------------------------------------


def test_write_then_read_round_trips(tmp_path):
    rows = [dataclasses.replace(HTTPS_ROWS[0], file_checksum=CHECKSUM), *HTTPS_ROWS[1:]]
    path = tmp_path / "out" / "assets.lock.parquet"
    write_lock(path, rows)
    assert read_lock(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["assets.lock.parquet"]


def test_written_file_schema_is_exactly_the_lock_schema(tmp_path):
    path = tmp_path / "lock.parquet"
    write_lock(path, HTTPS_ROWS)
    schema = pq.read_schema(path)
    assert schema.equals(LOCK_SCHEMA, check_metadata=True)
    assert schema.names == list(LOCK_COLUMNS)


def test_stacpkg_sees_its_own_schema_in_our_file(tmp_path):
    """stacpkg reads by column name and ignores extras: its nine columns must match its own file."""
    path = tmp_path / "lock.parquet"
    write_lock(path, read_lock(S3_LOCK))
    ours = pq.read_table(path)
    fixture = pq.read_table(S3_LOCK)
    assert ours.schema.field("file_checksum").nullable
    first_nine = pa.schema(list(ours.schema)[:9], metadata=ours.schema.metadata)
    assert first_nine.names == list(STACPKG_COLUMNS)
    assert first_nine.equals(fixture.schema, check_metadata=True)
    assert ours.select(list(STACPKG_COLUMNS)).equals(fixture)


def test_empty_lock_writes_schema_only(tmp_path):
    path = tmp_path / "lock.parquet"
    write_lock(path, [])
    assert pq.read_schema(path).equals(LOCK_SCHEMA, check_metadata=True)
    assert read_lock(path) == []


def test_lock_table_accepts_a_generator():
    table = lock_table(row for row in HTTPS_ROWS)
    assert table.schema.equals(LOCK_SCHEMA, check_metadata=True)
    assert rows_from_table(table) == HTTPS_ROWS


def test_signed_url_query_never_reaches_the_lock(tmp_path):
    signed = "https://h.example/x.tif?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA"
    row = LockRow.at("i", "a", Location("https", signed, None, ""))
    path = tmp_path / "lock.parquet"
    write_lock(path, [row])
    assert b"deadbeef" not in path.read_bytes()
    assert b"AKIA" not in path.read_bytes()
    (back,) = read_lock(path)  # the href it signs: a location any tool resolves, not `?<redacted>`
    assert (back.store_type, back.store_container, back.key) == (
        "https",
        "https://h.example",
        "x.tif",
    )
    assert back.href == "https://h.example/x.tif"


def test_store_type_aliases_are_normalised_on_write():
    table = lock_table([LockRow("i", "a", "S3A", "b", None, "k")])
    assert table.column("store_type").to_pylist() == ["s3"]


def test_failed_write_keeps_the_old_lock(tmp_path):
    path = tmp_path / "lock.parquet"
    write_lock(path, HTTPS_ROWS)
    with pytest.raises(InputError, match="unknown store type 'ftp'"):
        write_lock(path, [LockRow("i", "a", "ftp", None, None, "k")])
    assert read_lock(path) == HTTPS_ROWS
    assert not [p for p in tmp_path.iterdir() if TEMP_MARKER in p.name]


# --- tolerant reading -----------------------------------------------------------------------------


def test_extra_columns_order_and_missing_optional_columns(tmp_path):
    table = pa.table(
        {
            "note": ["x"],
            "key": ["a/b.tif"],
            "store_endpoint_url": [None],
            "asset_key": ["visual"],
            "store_container": ["bucket"],
            "store_type": ["s3a"],
            "item_id": ["item"],
            "size_bytes": pa.array([7], pa.int32()),
        }
    )
    (row,) = read_lock(_write(tmp_path / "l.parquet", table))
    assert row == LockRow("item", "visual", "s3", "bucket", None, "a/b.tif", size_bytes=7)


def test_dictionary_and_large_string_columns_are_cast(tmp_path):
    table = lock_table(HTTPS_ROWS)
    table = table.set_column(0, "item_id", table.column("item_id").dictionary_encode())
    table = table.set_column(5, "key", table.column("key").cast(pa.large_string()))
    assert read_lock(_write(tmp_path / "l.parquet", table)) == HTTPS_ROWS


# --- bad input ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.parquet: no such file"):
        read_lock(tmp_path / "nope.parquet")


def test_directory_is_not_a_lock(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_lock(DATA / "openaerialmap-austria.pkg")


def test_not_parquet(tmp_path):
    path = tmp_path / "lock.parquet"
    path.write_text("item_id,asset_key\n")
    with pytest.raises(InputError, match=r"lock\.parquet: not a readable parquet file"):
        read_lock(path)


def test_missing_required_column_is_named(tmp_path):
    table = lock_table(HTTPS_ROWS).drop_columns(["key"])
    path = _write(tmp_path / "openaerialmap.lock.parquet", table)
    with pytest.raises(
        InputError,
        match=r"openaerialmap\.lock\.parquet: missing column 'key' \(an asset lock needs item_id, "
        r"asset_key, store_type",
    ):
        read_lock(path)


def test_several_missing_columns_are_all_named(tmp_path):
    path = _write(tmp_path / "l.parquet", pa.table({"item_id": ["i"], "href": ["x"]}))
    with pytest.raises(InputError, match="missing columns 'asset_key', 'store_type'"):
        read_lock(path)


def test_uncastable_column_type_is_named(tmp_path):
    table = lock_table(HTTPS_ROWS)
    table = table.set_column(6, "size_bytes", pa.array(["big"] * 4))
    with pytest.raises(InputError, match="column 'size_bytes' has type string, expected int64"):
        read_lock(_write(tmp_path / "l.parquet", table))


def test_nested_column_type_is_named(tmp_path):
    table = lock_table(HTTPS_ROWS)
    table = table.set_column(5, "key", pa.array([["a"]] * 4))
    with pytest.raises(InputError, match=r"'key' has type list<element: string>, expected string"):
        read_lock(_write(tmp_path / "l.parquet", table))


def test_null_item_id_names_the_row(tmp_path):
    table = lock_table(HTTPS_ROWS)
    schema = table.schema.set(0, pa.field("item_id", pa.string()))
    table = table.cast(schema).set_column(0, "item_id", pa.array(["a", None, "c", "d"]))
    with pytest.raises(InputError, match="row 2: column 'item_id' is empty"):
        read_lock(_write(tmp_path / "l.parquet", table))


def test_unknown_store_type_names_the_row(tmp_path):
    table = lock_table(HTTPS_ROWS)
    table = table.set_column(2, "store_type", pa.array(["https", "https", "ftp", "https"]))
    with pytest.raises(InputError, match="row 3: column 'store_type': unknown store type 'ftp'"):
        read_lock(_write(tmp_path / "l.parquet", table))


def test_repeated_column_is_refused():
    table = pa.table([pa.array(["i"]), pa.array(["a"]), pa.array(["s3"]), pa.array(["b"]),
                      pa.array([None], pa.string()), pa.array(["k"]), pa.array(["k2"])],
                     names=[*LOCK_COLUMNS[:6], "key"])  # fmt: skip
    with pytest.raises(InputError, match="columns 'key' appear more than once"):
        rows_from_table(table)


def test_lock_table_refuses_a_row_without_ids():
    with pytest.raises(InputError, match="lock row 2: item_id and asset_key are required"):
        lock_table([HTTPS_ROWS[0], dataclasses.replace(HTTPS_ROWS[1], asset_key="")])


def test_rows_from_table_names_its_source():
    with pytest.raises(InputError, match=r"^relocated: missing column"):
        rows_from_table(pa.table({"x": [1]}), source="relocated")
