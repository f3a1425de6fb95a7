"""A run in a few lines: built from outcome rows only, rendered for a terminal or as markdown."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from stacflow.tasks.errors import ErrorClass, scrub
from stacflow.tasks.report import Outcome, Result, Step
from stacflow.tasks.sizes import format_size

FAILURES_SHOWN = 10
NO_CHECKSUM = "no checksum recorded"
EXAMPLES = 3
TO_COPY = "to-copy"
"""A dry run's outcome for an asset it would copy."""


@dataclass(frozen=True)
class Summary:
    name: str
    outcomes: tuple[Outcome, ...]
    elapsed_s: float
    byte_phase_s: float = 0.0
    flush_s: float = 0.0
    outputs: tuple[str, ...] = field(default=())
    unchanged: tuple[str, ...] = ()
    """Of `outputs`, those that already held exactly what this run would write: left alone."""
    dry_run: bool = False
    unvalidated: tuple[tuple[str, str], ...] = ()
    """Locks that were to be validated but could not be (none written yet), with the reason."""
    notes: tuple[str, ...] = ()
    """What a reader must know that no outcome row says (assets whose Item is missing)."""
    began: float | None = None
    """`time.monotonic()` when the run's own work began, so the process that started it can
    tell its own start-up (Prefect's) from the run."""

    @property
    def ok(self) -> bool:
        return not any(o.failed for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]

    def counts(self, step: Step) -> dict[str, dict[str, tuple[int, int]]]:
        """store → outcome → (assets, bytes), in first-seen order."""
        table: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for o in self.outcomes:
            if o.step == step:
                cell = table[o.store][o.outcome]
                cell[0] += 1
                cell[1] += o.bytes
        return {s: {k: (v[0], v[1]) for k, v in row.items()} for s, row in table.items()}

    @property
    def copied_bytes(self) -> int:
        return sum(
            o.bytes for o in self.outcomes if o.step == Step.RELOCATE and o.outcome == Result.COPIED
        )

    @property
    def throughput(self) -> float:
        return self.copied_bytes / self.byte_phase_s if self.byte_phase_s > 0 else 0.0

    @property
    def failed_assets(self) -> int:
        """Assets with at least one failed outcome: one asset failing at two targets is one."""
        return len({(o.item_id, o.asset_key) for o in self.failures})

    def text(self, finished: str | None = None) -> str:
        """For a terminal and the flow run's log; `finished` replaces the last line (the CLI
        times the whole command)."""
        lines = [
            f"stacflow: {self.name}: {'plan only (dry run)' if self.dry_run else self._verdict()}"
        ]
        for store, row in self.counts(Step.DERIVE).items():
            lines.append(f"  derive  {store:<12} {_cells(row)}")
        for store, row in self.counts(Step.RELOCATE).items():
            lines.append(f"  relocate → {store:<8} {_cells(row)}")
        lines.extend(
            f"  not selected: {count} ({reason}), e.g. {examples}"
            for reason, count, examples in self.not_selected()
        )
        if self.copied_bytes:
            lines.append(
                f"  bytes moved: {format_size(self.copied_bytes)} in {self.byte_phase_s:.2f} s "
                f"({format_size(self.throughput)}/s), flushed to disk in {self.flush_s:.2f} s"
            )
        for store, row in self.counts(Step.VALIDATE).items():
            lines.append(f"  validate {store:<11} {_cells(row)}{self._proof_text(store)}")
        for store, reason in self.unvalidated:
            lines.append(f"  validate {store:<11} not validated: {reason}")
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.extend(
            f"  ✗ {o.step} {o.store} {o.item_id}/{o.asset_key}: {o.outcome}: {o.message}"
            for o in self.failures[:FAILURES_SHOWN]
        )
        if len(self.failures) > FAILURES_SHOWN:
            lines.append(
                f"  … and {len(self.failures) - FAILURES_SHOWN} more failures (see the report)"
            )
        lines.extend(
            f"  {'unchanged' if path in self.unchanged else 'wrote'} {path}"
            for path in self.outputs
        )
        lines.append(finished or f"  finished in {self.elapsed_s:.1f} s")
        return scrub("\n".join(lines))

    def text_for_command(self, command_began: float) -> str:
        """What a command prints: the whole command timed, Prefect's start-up shown apart (both
        `time.monotonic()` values of the process that ran the flow)."""
        total = time.monotonic() - command_began
        if self.began is None or self.began < command_began:
            return self.text(finished=f"  finished in {total:.1f} s")
        return self.text(
            finished=f"  finished in {total:.1f} s (Prefect start "
            f"{self.began - command_began:.1f} s, run {self.elapsed_s:.1f} s)"
        )

    def markdown(self) -> str:
        verdict = "plan only (dry run, nothing copied)" if self.dry_run else self._verdict()
        parts = [f"# {self.name}: {verdict}", ""]
        relocate = self.counts(Step.RELOCATE)
        if relocate:
            first = ("to copy (plan only)", TO_COPY) if self.dry_run else ("copied", Result.COPIED)
            parts += [
                f"| target | {first[0]} | skipped (verified) | drifted | failed |",
                "|---|---|---|---|---|",
            ]
            for store, row in relocate.items():
                cells = [
                    _md_cell(row, r)
                    for r in (first[1], Result.SKIPPED_VERIFIED, Result.DRIFTED, Result.FAILED)
                ]
                parts.append(f"| {store} | " + " | ".join(cells) + " |")
            parts += [
                "",
                (
                    "Nothing was copied: this is what a run would do."
                    if self.dry_run
                    else f"Bytes moved: **{format_size(self.copied_bytes)}** in "
                    f"{self.byte_phase_s:.2f} s ({format_size(self.throughput)}/s); "
                    f"run took {self.elapsed_s:.1f} s."
                ),
                "",
            ]
        validate = self.counts(Step.VALIDATE)
        if validate:
            parts += ["| lock | valid | invalid | checksums |", "|---|---|---|---|"]
            for store, row in validate.items():
                parts.append(
                    f"| {store} | {row.get(Result.VALID, (0, 0))[0]} | "
                    f"{row.get(Result.INVALID, (0, 0))[0]} | "
                    f"{self._proof_cell(store)} |"
                )
            parts.append("")
        left_alone = self.not_selected()
        if left_alone:
            parts.append("## Not selected")
            parts += [
                f"- {count} locked assets: {reason} (e.g. {examples})"
                for reason, count, examples in left_alone
            ]
            parts.append("")
        if self.notes:
            parts.append("## Notes")
            parts += [f"- {note}" for note in self.notes]
            parts.append("")
        if self.unvalidated:
            parts.append("## Not validated")
            parts += [f"- **{store}**: {reason}" for store, reason in self.unvalidated]
            parts.append("")
        if self.failures:
            parts.append("## First failures")
            parts += [
                f"- `{o.item_id}/{o.asset_key}` at **{o.store}** ({o.step}): {o.outcome}, "
                f"{o.error_class}: {o.message}"
                for o in self.failures[:FAILURES_SHOWN]
            ]
            parts.append("")
        if self.outputs:
            parts.append("## Outputs")
            parts += [f"- [{path}]({_uri(path)})" for path in self.outputs]
        return scrub("\n".join(parts))

    def _proof(self, store: str) -> tuple[int, int, int]:
        """(rows, rows whose bytes were hashed, rows that had no checksum to hash against)."""
        checked = [o.checked for o in self.outcomes if o.step == Step.VALIDATE and o.store == store]
        hashed = sum(1 for c in checked if (c or "").startswith("sha256"))
        return len(checked), hashed, sum(1 for c in checked if c == NO_CHECKSUM)

    def _proof_text(self, store: str) -> str:
        """ " (with checksums)" only when every row's bytes were hashed; else what was."""
        rows, hashed, unproven = self._proof(store)
        if rows and hashed == rows:
            return " (with checksums)"
        if unproven and not hashed:
            return " (no checksum recorded: facts only)"
        if unproven:
            return f" (checksums: {hashed} hashed, {unproven} with no checksum recorded)"
        return ""

    def _proof_cell(self, store: str) -> str:
        rows, hashed, _ = self._proof(store)
        if rows and hashed == rows:
            return "yes"
        return f"{hashed} of {rows}" if hashed else "no"

    def not_selected(self) -> list[tuple[str, int, str]]:
        """(reason, assets, examples) of the locked assets the run left alone."""
        by_reason: dict[str, dict[tuple[str, str], None]] = defaultdict(dict)
        for o in self.outcomes:
            if o.outcome == Result.NOT_SELECTED:
                by_reason[o.message or ""][(o.item_id, o.asset_key)] = None
        return [
            (reason, len(assets), ", ".join(f"{i}/{a}" for i, a in list(assets)[:EXAMPLES]))
            for reason, assets in by_reason.items()
        ]

    def _verdict(self) -> str:
        if self.ok and self.unvalidated:
            names = ", ".join(store for store, _ in self.unvalidated)
            return f"OK for what exists ({names} not validated)"
        if self.ok:
            return "OK"
        left = sum(o.error_class == ErrorClass.INTERRUPTED for o in self.failures)
        if left:
            return f"INTERRUPTED ({left} cop{'y' if left == 1 else 'ies'} left; rerun to resume)"
        count = self.failed_assets
        return f"FAILED ({count} asset{'' if count == 1 else 's'} failed)"


