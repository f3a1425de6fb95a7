"""S3 buckets, on AWS or any S3-compatible server: `{type: s3, bucket, prefix}` and `s3://` rows."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from obstore.store import S3Store as S3Client
from pydantic import Field, field_validator

from stacflow.tasks.access import Access, Credentials, credentials_for, resolve_credentials
from stacflow.tasks.stores.base import (
    DEFAULT_CHUNK_SIZE,
    Backend,
    Capabilities,
    Endpoint,
    ETag,
    StoreRef,
)
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
from stacflow.tasks.stores.s3_uploads import abort_stale_uploads

BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class S3Store(Access):
    """An S3 bucket on AWS or on any S3-compatible endpoint."""

    type: Literal["s3"] = Field(description="An S3 bucket (AWS or S3-compatible).")
    bucket: str = Field(
        pattern=BUCKET_PATTERN,
        description="Bucket name: 3-63 lowercase letters, digits, dots and dashes.",
    )
    prefix: KeyPrefix = Field(
        default="", description="Key prefix inside the bucket (no '.' or '..' segments)."
    )

    @field_validator("endpoint")
    @classmethod
    def _s3_endpoint(cls, value: str | None) -> str | None:
        return service_endpoint(value, "an S3")

    @field_validator("credentials")
    @classmethod
    def _s3_keys(cls, value: Credentials | None) -> Credentials | None:
        return credentials_for(value, "an S3 store")

    @field_validator("bucket", mode="before")
    @classmethod
    def _bucket_name(cls, value: Any) -> Any:
        """S3's naming rules, said in words (the pattern alone reads as noise)."""
        if not isinstance(value, str):
            return value
        if value.startswith("s3://"):
            raise ValueError("write the bucket name without s3:// (a key prefix goes in prefix)")
        rule = "an S3 bucket name has 3-63 lowercase letters, digits, dots and dashes"
        if not re.fullmatch(BUCKET_PATTERN, value):
            raise ValueError(f"{rule}, and starts and ends with a letter or digit; got {value!r}")
        if ".." in value or is_ip_address(value):
            raise ValueError(f"{rule}, without '..', and is not an IP address; got {value!r}")
        return value

    def ref(self, base: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StoreRef:  # noqa: ARG002
        access = Access(**{key: getattr(self, key) for key in Access.model_fields})
        return StoreRef("s3", self.bucket, self.prefix, access, chunk_size)


class S3Bucket(ObjectStore):
    """The one object store whose leftovers a client can see: open multipart uploads."""

    scheme = "s3"

    def __init__(self, ref: StoreRef) -> None:
        super().__init__(ref, _client(ref))

    def endpoint_url(self) -> str:
        return self.ref.access.endpoint or (
            f"https://s3.{self.ref.access.region or 'us-east-1'}.amazonaws.com"
        )

    def sweep(self, paths: Iterable[str]) -> int:
        """Abort the multipart uploads a killed run left open on `paths`, begun before now."""
        return abort_stale_uploads(self.ref, paths, datetime.now(UTC))


def _client(ref: StoreRef) -> S3Client:
    access = ref.access
    config: dict[str, Any] = {"region": access.region or "us-east-1"}
    if access.endpoint:
        config["endpoint"] = access.endpoint
        config["virtual_hosted_style_request"] = False
    if access.anonymous:
        config["skip_signature"] = True
    if access.requester_pays:
        config["request_payer"] = True
    keys = resolve_credentials(access.credentials)
    if keys and keys.access_key_id:
        config["access_key_id"] = keys.access_key_id
        config["secret_access_key"] = keys.secret_access_key
        if keys.session_token:
            config["token"] = keys.session_token
    return S3Client(
        ref.container,
        prefix=key_prefix(ref),
        client_options=client_options(access),
        retry_config=RETRY_CONFIG,
        **config,
    )


BACKEND = Backend(
    name="s3",
    store_types=("s3",),
    capabilities=Capabilities(
        writable=True,
        listing=True,
        leftovers="multipart uploads",
        etag=ETag.CONTENT_MD5,
        endpoint=Endpoint.SERVICE,
        buffers_per_asset=BUFFERS_PER_ASSET,
        max_key_bytes=MAX_KEY_BYTES,
    ),
    build=S3Bucket,
    settings=S3Store,
)
