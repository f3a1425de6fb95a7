"""`stacflow serve`: schedules without a work pool, for small teams (one long-running process).

Each spec becomes a relocate deployment (and, with a validation schedule, a validate deployment)
served by this process. Schedules need a real Prefect server: the ephemeral one cannot run them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import serve

from stacflow.flows.inputs import load_spec
from stacflow.flows.relocate import relocate_package
from stacflow.flows.server import require_server
from stacflow.flows.validate import validate_package

# A run still going when the next one is due (a slow night, a short interval) makes the next one
# wait: two runs of one spec would copy the same assets into the same targets at once.
ONE_AT_A_TIME = 1


def serve_specs(
    specs: Sequence[Path],
    *,
    cron: str | None = None,
    interval: float | None = None,
    validate_cron: str | None = None,
) -> None:
    """Serve until interrupted; the runs start in this process's working directory."""
    require_server("stacflow serve")
    deployments = []
    for spec_path in specs:
        slug = load_spec(spec_path).slug
        # Absolute: a served run must not depend on where the runner starts its subprocess.
        parameters = {"spec_path": str(spec_path.resolve())}
        deployments.append(
            relocate_package.to_deployment(
                name=slug,
                parameters=parameters,
                cron=cron,
                interval=interval,
                concurrency_limit=ONE_AT_A_TIME,
            )
        )
        if validate_cron:
            deployments.append(
                validate_package.to_deployment(
                    name=f"{slug}-validate",
                    parameters=parameters,
                    cron=validate_cron,
                    concurrency_limit=ONE_AT_A_TIME,
                )
            )
    # Prefect's async_dispatch types it as maybe a coroutine; called from sync code, it is not.
    serve(*deployments)  # type: ignore[arg-type]
