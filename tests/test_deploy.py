"""Prefect-native operations on a real loopback `prefect server start`.

One server, one `prefect deploy --all` from the repo's prefect.yaml and two process workers serve
the whole module: deployments are triggered through the API as the UI's Run button does, workers
run them in a tmp clone (so every output lands under tmp), and the tests read back what the UI
shows: final states, artifacts, parameter schemas, and which worker ran which flow run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from stacflow.tasks.items import items_from_table, read_items_table
from stacflow.tasks.locks import read_lock
from stacflow.tasks.report import read_report
from stacflow.tasks.state import read_records
from tests.packages import LAST_MODIFIED_HTTP, flip_byte_keeping_mtime, make_package
from tests.servers.origin import Origin
from tests.servers.prefect_harness import _stop

REPO = Path(__file__).resolve().parents[1]
POOL = "stacflow"
RELOCATE = "relocate-package/relocate-package"
SHARD = "relocate-shard/relocate-shard"
VALIDATE = "validate-package/validate-package"
SHARDS = "relocate-in-shards/relocate-in-shards"
RUN_TIMEOUT_S = 90
PREFECT = [sys.executable, "-m", "prefect"]


@pytest.fixture(scope="module")
def api(prefect_server):
    """The loopback server as PREFECT_API_URL, for this process and every subprocess it starts."""
    from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: PLC0415

    from tests.servers.prefect_harness import drain_workers  # noqa: PLC0415

    drain_workers()  # the services the session's harness started talk to the harness
    with pytest.MonkeyPatch.context() as env, temporary_settings({PREFECT_API_URL: prefect_server}):
        env.setenv("PREFECT_API_URL", prefect_server)
        yield prefect_server
        drain_workers()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """What a worker needs beside the installed package (specs, prefect.yaml), so outputs land
    in tmp; the entrypoints are module paths of the installed `stacflow`."""
    root = tmp_path_factory.mktemp("clone")
    shutil.copytree(
        REPO / "specs", root / "specs", ignore=shutil.ignore_patterns("out", "__pycache__")
    )
    shutil.copy(REPO / "prefect.yaml", root)
    return root


@pytest.fixture(scope="module")
def stack(api, clone, tmp_path_factory):
    """The pool, two workers (one flow run at a time each) and `prefect deploy --all`."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import WorkPoolCreate  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    logs = tmp_path_factory.mktemp("workers")
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("worker-home")),
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # default 10: a run would wait up to 10 s
    }
    workers = []
    for name in ("worker-a", "worker-b"):
        with (logs / f"{name}.log").open("wb") as out:
            workers.append(
                subprocess.Popen(
                    [*PREFECT, "worker", "start", "--pool", POOL, "--name", name, "--limit", "1"],
                    cwd=clone,  # the flow runs start here (job variable working_dir: .)
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        deployed = subprocess.run(
            [*PREFECT, "--no-prompt", "deploy", "--all"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        _wait_for_workers(2)
        yield SimpleNamespace(clone=clone, logs=logs)
    finally:
        for worker in workers:
            _stop(worker)


@pytest.fixture(scope="module")
def demo_run(stack):
    """The demo, relocated once by the relocate-package deployment with its default parameters."""
    from prefect.deployments import run_deployment  # noqa: PLC0415

    return run_deployment(RELOCATE, timeout=RUN_TIMEOUT_S, poll_interval=0.5)


def test_prefect_yaml_deploys_four_deployments_that_need_no_absolute_path(stack):
    from prefect import get_client  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        deployments = {
            name: client.read_deployment_by_name(name)
            for name in (RELOCATE, VALIDATE, SHARDS, SHARD)
        }
    for deployment in deployments.values():
        assert deployment.work_pool_name == POOL
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "."}}
        ]
        assert deployment.job_variables == {"working_dir": "."}
        assert str(stack.clone) not in json.dumps(deployment.model_dump(mode="json"))
    assert deployments[RELOCATE].parameters["spec_path"] == "specs/demo.yaml"
    assert deployments[RELOCATE].schedules == []
    assert deployments[SHARDS].schedules == []
    nightly = deployments[VALIDATE]
    assert nightly.parameters == {"spec_path": "specs/scheduled-validation.yaml"}
    [schedule] = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "30 2 * * *",
        "UTC",
        True,
    )


