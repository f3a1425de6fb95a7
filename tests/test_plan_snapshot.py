"""The compiled plans of the demo and of the tutorial spec, as JSON, checked in.

A change to the compiler that changes what a run would do shows here as a diff to review.
Regenerate on purpose (then read the diff before committing it):

    STACFLOW_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_plan_snapshot.py
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from stacflow.flows.compile import Plan, compile_plan
from stacflow.flows.inputs import load_inputs, load_spec
from stacflow.tasks.owners import owner_id

REPO = Path(__file__).resolve().parents[1]
SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("STACFLOW_UPDATE_SNAPSHOTS") == "1"


def plan_json(plan: Plan, outputs: Path) -> str:
    """Every field of the plan, with the repository's absolute path written as `<repo>` (and
    the owner id, a hash of the absolute outputs path, as `<owner>`): the same in any clone."""
    text = json.dumps(plan, default=_plain, indent=1, sort_keys=True) + "\n"
    return text.replace(str(REPO), "<repo>").replace(owner_id(outputs), "<owner>")


def _plain(value: Any) -> Any:
    """json's `default`: what it cannot write itself, as something it can."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, frozenset | set):
        return sorted(value)
    return str(value)


@pytest.mark.parametrize("name", ["demo", "openaerialmap-austria"])
def test_compiled_plan_matches_its_snapshot(name, monkeypatch):
    for variable in (
        "STACPKG_TUTORIAL",
        "STACFLOW_OUT",
        "OAM_HTTPS_MIRROR",
        "OAM_S3_ENDPOINT",
        "OAM_ALLOW_HTTP",
    ):
        monkeypatch.delenv(variable, raising=False)
    spec_path = REPO / "specs" / f"{name}.yaml"
    inputs = load_inputs(spec_path, load_spec(spec_path))
    plan = compile_plan(inputs)  # no journals: the plan of a first run, from the tables alone
    text = plan_json(plan, inputs.outputs)
    snapshot = SNAPSHOTS / f"{name}.plan.json"
    if UPDATE:
        snapshot.write_text(text)
    assert text == snapshot.read_text(), f"the plan of {name} changed; see the module docstring"


def test_the_plan_is_frozen():
    spec_path = REPO / "specs" / "demo.yaml"
    plan = compile_plan(load_inputs(spec_path, load_spec(spec_path)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.moves = ()  # type: ignore[misc]
    assert isinstance(plan.moves, tuple)
    assert all(isinstance(move.legs, tuple) for move in plan.moves)
