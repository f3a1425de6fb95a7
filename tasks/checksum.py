"""SHA-256 as STAC `file:checksum` holds it: lowercase hex multihash `<0x12><0x20><digest>`."""

from __future__ import annotations

from typing import TypeGuard

SHA256_MULTIHASH_PREFIX = "1220"


def sha256_multihash(digest: bytes) -> str:
    """A raw SHA-256 digest as the file extension and the lock's `file_checksum` hold it."""
    return SHA256_MULTIHASH_PREFIX + digest.hex()


def is_sha256_multihash(value: str | None) -> TypeGuard[str]:
    """True for a checksum stacflow can verify; other multihash codes are kept but not compared."""
    return value is not None and value.startswith(SHA256_MULTIHASH_PREFIX) and len(value) == 68
