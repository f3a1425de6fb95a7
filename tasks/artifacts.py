"""Prefect artifacts of a run: what the UI shows. They render outcome rows; they compute nothing.

Keys derive from the spec name, so the UI keeps each artifact's history across runs.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import time
from collections.abc import Sequence
from typing import Self, TextIO
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from stacflow.tasks.errors import scrub
from stacflow.tasks.headline import headline
from stacflow.tasks.report import Outcome, Step
from stacflow.tasks.sizes import format_size
from stacflow.tasks.summary import Summary, outcome_rows

TABLE_ROWS = 500


def artifact_key(slug: str, what: str) -> str:
    return f"{slug}-{what}"


def publish_summary(slug: str, summary: Summary, outputs_uri: str | None = None) -> None:
    """Each description is the run's verdict (`FAILED: 3 of 6 assets failed at local`), so the
    Artifacts page and a key's history read OK or FAILED without opening anything. A dry run
    publishes under keys of its own: a plan must not become the latest "summary" of a spec."""
    verdict = headline(summary)
    summary_key, outcomes_key = (
        ("plan", "plan-outcomes") if summary.dry_run else ("summary", "outcomes")
    )
    create_markdown_artifact(
        key=artifact_key(slug, summary_key), markdown=summary.markdown(), description=verdict
    )
    relocate = [o for o in summary.outcomes if o.step != Step.VALIDATE]
    if relocate:
        create_table_artifact(
            key=artifact_key(slug, outcomes_key),
            table=outcome_rows(relocate, TABLE_ROWS),
            description=f"{verdict} (per asset, failures first, at most {TABLE_ROWS} rows)",
        )
    if summary.dry_run:
        return
    publish_validation(slug, [o for o in summary.outcomes if o.step == Step.VALIDATE], verdict)
    if outputs_uri:
        create_link_artifact(
            key=artifact_key(slug, "outputs"),
            link=outputs_uri,
            link_text=scrub(f"{summary.name} outputs"),
            description=f"{verdict} (relocated locks, enriched items, validation lines, report)",
        )


def publish_validation(slug: str, outcomes: Sequence[Outcome], verdict: str) -> None:
    if outcomes:
        create_table_artifact(
            key=artifact_key(slug, "validation"),
            table=[
                {
                    "lock": row["store"],
                    "item_id": row["item_id"],
                    "asset_key": row["asset_key"],
                    "valid": row["outcome"] == "valid",
                    "errors": row["error"],
                    "checked": row["checked"],
                }
                for row in outcome_rows(outcomes, TABLE_ROWS)
            ],
            description=f"{verdict} (validation, invalid rows first, at most {TABLE_ROWS} rows)",
        )


class Progress:
    """Bytes and assets done: a Prefect progress artifact, and a live line on a terminal.

    Batches running in this process report each finished asset (`advance`); the flow also
    reports each finished batch, which is all it hears of batches run elsewhere (Dask, shards).
    An asset is counted once, whoever reports it. Reporters only count, under a lock; a thread of
    its own shows the counts (the artifact at most every `artifact_every_s`, off a terminal a
    plain line at most every `every_s`), so no copier ever waits on the API or on the terminal.
    """

    def __init__(
        self,
        slug: str,
        assets: int,
        total_bytes: int,
        *,
        stream: TextIO | None = None,
        every_s: float = 5.0,
        artifact_every_s: float = 2.0,
    ) -> None:
        self.assets, self.total_bytes = assets, total_bytes
        self.done_bytes = 0
        self.counted: set[tuple[str, str, str]] = set()
        self.done: set[tuple[str, str]] = set()
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.every_s = 0.1 if self.live else every_s
        self.artifact_every_s = artifact_every_s
        self.started = time.monotonic()
        self.last_line = self.last_artifact = float("-inf")
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.shower = threading.Thread(target=self._show_until_stopped, name="stacflow-progress")
        # Prefect's async_dispatch types it as maybe a coroutine; called from sync code, it is not.
        self.artifact: UUID = create_progress_artifact(  # type: ignore[assignment]
            progress=0.0, key=artifact_key(slug, "progress"), description="Assets relocated"
        )
        # The artifact is updated from the shower thread, outside the flow run's context: in a
        # copy of it, or Prefect would send the update to whatever API the process defaults to.
        self.context = contextvars.copy_context()

    def __enter__(self) -> Self:
        _ACTIVE.append(self)
        self.shower.start()
        return self

    def __exit__(self, *_: object) -> None:
        _ACTIVE.remove(self)
        self.stopped.set()
        self.shower.join()
        self._show(final=True)

    def advance(self, outcomes: Sequence[Outcome]) -> None:
        with self.lock:
            for o in outcomes:
                if (o.store, o.item_id, o.asset_key) not in self.counted:
                    self.counted.add((o.store, o.item_id, o.asset_key))
                    self.done.add((o.item_id, o.asset_key))
                    self.done_bytes += o.bytes

    def _show_until_stopped(self) -> None:
        while not self.stopped.wait(min(self.every_s, self.artifact_every_s)):
            self._show(final=False)

    def _show(self, *, final: bool) -> None:
        with self.lock:
            done, done_bytes = len(self.done), self.done_bytes
        now = time.monotonic()
        if final or now - self.last_artifact >= self.artifact_every_s:
            self.last_artifact = now
            percent = 100.0 * done / self.assets if self.assets else 100.0
            self.context.run(update_progress_artifact, artifact_id=self.artifact, progress=percent)
        if final or now - self.last_line >= self.every_s:
            self.last_line = now
            rate = done_bytes / max(now - self.started, 1e-9)
            line = (
                f"  {done:,}/{self.assets:,} assets  "
                f"{format_size(done_bytes)}/{format_size(self.total_bytes)}  "
                f"{format_size(rate)}/s"
            )
            end = "\n" if final or not self.live else ""
            self.stream.write(("\r\033[K" if self.live else "") + line + end)
            self.stream.flush()


_ACTIVE: list[Progress] = []


def report_progress(outcomes: Sequence[Outcome]) -> None:
    """Called by batches as assets finish; a no-op where no flow in this process listens."""
    for progress in _ACTIVE:
        progress.advance(outcomes)
