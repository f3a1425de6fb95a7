"""Outputs in a bucket (`outputs: {store: {type: s3, ...}}`): a run on the real Prefect engine
writes its locks, items, validation lines, report and journal there, on loopback moto; journal
segments keep every verified copy on record across a kill, and a rerun copies only what is
missing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from stacflow.flows.inputs import load_spec
from stacflow.flows.relocate import relocate_package
from stacflow.flows.validate import validate_package
from stacflow.flows.workspace import journal_place, outputs_workspace
from stacflow.tasks.locks import read_lock
from stacflow.tasks.remote_outputs import open_journal
from stacflow.tasks.report import Result, Step, read_report
from stacflow.tasks.state import read_records
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package
from tests.servers import s3

ASSETS = {
    ("item-a", "data"): ("a/data.tif", b"A" * 70_000),
    ("item-a", "thumb"): ("a/thumb.png", b"a" * 1_000),
    ("item-b", "data"): ("b/data.tif", b"B" * 50_000),
    ("item-c", "data"): ("c/data.tif", b"C" * 30_000),
}


def _spec(folder: Path, package: Path, origin_url: str, endpoint: str, bucket: str) -> Path:
    spec = folder / "spec.yaml"
    store = f'endpoint: "{endpoint}", allow_http: true'
    spec.write_text(
        f"""name: remote-outputs
package: {package}
sources:
  https:
    prefix: "{ORIGIN}/"
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  mirror:
    store: {{type: s3, bucket: {bucket}, prefix: assets, {store}}}
relocate: {{max_workers: 2, batch: {{assets: 2}}}}
validate: [https, mirror]
outputs:
  store: {{type: s3, bucket: {bucket}, prefix: runs/demo, {store}}}
