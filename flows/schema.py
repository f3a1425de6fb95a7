"""The JSON Schema of package specs, as editors use it (`# yaml-language-server: $schema=...`).

`stacflow.schema.json` at the repo root is generated from `Spec`; a test keeps it in step.
"""

from __future__ import annotations

from typing import Any

from flows.spec import Spec

SCHEMA_ID = "https://stacflow.dev/schema/spec-v1.json"


def spec_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
