"""The "Relocate Assets" tutorial from one spec, table for table with what stacpkg 0.1.4 wrote.

stacpkg's tables are in tests/data/stacpkg/tutorial (made by make_references.py there, with
stacpkg itself, from the same oam-austria package). The spec plans the S3-shaped lock as
`relocate --dry-run` does, adds it as the `s3` alternate as `items enrich` does, relocates into
a folder and validates both sides. stacflow adds two documented things to stacpkg's tables: the
`file_checksum` column of relocated locks and `file:checksum` on relocated assets.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from stacflow.flows.cli import main
from stacflow.flows.spec import Spec
from stacflow.tasks.items import items_from_table, read_items_table
from stacflow.tasks.locks import LOCK_COLUMNS
from tests.stacpkg_refs import (
    AWKWARD,
    CORPUS_BUCKET,
    CORPUS_S3_ENDPOINT,
    LOCAL_ROOT,
    TUTORIAL,
)

REPO = Path(__file__).resolve().parents[1]
TUTORIAL_SPEC = REPO / "specs" / "openaerialmap-austria.yaml"
STACPKG_COLUMNS = list(LOCK_COLUMNS[:9])
FILE_ETAG = re.compile(r"^[0-9a-f]+-[0-9a-f]+-[0-9a-f]+$")  # obstore 0.9's, unquoted


@pytest.fixture
def tutorial_env(tmp_path, oam_data, monkeypatch):
    """The tutorial spec's files under tmp; its endpoints on loopback once a test serves them."""
    data = tmp_path / "tutorial"
    shutil.copytree(oam_data, data, ignore=shutil.ignore_patterns("origin"))
    out = tmp_path / "out"
    monkeypatch.setenv("STACPKG_TUTORIAL", str(data))
    monkeypatch.setenv("STACFLOW_OUT", str(out))
    return out


def _at_reference_root(table: pa.Table, root: Path) -> pa.Table:
    """Our folder's name replaced by the fixed one stacpkg's references were made under."""
    index = table.schema.get_field_index("key")
    keys = pc.replace_substring(table.column(index), str(root), LOCAL_ROOT)
    return table.set_column(index, table.schema.field(index), keys)


def _same_table(ours: Path, theirs: Path, root: Path | None = None) -> None:
    table = pq.read_table(ours)
    if root is not None:
        table = _at_reference_root(table, root)
    reference = pq.read_table(theirs)
    assert table.schema.equals(reference.schema, check_metadata=True)
    assert table.to_pylist() == reference.to_pylist()


# --- 13.7: the planned locks, without a byte moved ------------------------------------------------


def test_plan_writes_the_locks_stacpkgs_dry_run_writes(tutorial_env, tmp_path, capsys):
    planned = tmp_path / "planned"
    assert main(["plan", str(TUTORIAL_SPEC), "--write-locks", str(planned)]) == 0
    assert f"planned lock: {planned / 's3.assets.lock.parquet'}" in capsys.readouterr().out

    _same_table(
        planned / "s3.assets.lock.parquet",
        TUTORIAL / "openaerialmap-austria.s3.assets.lock.parquet",
    )
    _same_table(
        planned / "local.assets.lock.parquet",
        TUTORIAL / "openaerialmap-austria.local.planned.assets.lock.parquet",
        root=tutorial_env / "local-assets",
    )
    assert not (tutorial_env / "local-assets").exists()  # nothing was copied


def test_plan_writes_stacpkgs_dry_run_for_awkward_names(tmp_path):
    spec = tmp_path / "awkward.yaml"
    spec.write_text(
        f"""name: awkward
package: {AWKWARD / "package"}
sources:
  origin: {{prefix: "https://assets.example.test/"}}
targets:
  folder: {{store: {{type: file, root: "{LOCAL_ROOT}"}}}}
  flat: {{store: {{type: file, root: "{LOCAL_ROOT}-flat"}}, layout: source-key}}
  bucket:
    store: {{type: s3, bucket: {CORPUS_BUCKET}, prefix: copies, endpoint: "{CORPUS_S3_ENDPOINT}"}}
outputs: out
"""
    )
    planned = tmp_path / "planned"
    assert main(["plan", str(spec), "--write-locks", str(planned)]) == 0

    _same_table(
        planned / "folder.assets.lock.parquet", AWKWARD / "plan.file.item-asset.assets.lock.parquet"
    )
    _same_table(
        planned / "bucket.assets.lock.parquet", AWKWARD / "plan.s3.item-asset.assets.lock.parquet"
    )
    flat = pq.read_table(planned / "flat.assets.lock.parquet")
    flat = _at_reference_root(flat, Path(f"{LOCAL_ROOT}-flat"))
    assert (
        flat.to_pylist()
        == pq.read_table(AWKWARD / "plan.file.source-key.assets.lock.parquet").to_pylist()
    )


def test_plan_writes_no_lock_when_the_plan_conflicts(tmp_path):
    spec = tmp_path / "collide.yaml"
    spec.write_text(
        f"""name: collide
package: {AWKWARD.parent / "collide" / "package"}
sources:
  origin: {{prefix: "https://assets.example.test/"}}
targets:
  folder: {{store: {{type: file, root: copies}}}}
outputs: out
"""
    )
    assert main(["plan", str(spec), "--write-locks", str(tmp_path / "planned")]) == 2
    assert not (tmp_path / "planned").exists()


# --- 13.8 and 13.11: the whole tutorial -----------------------------------------------------------


