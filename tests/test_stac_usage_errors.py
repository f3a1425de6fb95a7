"""A `stac:` run that ends in a usage error writes nothing (README's promise).

The lock of lock-less Items is derived (HEADs) inside the run, so some mistakes are found only
there: two assets a layout sends to one key, a target folder another spec owns. Their package
used to be written, and `<outputs>/.stacflow/` made, before the plan was refused. Now the plan
is compiled from the Items in memory and refused before anything is written; a good run then
writes the package as before, and a dry run writes nothing either.
"""

from __future__ import annotations

import json
from pathlib import Path

from stacflow.flows.cli import main
from stacflow.tasks.items import items_from_table, read_items_table
from stacflow.tasks.owners import OWNER_FILE
from tests.packages import item_dict


def stac_spec(tmp_path: Path, origin, layout: str = "item-asset") -> Path:
    items = []
    for n in (1, 2):
        origin.write(f"scenes/{n}/visual.tif", f"bytes of scene {n}\n".encode() * 100)
        item = item_dict(f"scene-{n}")
        item["assets"]["visual"] = {"href": f"{origin.url}/scenes/{n}/visual.tif"}
        items.append(item)
    (tmp_path / "items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": items})
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""name: stac-usage
stac: items.json
sources:
  api: {{prefix: "{origin.url}/", store: {{allow_http: true}}}}
targets:
  local: {{store: {{type: file, root: copies}}, layout: "{layout}"}}
outputs: out
"""
    )
    return spec


def test_a_layout_collision_found_in_the_run_writes_nothing(
    tmp_path, origin, prefect_harness, capsys
):
    spec = stac_spec(tmp_path, origin, layout="{collection}/same-name")
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ")
    assert "conflict" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "copies").exists()


def test_a_target_another_spec_owns_writes_nothing(tmp_path, origin, prefect_harness, capsys):
    spec = stac_spec(tmp_path, origin)
    (tmp_path / "copies").mkdir()
    owner = {"id": "another-spec", "name": "other", "outputs": "/elsewhere/out"}
    (tmp_path / "copies" / OWNER_FILE).write_text(json.dumps(owner))
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "is written by spec 'other'" in err
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == [OWNER_FILE]


def test_a_dry_run_of_items_writes_nothing_and_a_run_then_writes_the_package(
    tmp_path, origin, prefect_harness, capsys
):
    spec = stac_spec(tmp_path, origin)
    assert main(["run", str(spec), "--dry-run"]) == 0
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "copies").exists()

    assert main(["run", str(spec)]) == 0
    capsys.readouterr()
    package = items_from_table(read_items_table(tmp_path / "out" / "package" / "items.parquet"))
    assert [item["id"] for item in package] == ["scene-1", "scene-2"]
    enriched = items_from_table(read_items_table(tmp_path / "out" / "items.parquet"))
    assert all("alternate" in item["assets"]["visual"] for item in enriched)
