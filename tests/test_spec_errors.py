"""The broken-spec corpus: every mistake a spec author makes gets one `ERROR:` line and exit 2.

Each YAML file under `tests/specs/broken/` holds one mistake and says what the error must say:

    # expect: <a substring of the message>
    # field: <the dotted field the message names>      (none for YAML syntax, plan conflicts)
    ... the spec; the line the error must name ends with the comment `# <-- here` ...

A spec with no `# <-- here` line is a mistake found past the loader, in the tables: with a
`# field:`, a problem of that file (`stac` without assets); without, a plan conflict found by the
compiler, whose message names the source or target. Paths in the specs are relative to them:
`../../data/oam-austria/...` is the fixture, other files beside them (`items-only.pkg/`) are
inputs made for one mistake. `tests/specs/good/oam-austria.yaml` is the spec they all break.

Each spec runs in-process against a copy of `tests/specs` and `tests/data` in a temporary folder,
so the test sees that nothing at all was written, with the flows replaced by stubs that fail the
test: the error must come from the CLI's preflight, before Prefect starts.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from stacflow.flows import planview, relocate, validate
from stacflow.flows.cli import main
from stacflow.tasks.errors import UsageError

HERE = Path(__file__).parent
BROKEN = sorted((HERE / "specs" / "broken").glob("*.yaml"))
DATA = HERE / "data" / "oam-austria"
MARKER = "# <-- here"


@dataclass(frozen=True)
class Case:
    expect: str
    field: str | None
    line: int | None

    @property
    def is_plan_conflict(self) -> bool:
        """Found by the compiler, at no line and in no one field: the message names a target."""
        return self.line is None and self.field is None


def read_case(path: Path) -> Case:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# expect: "), f"{path.name}: the first line is # expect: ..."
    field = next((ln.removeprefix("# field: ") for ln in lines if ln.startswith("# field: ")), None)
    marked = [number for number, ln in enumerate(lines, start=1) if ln.rstrip().endswith(MARKER)]
    assert len(marked) <= 1, f"{path.name}: more than one {MARKER!r} line"
    return Case(lines[0].removeprefix("# expect: "), field, marked[0] if marked else None)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """tests/data and tests/specs rebuilt under tmp, so relative paths still resolve."""
    shutil.copytree(DATA, tmp_path / "data" / DATA.name)
    shutil.copytree(HERE / "specs", tmp_path / "specs")
    return tmp_path


@pytest.fixture
def preflight(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """The errors the CLI's preflight raised; a flow that starts anyway fails the test."""
    raised: list[BaseException] = []
    check_spec = planview.check_spec

    def spy(*args: object, **kwargs: object) -> object:
        try:
            return check_spec(*args, **kwargs)
        except BaseException as error:
            raised.append(error)
            raise

    def no_flow(*args: object, **kwargs: object) -> None:
        pytest.fail("the flow was called: the preflight let a broken spec through to Prefect")

    monkeypatch.setattr(planview, "check_spec", spy)
    monkeypatch.setattr(relocate, "relocate_package", no_flow)
    monkeypatch.setattr(validate, "validate_package", no_flow)
    return raised


def snapshot(root: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in root.rglob("*")}


def run_broken(
    spec: Path, command: str, sandbox: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> tuple[Path, int, str, str]:
    copy = sandbox / "specs" / "broken" / spec.name
    for name in re.findall(r"\$\{(STACFLOW_TEST_\w+)", copy.read_text()):
        monkeypatch.delenv(name, raising=False)
    before = snapshot(sandbox)
    code = main([command, str(copy)])
    out, err = capsys.readouterr()
    assert snapshot(sandbox) == before, "a broken spec must not write anything"
    return copy, code, out, err


def assert_one_error_line(copy: Path, case: Case, code: int, out: str, err: str) -> str:
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n")
    assert err.count("\n") == 1, f"expected exactly one line, got:\n{err}"
    line = err.removesuffix("\n")
    where = f"ERROR: {copy}:{case.line}: " if case.line else f"ERROR: {copy}: "
    assert line.startswith(where), f"expected {where!r} at the start of {line!r}"
    if case.field:
        assert line.startswith(f"{where}{case.field}: "), f"expected field {case.field}: {line}"
    assert case.expect in line
    return line


def test_the_corpus_is_big_enough():
    assert len(BROKEN) >= 25
    assert any(read_case(spec).is_plan_conflict for spec in BROKEN)


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("spec", BROKEN, ids=lambda path: path.stem)
def test_broken_spec_fails_in_the_preflight(spec, command, sandbox, preflight, monkeypatch, capsys):
    case = read_case(spec)
    copy, code, out, err = run_broken(spec, command, sandbox, monkeypatch, capsys)
    line = assert_one_error_line(copy, case, code, out, err)
    assert len(preflight) == 1
    assert isinstance(preflight[0], UsageError)
    assert line == f"ERROR: {preflight[0]}"


SPEC_ERRORS = [spec for spec in BROKEN if read_case(spec).line is not None]
"""Mistakes the loader finds; `plan` loads the spec itself and reports them as `run` does."""


@pytest.mark.parametrize("spec", SPEC_ERRORS, ids=lambda path: path.stem)
def test_plan_reports_a_broken_spec_the_same_way(spec, sandbox, preflight, monkeypatch, capsys):
    """`stacflow plan` loads the spec itself; a plan conflict is its table, not an error line."""
    case = read_case(spec)
    copy, code, out, err = run_broken(spec, "plan", sandbox, monkeypatch, capsys)
    assert_one_error_line(copy, case, code, out, err)


CONFLICTS = [spec for spec in BROKEN if read_case(spec).is_plan_conflict]


@pytest.mark.parametrize("spec", CONFLICTS, ids=lambda path: path.stem)
def test_plan_shows_a_plan_conflict_in_its_table(spec, sandbox, preflight, monkeypatch, capsys):
    """`stacflow plan` is where a conflict is looked at: its table, exit 2, nothing written."""
    _, code, out, err = run_broken(spec, "plan", sandbox, monkeypatch, capsys)
    assert code == 2
    assert err == ""
    assert read_case(spec).expect in out
    assert "a run refuses to start until every conflict is resolved" in out


def test_the_good_twin_passes_the_preflight(sandbox, preflight):
    """Every broken spec is this one with one mistake: it must be the mistake that fails."""
    copy = sandbox / "specs" / "good" / "oam-austria.yaml"
    before = snapshot(sandbox)
    spec = planview.check_spec(copy, None)
    assert spec.name == "openaerialmap-austria"
    assert snapshot(sandbox) == before
