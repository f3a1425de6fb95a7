"""Azure Blob Storage containers: `az://` rows, and `{type: azure, container, account, prefix}`.

Built by obstore as S3 is. A lock row holds the container; the account is in its
`store_endpoint_url` (`https://ACCOUNT.blob.core.windows.net`, or an emulator's
`http://HOST:PORT/ACCOUNT`), which a target always writes, so a reader of the lock finds it.
Keys come from the spec's `credentials` (an account key or a SAS token, named as `{env: VAR}` or
in a Prefect Secret), else from obstore's Azure environment (`AZURE_STORAGE_*`, managed identity).
Tested against Azurite (tests/servers/azure.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from obstore.store import AzureStore as AzureClient
from pydantic import Field, field_validator, model_validator

from stacflow.tasks.access import Access, Credentials, credentials_for, resolve_credentials
from stacflow.tasks.stores.base import DEFAULT_CHUNK_SIZE, Backend, Capabilities, Endpoint, StoreRef
from stacflow.tasks.stores.object_store import (
    BUFFERS_PER_ASSET,
    MAX_KEY_BYTES,
    RETRY_CONFIG,
    KeyPrefix,
    ObjectStore,
    client_options,
    key_prefix,
    service_endpoint,
)

CONTAINER_PATTERN = r"^[a-z0-9](-?[a-z0-9])+$"
A_STORE = "an Azure container"


class AzureStore(Access):
    """An Azure Blob Storage container."""

    type: Literal["azure"] = Field(description="An Azure Blob Storage container.")
    container: str = Field(
        pattern=CONTAINER_PATTERN,
        min_length=3,
        max_length=63,
        description="Container name: 3-63 lowercase letters, digits and single dashes.",
    )
    prefix: KeyPrefix = Field(
        default="", description="Blob name prefix inside the container (no '.' or '..' segments)."
    )

    @field_validator("endpoint")
    @classmethod
    def _azure_endpoint(cls, value: str | None) -> str | None:
        return service_endpoint(value, "an Azure")

    @field_validator("credentials")
    @classmethod
    def _azure_keys(cls, value: Credentials | None) -> Credentials | None:
        return credentials_for(value, A_STORE)

    @field_validator("container", mode="before")
    @classmethod
    def _container_name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.startswith("az://"):
            raise ValueError("write the container name without az:// (a prefix goes in prefix)")
        if not (3 <= len(value) <= 63 and re.fullmatch(CONTAINER_PATTERN, value)):
            raise ValueError(
                "an Azure container name has 3-63 lowercase letters, digits and dashes, starts "
                f"and ends with a letter or digit, and has no '--'; got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _an_account(self) -> AzureStore:
        """The lock rows a target writes must say which account holds the container."""
        if self.account is None and account_of(self.endpoint) is None:
            raise ValueError(
                "name the storage account: account: NAME, or an endpoint that holds it "
                "(https://NAME.blob.core.windows.net, or an emulator's http://HOST:PORT/NAME)"
            )
        return self

    def ref(self, base: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StoreRef:  # noqa: ARG002
        access = Access(**{key: getattr(self, key) for key in Access.model_fields})
        if access.endpoint is None:
            endpoint = f"https://{self.account}.blob.core.windows.net"
            access = access.model_copy(update={"endpoint": endpoint})
        return StoreRef("azure", self.container, self.prefix, access, chunk_size)


class AzureContainer(ObjectStore):
    scheme = "az"

    def __init__(self, ref: StoreRef) -> None:
        super().__init__(ref, _client(ref))


def account_of(endpoint: str | None) -> str | None:
    """The storage account an endpoint names: its host's first label on Azure's own domains
    (`NAME.blob.core.windows.net`), else its path's first segment (an emulator's)."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ".blob." in host:
        return host.split(".", 1)[0]
    first = parts.path.strip("/").split("/", 1)[0]
    return first or None


def _client(ref: StoreRef) -> AzureClient:
    access = ref.access
    config: dict[str, Any] = {}
    account = access.account or account_of(access.endpoint)
    if account:
        config["account_name"] = account
    if access.endpoint:
        config["endpoint"] = access.endpoint.rstrip("/")
    if access.anonymous:
        config["skip_signature"] = True
    keys = resolve_credentials(access.credentials)
    if keys and keys.account_key:
        config["account_key"] = keys.account_key
    elif keys and keys.sas_token:
        config["sas_key"] = keys.sas_token.lstrip("?")
    return AzureClient(
        ref.container,
        prefix=key_prefix(ref),
        client_options=client_options(access),
        retry_config=RETRY_CONFIG,
        **config,
    )


BACKEND = Backend(
    name="azure",
    store_types=("az",),
    capabilities=Capabilities(
        writable=True,
        listing=True,
        endpoint=Endpoint.SERVICE,
        buffers_per_asset=BUFFERS_PER_ASSET,
        max_key_bytes=MAX_KEY_BYTES,
    ),
    build=AzureContainer,
    settings=AzureStore,
)
