"""Google Cloud Storage buckets: `gs://` rows, and `{type: gcs, bucket, prefix}` settings.

Built by obstore as S3 is. Keys come from the spec's `credentials` (an OAuth bearer token or a
service-account key, named as `{env: VAR}` or in a Prefect Secret), else from obstore's Google
environment (application default credentials). `endpoint` is the service's base URL (an
emulator's). Read as a source against fake-gcs-server (tests/servers/gcs.py); not offered as a
target, because no emulator installable here takes obstore's writes (docs/stores.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from obstore.store import GCSStore as GCSClient
from pydantic import Field, field_validator

from stacflow.tasks.access import Access, Credentials, credentials_for, resolve_credentials
from stacflow.tasks.stores.base import DEFAULT_CHUNK_SIZE, Backend, Capabilities, Endpoint, StoreRef
from stacflow.tasks.stores.object_store import (
    BUFFERS_PER_ASSET,
    MAX_KEY_BYTES,
    RETRY_CONFIG,
    KeyPrefix,
    ObjectStore,
    client_options,
    is_ip_address,
    key_prefix,
    service_endpoint,
)

BUCKET_PATTERN = r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$"


class GcsStore(Access):
    """A Google Cloud Storage bucket."""

    type: Literal["gcs"] = Field(description="A Google Cloud Storage bucket.")
    bucket: str = Field(
        pattern=BUCKET_PATTERN,
        description="Bucket name: 3-63 lowercase letters, digits, dots, dashes and underscores.",
    )
    prefix: KeyPrefix = Field(
        default="", description="Key prefix inside the bucket (no '.' or '..' segments)."
    )

    @field_validator("endpoint")
    @classmethod
    def _gcs_endpoint(cls, value: str | None) -> str | None:
        return service_endpoint(value, "a GCS")

    @field_validator("credentials")
    @classmethod
    def _gcs_keys(cls, value: Credentials | None) -> Credentials | None:
        return credentials_for(value, "a GCS bucket")

    @field_validator("bucket", mode="before")
    @classmethod
    def _bucket_name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.startswith("gs://"):
            raise ValueError("write the bucket name without gs:// (a key prefix goes in prefix)")
        if not re.fullmatch(BUCKET_PATTERN, value) or is_ip_address(value):
            raise ValueError(
                "a GCS bucket name has 3-63 lowercase letters, digits, dots, dashes and "
                f"underscores, starts and ends with a letter or digit, and is not an IP address; "
                f"got {value!r}"
            )
        return value

    def ref(self, base: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StoreRef:  # noqa: ARG002
        access = Access(**{key: getattr(self, key) for key in Access.model_fields})
        return StoreRef("gcs", self.bucket, self.prefix, access, chunk_size)


class GcsBucket(ObjectStore):
    scheme = "gs"

    def __init__(self, ref: StoreRef) -> None:
        super().__init__(ref, _client(ref))


def _client(ref: StoreRef) -> GCSClient:
    access = ref.access
    config: dict[str, Any] = {}
    if access.endpoint:
        config["base_url"] = access.endpoint.rstrip("/")
    if access.anonymous:
        config["skip_signature"] = True
    keys = resolve_credentials(access.credentials)
    if keys and keys.bearer_token:
        config["bearer_token"] = keys.bearer_token
    elif keys and keys.service_account_key:
        config["service_account_key"] = keys.service_account_key
    return GCSClient(
        ref.container,
        prefix=key_prefix(ref),
        client_options=client_options(access),
        retry_config=RETRY_CONFIG,
        **config,
    )


BACKEND = Backend(
    name="gcs",
    store_types=("gs",),
    capabilities=Capabilities(
        writable=False,
        listing=True,
        endpoint=Endpoint.SERVICE,
        buffers_per_asset=BUFFERS_PER_ASSET,
        max_key_bytes=MAX_KEY_BYTES,
    ),
    build=GcsBucket,
    settings=GcsStore,
)
