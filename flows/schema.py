"""The JSON Schema of package specs, as editors use it (`# yaml-language-server: $schema=...`).

`stacflow.schema.json` at the repo root is generated from `Spec` (`stacflow schema -o
stacflow.schema.json`); a test keeps it in step. An editor checks what pydantic checks wherever
JSON Schema can say it (types, enums, patterns, unknown keys); cross-field rules (a name that
`validate` refers to, a target root inside the package) are left to `stacflow check`.

An editor sees the spec as written, before `${VAR}` interpolation: wherever a value is checked
beyond "a string" (a boolean, a size, a name), the schema also accepts a `${...}` reference,
except under `credentials`, where the loader refuses interpolation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from stacflow.flows.spec import Spec

SCHEMA_ID = "https://stacflow.dev/schema/spec-v1.json"
INTERPOLATION = {
    "type": "string",
    "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}",
    "description": "${VAR} or ${VAR:-default}: the value is read from the environment.",
}
NO_INTERPOLATION = frozenset({"Credentials", "EnvRef"})
_SCALARS = frozenset({"boolean", "integer", "number", "string"})
_ANNOTATIONS = ("title", "description", "default")


class _SpecSchema(GenerateJsonSchema):
    """Shows the defaults that come from factories too, as an author would write them.

    A nested section (`relocate`, `select`, a source's `store`) defaults to `{}`, i.e. each of
    its keys at its own documented default; a list defaults to its value.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        return {} if isinstance(value, BaseModel) else value


def spec_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(by_alias=True, mode="validation", schema_generator=_SpecSchema)
    _close_named_maps(schema)
    for name, definition in schema["$defs"].items():
        if name not in NO_INTERPOLATION:
            _allow_interpolation(definition)
    _allow_interpolation({key: value for key, value in schema.items() if key != "$defs"})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _close_named_maps(node: Any) -> None:
    """`sources` and `targets` accept only valid names as keys, as the model does."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_named_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_named_maps(value)


def _allow_interpolation(node: Any) -> None:
    """Every property and list item below `node` also accepts a `${...}` reference."""
    if isinstance(node, list):
        for value in node:
            _allow_interpolation(value)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.get("properties", {}).items():
        node["properties"][key] = _interpolable(value)
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        node["items"] = _interpolable(node["items"])
    for key, value in node.items():
        if key not in ("properties", "items"):
            _allow_interpolation(value)


def _interpolable(prop: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in prop:
        if (
            any(_checked_scalar(alt) for alt in prop["anyOf"])
            and INTERPOLATION not in prop["anyOf"]
        ):
            prop["anyOf"].append(INTERPOLATION)
        _allow_interpolation(prop["anyOf"])
        return prop
    if _checked_scalar(prop):
        annotations = {key: prop.pop(key) for key in _ANNOTATIONS if key in prop}
        return {"anyOf": [prop, INTERPOLATION], **annotations}
    _allow_interpolation(prop)
    return prop


def _checked_scalar(schema: Any) -> bool:
    """A scalar that `${...}` would not already satisfy (a const, the union tag, stays fixed)."""
    if not isinstance(schema, dict) or schema.get("type") not in _SCALARS or "const" in schema:
        return False
    if schema["type"] != "string":
        return True
    return any(key in schema for key in ("pattern", "enum", "format", "minLength", "maxLength"))
