"""The store boundary: every byte a run reads or keeps goes through a `Store` opened here.

Each store type is one module of this package that declares a `BACKEND`: its name, the lock rows
it reads, its capabilities, its client and, if it can be a target, the model of a target's
`store:` mapping. They are registered below, in one place; elsewhere, code asks a store what it
can do (`capabilities`), never what it is called. Adding a store type: docs/stores.md.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from stacflow.tasks.errors import AssetError, ErrorClass
from stacflow.tasks.stores import azure, file, gcs, http, s3
from stacflow.tasks.stores.base import (
    FACT_NAMES,
    Backend,
    Capabilities,
    Chunk,
    Endpoint,
    ETag,
    Facts,
    Reader,
    Store,
    StoreRef,
    TargetSettings,
    Writer,
    iso,
    status_error,
)

BACKENDS: Mapping[str, Backend] = MappingProxyType(
    {b.name: b for b in (file.BACKEND, http.BACKEND, s3.BACKEND, gcs.BACKEND, azure.BACKEND)}
)
_BY_STORE_TYPE = {store_type: b for b in BACKENDS.values() for store_type in b.store_types}


def backend(kind: str) -> Backend:
    """The backend named `kind` (a `StoreRef.kind`, or a target's `store.type`)."""
    try:
        return BACKENDS[kind]
    except KeyError:
        raise AssetError(ErrorClass.PERMANENT, f"unsupported store type {kind!r}") from None


def backend_for(store_type: str | None) -> Backend | None:
    """The backend that reads lock rows of this `store_type`; None for a row without one."""
    return _BY_STORE_TYPE.get(store_type or "")


def capabilities(ref: StoreRef) -> Capabilities:
    return backend(ref.kind).capabilities


def open_store(ref: StoreRef) -> Store:
    """The client for a ref, built once per process: clients are costly and thread-safe."""
    return _open_cached(ref)


@functools.lru_cache(maxsize=256)
def _open_cached(ref: StoreRef) -> Store:
    return backend(ref.kind).build(ref)


if TYPE_CHECKING:
    TargetStore = TargetSettings
else:
    TargetStore = Annotated[
        Union[tuple(b.settings for b in BACKENDS.values() if b.capabilities.writable)],  # noqa: UP007 - built from the registry
        Field(discriminator="type"),
    ]
"""A target's `store:` mapping: one settings model per writable backend, told apart by `type`."""

__all__ = [
    "BACKENDS",
    "FACT_NAMES",
    "Backend",
    "Capabilities",
    "Chunk",
    "ETag",
    "Endpoint",
    "Facts",
    "Reader",
    "Store",
    "StoreRef",
    "TargetSettings",
    "TargetStore",
    "Writer",
    "backend",
    "backend_for",
    "capabilities",
    "iso",
    "open_store",
    "status_error",
]
