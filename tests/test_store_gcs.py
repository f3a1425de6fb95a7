"""Google Cloud Storage for real, as far as an emulator installable here goes: fake-gcs-server.

A lock whose rows live in a bucket is the source of a copy, end to end through `stacflow run`.
GCS is not a target: fake-gcs-server refuses obstore's writes (XML API PUT, `400 invalid
uploadType`), and `gcp-storage-emulator` (PyPI) answers obstore's XML API with 501 throughout,
reads included. The last test pins the refusal down: when it fails, the emulator has learned to
take writes, and GCS can be declared writable with a target test like Azure's.
"""

from __future__ import annotations

import re
from pathlib import Path

import obstore
import pytest
from pydantic import ValidationError

from stacflow.flows.cli import main
from stacflow.tasks.access import Access, Credentials
from stacflow.tasks.errors import AssetError
from stacflow.tasks.locks import LockRow, read_lock, write_lock
from stacflow.tasks.stores import StoreRef, open_store
from stacflow.tasks.stores.base import iso
from stacflow.tasks.stores.gcs import GcsStore
from tests.servers.gcs import TOKEN, gcs_store, upload

OAM_ORIGIN = "https://oin-hotosm-temp.s3.amazonaws.com/"
TOKEN_VARIABLE = "STACFLOW_TEST_GCS_TOKEN"


@pytest.fixture
def gcs_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    return TOKEN


def gcs_lock(oam_data: Path, url: str, bucket: str, path: Path) -> list[LockRow]:
    """The oam-austria S3 lock's objects, put in `bucket`, locked with what GCS says of them."""
    client = gcs_store(url, bucket)
    rows = []
    for row in read_lock(oam_data / "openaerialmap-austria.s3.assets.lock.parquet"):
        assert row.key is not None
        upload(url, bucket, row.key, (oam_data / "origin" / row.key).read_bytes())
        meta = obstore.head(client, row.key)
        rows.append(
            LockRow(
                row.item_id, row.asset_key, "gs", bucket, url, row.key,
                size_bytes=meta["size"],
                etag=meta["e_tag"],
                last_modified=iso(meta["last_modified"]),
            )
        )  # fmt: skip
    write_lock(path, rows)
    return rows


def test_a_lock_in_gcs_as_the_source_through_stacflow_run(
    tmp_path, prefect_harness, oam_data, fake_gcs_url, gcs_bucket, gcs_token, capsys
):
    locked = gcs_lock(oam_data, fake_gcs_url, gcs_bucket, tmp_path / "gcs.assets.lock.parquet")
    spec = tmp_path / "from-gcs.yaml"
    spec.write_text(
        f"""
name: from-gcs
package: {oam_data / "openaerialmap-austria.pkg"}
sources:
  https: {{prefix: {OAM_ORIGIN}}}
  gcs:
    lock: gcs.assets.lock.parquet
    store: {{allow_http: true, credentials: {{bearer_token: {{env: {TOKEN_VARIABLE}}}}}}}
targets:
  local: {{store: {{type: file, root: copies}}, layout: source-key}}
relocate: {{source: gcs}}
validate: {{locks: [gcs, local], checksums: true}}
outputs: out
"""
    )

    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"relocate → local +4 copied", out)
    assert re.search(r"validate gcs +4 valid", out)
    rows = read_lock(tmp_path / "out" / "local.assets.lock.parquet")
    assert len(rows) == len(locked) == 4
    for row in rows:
        relative = Path(row.key).relative_to(tmp_path / "copies").as_posix()
        assert Path(row.key).read_bytes() == (oam_data / "origin" / relative).read_bytes()
    assert TOKEN not in out


def test_a_changed_object_is_drift_not_a_copy(
    tmp_path, fake_gcs_url, gcs_bucket, gcs_token, oam_data
):
    """The lock's ETag is compared as GCS reports it: a rewritten object is told apart."""
    locked = gcs_lock(oam_data, fake_gcs_url, gcs_bucket, tmp_path / "lock.parquet")
    upload(fake_gcs_url, gcs_bucket, locked[0].key or "", b"rewritten")
    access = Access(
        allow_http=True,
        endpoint=fake_gcs_url,
        credentials=Credentials.model_validate({"bearer_token": {"env": TOKEN_VARIABLE}}),
    )
    store = open_store(StoreRef("gcs", gcs_bucket, "", access))
    facts = store.head(locked[0].key or "")
    assert facts.size == len(b"rewritten")
    assert facts.etag != locked[0].etag
    assert store.head(locked[1].key or "").etag == locked[1].etag


def test_the_emulator_refuses_obstores_writes_so_gcs_is_no_target(
    fake_gcs_url, gcs_bucket, gcs_token
):
    access = Access(
        allow_http=True,
        endpoint=fake_gcs_url,
        credentials=Credentials.model_validate({"bearer_token": {"env": TOKEN_VARIABLE}}),
    )
    store = open_store(StoreRef("gcs", gcs_bucket, "", access))
    with pytest.raises(AssetError) as caught, store.writer("k.tif") as writer:
        writer.write(b"bytes")
    assert "invalid uploadType" in caught.value.message


def test_gcs_settings_take_only_google_keys():
    with pytest.raises(ValidationError) as caught:
        GcsStore.model_validate(
            {"type": "gcs", "bucket": "bkt", "credentials": {"account_key": {"env": "K"}}}
        )
    message = " ".join(error["msg"] for error in caught.value.errors())
    assert "a GCS bucket signs with bearer_token or service_account_key; got account_key" in message
