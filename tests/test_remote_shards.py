"""Shards on workers that share no disk: outputs and targets in a bucket (loopback moto).

Two process workers, each started in its own temp folder holding its own copy of the spec and
the package, serve the `relocate-shard` deployment on a real `prefect server start`;
`stacflow run spec.yaml --shards 2` runs the parent in a third folder. The bucket must end as a
single run leaves it, and a shard whose worker was killed is made up for by a rerun.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect.client.schemas.objects import StateType

from stacflow.tasks.items import items_from_table, read_items_table
from stacflow.tasks.report import read_report
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package
from tests.servers import s3
from tests.servers.prefect_harness import _stop

REPO = Path(__file__).resolve().parents[1]
POOL = "stacflow-apart"
SHARD = "relocate-shard/relocate-shard"
PREFECT = [sys.executable, "-m", "prefect"]
ASSETS = {
    (f"item-{i}", asset): (f"{i}/{asset}.bin", os.urandom(20_000 + 1_000 * i))
    for i in range(6)
    for asset in ("data", "thumb")
}


@pytest.fixture(scope="module")
def api(prefect_server):
    from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: PLC0415

    from tests.servers.prefect_harness import drain_workers  # noqa: PLC0415

    drain_workers()
    with pytest.MonkeyPatch.context() as env, temporary_settings({PREFECT_API_URL: prefect_server}):
        env.setenv("PREFECT_API_URL", prefect_server)
        yield prefect_server
        drain_workers()


def _spec_text(origin_url: str, endpoint: str, bucket: str, outputs: str) -> str:
    store = f'bucket: {bucket}, endpoint: "{endpoint}", allow_http: true'
    return f"""name: apart
package: pkg
sources:
  https:
    prefix: "{ORIGIN}/"
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  mirror: {{store: {{type: s3, prefix: assets, {store}}}}}
relocate: {{max_workers: 2, batch: {{assets: 2}}}}
validate: [https, mirror]
outputs: {{store: {{type: s3, prefix: {outputs}, {store}}}}}
"""


def _folder(root: Path, package: Path, text: str) -> Path:
    """A folder of its own, as a clone on another host: the spec and the package, copied."""
    root.mkdir()
    shutil.copytree(package, root / "pkg")
    (root / "spec.yaml").write_text(text)
    return root


def _hosts(tmp_path: Path, package: Path, spec: str) -> dict[str, Path]:
    """The parent's and two workers' folders; the pool, and relocate-shard deployed on it."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import WorkPoolCreate  # noqa: PLC0415

    folders = {
        name: _folder(tmp_path / name, package, spec) for name in ("parent", "worker-a", "worker-b")
    }
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    _deploy_shards_to(folders["worker-a"])
    (tmp_path / "logs").mkdir()
    return folders


def _start_worker(folder: Path, name: str, logs: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    with (logs / f"{name}.log").open("wb") as out:
        return subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", POOL, "--name", name, "--limit", "1"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _deploy_shards_to(folder: Path) -> None:
    """`relocate-shard` on the pool of these workers, from the repo's prefect.yaml."""
    (folder / "prefect.yaml").write_text(
        (REPO / "prefect.yaml")
        .read_text()
        .replace("name: stacflow\n    job", f"name: {POOL}\n    job")
    )
    from prefect import get_client  # noqa: PLC0415
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    # Another module's, on another pool, would stay in place.
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_deployment(client.read_deployment_by_name(SHARD).id)
    deployed = subprocess.run(
        [*PREFECT, "--no-prompt", "deploy", "--name", "relocate-shard"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with get_client(sync_client=True) as client:
        assert client.read_deployment_by_name(SHARD).work_pool_name == POOL


def _wait_for_workers(names: set[str], timeout_s: float = 90) -> None:
    from prefect import get_client  # noqa: PLC0415

    def polling() -> bool:
        with get_client(sync_client=True) as client:
            return names <= {w.name for w in client.read_workers_for_work_pool(POOL)}

    _wait(polling, f"workers {sorted(names)} to poll", timeout_s)


def _outputs(endpoint: str, bucket: str, prefix: str) -> dict[str, bytes]:
    client = s3.client(endpoint)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"].removeprefix(prefix): client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listed
    }


def _lock_rows(data: bytes, prefix: str) -> list[tuple]:
    return sorted(
        (r["item_id"], r["asset_key"], r["key"].removeprefix(prefix), r["size_bytes"], r["etag"])
        for r in pq.read_table(io.BytesIO(data)).to_pylist()
    )


def _report_rows(data: bytes, tmp_path: Path) -> list[tuple]:
    path = tmp_path / "report.parquet"
    path.write_bytes(data)
    return sorted(
        (o.step, o.store, o.item_id, o.asset_key, o.outcome, o.bytes) for o in read_report(path)
    )


def _items(data: bytes, tmp_path: Path, bucket: str) -> list[dict]:
    path = tmp_path / "items.parquet"
    path.write_bytes(data)
    text = json.dumps(items_from_table(read_items_table(path)), sort_keys=True, default=str)
    return json.loads(text.replace(bucket, "<bucket>"))


def _shard_runs(state: StateType) -> list:
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["relocate-shard"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[state]))
            ),
        )
    return [r for r in runs if r.parameters.get("spec_path") == "spec.yaml"]  # this test's


