"""A failed run looks failed everywhere the Prefect UI shows it: the task graph, the flow run's
name and state message, and every artifact's description (issue 15, section 2).

Runs on the real engine through the session harness; everything is read back through the API,
as the UI reads it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from stacflow.tasks.headline import failed_assets_line, headline
from stacflow.tasks.report import Outcome
from stacflow.tasks.summary import Summary, outcome_rows

REPO = Path(__file__).resolve().parents[1]
RUN_NAME = re.compile(r"^demo-drone-survey-\d{4}-\d\d-\d\dT\d\d:\d\d$")


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("out"))
    return tmp_path / "specs" / "demo.yaml"


def _run(flow, **parameters):
    state = flow(**parameters, return_state=True)
    from prefect import get_client  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def _task_runs(flow_run_id) -> dict[str, list]:
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        FlowRunFilter,
        FlowRunFilterId,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    by_task: dict[str, list] = {}
    for run in runs:
        by_task.setdefault(run.name.rsplit("-", 1)[0], []).append(run)
    return by_task


def _artifacts(flow_run_id) -> dict:
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


def _latest(key: str):
    from prefect import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
    )

    with get_client(sync_client=True) as client:
        [latest] = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key]))
        )
    return latest


def test_failed_assets_fail_a_task_run_that_names_them_and_batches_keep_their_rows(
    demo, prefect_harness
):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    (demo.parent / "demo" / "origin" / "uploads" / "flight-02" / "ortho.tif").unlink()
    run = _run(relocate_package, spec_path=str(demo))

    assert run.state.is_failed()
    assert run.state.message == "stacflow: demo-drone-survey: FAILED (1 asset failed)"
    assert RUN_NAME.match(run.name), run.name
    tasks = _task_runs(run.id)
    [failed] = tasks["assets-failed"]
    assert failed.state.is_failed()
    assert failed.state.message == (
        "FAILED: 1 of 6 assets failed at local, archive, https: flight-02/visual"
    )
    # The outcomes were recorded by batches that completed, and were not re-run.
    assert tasks["relocate-batch"]
    assert all(t.state.is_completed() and t.run_count == 1 for t in tasks["relocate-batch"])
    assert {name for name, runs in tasks.items() if any(r.state.is_failed() for r in runs)} == {
        "assets-failed"
    }

    artifacts = _artifacts(run.id)
    verdict = "FAILED: 1 of 6 assets failed at local, archive, https"
    for key in ("summary", "outcomes", "validation", "outputs"):
        assert artifacts[f"demo-drone-survey-{key}"].description.startswith(verdict), key
    rows = json.loads(artifacts["demo-drone-survey-outcomes"].data)
    assert rows[0]["item_id"] == "flight-02"
    assert rows[0]["error"].startswith("permanent: not found: ")
    assert list(rows[0])[:6] == ["outcome", "step", "store", "item_id", "asset_key", "error"]


def test_an_ok_run_says_ok_and_a_dry_run_publishes_a_plan_beside_it(demo, prefect_harness):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    run = _run(relocate_package, spec_path=str(demo))
    assert run.state.is_completed()
    assert RUN_NAME.match(run.name), run.name
    assert "assets-failed" not in _task_runs(run.id)
    summary = _artifacts(run.id)["demo-drone-survey-summary"]
    assert summary.description == "OK: 6 assets, 12 copied, 18 valid"

    (demo.parent / "demo" / "out" / "local-assets" / "flight-01" / "visual.tif").unlink()
    plan = _run(relocate_package, spec_path=str(demo), dry_run=True)
    assert plan.state.is_completed()
    assert plan.name.startswith("demo-drone-survey-plan-")
    published = _artifacts(plan.id)
    assert set(published) == {"demo-drone-survey-plan", "demo-drone-survey-plan-outcomes"}
    planned = published["demo-drone-survey-plan"]
    assert planned.description == "plan only: 6 assets, 1 to-copy, 11 skipped-verified"
    assert planned.data.startswith("# demo-drone-survey: plan only (dry run, nothing copied)")
    header = "| target | to copy (plan only) | skipped (verified) | drifted | failed |"
    assert header in planned.data
    assert "| local | 1 (625.1 KiB) | 5 (1.8 MiB) | 0 | 0 |" in planned.data
    assert "Nothing was copied" in planned.data
    # The latest real run's summary is still the one under the spec's summary key.
    assert _latest("demo-drone-survey-summary").flow_run_id == run.id


def test_a_validation_run_is_named_from_its_spec_and_publishes_what_the_readme_says(
    demo, prefect_harness
):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415
    from stacflow.flows.validate import validate_package  # noqa: PLC0415

    assert _run(relocate_package, spec_path=str(demo)).state.is_completed()
    run = _run(validate_package, spec_path=str(demo.parent / "scheduled-validation.yaml"))
    assert run.state.is_completed()
    assert re.match(r"^demo-drone-survey-nightly-validation-\d{4}-\d\d-\d\dT\d\d:\d\d$", run.name)
    # What the README says a validation publishes, and nothing else.
    slug = "demo-drone-survey-nightly-validation"
    artifacts = _artifacts(run.id)
    assert set(artifacts) == {f"{slug}-summary", f"{slug}-validation", f"{slug}-outputs"}
    assert artifacts[f"{slug}-summary"].description == "OK: 6 assets, 12 valid"
    assert artifacts[f"{slug}-summary"].data.startswith(f"# {slug}: OK")
    rows = json.loads(artifacts[f"{slug}-validation"].data)
    assert {(r["lock"], r["valid"]) for r in rows} == {("https", True), ("local", True)}
    assert len(rows) == 12
    assert artifacts[f"{slug}-outputs"].data.endswith("/specs/demo/out/results)")


def _outcome(item: str, store: str, outcome: str, step: str = "relocate", **kw) -> Outcome:
    return Outcome(item, "visual", store, step, outcome, **kw)


def test_headlines_count_assets_not_rows_and_stay_one_bounded_line():
    failed = Summary(
        name="x",
        outcomes=tuple(
            [_outcome(f"i{n}", "local", "copied") for n in range(5)]
            + [
                _outcome(f"i{n}", "archive", "failed", error_class="not_found", message="gone")
                for n in range(5, 9)
            ]
        ),
        elapsed_s=1.0,
    )
    assert headline(failed) == "FAILED: 4 of 9 assets failed at archive"
    assert failed_assets_line(failed) == (
        "FAILED: 4 of 9 assets failed at archive: i5/visual, i6/visual, i7/visual and 1 more"
    )
    ok = Summary(name="x", outcomes=(_outcome("i0", "local", "copied"),), elapsed_s=1.0)
    assert headline(ok) == "OK: 1 asset, 1 copied"

    traceback = "Traceback (most recent call last):\n  File 'x'\n" + "y" * 5000
    [row] = outcome_rows(
        [_outcome("i0", "local", "failed", error_class="internal", message=traceback)]
    )
    assert "\n" not in row["error"]
    assert len(row["error"]) == 300
    assert row["error"].startswith("internal: Traceback (most recent call last): File 'x' yyy")
    assert row["error"].endswith("…")
