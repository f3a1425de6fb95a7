"""The `dask` extra: relocate-package's task runs on a Dask cluster, from the CLI or a deployment.

Skipped when prefect-dask is not installed (it is in the `test` extra).
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

pytest.importorskip("prefect_dask")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("out"))
    return tmp_path / "specs" / "demo.yaml"


def test_stacflow_run_sends_the_batches_to_the_dask_scheduler(demo, prefect_harness, capsys):
    from distributed import LocalCluster  # noqa: PLC0415

    from stacflow.flows.cli import main  # noqa: PLC0415

    with LocalCluster(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as cluster:
        assert main(["run", str(demo), "--dask-address", cluster.scheduler_address]) == 0
        ran = {name for name, prefix in cluster.scheduler.task_prefixes.items() if prefix.states}
    assert {"relocate_batch_task", "validate_batch_task"} <= ran
    out = capsys.readouterr().out
    assert "relocate → local    6 copied (2.4 MiB)" in out
    assert "validate local       6 valid (2.4 MiB) (with checksums)" in out
    copy = demo.parent / "demo" / "out" / "local-assets" / "flight-03" / "visual.tif"
    origin = demo.parent / "demo" / "origin" / "uploads" / "flight-03" / "ortho.tif"
    assert copy.read_bytes() == origin.read_bytes()


def test_the_deployment_entrypoint_takes_the_scheduler_from_the_environment(monkeypatch):
    from stacflow.flows import on_dask as on_dask_module  # noqa: PLC0415
    from stacflow.flows.cli import DASK_ADDRESS_ENV  # noqa: PLC0415

    assert DASK_ADDRESS_ENV == on_dask_module.ADDRESS_ENV
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://10.0.0.5:8786")
    on_dask = importlib.reload(on_dask_module).relocate_package_on_dask
    assert on_dask.name == "relocate-package"
    assert on_dask.task_runner.address == "tcp://10.0.0.5:8786"
    monkeypatch.delenv(DASK_ADDRESS_ENV)
    assert importlib.reload(on_dask_module).relocate_package_on_dask.task_runner.address is None