def test_the_tutorial_matches_stacpkg_table_for_table(
    tutorial_env, oam_origin, oam_s3, moto_endpoint, monkeypatch, prefect_harness
):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    monkeypatch.setenv("OAM_HTTPS_MIRROR", oam_origin.url + "/")
    monkeypatch.setenv("OAM_S3_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("OAM_ALLOW_HTTP", "true")
    result = relocate_package(spec_path=str(TUTORIAL_SPEC))
    assert result["ok"], result["text"]
    for lock in ("https", "s3", "local"):
        assert result["counts"][f"validate:{lock}:valid"] == 4
    out = tutorial_env / "openaerialmap-austria"
    root = tutorial_env / "local-assets"

    # The dry-run lock, exactly; the bucket (a loopback mirror here) validates against it.
    _same_table(
        out / "s3.assets.lock.parquet", TUTORIAL / "openaerialmap-austria.s3.assets.lock.parquet"
    )

    # The local lock: stacpkg's columns and values, but for a file's own ETag and mtime.
    ours = _at_reference_root(pq.read_table(out / "local.assets.lock.parquet"), root)
    assert ours.column_names == [*STACPKG_COLUMNS, "file_checksum"]
    for reference in ("local.asset-lock", "local.assets.lock"):
        theirs = pq.read_table(TUTORIAL / f"openaerialmap-austria.{reference}.parquet")
        same = [c for c in STACPKG_COLUMNS if c not in {"etag", "last_modified"}]
        assert ours.select(same).to_pylist() == theirs.select(same).to_pylist()
    for row in ours.to_pylist():
        assert FILE_ETAG.match(row["etag"])
        assert row["last_modified"].endswith("+00:00")
        assert row["file_checksum"].startswith("1220")

    # The Items: the package's, with stacpkg's s3 and local alternates and file sizes.
    theirs = items_from_table(
        read_items_table(TUTORIAL / "openaerialmap-austria.s3-local.items.parquet")
    )
    ours = items_from_table(read_items_table(out / "items.parquet"))
    checksums = [
        asset.pop("file:checksum") for item in ours for key, asset in item["assets"].items()
        if key != "metadata"
    ]  # fmt: skip
    assert len(checksums) == 4
    assert all(c.startswith("1220") for c in checksums)
    assert json.loads(json.dumps(ours).replace(str(root), LOCAL_ROOT)) == theirs

    # Validation of the local lock: stacpkg's lines (ours add what the checksums proved).
    lines = (out / "validation" / "local.jsonl").read_text().replace(str(root), LOCAL_ROOT)
    ours = [json.loads(line) for line in lines.splitlines()]
    assert {line.pop("checked") for line in ours} == {"sha256"}
    reference = TUTORIAL / "local.validate.jsonl"
    assert ours == [json.loads(line) for line in reference.read_text().splitlines()]


@pytest.mark.parametrize("name", [None, "S3 bucket"])
def test_a_lock_of_existing_copies_enriches_as_stacpkg_items_enrich(
    tutorial_env, tmp_path, oam_data, name, prefect_harness
):
    from stacflow.flows.relocate import relocate_package  # noqa: PLC0415

    alternate = "{key: s3}" if name is None else f"{{key: s3, name: {name}}}"
    spec = tmp_path / "enrich.yaml"
    spec.write_text(
        f"""name: enrich-only
package: {tmp_path / "tutorial" / "openaerialmap-austria.pkg"}
sources:
  https: {{prefix: "https://oin-hotosm-temp.s3.amazonaws.com/"}}
  s3:
    lock: {tmp_path / "tutorial" / "openaerialmap-austria.s3.assets.lock.parquet"}
    alternate: {alternate}
outputs: out
"""
    )
    result = relocate_package(spec_path=str(spec))
    assert result["ok"], result["text"]

    ours = items_from_table(read_items_table(tmp_path / "out" / "items.parquet"))
    theirs = items_from_table(
        read_items_table(TUTORIAL / "openaerialmap-austria.enriched.items.parquet")
    )
    if name is not None:  # as `stacpkg items add-alternate --alternate-name` writes it
        for item in theirs:
            for key in ("visual", "thumbnail"):
                item["assets"][key]["alternate"]["s3"]["alternate:name"] = name
    assert ours == theirs
    assert not (tmp_path / "out" / "s3.assets.lock.parquet").exists()  # the lock is the user's


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (
            {"https": {"prefix": "https://h/", "alternate": {"key": "x"}}},
            "only a source with a lock or a plan adds an alternate",
        ),
        (
            {"s3": {"lock": "l.parquet", "plan": {"store": {"type": "s3", "bucket": "bkt"}}}},
            "give one of prefix, lock and plan, not lock and plan together",
        ),
        (
            {
                "old": {"lock": "l.parquet"},
                "s3": {"plan": {"store": {"type": "s3", "bucket": "bkt"}, "from": "old"}},
            },
            "expected a source with neither lock nor plan (none), got 'old'",
        ),
        (
            {
                "https": {},
                "s3": {
                    "plan": {"store": {"type": "s3", "bucket": "bkt"}},
                    "alternate": {"key": "local"},
                },
            },
            "alternate key 'local' is already used by source 's3'",
        ),
    ],
)
def test_lock_and_plan_sources_are_checked(sources, message):
    spec = {
        "name": "checks",
        "package": "pkg",
        "sources": sources,
        "targets": {"local": {"store": {"type": "file", "root": "copies"}}},
        "outputs": "out",
    }
    with pytest.raises(ValidationError, match=re.escape(message)):
        Spec.model_validate(spec)
