"""Flow run names an operator can read: the spec's name and when the run was due, not Prefect's
random adjective-animal (`demo-drone-survey-2026-12-04T02:30`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.runtime import flow_run

from stacflow.flows.inputs import load_spec
from stacflow.tasks.errors import StacflowError, scrub


def spec_run_name(parameters: dict[str, Any], due: datetime | None) -> str:
    """`<spec name>[-plan|-shard-<i>of<n>]-<due, UTC, to the minute>`.

    A spec that cannot be read names the run after its file: the run itself then fails and says
    why, which a naming error would hide. A name taken from the environment shows as `${VAR}`.
    """
    spec_path = str(parameters.get("spec_path") or "spec")
    try:
        name = load_spec(Path(spec_path)).name
    except (StacflowError, OSError):
        name = Path(spec_path).stem
    if parameters.get("dry_run"):
        name += "-plan"
    shard = parameters.get("shard")
    if isinstance(shard, dict) and {"index", "count"} <= shard.keys():
        name += f"-shard-{shard['index']}of{shard['count']}"
    when = (due or datetime.now(UTC)).astimezone(UTC)
    return scrub(f"{name}-{when:%Y-%m-%dT%H:%M}")


def run_name_from_spec() -> Callable[[], str]:
    """A `flow_run_name` callable: Prefect calls it when the run starts, parameters known."""

    def name() -> str:
        parameters = {
            key: value.model_dump() if hasattr(value, "model_dump") else value
            for key, value in flow_run.parameters.items()
        }
        return spec_run_name(parameters, flow_run.scheduled_start_time)

    return name
