"""relocate-package with its task runs on a Dask cluster (the optional `dask` extra).

The deployment entrypoint is `stacflow.flows.on_dask.relocate_package_on_dask`. It reads the
scheduler address from STACFLOW_DASK_ADDRESS when the flow-run process imports it, so one deployment
follows the cluster wherever the worker's environment points; unset, each run starts a temporary
local cluster. The Dask workers need stacflow installed, the same view of file targets and
outputs, and a Prefect server they can reach (Dask worker processes cannot share Prefect's
ephemeral mode).

Not named `dask.py`: Prefect loads a file entrypoint with its own folder first on sys.path, so
a `flows/dask.py` would be imported as `dask` itself and break prefect-dask (`No module named
'dask.utils'`).
"""

from __future__ import annotations

import os
from typing import Any

from prefect import Flow
from prefect_dask.task_runners import DaskTaskRunner

from stacflow.flows.relocate import relocate_package

ADDRESS_ENV = "STACFLOW_DASK_ADDRESS"


def on_dask(address: str | None) -> Flow[..., dict[str, Any]]:
    """relocate-package whose batches run on the Dask scheduler at `address` (tcp://host:8786)."""
    runner = DaskTaskRunner(address=address) if address else DaskTaskRunner()
    # Prefect types task_runner as TaskRunner[PrefectFuture], invariantly: Dask's fails it.
    return relocate_package.with_options(task_runner=runner)  # type: ignore[arg-type]


relocate_package_on_dask = on_dask(os.environ.get(ADDRESS_ENV) or None)
