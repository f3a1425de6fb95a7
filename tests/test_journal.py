"""The journal of verified copies survives a torn last line: nothing appended after it is lost.

A kill or a full disk can cut a run's last record anywhere; the next run must neither lose the
records it appends after that fragment nor report OK for a copy it did not record.
"""

from __future__ import annotations

import os
from pathlib import Path

from stacflow.tasks.locks import LockRow, read_lock
from stacflow.tasks.moves import Record
from stacflow.tasks.report import Outcome, Result, Step
from stacflow.tasks.state import append_records, journal_path, read_records, record_line
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package

LOCKED_AT = "2024-01-02T03:04:05+00:00"


def _record(index: int) -> Record:
    row = LockRow(
        f"ïtem-{index}", "visual", "file", None, None, f"/t/{index}/日本.tif", 3, '"e"', LOCKED_AT
    )
    return Record(row, 3, f'"s{index}"', LOCKED_AT)


def test_every_cut_of_the_last_line_keeps_the_records_before_it_and_after_it(tmp_path):
    earlier, torn, later = [_record(0), _record(1)], _record(2), _record(3)
    whole = b"".join(record_line(r).encode() for r in earlier)
    last = record_line(torn).encode()
    for cut in range(len(last) + 1):
        journal = tmp_path / f"cut-{cut}.jsonl"
        journal.write_bytes(whole + last[:cut])

        append_records(journal, [later])  # the next run's first record

        records = read_records(journal)
        expected = {(r.row.item_id, r.row.asset_key): r for r in [*earlier, later]}
        if cut >= len(last) - 1:  # whole but for (at most) its newline: a record all the same
            expected[(torn.row.item_id, torn.row.asset_key)] = torn
        assert records == expected, f"cut at byte {cut} of {len(last)}"
        assert journal.read_bytes().endswith(b"\n")


def test_a_journal_that_is_only_a_fragment_is_repaired(tmp_path):
    journal = tmp_path / "only.jsonl"
    journal.write_bytes(record_line(_record(0)).encode()[:17])
    append_records(journal, [_record(1)])
    assert journal.read_bytes() == record_line(_record(1)).encode()


# --- through the flow: a run after a torn journal records what it copies, or says it did not ---


def _spec(folder: Path, package: Path, origin_url: str) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: torn-journal
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  local:
    store: {{type: file, root: {folder / "assets"}}}
relocate: {{max_workers: 2, chunk_size: 64KiB, memory_limit: 1MiB}}
validate: [local]
outputs: {folder / "out"}
"""
    )
    return spec


def test_a_run_after_a_torn_journal_records_its_copies(tmp_path, origin, prefect_harness):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415
    from stacflow.tasks.items import items_from_table, read_items_table  # noqa: PLC0415

    origin.last_modified = LAST_MODIFIED_HTTP
    assets = {
        ("scene-1", "visual"): ("scenes/1/visual.tif", os.urandom(70_000)),
        ("scene-2", "visual"): ("scenes/2/visual.tif", os.urandom(20_000)),
    }
    package = make_package(tmp_path / "pkg", origin.root, assets)
    # A run killed while writing scene-1's record: half a line, no lock, no items yet.
    journal = journal_path(tmp_path / "out", "local")
    journal.parent.mkdir(parents=True)
    fragment = record_line(
        Record(LockRow("scene-1", "visual", "file", None, None, "/x"), 1, None, None)
    )
    journal.write_text(fragment[: len(fragment) // 2])

    result = relocate_package(spec_path=str(_spec(tmp_path, package, origin.url)))

    assert result["ok"], result["text"]
    assert result["counts"]["relocate:local:copied"] == 2
    relocated = {
        (r.item_id, r.asset_key) for r in read_lock(tmp_path / "out" / "local.assets.lock.parquet")
    }
    assert relocated == set(assets)
    items = items_from_table(read_items_table(tmp_path / "out" / "items.parquet"))
    assert {i["id"] for i in items if "local" in i["assets"]["visual"].get("alternate", {})} == {
        "scene-1",
        "scene-2",
    }


def test_a_copy_missing_from_the_journal_read_back_is_reported_failed(tmp_path):
    """The last line of defence: whatever lost the record, the run does not say OK."""
    from stacflow.flows.compile import compile_plan  # noqa: PLC0415
    from stacflow.flows.inputs import Inputs  # noqa: PLC0415
    from stacflow.flows.records import record_relocations  # noqa: PLC0415
    from stacflow.flows.spec import Spec  # noqa: PLC0415

    spec = Spec.model_validate(
        {
            "name": "lost-record",
            "package": "pkg",
            "sources": {"https": {"prefix": f"{ORIGIN}/"}},
            "targets": {"local": {"store": {"type": "file", "root": str(tmp_path / "assets")}}},
            "outputs": str(tmp_path / "out"),
        }
    )
    rows = [LockRow(f"scene-{i}", "visual", "https", ORIGIN, None, f"s/{i}.tif", 3) for i in (1, 2)]
    inputs = Inputs(spec, tmp_path / "spec.yaml", rows, None)
    plan = compile_plan(inputs)
    recorded = plan.moves[0].legs[0].row
    append_records(journal_path(inputs.outputs, "local"), [Record(recorded, 3, None, None)])
    outcomes = [
        Outcome(f"scene-{i}", "visual", "local", Step.RELOCATE, Result.COPIED, 3) for i in (1, 2)
    ]

    locks, alternates, settled = record_relocations(plan, inputs, outcomes)

    assert [r.item_id for r in locks["local"]] == ["scene-1"]
    assert [a.item_id for a in alternates] == ["scene-1"]
    assert [o.outcome for o in settled] == [Result.COPIED, Result.FAILED]
    assert "record is missing from" in settled[1].message
    assert "rerun" in settled[1].message
