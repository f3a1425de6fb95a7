"""What relocate-package returns is cheap for Prefect to hand back, however many assets ran.

Prefect walks a flow's returned value through every list, dict and dataclass, looking for
futures: a Summary of 10,000 outcomes walked in full cost ~0.3 s of each run.
"""

from __future__ import annotations

from prefect.utilities.collections import visit_collection

from stacflow.flows.relocate import run_result
from stacflow.tasks.report import Outcome, Result, Step
from stacflow.tasks.summary import Summary
from tests.test_compiled import _compiled, _spec


def _visited(value: object) -> int:
    seen = []
    visit_collection(value, visit_fn=seen.append, return_data=False)
    return len(seen)


def test_the_returned_summary_is_not_walked(tmp_path):
    plan = _compiled(_spec(tmp_path))

    def result(count: int) -> dict:
        outcomes = tuple(
            Outcome(f"scene-{i}", "visual", "local", Step.RELOCATE, Result.COPIED, 3)
            for i in range(count)
        )
        return run_result(Summary(name="many", outcomes=outcomes, elapsed_s=1.0), plan)

    small, large = result(10), result(2_000)
    assert _visited(small) == _visited(large)
    assert large["summary"].value.outcomes[-1].item_id == "scene-1999"
    assert large["counts"] == {"relocate:local:copied": 2_000}
