"""`stacflow export SPEC`: the enriched Items as STAC JSON that STAC tools read without help.

The items table stays stacpkg's (stac-geoparquet without a `type` column, which stacpkg reads
and writes); pystac's `Item.from_dict` wants `"type": "Feature"` and GeoJSON geometry, so the
export rebuilds proper Items: an ItemCollection (`json`) or one Item per line (`ndjson`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from stacflow.flows.inputs import load_spec
from stacflow.flows.workspace import outputs_folder
from stacflow.tasks.atomic import write_text_atomic
from stacflow.tasks.errors import UsageError
from stacflow.tasks.items import items_from_table, read_items_table
from stacflow.tasks.outputs import OutputPaths

Format = Literal["ndjson", "json"]


def export_items(
    spec_path: Path, fmt: Format, output: Path | None, *, target: str | None = None
) -> int:
    """Write the spec's enriched Items (or, with `target`, its promoted ones) to `output`
    (stdout without one); returns how many."""
    spec = load_spec(spec_path)
    paths = OutputPaths(outputs_folder(spec_path, spec))
    if target is not None and target not in spec.targets:
        raise UsageError(f"{spec_path}: no target named {target!r} ({', '.join(spec.targets)})")
    table = paths.primary(target) if target else paths.items
    if not table.is_file():
        raise UsageError(
            f"{spec_path}: no {'promoted' if target else 'enriched'} items yet ({table}): "
            f"`stacflow run {spec_path}` writes them"
            + (f" (with targets.{target}.promote: true)" if target else "")
        )
    items = items_from_table(read_items_table(table))
    if fmt == "ndjson":
        text = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    else:
        collection = {"type": "FeatureCollection", "features": items}
        text = json.dumps(collection, ensure_ascii=False, indent=1) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(output, text)
    return len(items)
