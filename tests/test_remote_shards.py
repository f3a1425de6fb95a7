"""Shards on workers that share no disk: outputs and targets in a bucket (loopback moto).

Two process workers, each started in its own temp folder holding its own copy of the spec and
the package, serve the `relocate-shard` deployment on a real `prefect server start`;
`stacflow run spec.yaml --shards 2` runs the parent in a third folder. The bucket must end as a
single run leaves it, and a shard whose worker was killed is made up for by a rerun.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from stacflow.tasks.report import read_report
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package
from tests.servers import s3
from tests.servers.prefect_harness import _stop

REPO = Path(__file__).resolve().parents[1]
POOL = "stacflow-apart"
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
    deployed = subprocess.run(
        [*PREFECT, "--no-prompt", "deploy", "--name", "relocate-shard"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr


def _wait_for_workers(count: int, timeout_s: float = 90) -> None:
    from prefect import get_client  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while len(client.read_workers_for_work_pool(POOL)) < count:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.25)


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


def test_two_workers_with_no_shared_disk_relocate_into_what_one_run_writes(
    api, origin, moto_endpoint, s3_bucket, tmp_path, monkeypatch, capsys
):
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import WorkPoolCreate  # noqa: PLC0415

    from stacflow.flows.cli import main  # noqa: PLC0415
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    origin.last_modified = LAST_MODIFIED_HTTP
    package = make_package(tmp_path / "package", origin.root, ASSETS)
    sharded = _spec_text(origin.url, moto_endpoint, s3_bucket, "runs/sharded")
    folders = {
        name: _folder(tmp_path / name, package, sharded)
        for name in ("parent", "worker-a", "worker-b")
    }
    single = _folder(
        tmp_path / "single",
        package,
        sharded.replace("runs/sharded", "runs/single").replace("prefix: assets", "prefix: one"),
    )
    assert relocate_package(spec_path=str(single / "spec.yaml"))["ok"]

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    workers = [_start_worker(folders[n], n, logs) for n in ("worker-a", "worker-b")]
    try:
        _deploy_shards_to(folders["worker-a"])
        _wait_for_workers(2)
        monkeypatch.chdir(folders["parent"])
        capsys.readouterr()
        code = main(["run", "spec.yaml", "--shards", "2"])
        out = capsys.readouterr().out
        assert code == 0, out + "".join(p.read_text() for p in logs.glob("*.log"))
    finally:
        for worker in workers:
            _stop(worker)

    assert "relocate → mirror" in out
    got = _outputs(moto_endpoint, s3_bucket, "runs/sharded/")
    want = _outputs(moto_endpoint, s3_bucket, "runs/single/")
    assert _lock_rows(got["mirror.assets.lock.parquet"], "assets/") == _lock_rows(
        want["mirror.assets.lock.parquet"], "one/"
    )
    assert len(_lock_rows(got["mirror.assets.lock.parquet"], "")) == len(ASSETS)
    assert _report_rows(got["report.parquet"], tmp_path) == _report_rows(
        want["report.parquet"], tmp_path
    )
    assert not [k for k in got if "/shards/" in k or ".records.d/" in k]
    # Nothing of the run landed in the workers' or the parent's folders: they share no disk.
    for folder in folders.values():
        assert sorted(p.name for p in folder.iterdir()) in (
            ["pkg", "spec.yaml"],
            ["pkg", "prefect.yaml", "spec.yaml"],
        )
