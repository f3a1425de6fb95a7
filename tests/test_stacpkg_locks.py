"""A stacpkg lock is validated as stacpkg validates it; stacflow's own locks keep their leniency.

stacflow tells them apart by the `file_checksum` column: stacpkg 0.1.4 never writes it and
drops it whenever it rewrites a lock.
"""

from __future__ import annotations

import dataclasses
import os

import pyarrow.parquet as pq
import pytest

from stacflow.flows.compile import compile_plan
from stacflow.flows.inputs import load_inputs, load_spec
from stacflow.tasks.locks import LOCK_COLUMNS, read_lock, write_lock, written_by_stacflow
from stacflow.tasks.validate import validate_checks
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package

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
