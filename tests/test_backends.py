"""The store registry: every lock row has a backend, and code asks capabilities, not names.

The last test registers a store type the product does not have (obstore's in-memory store) and
copies into it with the real byte path: nothing outside its declaration had to learn its name.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

import obstore
import pytest
from obstore.store import MemoryStore
from pydantic import ValidationError

from stacflow.flows.spec import Spec
from stacflow.tasks import stores
from stacflow.tasks.access import Access
from stacflow.tasks.errors import AssetError
from stacflow.tasks.locations import STORE_TYPES, Location
from stacflow.tasks.locks import LockRow
from stacflow.tasks.moves import Leg, Move
from stacflow.tasks.relocate import CopyPolicy, relocate_batch
from stacflow.tasks.report import Result
from stacflow.tasks.stores import BACKENDS, Backend, Capabilities, StoreRef, backend_for
from stacflow.tasks.stores.azure import AzureStore
from stacflow.tasks.stores.gcs import GcsStore
from stacflow.tasks.stores.object_store import ObjectStore
from stacflow.tasks.survey import with_listings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "stores.md"


def test_every_lock_store_type_is_read_by_exactly_one_backend():
    readers = {t: [b.name for b in BACKENDS.values() if t in b.store_types] for t in STORE_TYPES}
    assert readers == {
        "file": ["file"],
        "s3": ["s3"],
        "gs": ["gcs"],
        "az": ["azure"],
        "http": ["http"],
        "https": ["http"],
    }
    assert backend_for(None) is None
    assert backend_for("") is None


def test_each_backend_declares_what_it_is():
    for name, backend in BACKENDS.items():
        assert backend.name == name
        assert backend.store_types, name
        if backend.capabilities.writable:
            assert backend.settings is not None, f"{name} is writable but has no target settings"


def test_the_spec_offers_exactly_the_writable_backends_as_target_types():
    spec = {"name": "n", "package": "p", "sources": {"a": {}}, "outputs": "o"}
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate({**spec, "targets": {"t": {"store": {"type": "gcs", "bucket": "b"}}}})
    writable = [f"'{n}'" for n, b in BACKENDS.items() if b.capabilities.writable]
    assert f"expected tags: {', '.join(writable)}" in str(caught.value)
    assert writable == ["'file'", "'s3'", "'azure'"]


def test_an_unknown_store_type_is_a_permanent_error_naming_it():
    with pytest.raises(AssetError) as caught:
        stores.capabilities(StoreRef("ftp", "ftp://example"))
    assert caught.value.message == "unsupported store type 'ftp'"


@pytest.mark.parametrize(
    ("settings", "ref"),
    [
        (
            GcsStore(type="gcs", bucket="my_bucket.v2", prefix="/a//b/"),
            StoreRef("gcs", "my_bucket.v2", "a/b", Access()),
        ),
        (
            AzureStore(type="azure", container="my-container", account="acct", prefix="x/"),
            StoreRef(
                "azure",
                "my-container",
                "x",
                Access(account="acct", endpoint="https://acct.blob.core.windows.net"),
            ),
        ),
    ],
)
def test_gcs_and_azure_settings_name_their_store(settings, ref):
    assert settings.ref(Path("/ignored")) == ref


@pytest.mark.parametrize(
    ("model", "data", "expected"),
    [
        (GcsStore, {"bucket": "gs://b/k"}, "write the bucket name without gs://"),
        (GcsStore, {"bucket": "10.0.0.1"}, "is not an IP address; got '10.0.0.1'"),
        (GcsStore, {"bucket": "bkt", "endpoint": "./folder"}, "a GCS endpoint is an http(s)://"),
        (AzureStore, {"container": "az://c"}, "write the container name without az://"),
        (AzureStore, {"container": "a--b"}, "has no '--'; got 'a--b'"),
        (AzureStore, {"container": "abc", "prefix": "a/../b"}, "cannot contain '.' or '..'"),
    ],
)
def test_gcs_and_azure_settings_refuse_bad_names_in_words(model, data, expected):
    kind = {GcsStore: "gcs", AzureStore: "azure"}[model]
    with pytest.raises(ValidationError) as caught:
        model.model_validate({"type": kind, **data})
    assert expected in str(caught.value)


def test_gcs_and_azure_are_built_by_obstore_and_describe_their_objects(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "account")
    gcs = stores.open_store(StoreRef("gcs", "bucket", "pre/fix"))
    azure = stores.open_store(StoreRef("azure", "container"))
    assert gcs.describe("a b.tif") == "gs://bucket/pre/fix/a b.tif"
    assert azure.describe("k.tif") == "az://container/k.tif"
    assert gcs.sweep(["k.tif"]) == azure.sweep(["k.tif"]) == 0


def test_docs_have_one_row_per_backend_with_its_capabilities():
    """docs/stores.md's table is the registry, said for people: a new backend needs its row."""
    table = DOCS.read_text().split("## The backends")[1].split("\n## ")[0]
    rows = {m[1]: m[0] for m in re.finditer(r"^\| `(\w+)` \|.*$", table, flags=re.MULTILINE)}
    assert set(rows) == set(BACKENDS)
    for name, backend in BACKENDS.items():
        assert rows[name] == _docs_row(backend), f"docs/stores.md: the row of {name}"


