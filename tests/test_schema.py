"""The JSON Schema editors use: committed, current, and accepting every example spec."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from stacflow.flows.cli import main
from stacflow.flows.inputs import load_spec
from stacflow.flows.schema import INTERPOLATION, spec_schema

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "stacflow.schema.json"
EXAMPLES = sorted((REPO / "specs").glob("*.yaml"))
HEADER = "# yaml-language-server: $schema=../stacflow.schema.json"
REGENERATE = "regenerate it with: stacflow schema -o stacflow.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(COMMITTED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schema_is_current(tmp_path, capsys):
    assert COMMITTED.is_file(), f"stacflow.schema.json is missing: {REGENERATE}"
    generated = tmp_path / "schema.json"
    assert main(["schema", "-o", str(generated)]) == 0
    assert COMMITTED.read_text() == generated.read_text(), (
        f"stacflow.schema.json is stale: {REGENERATE}"
    )
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == generated.read_text()


def test_there_are_example_specs():
    assert EXAMPLES, "specs/ holds the example specs the README and deployments use"


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda path: path.stem)
def test_example_spec_names_the_schema_loads_and_validates(spec, validator):
    text = spec.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER, f"{spec.name} must start with: {HEADER}"
    load_spec(spec, env={})
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(yaml.safe_load(text))
    ]
    assert not errors, f"{spec.name} does not validate against stacflow.schema.json: {errors}"


def test_descriptions_and_defaults_are_in_the_schema():
    schema = spec_schema()
    defs = schema["$defs"]
    for name, definition in [("Spec", schema), *defs.items()]:
        assert definition.get("description"), f"{name} has no description"
        for key, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{key} has no description"
    relocate = defs["Relocate"]["properties"]
    assert relocate["memory_limit"]["default"] == "512MiB"
    assert relocate["chunk_size"]["default"] == "8MiB"
    assert relocate["max_workers"]["default"] == 8
    assert relocate["on_drift"]["default"] == "refuse"
    assert relocate["retry"]["default"] == {}
    assert defs["Retry"]["properties"]["initial_backoff"]["default"] == "1s"
    assert defs["Access"]["properties"]["timeout"]["default"] == "30min"
    assert defs["Source"]["properties"]["compare"]["default"] == ["size", "etag", "last_modified"]
    assert defs["Target"]["properties"]["layout"]["default"] == "item-asset"
    assert schema["required"] == ["name", "sources", "outputs"]


def _accepts(validator: jsonschema.Draft202012Validator, relocate: dict) -> bool:
    spec = {"name": "x", "package": "p", "sources": {"s": {}}, "outputs": "out"}
    return validator.is_valid({**spec, "relocate": relocate})


@pytest.mark.parametrize(
    ("relocate", "valid"),
    [
        ({"memory_limit": "512MiB", "chunk_size": "8 MiB"}, True),
        ({"memory_limit": 536870912, "chunk_size": 65536}, True),
        ({"memory_limit": "1GB", "batch": {"bytes": "4GiB"}}, True),
        ({"memory_limit": "512MB8"}, False),
        ({"memory_limit": "8M"}, False),
        ({"memory_limit": -1}, False),
        ({"retry": {"initial_backoff": "30s", "max_backoff": "5min"}}, True),
        ({"retry": {"initial_backoff": 1.5, "max_backoff": 60}}, True),
        ({"retry": {"initial_backoff": "250ms", "max_backoff": "2h"}}, True),
        ({"retry": {"max_backoff": "soon"}}, False),
        ({"max_workers": "${WORKERS}", "fail_fast": "${FAIL_FAST:-false}"}, True),
        ({"max_workers": "many"}, False),
        ({"on_drift": "ignore"}, False),
    ],
)
def test_sizes_durations_and_references_in_the_schema(validator, relocate, valid):
    assert _accepts(validator, relocate) is valid


def test_the_schema_takes_both_forms_of_validate_and_refuses_unknown_keys(validator):
    spec = {"name": "x", "package": "p", "sources": {"s": {}}, "outputs": "out"}
    assert validator.is_valid({**spec, "validate": ["s"]})
    assert validator.is_valid({**spec, "validate": {"locks": ["s"], "checksums": ["s"]}})
    assert validator.is_valid({**spec, "validate": {"locks": ["s"], "checksums": True}})
    assert not validator.is_valid({**spec, "validate": {"checksums": True}})
    assert not validator.is_valid({**spec, "output": "typo"})
    assert not validator.is_valid({**spec, "sources": {"bad name": {}}})
    target = {"store": {"type": "file", "root": "r"}, "layuot": "item-asset"}
    assert not validator.is_valid({**spec, "targets": {"t": target}})


def test_credentials_take_no_references_in_the_schema(validator):
    """The loader refuses `${...}` under credentials; the editor says so too."""
    spec = {"name": "x", "package": "p", "sources": {"s": {}}, "outputs": "out"}
    keys = {"access_key_id": {"env": "KEY_ID"}, "secret_access_key": {"env": "SECRET"}}
    store = {"type": "s3", "bucket": "my-bucket", "credentials": keys}
    assert validator.is_valid({**spec, "targets": {"t": {"store": store}}})
    keys["secret_access_key"] = {"env": "${SECRET}"}
    assert not validator.is_valid({**spec, "targets": {"t": {"store": store}}})
    keys["secret_access_key"] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert not validator.is_valid({**spec, "targets": {"t": {"store": store}}})
    defs = spec_schema()["$defs"]
    for name in ("Credentials", "EnvRef"):
        assert INTERPOLATION["description"] not in json.dumps(defs[name])


@pytest.mark.parametrize(
    ("layout", "valid"),
    [
        ("item-asset", True),
        ("source-key", True),
        ("{collection}/{item_id}/{asset_key}{ext}", True),
        ("mirror/{source_key}", True),
        ("flat", False),
        ("{item}/{asset_key}{ext}", False),
        ("{item_id}/{}", False),
    ],
)
def test_layouts_in_the_schema(validator, layout, valid):
    spec = {"name": "x", "package": "p", "sources": {"s": {}}, "outputs": "out"}
    target = {"store": {"type": "file", "root": "r"}, "layout": layout}
    assert validator.is_valid({**spec, "targets": {"t": target}}) is valid
