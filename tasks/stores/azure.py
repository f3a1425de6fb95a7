"""Azure Blob Storage containers: `az://` rows, and `{type: azure, container, prefix}` settings.

Built by obstore as S3 is; the storage account comes from the environment
(`AZURE_STORAGE_ACCOUNT_NAME`). Not yet offered as a target: no test writes to Azure until the
suite starts an emulator (issue 12, item 3).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from obstore.store import AzureStore as AzureClient
from pydantic import Field, field_validator

from stacflow.tasks.access import Access
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

    def ref(self, base: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StoreRef:  # noqa: ARG002
        access = Access(**{key: getattr(self, key) for key in Access.model_fields})
        return StoreRef("azure", self.container, self.prefix, access, chunk_size)


class AzureContainer(ObjectStore):
    scheme = "az"

    def __init__(self, ref: StoreRef) -> None:
        super().__init__(ref, _client(ref))


def _client(ref: StoreRef) -> AzureClient:
    return AzureClient(
        ref.container,
        prefix=key_prefix(ref),
        client_options=client_options(ref.access),
        retry_config=RETRY_CONFIG,
    )


BACKEND = Backend(
    name="azure",
    store_types=("az",),
    capabilities=Capabilities(
        writable=False,
        listing=True,
        endpoint=Endpoint.SERVICE,
        buffers_per_asset=BUFFERS_PER_ASSET,
        max_key_bytes=MAX_KEY_BYTES,
    ),
    build=AzureContainer,
    settings=AzureStore,
)
