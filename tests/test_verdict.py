"""An expected failure is said once: on the terminal and in the flow run's log, no traceback.

A run whose assets failed prints its summary once; a spec error met inside a flow run (as on a
worker) is one log line; both end the flow run Failed with a one-line state message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stacflow.flows.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("out"))
    return tmp_path / "specs" / "demo.yaml"


def latest_flow_run(name: str):
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName  # noqa: PLC0415
    from prefect.client.schemas.sorting import FlowRunSort  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
        return run


def flow_run_logs(flow_run_id) -> list[tuple[int, str]]:
    """(level, message) of every log line the flow run and its task runs sent to the API."""
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId  # noqa: PLC0415
    from prefect.logging.handlers import APILogWorker  # noqa: PLC0415

    APILogWorker.drain_all(timeout=30)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [(log.level, log.message) for log in logs]


def flow_run_artifact(flow_run_id, key: str) -> str:
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                key=ArtifactFilterKey(any_=[key]),
            )
        )
    return str(artifact.data)


def test_a_failed_run_says_its_summary_once(demo, prefect_harness, capsys):
    (demo.parent / "demo" / "origin" / "uploads" / "flight-02" / "ortho.tif").unlink()
    assert main(["run", str(demo)]) == 1
    out, err = capsys.readouterr()
    assert out.count("stacflow: demo-drone-survey: FAILED (1 asset failed)") == 1
    assert "FAILED" not in err
    assert "Traceback" not in out + err
    (finished,) = [line for line in out.splitlines() if "finished in" in line]
    assert "Prefect start" in finished

    run = latest_flow_run("relocate-package")
    assert run.state.is_failed()
    assert run.state.message == "stacflow: demo-drone-survey: FAILED (1 asset failed)"
    logs = flow_run_logs(run.id)
    assert sum("flight-02/visual: failed: not found" in message for _, message in logs) == 1
    assert not [message for _, message in logs if "Traceback" in message]
    # The UI says it in the same words, with the same counts.
    summary = flow_run_artifact(run.id, "demo-drone-survey-summary")
    assert summary.startswith("# demo-drone-survey: FAILED (1 asset failed)\n")
    relocated = [line for line in summary.splitlines() if line.startswith("| local | 5 (")]
    assert relocated[0].endswith("| 0 | 0 | 1 |")  # 5 copied, 1 failed: as on the terminal


def test_a_spec_error_in_a_flow_run_is_one_line(demo, prefect_harness):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415
    from stacflow.tasks.errors import SpecError  # noqa: PLC0415

    spec = demo.parent / "bad.yaml"
    spec.write_text(demo.read_text().replace("max_workers: 4", "max_workers: 0"))
    state = relocate_package(spec_path=str(spec), return_state=True)
    assert state.is_failed()
    assert "\n" not in state.message
    assert "max_workers" in state.message
    with pytest.raises(SpecError):
        state.result()
    logs = flow_run_logs(state.state_details.flow_run_id)
    errors = [message for level, message in logs if level >= 40]
    assert len(errors) == 1, errors
    assert "max_workers" in errors[0]
    assert not [message for _, message in logs if "Traceback" in message]
