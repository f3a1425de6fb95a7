"""A stacpkg lock is validated as stacpkg validates it; stacflow's own locks keep their leniency.

stacflow tells them apart by the `file_checksum` column: stacpkg 0.1.4 never writes it and
drops it whenever it rewrites a lock.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pyarrow.parquet as pq
import pytest

from stacflow.flows.cli import main
from stacflow.flows.compile import compile_plan
from stacflow.flows.inputs import load_inputs, load_spec
from stacflow.tasks.locks import LOCK_COLUMNS, read_lock, write_lock, written_by_stacflow
from stacflow.tasks.validate import validate_checks
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package
from tests.stacpkg_refs import SIGNATURE, package_at, serve_corpus

DATA = os.urandom(3000)


@pytest.fixture
def spec_with_unquoted_etags(tmp_path, origin):
    """A package whose lock holds the origin's ETags without their quotes."""
    origin.last_modified = LAST_MODIFIED_HTTP
    package = make_package(
        tmp_path / "pkg", origin.root, {("scene-1", "visual"): ("scene/1.tif", DATA)}
    )
    lock = package / "assets.lock.parquet"
    write_lock(lock, [dataclasses.replace(r, etag=r.etag.strip('"')) for r in read_lock(lock)])
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""name: etags
package: pkg
sources:
  https: {{prefix: "{ORIGIN}/", store: {{endpoint: "{origin.url}/", allow_http: true}}}}
validate: [https]
outputs: out
"""
    )
    return spec, lock


def _validate(spec):
    inputs = load_inputs(spec, load_spec(spec))
    (checks,) = compile_plan(inputs).source_checks
    return [r.line for r in validate_checks(checks.checks, "https", checksums=False)]


def test_a_stacpkg_lock_compares_etags_with_their_quotes(spec_with_unquoted_etags):
    spec, lock = spec_with_unquoted_etags
    stacpkg_shaped = pq.read_table(lock).select(list(LOCK_COLUMNS[:9]))
    pq.write_table(stacpkg_shaped, lock)  # as stacpkg rewrites it: no file_checksum column
    assert not written_by_stacflow(lock)

    (line,) = _validate(spec)
    tag = read_lock(lock)[0].etag
    assert line["errors"] == [f'etag mismatch: expected {tag}, actual "{tag}"']
    assert line["valid"] is False


def test_stacflows_own_lock_keeps_the_lenient_etag_comparison(spec_with_unquoted_etags):
    spec, lock = spec_with_unquoted_etags
    assert written_by_stacflow(lock)

    (line,) = _validate(spec)
    assert line["valid"] is True, line


# --- stacflow check --lock FILE.parquet ------------------------------------------------

SAMPLE_ORIGIN = "http://127.0.0.1:43071"  # where stacpkg validated its sample lines


def _rehosted(lock, folder, origin_url):
    """The fixture's https lock served from the loopback origin, as stacpkg's sample was made."""
    rows = [
        dataclasses.replace(r, store_type="http", store_container=origin_url)
        for r in read_lock(lock)
    ]
    path = folder / "loopback.assets.lock.parquet"
    write_lock(path, rows)
    pq.write_table(pq.read_table(path).select(list(LOCK_COLUMNS[:9])), path)  # stacpkg's 9
    return path


def test_check_a_lock_file_prints_stacpkgs_validate_lines(tmp_path, oam_data, oam_origin, capsys):
    lock = _rehosted(
        oam_data / "openaerialmap-austria.pkg" / "assets.lock.parquet", tmp_path, oam_origin.url
    )
    assert main(["check", "--lock", str(lock), "--allow-http"]) == 0
    out, err = capsys.readouterr()
    expected = (oam_data / "stacpkg-validate-sample.jsonl").read_text()
    assert out.replace(oam_origin.url, SAMPLE_ORIGIN) == expected
    assert err == "4 rows validated, 0 invalid\n"


def test_check_a_lock_file_exits_1_on_an_invalid_row(tmp_path, oam_data, oam_origin, capsys):
    lock = _rehosted(
        oam_data / "openaerialmap-austria.pkg" / "assets.lock.parquet", tmp_path, oam_origin.url
    )
    rows = read_lock(lock)
    rows[1] = dataclasses.replace(rows[1], size_bytes=10)
    write_lock(lock, rows)
    assert main(["check", "--lock", str(lock), "--allow-http", "--checksums"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["valid"] for line in lines] == [True, False, True, True]
    assert lines[1]["errors"] == [f"size mismatch: expected 10, actual {262147}"]
    assert lines[0]["checked"] == "no checksum recorded"  # asked for, and said what was proven


def test_check_a_signed_lock_never_prints_its_signature(tmp_path, origin, capsys):
    serve_corpus(origin)
    package = package_at(tmp_path / "pkg", origin.url)
    assert main(["check", "--lock", str(package / "assets.lock.parquet"), "--allow-http"]) == 0
    out, err = capsys.readouterr()
    (signed,) = [json.loads(line) for line in out.splitlines() if '"key": ""' in line]
    assert signed["valid"] is True  # fetched with its signature, which the origin demands
    assert signed["store_container"] == f"{origin.url}/signed/v.tif?<redacted>"
    assert SIGNATURE not in out + err
    assert any(SIGNATURE in target for target in origin.targets)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check"], "check needs a SPEC, or lock files to validate: --lock FILE.parquet"),
        (["check", "--lock", "nope.parquet"], "--lock nope.parquet: no such lock file"),
        (["check", "--lock", "{lock}"], "row(s) are reached over plain http://; add --allow-http"),
        (["check", "{spec}", "--lock", "{lock}"], "leave out the spec: stacflow check --lock"),
        (["check", "{spec}", "--anonymous"], "--allow-http and --anonymous are for lock files"),
    ],
)
def test_check_tells_a_lock_file_from_a_lock_name(
    argv, message, tmp_path, spec_with_unquoted_etags, capsys
):
    spec, lock = spec_with_unquoted_etags
    plain = _rehosted(lock, tmp_path, "http://127.0.0.1:9")
    argv = [arg.format(spec=spec, lock=plain) for arg in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