def _sharded_run(folder: Path) -> subprocess.Popen[str]:
    """`stacflow run spec.yaml --shards 2`, as typed in `folder`."""
    return subprocess.Popen(
        [sys.executable, "-m", "stacflow.flows.cli", "run", "spec.yaml", "--shards", "2"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop_all(workers: list[subprocess.Popen[bytes]]) -> None:
    """Stop the workers at once: each may take its 10 s SIGTERM grace."""
    with ThreadPoolExecutor(len(workers)) as pool:
        list(pool.map(_stop, workers))


def _wait(
    condition: Callable[[], object],
    what: str,
    timeout_s: float = 240,
    run: subprocess.Popen[str] | None = None,
) -> None:
    """Wait, and on a timeout say what the sharded `run` printed (stopping it): a loaded shared
    Prefect server has been seen to stall a minute, so the bound is generous."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            printed = ""
            if run is not None:
                run.kill()
                printed = run.communicate()[0]
            pytest.fail(f"timed out waiting for {what}; the sharded run printed:\n{printed}")
        time.sleep(0.5)


@pytest.mark.timeout(720)  # three runs, four workers started: ~220 s on 2 busy cores
def test_shards_on_workers_with_no_shared_disk_resume_a_killed_shard_into_one_runs_outputs(
    api, origin, moto_endpoint, s3_bucket, tmp_path, monkeypatch
):
    """Run 1: one shard's worker is killed while an asset stalls (the server marks its flow run
    crashed, as it would a lost pod); the parent fails naming it. Run 2, on fresh workers, copies
    only what the killed shard had not journaled; the bucket then holds what one run writes."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.states import Crashed  # noqa: PLC0415

    origin.last_modified = LAST_MODIFIED_HTTP
    package = make_package(tmp_path / "package", origin.root, ASSETS)
    sharded = _spec_text(origin.url, moto_endpoint, s3_bucket, "runs/demo")
    folders = _hosts(tmp_path, package, sharded)
    logs = tmp_path / "logs"
    monkeypatch.chdir(folders["parent"])
    stalled = "/5/data.bin"
    origin.stall(stalled, 300, method="GET")

    workers = [_start_worker(folders[n], n, logs) for n in ("worker-a", "worker-b")]
    try:
        _wait_for_workers({"worker-a", "worker-b"})
        first = _sharded_run(folders["parent"])
        _wait(lambda: origin.count("GET", stalled), "the stalled copy to start", run=first)
        _wait(lambda: _shard_runs(StateType.COMPLETED), "the other shard to end", run=first)
        [killed] = _shard_runs(StateType.RUNNING)
    finally:
        _stop_all(workers)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(killed.id, Crashed(message="worker killed"), force=True)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 1, out
    assert f"shard {killed.parameters['shard']['index']} (Crashed) left no report" in out
    after_kill = _outputs(moto_endpoint, s3_bucket, "runs/demo/")
    journaled = {r[:2] for r in _lock_rows(after_kill["mirror.assets.lock.parquet"], "")}
    assert ("item-5", "data") not in journaled
    # The killed shard's copies that were verified before the kill are on record.
    assert len(journaled) >= len(ASSETS) - 2, journaled

    origin.clear()
    workers = [_start_worker(folders[n], f"{n}-again", logs) for n in ("worker-a", "worker-b")]
    try:
        _wait_for_workers({"worker-a-again", "worker-b-again"})
        rerun = _sharded_run(folders["parent"])
        out, _ = rerun.communicate(timeout=300)
    finally:
        _stop_all(workers)
    assert rerun.returncode == 0, out
    got = _outputs(moto_endpoint, s3_bucket, "runs/demo/")
    copied = {
        r[2:4]
        for r in _report_rows(got["report.parquet"], tmp_path)
        if r[0] == "relocate" and r[4] == "copied"
    }
    assert copied == set(ASSETS) - journaled

    _assert_as_one_run_leaves(got, tmp_path, package, sharded, (moto_endpoint, s3_bucket))
    assert not [k for k in got if "/shards/" in k or ".records.d/" in k]
    with get_client(sync_client=True) as client:  # its process died with its worker
        assert client.read_flow_run(killed.id).state.is_crashed()
    # Nothing of either run landed in the workers' or the parent's folders.
    for folder in folders.values():
        assert {p.name for p in folder.iterdir()} <= {"pkg", "spec.yaml", "prefect.yaml"}


def _assert_as_one_run_leaves(
    got: dict[str, bytes], tmp_path: Path, package: Path, spec: str, bucket: tuple[str, str]
) -> None:
    """One run, into a bucket of its own, leaves the same lock, items and report."""
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    endpoint, sharded_bucket = bucket
    single_bucket = f"{sharded_bucket}-one"
    s3.create_bucket(endpoint, single_bucket)
    spec = spec.replace(f"bucket: {sharded_bucket}", f"bucket: {single_bucket}")
    single = _folder(tmp_path / "single", package, spec)
    assert relocate_package(spec_path=str(single / "spec.yaml"))["ok"]
    want = _outputs(endpoint, single_bucket, "runs/demo/")
    assert _lock_rows(got["mirror.assets.lock.parquet"], "") == _lock_rows(
        want["mirror.assets.lock.parquet"], ""
    )
    assert _items(got["items.parquet"], tmp_path, sharded_bucket) == _items(
        want["items.parquet"], tmp_path, single_bucket
    )
    done = {r[:4] for r in _report_rows(got["report.parquet"], tmp_path)}
    assert done == {r[:4] for r in _report_rows(want["report.parquet"], tmp_path)}
