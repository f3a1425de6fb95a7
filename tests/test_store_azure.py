"""Azure Blob Storage for real: Azurite started by the suite, as a target and as a source.

Both end to end through `stacflow run`: the oam-austria bytes over the loopback origin into a
container, then that container's lock as the source of a copy into a folder. Azurite cannot
show what a killed block upload leaves (uncommitted blocks: Azure drops them after a week, and
no call lists them across a container), so Azure declares no leftovers to sweep; its ETags are
opaque version tags (`"0x8D..."`), which drift checks compare as they are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import obstore
import pytest
from pydantic import ValidationError

from stacflow.flows.cli import main
from stacflow.tasks.access import Access, Credentials
from stacflow.tasks.errors import AssetError, Reach
from stacflow.tasks.locks import read_lock
from stacflow.tasks.stores import StoreRef, open_store
from stacflow.tasks.stores.azure import AzureStore, account_of
from tests.servers.azure import ACCOUNT, KEY, account_sas, azure_store

OAM_ORIGIN = "https://oin-hotosm-temp.s3.amazonaws.com/"
KEY_VARIABLE = "STACFLOW_TEST_AZURE_KEY"


@pytest.fixture
def account_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    return KEY


def origin_bytes(oam_data: Path, href: str) -> bytes:
    return (oam_data / "origin" / href.removeprefix(OAM_ORIGIN)).read_bytes()


def package_hrefs(oam_data: Path) -> dict[tuple[str, str], str]:
    lock = oam_data / "openaerialmap-austria.pkg" / "assets.lock.parquet"
    return {(r.item_id, r.asset_key): r.href for r in read_lock(lock)}


def copy_into_azure(
    folder: Path, oam_data: Path, origin_url: str, endpoint: str, container: str
) -> Path:
    """A spec that copies the oam-austria package from the origin into `container`."""
    spec = folder / "to-azure.yaml"
    spec.write_text(
        f"""
name: to-azure
package: {oam_data / "openaerialmap-austria.pkg"}
sources:
  https:
    prefix: {OAM_ORIGIN}
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  blob:
    store:
      type: azure
      container: {container}
      prefix: mirrors/oam
      endpoint: {endpoint}
      allow_http: true
      credentials: {{account_key: {{env: {KEY_VARIABLE}}}}}
validate: {{locks: [https, blob], checksums: true}}
outputs: out
"""
    )
    return spec


def test_a_container_as_target_through_stacflow_run(
    tmp_path, prefect_harness, oam_data, oam_origin, azurite_endpoint, azure_container,
    account_key, capsys,
):  # fmt: skip
    spec = copy_into_azure(tmp_path, oam_data, oam_origin.url, azurite_endpoint, azure_container)

    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"relocate → blob +4 copied", out)
    assert re.search(r"validate blob +4 valid", out)
    rows = read_lock(tmp_path / "out" / "blob.assets.lock.parquet")
    assert len(rows) == 4
    hrefs = package_hrefs(oam_data)
    client = azure_store(azurite_endpoint, azure_container)
    for row in rows:
        assert (row.store_type, row.store_container) == ("az", azure_container)
        assert row.store_endpoint_url == azurite_endpoint
        assert row.key.startswith(f"mirrors/oam/{row.item_id}/")
        assert row.href == f"az://{azure_container}/{row.key}"
        body = bytes(obstore.get(client, row.key).bytes())
        assert body == origin_bytes(oam_data, hrefs[(row.item_id, row.asset_key)])
        assert row.size_bytes == len(body)
        assert row.etag == obstore.head(client, row.key)["e_tag"]
    assert KEY not in out
    for written in (tmp_path / "out").rglob("*"):
        assert not written.is_file() or KEY.encode() not in written.read_bytes(), written

    assert main(["run", str(spec)]) == 0
    again = capsys.readouterr().out
    assert re.search(r"relocate → blob +4 skipped-verified", again)
    assert "copied" not in again


def test_a_lock_in_azure_as_the_source_through_stacflow_run(
    tmp_path, prefect_harness, oam_data, oam_origin, azurite_endpoint, azure_container,
    account_key, capsys,
):  # fmt: skip
    to_azure = copy_into_azure(
        tmp_path, oam_data, oam_origin.url, azurite_endpoint, azure_container
    )
    assert main(["run", str(to_azure)]) == 0
    oam_origin.clear()
    spec = tmp_path / "from-azure.yaml"
    spec.write_text(
        f"""
name: from-azure
package: {oam_data / "openaerialmap-austria.pkg"}
sources:
  https: {{prefix: {OAM_ORIGIN}}}
  blob:
    lock: out/blob.assets.lock.parquet
    store: {{allow_http: true, credentials: {{account_key: {{env: {KEY_VARIABLE}}}}}}}
