"""Loopback S3 on moto's server mode, and the helpers tests use to arrange buckets in it.

obstore is a native (Rust) client, so moto's in-process `mock_aws()` cannot intercept it; the
tests talk to a real socket instead. boto3 arranges state (ACLs, multipart listings) that obstore
cannot express; obstore is what the tests exercise.
"""

from __future__ import annotations

import functools
import os
import urllib.request
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from obstore.store import S3Store

from . import FAST_RETRY

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REGION = "us-east-1"
KEY_ID = "testing"
SECRET = "testing"  # moto accepts any key; this is the conventional dummy

# Variables that would point obstore or boto3 at a real account, profile or endpoint.
AWS_LEAKS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_BUCKET",
    "AWS_BUCKET_NAME",
)


def isolate_aws_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Make every S3 client in the process see dummy credentials and no instance metadata.

    obstore reads `AWS_*` variables when it builds a store, so this must run before any store
    is built (conftest does it at import).
    """
    for name in AWS_LEAKS:
        environ.pop(name, None)
    environ.update(
        {
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - 0.3 s, only when S3 is used

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_store(endpoint: str, bucket: str, **kw: Any) -> S3Store:
    """An obstore S3Store on the loopback server, with the product's path-style settings.

    Pass `skip_signature=True` for an anonymous client, or any other S3Config key to override.
    """
    config: dict[str, Any] = {
        "endpoint": endpoint,
        "region": REGION,
        "access_key_id": KEY_ID,
        "secret_access_key": SECRET,
        "virtual_hosted_style_request": False,
    }
    client_options = {"allow_http": True, **kw.pop("client_options", {})}
    retry_config = kw.pop("retry_config", FAST_RETRY)
    return S3Store(
        bucket, client_options=client_options, retry_config=retry_config, **{**config, **kw}
    )


def create_bucket(endpoint: str, name: str) -> None:
    """Create `name` (moto ignores auth on this unsigned PUT); creating it twice is fine."""
    request = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def put_object(endpoint: str, bucket: str, key: str, data: bytes, *, public: bool = False) -> str:
    """Store `data` single-part (so its ETag is the MD5) and return the ETag.

    `public=True` grants public-read, without which moto answers 403 to anonymous reads.
    """
    extra = {"ACL": "public-read"} if public else {}
    response = client(endpoint).put_object(Bucket=bucket, Key=key, Body=data, **extra)
    return response["ETag"]


def mirror(endpoint: str, bucket: str, root: Path, *, public: bool = False) -> list[str]:
    """Make `bucket` hold exactly the files under `root`, keyed by relative path; return the keys.

    Stray keys from an earlier test are deleted, so a shared bucket starts each test the same.
    """
    create_bucket(endpoint, bucket)
    keys = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    s3 = client(endpoint)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if obj["Key"] not in keys:
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
    for key in keys:
        put_object(endpoint, bucket, key, (root / key).read_bytes(), public=public)
    return keys


def list_multipart_uploads(endpoint: str, bucket: str) -> list[dict[str, Any]]:
    """Multipart uploads still open in `bucket`: an aborted copy must leave none behind."""
    return client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def reset(endpoint: str) -> None:
    """Drop every bucket and object moto holds (it keeps them all in RAM)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@functools.cache
def client(endpoint: str) -> Any:
    import boto3  # noqa: PLC0415 - boto3 costs ~0.3 s; only tests that arrange S3 state pay it

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