def test_deployments_queue_a_second_run_and_mark_the_shard_deployment_internal(stack):
    from prefect import get_client  # noqa: PLC0415

    from stacflow.flows.relocate import RUN_TIMEOUT_S, relocate_package  # noqa: PLC0415
    from stacflow.flows.shards import relocate_in_shards, relocate_shard  # noqa: PLC0415
    from stacflow.flows.validate import VALIDATE_TIMEOUT_S, validate_package  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        deployments = {
            name: client.read_deployment_by_name(name)
            for name in (RELOCATE, VALIDATE, SHARDS, SHARD)
        }
    for name in (RELOCATE, VALIDATE, SHARDS):
        deployment = deployments[name]
        assert deployment.global_concurrency_limit.limit == 1, name
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE", name
    shard = deployments[SHARD]
    assert shard.global_concurrency_limit is None  # a parent starts all its shards at once
    assert shard.description.startswith("INTERNAL, do not run by hand")
    assert "internal" in shard.tags
    assert relocate_package.timeout_seconds == RUN_TIMEOUT_S == 24 * 3600
    assert relocate_in_shards.timeout_seconds == relocate_shard.timeout_seconds == RUN_TIMEOUT_S
    assert validate_package.timeout_seconds == VALIDATE_TIMEOUT_S == 3 * 3600


def test_a_second_run_of_the_same_spec_waits_for_the_first_instead_of_failing(
    stack, demo_run, origin
):
    """Two workers, two runs of one spec at once: without the deployment's limit both start and
    the second fails on the spec's run lock; with it the second waits for a slot.

    The first run's copy is held at the origin until the second is seen waiting: on a loaded
    machine the second worker could otherwise poll only after the first run ended."""
    from prefect import get_client  # noqa: PLC0415

    assert demo_run.state.is_completed()
    origin.root = stack.clone / "specs" / "demo" / "origin"
    _demo_spec_on(origin, stack.clone / "specs" / "queued.yaml", "queued")
    held = "/uploads/flight-02/ortho.tif"
    origin.stall(held, RUN_TIMEOUT_S, method="GET", times=1)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(RELOCATE)

        def queued_run():
            return client.create_flow_run_from_deployment(
                deployment.id, parameters={"spec_path": "specs/queued.yaml"}
            )

        runs = [queued_run()]
        _wait_until(lambda: origin.count("GET", held), "the first run to copy")
        runs.append(queued_run())
        _wait_until(
            lambda: (
                "AwaitingConcurrencySlot"
                in {state.name for state in client.read_flow_run_states(runs[1].id)}
            ),
            "the second run to wait for a slot",
        )
        origin.end_stalls()
        finished = [_wait_final(client, run.id) for run in runs]
        histories = [[state.name for state in client.read_flow_run_states(run.id)] for run in runs]
    assert all(run.state.is_completed() for run in finished), [r.state for r in finished]
    first, second = sorted(finished, key=lambda run: run.start_time)
    assert second.start_time >= first.end_time, "the two runs overlapped"
    assert any("AwaitingConcurrencySlot" in history for history in histories), histories


