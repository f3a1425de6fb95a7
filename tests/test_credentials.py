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
