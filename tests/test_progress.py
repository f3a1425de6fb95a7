"""Progress: reporters only count; a thread of its own shows the counts (artifact and line)."""

from __future__ import annotations

import io
import threading

from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

from stacflow.tasks.artifacts import Progress, report_progress
from stacflow.tasks.report import Outcome, Result, Step


def _outcome(index: int, store: str = "local") -> Outcome:
    return Outcome(
        item_id=f"item-{index}",
        asset_key="data",
        store=store,
        step=Step.RELOCATE,
        outcome=Result.COPIED,
        bytes=1024,
    )


@flow
def count_from_threads(stream: io.StringIO) -> Progress:
    with Progress(
        "progress-test", 400, 400 * 1024 * 2, stream=stream, every_s=0.01, artifact_every_s=0.01
    ) as progress:

        def report(first: int) -> None:
            for index in range(first, first + 100):
                report_progress([_outcome(index), _outcome(index, "s3")])

        threads = [threading.Thread(target=report, args=(n * 100,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        progress.advance([_outcome(0), _outcome(1, "s3")])  # the flow reports a batch again
    return progress


def test_every_asset_counted_once_whoever_reports_it(prefect_harness):
    stream = io.StringIO()
    progress = count_from_threads(stream)
    assert progress.done_bytes == 400 * 1024 * 2
    assert stream.getvalue().splitlines()[-1].startswith("  400/400 assets  800.0 KiB/800.0 KiB  ")
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[progress.artifact]))
        )
    assert artifact.data == 100.0


@flow
def advance_while_shower_blocked() -> tuple[bool, int]:
    entered, release = threading.Event(), threading.Event()

    class SlowStream(io.StringIO):
        def isatty(self) -> bool:
            return False

        def flush(self) -> None:
            entered.set()
            release.wait(10)

    progress = Progress("progress-slow", 2, 2048, stream=SlowStream(), every_s=0.01)
    with progress:
        assert entered.wait(10)
        reporter = threading.Thread(target=progress.advance, args=([_outcome(0)],))
        reporter.start()
        reporter.join(5)
        counted_while_shower_blocked = not reporter.is_alive()
        release.set()
    return counted_while_shower_blocked, progress.done_bytes


def test_a_reporter_never_waits_for_the_shower(prefect_harness):
    """While the shower is busy with the API or the terminal, advance still returns at once."""
    assert advance_while_shower_blocked() == (True, 1024)