def test_a_deployment_run_on_a_worker_relocates_and_publishes_its_artifacts(stack, demo_run):
    assert demo_run.state.is_completed(), demo_run.state
    assert demo_run.work_pool_name == POOL
    artifacts = _artifacts(demo_run.id)
    summary = artifacts["demo-drone-survey-summary"]
    assert summary.type == "markdown"
    assert summary.data.startswith("# demo-drone-survey: OK")
    assert "| local | 6 (2.4 MiB) | 0 | 0 | 0 |" in summary.data
    assert "| archive | 6 (2.4 MiB) | 0 | 0 | 0 |" in summary.data
    outcomes = _table(artifacts["demo-drone-survey-outcomes"])
    assert {(r["store"], r["outcome"]) for r in outcomes} == {
        ("local", "copied"),
        ("archive", "copied"),
    }
    assert len(outcomes) == 12
    assert artifacts["demo-drone-survey-progress"].data == 100.0
    demo = stack.clone / "specs" / "demo"
    assert (demo / "out" / "local-assets" / "flight-01" / "visual.tif").read_bytes() == (
        demo / "origin" / "uploads" / "flight-01" / "ortho.tif"
    ).read_bytes()


def test_the_nightly_validation_fails_on_a_same_size_rewrite_and_names_the_asset(stack, demo_run):
    from prefect.deployments import run_deployment  # noqa: PLC0415

    assert demo_run.state.is_completed()
    tampered = stack.clone / "specs" / "demo" / "out" / "local-assets" / "flight-02" / "visual.tif"
    flip_byte_keeping_mtime(tampered, offset=100)
    try:
        run = run_deployment(VALIDATE, timeout=RUN_TIMEOUT_S, poll_interval=0.5)
    finally:
        flip_byte_keeping_mtime(tampered, offset=100)

    assert run.state.is_failed(), run.state
    artifacts = _artifacts(run.id)
    slug = "demo-drone-survey-nightly-validation"
    rows = _table(artifacts[f"{slug}-validation"])
    invalid = [r for r in rows if not r["valid"]]
    assert [(r["lock"], r["item_id"], r["asset_key"]) for r in invalid] == [
        ("local", "flight-02", "visual")
    ]
    assert "checksum mismatch: expected 1220" in invalid[0]["errors"]
    assert len(rows) == 12  # https and local, six assets each; nothing else failed
    assert "| local | 5 | 1 | yes |" in artifacts[f"{slug}-summary"].data


