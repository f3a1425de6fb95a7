"""Prefect artifacts of a run: what the UI shows. They render outcome rows; they compute nothing.

Keys derive from the spec name, so the UI keeps each artifact's history across runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tasks.report import Outcome, Step
from tasks.sizes import format_size
from tasks.summary import Summary, outcome_rows

TABLE_ROWS = 500


def artifact_key(slug: str, what: str) -> str:
    return f"{slug}-{what}"


def publish_summary(slug: str, summary: Summary, outputs_uri: str | None = None) -> None:
    create_markdown_artifact(
        key=artifact_key(slug, "summary"),
        markdown=summary.markdown(),
        description=f"stacflow run of {summary.name}",
    )
    relocate = [o for o in summary.outcomes if o.step != Step.VALIDATE]
    if relocate:
        create_table_artifact(
            key=artifact_key(slug, "outcomes"),
            table=outcome_rows(relocate, TABLE_ROWS),
            description=f"Per-asset outcomes, failures first (at most {TABLE_ROWS} rows)",
        )
    publish_validation(slug, [o for o in summary.outcomes if o.step == Step.VALIDATE])
    if outputs_uri:
        create_link_artifact(
            key=artifact_key(slug, "outputs"),
            link=outputs_uri,
            link_text=f"{summary.name} outputs",
            description="Relocated locks, enriched items, validation lines and the run report",
        )


def publish_validation(slug: str, outcomes: Sequence[Outcome]) -> None:
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
                }
                for row in outcome_rows(outcomes, TABLE_ROWS)
            ],
            description=f"Validation results, invalid rows first (at most {TABLE_ROWS} rows)",
        )


class Progress:
    """Bytes and assets done: a Prefect progress artifact, and a live line on a terminal.

    Off a terminal (CI, a worker's log), a plain line at most every `every_s` seconds.
    """

    def __init__(
        self,
        slug: str,
        assets: int,
        total_bytes: int,
        stream: TextIO | None = None,
        every_s: float = 5.0,
    ) -> None:
        self.assets, self.total_bytes = assets, total_bytes
        self.done_assets, self.done_bytes = 0, 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.every_s = every_s
        self.started = self.last_line = time.monotonic()
        self.artifact: UUID = create_progress_artifact(
            progress=0.0, key=artifact_key(slug, "progress"), description="Assets relocated"
        )

    def advance(self, outcomes: Sequence[Outcome], assets: int) -> None:
        self.done_assets += assets
        self.done_bytes += sum(o.bytes for o in outcomes)
        percent = 100.0 * self.done_assets / self.assets if self.assets else 100.0
        update_progress_artifact(artifact_id=self.artifact, progress=percent)
        now = time.monotonic()
        if self.live or now - self.last_line >= self.every_s or self.done_assets >= self.assets:
            self.last_line = now
            rate = self.done_bytes / max(now - self.started, 1e-9)
            line = (
                f"  {self.done_assets:,}/{self.assets:,} assets  "
                f"{format_size(self.done_bytes)}/{format_size(self.total_bytes)}  "
                f"{format_size(rate)}/s"
            )
            end = "\n" if not self.live or self.done_assets >= self.assets else ""
            self.stream.write(("\r\033[K" if self.live else "") + line + end)
            self.stream.flush()