targets:
  local: {{store: {{type: file, root: copies}}}}
relocate: {{source: blob}}
validate: {{locks: [blob, local], checksums: true}}
outputs: out-local
"""
    )
    capsys.readouterr()

    assert main(["run", str(spec)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"relocate → local +4 copied", out)
    assert oam_origin.count("GET") == 0  # every byte came from the container
    hrefs = package_hrefs(oam_data)
    rows = read_lock(tmp_path / "out-local" / "local.assets.lock.parquet")
    assert len(rows) == 4
    for row in rows:
        body = Path(row.key).read_bytes()
        assert body == origin_bytes(oam_data, hrefs[(row.item_id, row.asset_key)])


def test_a_wrong_key_is_access_denied_naming_the_blob_not_the_key(
    azurite_endpoint, azure_container, monkeypatch
):
    monkeypatch.setenv(KEY_VARIABLE, KEY[:-4] + "AAA=")
    access = Access(
        endpoint=azurite_endpoint,
        allow_http=True,
        credentials=Credentials.model_validate({"account_key": {"env": KEY_VARIABLE}}),
    )
    store = open_store(StoreRef("azure", azure_container, "pre", access))
    with pytest.raises(AssetError) as caught:
        store.head("a.tif")
    assert caught.value.message == f"access denied: az://{azure_container}/pre/a.tif"
    assert "AAA=" not in str(caught.value)


def test_a_sas_token_reads_and_writes_and_never_shows(
    azurite_endpoint, azure_container, monkeypatch
):
    token = account_sas()
    monkeypatch.setenv("STACFLOW_TEST_AZURE_SAS", "?" + token)
    access = Access(
        endpoint=azurite_endpoint,
        allow_http=True,
        credentials=Credentials.model_validate({"sas_token": {"env": "STACFLOW_TEST_AZURE_SAS"}}),
    )
    store = open_store(StoreRef("azure", azure_container, "sas", access))
    with store.writer("a.tif") as writer:
        writer.write(b"signed bytes")
    with store.open("a.tif") as reader:
        assert b"".join(bytes(c) for c in reader.chunks()) == b"signed bytes"
    with pytest.raises(AssetError) as caught:
        store.head("missing.tif")
    assert caught.value.message == f"not found: az://{azure_container}/sas/missing.tif"
    signature = token.rsplit("sig=", 1)[1]
    assert signature not in str(caught.value)


def test_a_missing_container_fails_the_whole_store(azurite_endpoint, account_key):
    access = Access(
        endpoint=azurite_endpoint,
        allow_http=True,
        credentials=Credentials.model_validate({"account_key": {"env": KEY_VARIABLE}}),
    )
    store = open_store(StoreRef("azure", "no-such-container", "", access))
    with pytest.raises(AssetError) as caught, store.writer("k.tif") as writer:
        writer.write(b"x")
    assert caught.value.reach is Reach.STORE
    assert caught.value.message.startswith("container not found (ContainerNotFound)")


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        (
            {"credentials": {"account_key": "Eby8vdM02x"}},
            "a literal secret is not allowed in a spec",
        ),
        (
            {"credentials": {"access_key_id": {"env": "A"}, "secret_access_key": {"env": "B"}}},
            "an Azure container signs with account_key or sas_token; got access_key_id",
        ),
        ({"account": None, "endpoint": None}, "name the storage account"),
        ({"account": "Not_An_Account"}, "String should match pattern"),
    ],
)
def test_azure_target_settings_refuse_what_cannot_work_in_words(store, expected):
    data = {"type": "azure", "container": "stacflow", "account": "acct", **store}
    with pytest.raises(ValidationError) as caught:
        AzureStore.model_validate(data)
    message = " ".join(error["msg"] for error in caught.value.errors())
    assert expected in message
    assert "Eby8vdM02x" not in message


def test_a_target_without_an_endpoint_records_the_account_in_its_rows():
    settings = AzureStore.model_validate({"type": "azure", "container": "c1c", "account": "acct"})
    ref = settings.ref(Path("/ignored"))
    assert ref.access.endpoint == "https://acct.blob.core.windows.net"
    assert account_of(ref.access.endpoint) == "acct"
    assert account_of(f"http://127.0.0.1:10000/{ACCOUNT}") == ACCOUNT
    assert account_of(None) is None


def test_credentials_name_one_set_of_keys():
    with pytest.raises(ValidationError) as caught:
        Credentials.model_validate({"account_key": {"env": "K"}, "sas_token": {"env": "S"}})
    assert "name one set of keys" in str(caught.value)
    assert json.loads(Credentials(sas_token={"env": "S"}).model_dump_json())["sas_token"] == {
        "env": "S"
    }