"""
    )
    return spec


@pytest.fixture
def remote_spec(tmp_path, origin, moto_endpoint, s3_bucket) -> Path:
    origin.last_modified = LAST_MODIFIED_HTTP
    package = make_package(tmp_path / "pkg", origin.root, ASSETS)
    return _spec(tmp_path, package, origin.url, moto_endpoint, s3_bucket)


def _objects(endpoint: str, bucket: str, prefix: str) -> dict[str, bytes]:
    client = s3.client(endpoint)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"].removeprefix(prefix): client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listed
    }


def _rows(data: bytes) -> list[tuple]:
    table = pq.read_table(io.BytesIO(data))
    return sorted(
        (r["item_id"], r["asset_key"], r["key"], r["size_bytes"], r["etag"])
        for r in table.to_pylist()
    )


def test_a_run_writes_every_output_into_the_bucket(
    remote_spec, prefect_harness, moto_endpoint, s3_bucket, tmp_path
):
    result = relocate_package(spec_path=str(remote_spec))
    assert result["ok"], result["text"]
    out = _objects(moto_endpoint, s3_bucket, "runs/demo/")
    assert {
        "mirror.assets.lock.parquet",
        "items.parquet",
        "report.parquet",
        "validation/https.jsonl",
        "validation/mirror.jsonl",
        ".stacflow/mirror.records.jsonl",
        ".stacflow/run.lock",
    } <= set(out)
    assert not [key for key in out if ".records.d/" in key]  # segments merged, then dropped
    assert json.loads(out[".stacflow/run.lock"])["state"] == "free"
    rows = _rows(out["mirror.assets.lock.parquet"])
    (tmp_path / "lock.parquet").write_bytes(out["mirror.assets.lock.parquet"])
    assert {row.store_container for row in read_lock(tmp_path / "lock.parquet")} == {s3_bucket}
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == sorted(
        (item, asset, f"assets/{item}/{asset}{Path(key).suffix}", len(data))
        for (item, asset), (key, data) in ASSETS.items()
    )
    copies = _objects(moto_endpoint, s3_bucket, "assets/")
    assert {k: v for k, v in copies.items() if not k.startswith(".")} == {
        f"{item}/{asset}{Path(key).suffix}": data for (item, asset), (key, data) in ASSETS.items()
    }
    lines = [json.loads(x) for x in out["validation/mirror.jsonl"].splitlines()]
    assert len(lines) == len(ASSETS)
    assert all(line["valid"] for line in lines), lines

    # A rerun starts from the bucket's journal: nothing is copied again, the outputs stay equal.
    again = relocate_package(spec_path=str(remote_spec))
    assert again["ok"], again["text"]
    assert again["copied_bytes"] == 0

    # `stacflow check` (validate-package) writes its lines and report into the bucket too.
    s3.client(moto_endpoint).delete_object(Bucket=s3_bucket, Key="runs/demo/validation/https.jsonl")
    assert validate_package(spec_path=str(remote_spec))["ok"]
    checked = _objects(moto_endpoint, s3_bucket, "runs/demo/")
    assert {"validation/https.jsonl", "validation/report.parquet"} <= set(checked)
    assert _rows(
        _objects(moto_endpoint, s3_bucket, "runs/demo/")["mirror.assets.lock.parquet"]
    ) == (rows)


def test_journal_segments_keep_a_killed_runs_copies_and_a_rerun_copies_the_rest(
    remote_spec, prefect_harness, moto_endpoint, s3_bucket, tmp_path
):
    """A shard or run killed after journaling some copies leaves only segments in the bucket:
    the next run merges them, copies only the rest, and compacts the journal."""
    spec = load_spec(remote_spec)
    assert relocate_package(spec_path=str(remote_spec))["ok"]
    first = _objects(moto_endpoint, s3_bucket, "runs/demo/")
    records = read_records_from(first[".stacflow/mirror.records.jsonl"], tmp_path)
    # Start again from nothing but two journaled copies, as a killed run would leave them.
    for key in first:
        s3.client(moto_endpoint).delete_object(Bucket=s3_bucket, Key=f"runs/demo/{key}")
    with outputs_workspace(remote_spec, spec, "shard"):
        journal = open_journal(journal_place(remote_spec, spec, "mirror"))
        for record in list(records.values())[:2]:
            journal.append(record)
        journal.close()  # the process dies here: nothing but its segment went up
    left = _objects(moto_endpoint, s3_bucket, "runs/demo/")
    assert list(left) == [next(iter(left))]
    assert ".stacflow/mirror.records.d/" in next(iter(left))

    rerun = relocate_package(spec_path=str(remote_spec))
    assert rerun["ok"], rerun["text"]
    report = read_report_from(
        _objects(moto_endpoint, s3_bucket, "runs/demo/")["report.parquet"], tmp_path
    )
    copied = {
        (o.item_id, o.asset_key)
        for o in report
        if o.step == Step.RELOCATE and o.outcome == Result.COPIED
    }
    assert copied == set(list(records)[2:])
    out = _objects(moto_endpoint, s3_bucket, "runs/demo/")
    assert not [key for key in out if ".records.d/" in key]
    assert _rows(out["mirror.assets.lock.parquet"]) == _rows(first["mirror.assets.lock.parquet"])


def test_a_refused_run_leaves_the_bucket_as_it_was(
    remote_spec, prefect_harness, moto_endpoint, s3_bucket
):
    spec = load_spec(remote_spec)
    assert relocate_package(spec_path=str(remote_spec))["ok"]
    before = _objects(moto_endpoint, s3_bucket, "runs/demo/")
    with outputs_workspace(remote_spec, spec, "run"):  # another run holds the lease
        state = relocate_package(spec_path=str(remote_spec), return_state=True)
        assert state.is_failed()
        assert "another stacflow run is writing to s3://" in state.message
    after = _objects(moto_endpoint, s3_bucket, "runs/demo/")
    lock = ".stacflow/run.lock"
    assert {k: v for k, v in after.items() if k != lock} == {
        k: v for k, v in before.items() if k != lock
    }


def read_records_from(data: bytes, folder: Path) -> dict:
    path = folder / "journal.jsonl"
    path.write_bytes(data)
    return read_records(path)


def read_report_from(data: bytes, folder: Path) -> list:
    path = folder / "report.parquet"
    path.write_bytes(data)
    return read_report(path)


def test_a_shard_reads_the_lock_its_parent_derived_instead_of_deriving_it(tmp_path):
    """Deriving the lock of lock-less Items is a HEAD per asset (here, against a closed port):
    a shard finds the parent's package in the outputs and reads it; no Prefect run is needed."""
    from stacflow.flows.shards import shard_inputs  # noqa: PLC0415
    from stacflow.tasks.locations import parse_href  # noqa: PLC0415
    from stacflow.tasks.locks import LockRow  # noqa: PLC0415
    from stacflow.tasks.outputs import OutputPaths, write_package  # noqa: PLC0415
    from tests.packages import item_dict  # noqa: PLC0415

    item = item_dict("item-a")
    item["assets"]["data"] = {"href": "http://127.0.0.1:9/a/data.tif", "roles": ["data"]}
    (tmp_path / "items.json").write_text(json.dumps(item))
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        "name: derived\nstac: items.json\nsources: {origin: {store: {allow_http: true}}}\n"
        "targets: {local: {store: {type: file, root: copies}}}\noutputs: out\n"
    )
    row = LockRow.at("item-a", "data", parse_href(item["assets"]["data"]["href"]), size_bytes=7)
    write_package(OutputPaths(tmp_path / "out"), [item], [row])

    inputs = shard_inputs(spec_path, load_spec(spec_path))
    assert inputs.lock == read_lock(tmp_path / "out" / "package" / "assets.lock.parquet")
    assert [(r.item_id, r.asset_key, r.size_bytes) for r in inputs.lock] == [("item-a", "data", 7)]
    assert inputs.items_path == tmp_path / "out" / "package" / "items.parquet"


def test_a_journal_held_only_in_segments_goes_up_whole_before_they_are_dropped(
    moto_endpoint, s3_bucket, tmp_path
):
    """Compaction may leave the merged file byte for byte as it was (atomic writes then skip
    it): the journal must still be uploaded before its segments are deleted."""
    from stacflow.tasks.access import Access  # noqa: PLC0415
    from stacflow.tasks.remote_outputs import WorkingCopy  # noqa: PLC0415
    from stacflow.tasks.stores.base import StoreRef  # noqa: PLC0415
    from stacflow.tasks.stores.s3 import S3Bucket  # noqa: PLC0415

    line = b'{"a":1}\n'
    key = "runs/.stacflow/t.records.d/0001-x.jsonl"
    s3.put_object(moto_endpoint, s3_bucket, key, line)
    access = Access(endpoint=moto_endpoint, allow_http=True)
    copy = WorkingCopy(S3Bucket(StoreRef("s3", s3_bucket, "runs", access)), tmp_path)
    copy.pull()
    assert (tmp_path / ".stacflow" / "t.records.jsonl").read_bytes() == line
    copy.push()  # nothing was written locally
    assert _objects(moto_endpoint, s3_bucket, "runs/") == {".stacflow/t.records.jsonl": line}