def test_a_ui_retry_of_a_failed_run_copies_only_what_failed(stack, origin):
    """The UI's Retry (AwaitingRetry, not forced, as its button sends) runs the flow again on a
    worker. Results are not persisted: the journals and relocated locks are what a retry resumes
    from, so the origin is asked again only for the asset that failed."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.objects import State, StateType  # noqa: PLC0415

    origin.root = stack.clone / "specs" / "demo" / "origin"
    _demo_spec_on(origin, stack.clone / "specs" / "retry.yaml", "retry")
    broken = "/uploads/flight-02/ortho.tif"
    origin.fail(broken, 404)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(RELOCATE)
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"spec_path": "specs/retry.yaml"}
        )
        failed = _wait_final(client, run.id)
        assert failed.state.is_failed(), failed.state
        assert origin.count("GET") == 6  # five copied, one refused

        origin.clear()  # the origin is back; the log starts empty
        client.set_flow_run_state(
            run.id,
            State(type=StateType.SCHEDULED, name="AwaitingRetry", message="Retry from the UI"),
            force=False,
        )
        retried = _wait_final(client, run.id)
    assert retried.state.is_completed(), retried.state
    assert retried.run_count == 2
    assert {r.path for r in origin.requests if r.method == "GET"} == {broken}
    local = stack.clone / "specs" / "retry" / "local"
    assert (local / "flight-02" / "visual.tif").read_bytes() == (
        origin.root / broken.lstrip("/")
    ).read_bytes()
    assert (
        len(read_lock(stack.clone / "specs" / "retry" / "results" / "local.assets.lock.parquet"))
        == 6
    )


def test_the_checked_in_automation_fires_when_a_validation_fails(stack):
    """`prefect automation create --from-file automations/validation-failed.yaml`, as the README
    says; then a failed validate-package run fires it, and a failed relocation does not."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.deployments import run_deployment  # noqa: PLC0415
    from prefect.events.filters import (  # noqa: PLC0415
        EventFilter,
        EventNameFilter,
        EventResourceFilter,
    )

    created = subprocess.run(
        [*PREFECT, "automation", "create", "--from-file", "automations/validation-failed.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name("stacflow: validation failed")
    assert automation.enabled

    validation = run_deployment(
        VALIDATE, parameters={"spec_path": "specs/missing.yaml"}, timeout=RUN_TIMEOUT_S
    )
    relocation = run_deployment(
        RELOCATE, parameters={"spec_path": "specs/missing.yaml"}, timeout=RUN_TIMEOUT_S
    )
    assert validation.state.is_failed()
    assert relocation.state.is_failed()

    def fired_for() -> set[str]:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                EventFilter(
                    event=EventNameFilter(name=["prefect.automation.triggered"]),
                    resource=EventResourceFilter(id=[f"prefect.automation.{automation.id}"]),
                ),
                limit=50,  # the client's default (100) is more than the server accepts
            )
        return {
            event.payload["triggering_event"]["resource"]["prefect.resource.id"]
            for event in page.events
        }

    deadline = time.monotonic() + 30
    while f"prefect.flow-run.{validation.id}" not in fired_for():
        assert time.monotonic() < deadline, "the automation did not fire"
        time.sleep(0.5)
    time.sleep(2)  # the relocation failed after the validation: its event had time to arrive
    assert fired_for() == {f"prefect.flow-run.{validation.id}"}


def test_two_workers_relocate_the_shards_in_parallel_into_what_one_run_writes(
    stack, tmp_path, capsys
):
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    from stacflow.flows.cli import main  # noqa: PLC0415
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    sharded, single = tmp_path / "sharded", tmp_path / "single"
    _demo_with_items(sharded, count=8)
    shutil.copytree(sharded, single)
    assert relocate_package(spec_path=str(single / "specs" / "demo.yaml"))["ok"]
    capsys.readouterr()

    assert main(["run", str(sharded / "specs" / "demo.yaml"), "--shards", "2"]) == 0
    assert "relocate → local    16 copied" in capsys.readouterr().out

    with get_client(sync_client=True) as client:
        [parent] = [
            run
            for run in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["relocate-in-shards"]))
            )
            if run.parameters["spec_path"] == str(sharded / "specs" / "demo.yaml")
        ]
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])
            )
        )
        shard_deployment = client.read_deployment_by_name(SHARD).id
    assert parent.state.is_completed()
    assert sorted(c.parameters["shard"]["index"] for c in children) == [0, 1]
    assert all(c.state.is_completed() and c.deployment_id == shard_deployment for c in children)
    # Two flow runs of their own, each on a worker of the pool. Whether they overlap in time
    # depends on when each worker polls (a loaded machine can serialise them): not asserted.
    assert {c.work_pool_name for c in children} == {POOL}
    assert len({c.id for c in children}) == 2

    for lock in ("local.assets.lock.parquet", "archive.assets.lock.parquet"):
        assert _lock_rows(sharded, lock) == _lock_rows(single, lock)
    for items in ("items.parquet", "local.primary.items.parquet"):
        assert _items(sharded, items) == _items(single, items)
    assert _report(sharded) == _report(single)
    assert not list((_results(sharded) / ".stacflow").glob("shards/*")), "shard reports were kept"


@pytest.fixture
def stalling_origin(tmp_path):
    """An origin of the test's own: closing it ends its ten-minute stalls, which would
    otherwise count as requests in flight in the session's origin for later tests."""
    with Origin(tmp_path / "origin-root") as own:
        yield own


