"""A command compiles its plan once: the flow reuses the preflight's plan while nothing changed.

The CLI compiles before Prefect starts, the flow again from the spec path; the second compile
must return the same plan, and a plan compiled before a journal, a table or the spec changed
must never be reused.
"""

from __future__ import annotations

import os
from pathlib import Path

from stacflow.flows.compiled import compile_once
from stacflow.flows.inputs import load_inputs, load_spec
from stacflow.tasks.locks import LockRow
from stacflow.tasks.moves import Record
from stacflow.tasks.state import append_records, journal_path
from tests.packages import ORIGIN, make_package

LOCKED_AT = "2024-01-02T03:04:05+00:00"


def _spec(folder: Path, workers: int = 2) -> Path:
    assets = {(f"scene-{i}", "visual"): (f"s/{i}.tif", b"x" * (i + 1)) for i in range(3)}
    package = make_package(folder / "pkg", folder / "origin", assets)
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: compiled-once
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
targets:
  local:
    store: {{type: file, root: {folder / "assets"}}}
relocate: {{max_workers: {workers}}}
outputs: {folder / "out"}
"""
    )
    return spec


def _compiled(spec_path: Path, targets: list[str] | None = None):
    spec = load_spec(spec_path)
    return compile_once(load_inputs(spec_path, spec), targets)


def test_the_second_compile_of_unchanged_inputs_is_the_first_plan(tmp_path):
    spec = _spec(tmp_path)
    first = _compiled(spec)
    assert _compiled(spec) is first
    assert _compiled(spec, ["local"]) is not first  # other targets asked for: compiled anew


def test_a_journal_written_since_means_a_new_plan(tmp_path):
    spec = _spec(tmp_path)
    first = _compiled(spec)
    assert [len(m.legs) for m in first.moves] == [1, 1, 1]
    copied = first.moves[0].legs[0].row
    append_records(
        journal_path(tmp_path / "out", "local"),
        [Record(copied, copied.size_bytes, None, LOCKED_AT)],
    )
    again = _compiled(spec)
    assert again is not first
    assert again.moves != first.moves  # the recorded copy is now proven or checked, not copied


def test_an_edited_spec_or_table_means_a_new_plan(tmp_path):
    spec = _spec(tmp_path)
    first = _compiled(spec)
    spec.write_text(spec.read_text().replace("max_workers: 2", "max_workers: 3"))
    edited = _compiled(spec)
    assert edited is not first
    assert edited.policy.workers == 3
    lock = tmp_path / "pkg" / "assets.lock.parquet"
    stat = lock.stat()
    os.utime(lock, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert _compiled(spec) is not edited


def test_rows_given_in_memory_are_never_cached(tmp_path):
    """Lock-less Items: the lock is derived in the run (HEADs), no file says whether it changed."""
    spec_path = _spec(tmp_path)
    spec = load_spec(spec_path).model_copy(update={"package": None, "stac": Path("items.json")})
    rows = [LockRow("scene-0", "visual", "https", ORIGIN, None, "s/0.tif", 1)]
    inputs = load_inputs(spec_path, spec, lock=rows)
    assert compile_once(inputs) is not compile_once(inputs)