def _cells(row: dict[str, tuple[int, int]]) -> str:
    return ", ".join(
        f"{n} {outcome}" + (f" ({format_size(size)})" if size else "")
        for outcome, (n, size) in row.items()
    )


def _md_cell(row: dict[str, tuple[int, int]], result: str) -> str:
    count, size = row.get(result, (0, 0))
    return f"{count} ({format_size(size)})" if size else str(count)


def _uri(path: str) -> str:
    return path if "://" in path else "file://" + path


def outcome_rows(outcomes: Sequence[Outcome], limit: int = 500) -> list[dict[str, object]]:
    """Rows for a table artifact: failures first, bounded, so the UI stays usable at 10k assets."""
    ordered = sorted(outcomes, key=lambda o: (not o.failed, o.step, o.store))
    return [
        {
            "outcome": o.outcome,
            "step": o.step,
            "store": o.store,
            "item_id": o.item_id,
            "asset_key": o.asset_key,
            "error": cell(f"{o.error_class}: {o.message}") if o.error_class else "",
            "bytes": o.bytes,
            "attempts": o.attempts,
            **({"checked": o.checked} if o.step == Step.VALIDATE else {}),
        }
        for o in ordered[:limit]
    ]


CELL_CHARS = 300


def cell(text: str, limit: int = CELL_CHARS) -> str:
    """One line for a table cell: Prefect's UI shows a cell's text as it is, so a traceback or
    a 2 MB key would stretch the table; whitespace folds to spaces, the rest is cut, said so."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