def test_a_cancel_from_the_ui_stops_the_copy_and_ends_the_run_cancelled(
    stack, tmp_path, stalling_origin
):
    origin = stalling_origin
    """The UI's Cancel sets Cancelling; the worker sends SIGTERM; the run stops in order."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.deployments import run_deployment  # noqa: PLC0415
    from prefect.states import Cancelling  # noqa: PLC0415

    from tests.test_interrupt import (  # noqa: PLC0415
        ASSETS,
        STALLED,
        _debris,
        _journaled,
        _spec,
        _stalled_copy_started,
    )

    origin.last_modified = LAST_MODIFIED_HTTP
    package = make_package(tmp_path / "pkg", origin.root, ASSETS, checksums=True)
    origin.stall(f"/{STALLED}", 600, after_bytes=1024 * 1024)
    folder = tmp_path / "run"
    spec = _spec(folder, package, origin.url)
    run = run_deployment(RELOCATE, parameters={"spec_path": str(spec)}, timeout=0)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    # The two small assets journaled too, so the cancel comes with exactly one copy in flight.
    while not (_stalled_copy_started(folder) and len(_journaled(folder)) == 2):
        assert time.monotonic() < deadline, "the stalled asset never started to land"
        time.sleep(0.1)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
        deadline = time.monotonic() + 60  # the stalled origin would hold the run for 600 s
        while not (state := client.read_flow_run(run.id).state).is_final():
            assert time.monotonic() < deadline, f"still {state.name} a minute after the cancel"
            time.sleep(0.25)
    assert state.is_cancelled(), state
    assert _debris(folder / "assets") == [], "the copy in flight left its temp file"
    assert not (folder / "assets" / "scene-1" / "visual.tif").exists()
    journaled = read_records(folder / "out" / ".stacflow" / "local.records.jsonl")
    assert sorted(journaled) == [("scene-1", "thumbnail"), ("scene-2", "visual")]


def test_ctrl_c_of_a_sharded_run_cancels_its_shards_and_reports_what_is_left(
    stack, tmp_path, stalling_origin
):
    origin = stalling_origin
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    from tests.test_interrupt import ASSETS, STALLED, _debris, _spec  # noqa: PLC0415

    origin.last_modified = LAST_MODIFIED_HTTP
    package = make_package(tmp_path / "pkg", origin.root, ASSETS, checksums=True)
    origin.stall(f"/{STALLED}", 600, after_bytes=1024 * 1024)
    folder = tmp_path / "run"
    spec = _spec(folder, package, origin.url)
    sharded = subprocess.Popen(
        [sys.executable, "-m", "stacflow.flows.cli", "run", str(spec), "--shards", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not [
            p for p in (folder / "assets").rglob(".visual.tif.stacflow-tmp-*") if p.stat().st_size
        ]:
            assert sharded.poll() is None, sharded.communicate()
            assert time.monotonic() < deadline, "the stalled asset never started to land"
            time.sleep(0.1)
        sharded.send_signal(signal.SIGINT)
        out, err = sharded.communicate(timeout=90)  # the stalled origin would hold it for 600 s
    finally:
        sharded.kill()
    text = (out + err).decode()
    assert sharded.returncode == 130, text
    assert re.fullmatch(
        r"interrupted: \d copied, [1-3] left; rerun to resume", out.decode().strip()
    )
    assert "Traceback" not in text, text
    assert _debris(folder / "assets") == []
    with get_client(sync_client=True) as client:
        [parent] = [
            run
            for run in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["relocate-in-shards"]))
            )
            if run.parameters["spec_path"] == str(spec)
        ]
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])
            )
        )
    assert parent.state.is_cancelled(), parent.state
    assert len(children) == 2
    assert all(c.state.is_final() and not c.state.is_crashed() for c in children), children


def test_the_parameter_form_is_typed_and_a_bad_value_never_starts_a_run(stack):
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        DeploymentFilter,
        DeploymentFilterId,
    )
    from prefect.exceptions import PrefectHTTPStatusError  # noqa: PLC0415

    from stacflow.flows import cli  # noqa: PLC0415
    from stacflow.flows.shards import MAX_SHARDS  # noqa: PLC0415

    assert cli.MAX_SHARDS == MAX_SHARDS  # `stacflow run --shards` refuses what the flow refuses
    with get_client(sync_client=True) as client:
        relocate = client.read_deployment_by_name(RELOCATE)
        shards = client.read_deployment_by_name(SHARDS)
        schema = relocate.parameter_openapi_schema
        fields = schema["properties"]
        assert fields["spec_path"]["default"] == "specs/demo.yaml"
        assert fields["spec_path"]["description"].startswith("The package spec")
        assert (fields["dry_run"]["type"], fields["dry_run"]["default"]) == ("boolean", False)
        workers = schema["definitions"]["RunOverrides"]["properties"]["max_workers"]
        assert workers["description"] == "Assets copied at once (spec: relocate.max_workers)."
        assert workers["default"] is None
        assert {"type": "integer", "minimum": 1, "maximum": 256} in workers["anyOf"]
        assert shards.parameter_openapi_schema["properties"]["shards"] == {
            "default": 2,
            "description": "How many flow runs share the package (1-64).",
            "maximum": 64,
            "minimum": 1,
            "position": 1,
            "title": "shards",
            "type": "integer",
        }

        def runs() -> int:
            return client.count_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[relocate.id]))
            )

        before = runs()
        # What the UI's Run button sends: the server checks it against the schema and refuses.
        with pytest.raises(PrefectHTTPStatusError, match="409") as refused:
            client.create_flow_run_from_deployment(
                relocate.id, parameters={"overrides": {"max_workers": 0}}
            )
        assert "Validation failed for field 'overrides.max_workers'" in str(refused.value)
        assert "0 is less than the minimum of 1" in str(refused.value)
        with pytest.raises(PrefectHTTPStatusError, match="'shards'"):
            client.create_flow_run_from_deployment(shards.id, parameters={"shards": 0})
        assert runs() == before


def test_stacflow_serve_runs_a_spec_on_an_interval(api, tmp_path):
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType  # noqa: PLC0415

    specs = tmp_path / "specs"
    shutil.copytree(REPO / "specs", specs, ignore=shutil.ignore_patterns("out", "__pycache__"))
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_HOME": str(tmp_path)}
    with (tmp_path / "serve.log").open("wb") as out:
        serving = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stacflow.flows.cli",
                "serve",
                str(specs / "demo.yaml"),
                "--interval",
                "5",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    completed = []
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        with get_client(sync_client=True) as client:
            while not completed and time.monotonic() < deadline:
                assert serving.poll() is None, (tmp_path / "serve.log").read_text()
                completed = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(
                        name=DeploymentFilterName(any_=["demo-drone-survey"])
                    ),
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[StateType.COMPLETED])
                        )
                    ),
                )
                time.sleep(0.5)
            deployment = client.read_deployment_by_name("relocate-package/demo-drone-survey")
    finally:
        _stop(serving)
    assert completed, (tmp_path / "serve.log").read_text()
    [schedule] = deployment.schedules
    assert schedule.schedule.interval.total_seconds() == 5
    assert deployment.parameters == {"spec_path": str(specs / "demo.yaml")}
    assert deployment.global_concurrency_limit.limit == 1
    assert (specs / "demo" / "out" / "results" / "local.assets.lock.parquet").is_file()


def test_require_workers_names_what_is_missing(api):
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import WorkPoolCreate  # noqa: PLC0415

    from stacflow.flows.server import require_workers  # noqa: PLC0415
    from stacflow.tasks.errors import UsageError  # noqa: PLC0415

    with pytest.raises(UsageError, match=r"no deployment relocate-package/nowhere on .*deploy"):
        require_workers("stacflow run --shards", "relocate-package/nowhere")
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="idle", type="process"))
        flow_id = client.create_flow_from_name("relocate-package")
        client.create_deployment(flow_id, "idle", work_pool_name="idle")
    with pytest.raises(UsageError, match="no worker is polling work pool 'idle'"):
        require_workers("stacflow run --shards", "relocate-package/idle")


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["serve", "demo.yaml"], "ERROR: stacflow serve needs a Prefect server"),
        (
            ["run", "demo.yaml", "--shards", "2"],
            "ERROR: stacflow run --shards needs a Prefect server",
        ),
        (
            ["run", "demo.yaml", "--dask-address", "tcp://127.0.0.1:8786"],
            "ERROR: --dask-address needs",  # the dask extra, or else a Prefect server
        ),
    ],
)
def test_commands_that_need_a_server_refuse_without_one(argv, error, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: PLC0415

    from stacflow.flows.cli import main  # noqa: PLC0415

    spec = str(REPO / "specs" / argv[1])
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main([argv[0], spec, *argv[2:]]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(error), err
    assert err.count("\n") == 1
    assert out == ""


# --- helpers -------------------------------------------------------------------------------


def _demo_spec_on(origin: Origin, spec: Path, name: str) -> None:
    """The demo package read from the test origin, copied into the clone's `specs/<name>/`."""
    spec.write_text(
        f"""name: demo-{name}
package: demo/demo.pkg
sources:
  https:
    prefix: https://demo-imagery.stacflow.invalid/
    store: {{endpoint: "{origin.url}/", allow_http: true}}
    compare: [size]
targets:
  local: {{store: {{type: file, root: {name}/local}}, layout: item-asset}}
validate: [local]
outputs: {name}/results
"""
    )