def _docs_row(backend: Backend) -> str:
    can = backend.capabilities
    limits = [
        *([f"{can.max_name_bytes} B a segment"] if can.max_name_bytes else []),
        *([f"{can.max_key_bytes} B a key"] if can.max_key_bytes else []),
    ]
    cells = [
        f"`{backend.name}`",
        ", ".join(f"`{t}`" for t in backend.store_types),
        "yes" if can.writable else "no",
        "yes" if can.listing else "no",
        ("on write" if can.durable_writes else "after flush") if can.writable else "—",
        can.leftovers or "—",
        can.etag.value,
        can.endpoint.value if can.endpoint else "—",
        str(can.buffers_per_asset) if can.writable else "—",
        ", ".join(limits) or "—",
    ]
    return "| " + " | ".join(cells) + " |"


# --- a store type the product does not have, declared in one place ---------------------------


class MemoryBucket(ObjectStore):
    """obstore's in-memory store, one per ref: a stand-in for a new object store type."""

    scheme = "mem"

    def __init__(self, ref: StoreRef) -> None:
        super().__init__(ref, MemoryStore())


MEMORY = Backend(
    name="memory",
    store_types=("mem",),
    capabilities=Capabilities(writable=True, listing=True, buffers_per_asset=3),
    build=MemoryBucket,
)


@pytest.fixture
def with_memory_backend(monkeypatch):
    monkeypatch.setattr(stores, "BACKENDS", MappingProxyType({**BACKENDS, "memory": MEMORY}))


def test_a_new_backend_takes_part_in_a_copy_from_its_declaration_alone(
    with_memory_backend, origin, tmp_path
):
    data = b"bytes of a new store type" * 1000
    origin.write("scene.tif", data)
    row = LockRow("item", "visual", "http", origin.url, None, "scene.tif", len(data))
    target = StoreRef("memory", "bucket", "", Access(), 64 * 1024)
    where = Location("mem", "bucket", None, "item/visual.tif")
    leg = Leg("mem", target, "item/visual.tif", LockRow.at("item", "visual", where))
    source = StoreRef("http", origin.url, "", Access(allow_http=True), 64 * 1024)
    move = Move(row, source, "scene.tif", (leg,))
    policy = CopyPolicy(workers=1, attempts=1, initial_backoff=0.01, max_backoff=0.1)

    (listed,) = with_listings([move])  # it declares listing: asked once, found empty
    assert listed.legs[0].was_listed
    assert listed.legs[0].listed is None
    (moved,) = relocate_batch([listed], policy)

    assert moved.outcome.outcome == Result.COPIED
    assert moved.record.durable  # it did not declare that a write waits for a flush
    client = stores.open_store(target).store
    assert bytes(obstore.get(client, "item/visual.tif").bytes()) == data
    assert moved.record.row.etag == obstore.head(client, "item/visual.tif")["e_tag"]
