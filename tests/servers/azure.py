"""Loopback Azure Blob Storage on Azurite (npm), and the helpers tests use to arrange containers.

The suite installs Azurite itself on first use (`npm install --prefix .ci/node azurite@3`, Node
being on the machine), so the README's one test command needs nothing else; `azurite-blob` on
PATH is used as it is. Without npm the Azure tests fail, saying how to get it: a store the
suite claims to test must not be skipped quietly. Azurite runs in memory, on a free
port, with its telemetry off (it would otherwise call out of the loopback).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from obstore.store import AzureStore

from . import FAST_RETRY

if TYPE_CHECKING:
    from collections.abc import Iterator

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key: public in its docs, a dummy like moto's "testing".
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
LOCAL_INSTALL = Path(__file__).resolve().parents[2] / ".ci" / "node" / "node_modules" / ".bin"
NPM_INSTALL = [
    "npm", "install", "--prefix", str(LOCAL_INSTALL.parents[1]),
    "--no-audit", "--no-fund", "--loglevel=error", "azurite@3",
]  # fmt: skip
INSTALL_HINT = (
    "Azurite is not installed: run `npm install --prefix .ci/node azurite@3` in the repository "
    "(Node.js needed), or put azurite-blob on PATH"
)


def isolate_azure_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """No developer's Azure account, identity or emulator URL reaches a store the tests build."""
    for name in [n for n in environ if n.startswith(("AZURE_", "AZURITE_", "MSI_", "IDENTITY_"))]:
        environ.pop(name, None)


def azurite_binary() -> str:
    local = LOCAL_INSTALL / "azurite-blob"
    found = str(local) if local.exists() else shutil.which("azurite-blob")
    if found is None and shutil.which("npm"):
        installed = subprocess.run(NPM_INSTALL, capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            raise RuntimeError(f"{INSTALL_HINT}; npm said: {installed.stderr.strip()[-500:]}")
        found = str(local) if local.exists() else None
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    return found


@contextmanager
def azurite() -> Iterator[str]:
    """Azurite's blob service on a free loopback port; yields the account's endpoint URL."""
    with tempfile.TemporaryDirectory(prefix="azurite-") as workdir:
        process = subprocess.Popen(
            [
                azurite_binary(),
                "--blobHost", "127.0.0.1",
                "--blobPort", "0",
                "--inMemoryPersistence",
                "--silent",
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        try:
            yield f"{_listening(process)}/{ACCOUNT}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _listening(process: subprocess.Popen[str]) -> str:
    """The URL Azurite says it listens on (it prints it once the port is open)."""
    assert process.stdout is not None
    said = []
    for line in process.stdout:
        said.append(line)
        if match := re.search(r"listens on (http://\S+)", line):
            return match.group(1).rstrip("/")
    raise RuntimeError(f"Azurite did not start: {''.join(said)[-2000:]}")


def create_container(endpoint: str, name: str) -> None:
    """Create container `name` (obstore has no call for it): one request, signed with the key."""
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    # Azurite serves accounts path-style, so the account appears twice in the signed resource.
    resource = f"/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
    to_sign = "PUT\n" + "\n" * 11 + canonical + resource
    digest = hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{base64.b64encode(digest).decode()}"
    request = urllib.request.Request(
        f"{endpoint}/{name}?restype=container", method="PUT", headers=headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def azure_store(endpoint: str, container: str) -> AzureStore:
    """An obstore client of a container in Azurite, to arrange and check blobs."""
    return AzureStore(
        container,
        account_name=ACCOUNT,
        account_key=KEY,
        endpoint=endpoint,
        client_options={"allow_http": True},
        retry_config=FAST_RETRY,
    )


def account_sas(valid_for: timedelta = timedelta(hours=1)) -> str:
    """An account SAS token for Azurite's account: blobs, read/write/list, over http too."""
    fields = {
        "sv": "2021-08-06",
        "ss": "b",
        "srt": "sco",
        "sp": "rwdlac",
        "se": (datetime.now(UTC) + valid_for).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "spr": "https,http",
    }
    # account, permissions, services, resource types, start, expiry, IP, protocol, version,
    # encryption scope, and a trailing newline
    signed = ("sp", "ss", "srt", "", "se", "", "spr", "sv", "", "")
    to_sign = "\n".join([ACCOUNT, *(fields.get(name, "") for name in signed)])
    digest = hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()
    return urlencode({**fields, "sig": base64.b64encode(digest).decode()})