def _wait_until(condition, what: str, timeout_s: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def _wait_final(client, flow_run_id, timeout_s: float = RUN_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"flow run {run.name} still {run.state}"
        time.sleep(0.5)


def _wait_for_workers(count: int, timeout_s: float = 60) -> None:
    from prefect import get_client  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while len(client.read_workers_for_work_pool(POOL)) < count:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.25)


def _artifacts(flow_run_id):
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        ArtifactFilter,
        ArtifactFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in artifacts}


def _table(artifact) -> list[dict]:
    assert artifact.type == "table"
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def _demo_with_items(root: Path, count: int) -> None:
    """specs/ with the demo spec over `count` Items, made by the demo's own generator."""
    shutil.copytree(
        REPO / "specs", root / "specs", ignore=shutil.ignore_patterns("out", "__pycache__")
    )
    loader = importlib.util.spec_from_file_location(
        "make_demo", REPO / "specs" / "demo" / "make_demo.py"
    )
    make_demo = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(make_demo)
    make_demo.HERE = root / "specs" / "demo"
    make_demo.SURVEYS = [
        (f"flight-{i:02d}", f"Survey {i}", (16.37 + i / 100, 48.21), 60_000 + 7 * i)
        for i in range(count)
    ]
    make_demo.main()


def _results(root: Path) -> Path:
    return root / "specs" / "demo" / "out" / "results"


def _lock_rows(root: Path, name: str) -> list[dict]:
    """A relocated lock's rows, root made relative; each copy's etag and mtime are its own."""
    rows = []
    for row in read_lock(_results(root) / name):
        data = dataclasses.asdict(row)
        data.pop("etag")
        data.pop("last_modified")
        rows.append(json.loads(json.dumps(data).replace(str(root), "<root>")))
    return rows


def _items(root: Path, name: str) -> list[dict]:
    items = items_from_table(read_items_table(_results(root) / name))
    return json.loads(json.dumps(items, default=str).replace(str(root), "<root>"))


def _report(root: Path) -> set[tuple]:
    """The run report as a set: outcomes, bytes and errors, not timings or order."""
    return {
        (o.item_id, o.asset_key, o.store, o.step, o.outcome, o.bytes, o.error_class)
        for o in read_report(_results(root) / "report.parquet")
    }
