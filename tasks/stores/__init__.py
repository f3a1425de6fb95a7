"""The store boundary: one module per backend, and the names every caller imports from here."""

from stacflow.tasks.stores.base import (
    FACT_NAMES,
    Chunk,
    Facts,
    Reader,
    Store,
    StoreRef,
    Writer,
    _open_cached,
    iso,
    open_store,
    status_error,
)

__all__ = [
    "FACT_NAMES",
    "Chunk",
    "Facts",
    "Reader",
    "Store",
    "StoreRef",
    "Writer",
    "_open_cached",
    "iso",
    "open_store",
    "status_error",
]
