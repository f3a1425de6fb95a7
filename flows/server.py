"""Preconditions of the commands that need a real Prefect server, checked before they start.

`stacflow serve` and `stacflow run --shards` cannot work in Prefect's ephemeral mode: without a
server nothing schedules runs, and without a worker nobody runs the shards. Waiting forever on
either is the failure mode; refusing with one line that says what to start is the fix.
"""

from __future__ import annotations

from prefect import get_client
from prefect.client.schemas.objects import WorkPoolStatus
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from stacflow.tasks.errors import UsageError

START_SERVER = (
    "start one with `prefect server start` and set "
    "PREFECT_API_URL=http://127.0.0.1:4200/api (`prefect config set PREFECT_API_URL=...`)"
)


def require_server(command: str) -> str:
    """The API URL of a server that answers; a UsageError naming what to start otherwise."""
    url: str | None = PREFECT_API_URL.value()
    if not url:
        raise UsageError(f"{command} needs a Prefect server: {START_SERVER}")
    # No retries: a server that is not there should cost a second, not a backoff schedule.
    with (
        temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}),
        get_client(sync_client=True) as client,
    ):
        problem = client.api_healthcheck()
    if problem is not None:
        raise UsageError(
            f"{command}: no Prefect server answers at {url} ({problem}); {START_SERVER}"
        )
    return url


def require_workers(command: str, deployment: str) -> None:
    """The deployment exists and at least one worker polls its pool, or a UsageError."""
    url = require_server(command)
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            raise UsageError(
                f"{command}: no deployment {deployment} on {url}; create it with "
                "`prefect deploy --all` from the repo root"
            ) from None
        pool = found.work_pool_name
        if pool is None:
            raise UsageError(f"{command}: deployment {deployment} is not assigned to a work pool")
        try:
            status = client.read_work_pool(pool).status
        except ObjectNotFound:
            status = None
    if status != WorkPoolStatus.READY:
        raise UsageError(
            f"{command}: no worker is polling work pool {pool!r}; start one with "
            f"`prefect worker start --pool {pool}` from the repo root"
        )
