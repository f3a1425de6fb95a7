"""One target folder shared with stacpkg: its copies are adopted, not copied again.

A folder holds the copies stacpkg's relocate made, and stacpkg's relocated lock describes them
(tests/data/stacpkg/tutorial has the lock stacpkg wrote; a file's ETag names its inode and
mtime, so the copies are made again here and the lock's two facts taken from them, as
obstore 0.9 reports them for stacpkg). `targets.<name>.adopt` names that lock: a copy whose size
and ETag still match (stacpkg's own criterion), and whose bytes hash to the asset's checksum
where one is known, is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from stacflow.tasks.checksum import sha256_multihash
from stacflow.tasks.locks import LOCK_COLUMNS, read_lock, write_lock
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, flip_byte_keeping_mtime, make_package
from tests.stacpkg_refs import LOCAL_ROOT, TUTORIAL

OAM_ORIGIN = "https://oin-hotosm-temp.s3.amazonaws.com"


def _stacpkg_facts(path):
    """A file's ETag and Last-Modified as obstore 0.9's LocalStore reports them to stacpkg."""
    st = path.stat()
    micros = st.st_mtime_ns // 1000
    moment = datetime.fromtimestamp(micros / 1e6, UTC).isoformat()
    return f"{st.st_ino:x}-{micros:x}-{st.st_size:x}", moment


def _stacpkg_lock(reference, root, folder):
    """stacpkg's relocated lock for copies at `root`, its facts those of the files there."""
    table = pq.read_table(reference)
    rows = table.to_pylist()
    for row in rows:
        row["key"] = row["key"].replace(LOCAL_ROOT, str(root))
        row["etag"], row["last_modified"] = _stacpkg_facts(folder / row["key"])
    path = folder / "stacpkg.local.asset-lock.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    return path


def _spec(folder, package, origin_url, adopt, prefix=ORIGIN):
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""name: adopt
package: {package}
sources:
  https:
    prefix: "{prefix}/"
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  local: {{store: {{type: file, root: local-assets}}, adopt: {adopt}}}
validate: [local]
outputs: out
"""
    )
    return spec


def _run(spec):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415 - Prefect only here

    return relocate_package(spec_path=str(spec))


def test_stacpkgs_copies_are_adopted_and_changed_ones_copied_again(
    tmp_path, oam_data, oam_origin, prefect_harness
):
    package = tmp_path / "oam.pkg"
    shutil.copytree(oam_data / "openaerialmap-austria.pkg", package)
    root = tmp_path / "local-assets"
    reference = TUTORIAL / "openaerialmap-austria.local.asset-lock.parquet"
    locked = {(r.item_id, r.asset_key): r for r in read_lock(package / "assets.lock.parquet")}
    for row in pq.read_table(reference).to_pylist():  # the copies stacpkg made, made again
        copy = root / row["key"].removeprefix(LOCAL_ROOT + "/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(
            (oam_data / "origin" / locked[(row["item_id"], row["asset_key"])].key).read_bytes()
        )
    adopt = _stacpkg_lock(reference, root, tmp_path)
    spec = _spec(tmp_path, package, oam_origin.url, adopt, OAM_ORIGIN)

    result = _run(spec)
    assert result["ok"], result["text"]
    assert result["counts"]["relocate:local:skipped-verified"] == 4
    assert oam_origin.count("GET") == 0  # not one source body read
    ours = {
        (r.item_id, r.asset_key): r
        for r in read_lock(tmp_path / "out" / "local.assets.lock.parquet")
    }
    for row in read_lock(adopt):
        kept = ours[(row.item_id, row.asset_key)]
        assert (kept.key, kept.size_bytes, kept.etag) == (row.key, row.size_bytes, row.etag)
        assert kept.file_checksum is None  # nothing to hash against: stacpkg's criterion only

    # A copy rewritten since stacpkg made it (new mtime: a new ETag) is copied again.
    rewritten = root / "631ee6653cdf1c0006b63c5b" / "visual.tif"
    data = rewritten.read_bytes()
    rewritten.unlink()
    rewritten.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    shutil.rmtree(tmp_path / "out")  # no journal: only the adopt lock can prove anything
    result = _run(spec)
    assert result["counts"]["relocate:local:copied"] == 1
    assert result["counts"]["relocate:local:skipped-verified"] == 3
    assert rewritten.read_bytes() == data
    assert oam_origin.count("GET", "/631ee60c3cdf1c0006b63c56/0/631ee60c3cdf1c0006b63c57.tif") == 1


def test_a_known_checksum_must_hold_too(tmp_path, origin, prefect_harness):
    origin.last_modified = LAST_MODIFIED_HTTP
    assets = {
        ("scene-1", "visual"): ("s/1.tif", os.urandom(5000)),
        ("scene-2", "visual"): ("s/2.tif", os.urandom(6000)),
    }
    package = make_package(tmp_path / "pkg", origin.root, assets, checksums=True)
    root = tmp_path / "local-assets"
    rows = []
    for (item_id, asset_key), (_, data) in assets.items():
        copy = root / item_id / f"{asset_key}.tif"
        copy.parent.mkdir(parents=True)
        copy.write_bytes(data)
        etag, modified = _stacpkg_facts(copy)
        rows.append(
            dataclasses.replace(
                next(r for r in read_lock(package / "assets.lock.parquet") if r.item_id == item_id),
                store_type="file",
                store_container=None,
                key=str(copy),
                etag=etag,
                last_modified=modified,
                file_checksum=None,
            )
        )
    adopt = tmp_path / "stacpkg.lock.parquet"
    write_lock(adopt, rows)
    pq.write_table(pq.read_table(adopt).select(list(LOCK_COLUMNS[:9])), adopt)
    flip_byte_keeping_mtime(root / "scene-2" / "visual.tif", 100)  # same size, same ETag

    result = _run(_spec(tmp_path, package, origin.url, adopt))
    assert result["ok"], result["text"]
    assert result["counts"]["relocate:local:skipped-verified"] == 1
    assert result["counts"]["relocate:local:copied"] == 1
    assert (root / "scene-2" / "visual.tif").read_bytes() == assets[("scene-2", "visual")][1]
    kept = next(
        r
        for r in read_lock(tmp_path / "out" / "local.assets.lock.parquet")
        if r.item_id == "scene-1"
    )
    assert kept.file_checksum == sha256_multihash(
        hashlib.sha256(assets[("scene-1", "visual")][1]).digest()
    )
