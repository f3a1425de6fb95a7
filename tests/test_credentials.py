"""Keys resolve at run time, from named variables or a Prefect Secret block, and never leak."""

from __future__ import annotations

import json

import pytest

from stacflow.tasks.access import Access, Credentials, EnvRef, resolve_credentials
from stacflow.tasks.errors import InputError
from stacflow.tasks.stores import StoreRef, open_store
from tests.servers.s3 import put_object


def test_keys_from_a_prefect_secret_block_reach_the_bucket(
    prefect_harness, moto_endpoint, s3_bucket
):
    from prefect.blocks.system import Secret  # noqa: PLC0415

    secret = json.dumps({"access_key_id": "testing", "secret_access_key": "block-held-secret"})
    Secret(value=secret).save("stacflow-test-keys", overwrite=True)
    put_object(moto_endpoint, s3_bucket, "a/b.bin", b"payload")

    keys = resolve_credentials(Credentials(prefect_secret="stacflow-test-keys"))
    assert (keys.access_key_id, keys.secret_access_key) == ("testing", "block-held-secret")
    assert "block-held-secret" not in repr(keys)
    access = Access(
        endpoint=moto_endpoint,
        allow_http=True,
        credentials=Credentials(prefect_secret="stacflow-test-keys"),
    )
    store = open_store(StoreRef("s3", s3_bucket, "", access))
    with store.open("a/b.bin") as reader:
        assert b"".join(bytes(c) for c in reader.chunks()) == b"payload"
    assert "block-held-secret" not in repr(access) + store.describe("a/b.bin")


def test_a_missing_block_or_variable_is_an_error_naming_it(prefect_harness, monkeypatch):
    with pytest.raises(InputError, match="no Secret block named 'no-such-block'"):
        resolve_credentials(Credentials(prefect_secret="no-such-block"))
    monkeypatch.delenv("UNSET_KEY_VARIABLE", raising=False)
    refs = Credentials(
        access_key_id=EnvRef(env="UNSET_KEY_VARIABLE"), secret_access_key=EnvRef(env="X")
    )
    with pytest.raises(InputError, match="UNSET_KEY_VARIABLE is not set"):
        resolve_credentials(refs)


def test_an_azure_account_key_from_a_prefect_secret_block_reaches_the_container(
    prefect_harness, azurite_endpoint, azure_container
):
    from prefect.blocks.system import Secret  # noqa: PLC0415

    from tests.servers.azure import KEY  # noqa: PLC0415

    Secret(value=json.dumps({"account_key": KEY})).save("stacflow-test-azure", overwrite=True)
    access = Access(
        endpoint=azurite_endpoint,
        allow_http=True,
        credentials=Credentials(prefect_secret="stacflow-test-azure"),
    )
    store = open_store(StoreRef("azure", azure_container, "", access))
    with store.writer("a/b.bin") as writer:
        writer.write(b"payload")
    assert store.head("a/b.bin").size == len(b"payload")


def test_a_block_without_any_store_keys_is_refused_naming_what_it_needs(prefect_harness):
    from prefect.blocks.system import Secret  # noqa: PLC0415

    Secret(value=json.dumps({"password": "hunter2"})).save("stacflow-test-odd", overwrite=True)
    with pytest.raises(InputError) as caught:
        resolve_credentials(Credentials(prefect_secret="stacflow-test-odd"))
    assert "account_key or sas_token (Azure)" in str(caught.value)
    assert "hunter2" not in str(caught.value)
