"""`stacflow serve`: schedules without a work pool, for small teams (one long-running process).

Each spec becomes a relocate deployment (and, with a validation schedule, a validate deployment)
served by this process. Schedules need a real Prefect server: the ephemeral one cannot run them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import serve
from prefect.settings import PREFECT_API_URL

from flows.inputs import load_spec
from flows.relocate import relocate_package
from flows.validate import validate_package
from tasks.errors import UsageError


def serve_specs(specs: Sequence[Path], *, cron: str | None, validate_cron: str | None) -> None:
    if not PREFECT_API_URL.value():
        raise UsageError(
            "stacflow serve needs a Prefect server for its schedules: start one with "
            "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    deployments = []
    for spec_path in specs:
        slug = load_spec(spec_path).slug
        parameters = {"spec_path": str(spec_path)}
        deployments.append(
            relocate_package.to_deployment(name=slug, parameters=parameters, cron=cron)
        )
        if validate_cron:
            deployments.append(
                validate_package.to_deployment(
                    name=f"{slug}-validate", parameters=parameters, cron=validate_cron
                )
            )
    serve(*deployments)
