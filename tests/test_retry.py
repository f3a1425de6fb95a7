"""One retry policy, one place: `relocate.retry` bounds every request a run makes, and
`relocate.max_workers` how many are in flight, for copy, derive, survey and validation alike.

Counted where the requests arrive: at the loopback origin, and at a proxy in front of moto.
Before, obstore's own two retries multiplied the spec's attempts (a failing S3 object was
requested 15 times for 5 attempts), validation tried 3 times whatever the spec said and ignored
Retry-After, a derive HEAD was tried once, and derive and validation ran 8 at once.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.tasks.access import Access
from stacflow.tasks.locks import read_lock
from stacflow.tasks.moves import Check
from stacflow.tasks.report import read_report
from stacflow.tasks.retry import RetryPolicy
from stacflow.tasks.stores import StoreRef
from stacflow.tasks.validate import validate_checks
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, item_dict, make_package
from tests.servers.proxy import Proxy

OAM_ORIGIN = "https://oin-hotosm-temp.s3.amazonaws.com/"
S3_LOCK = "openaerialmap-austria.s3.assets.lock.parquet"
FAST = "{attempts: 3, initial_backoff: 10ms, max_backoff: 50ms}"
WORKERS = 2
ASSETS = 8


@pytest.fixture
def s3_proxy(moto_endpoint):
    with Proxy(moto_endpoint) as proxy:
        yield proxy


def report(spec: Path, step: str) -> list:
    return [r for r in read_report(spec.parent / "out" / "report.parquet") if r.step == step]


def test_a_failing_s3_object_is_requested_attempts_times_by_copy_and_validation(
    tmp_path, prefect_harness, oam_data, oam_s3, s3_proxy, capsys
):
    failing = next(r for r in read_lock(oam_data / S3_LOCK) if r.asset_key == "visual")
    path = f"/{oam_s3}/{failing.key}"
    s3_proxy.fail(path, 503)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
name: s3-retries
package: {oam_data / "openaerialmap-austria.pkg"}
sources:
  https: {{prefix: {OAM_ORIGIN}}}
  s3:
    lock: {oam_data / S3_LOCK}
    store: {{anonymous: true, endpoint: {s3_proxy.url}, allow_http: true}}
targets:
  local: {{store: {{type: file, root: copies}}, layout: source-key}}
relocate: {{source: s3, retry: {FAST}}}
validate: [s3, local]
outputs: out
"""
    )
    assert main(["run", str(spec)]) == 1, capsys.readouterr().out

    assert s3_proxy.count("GET", path) == 3  # the copy: 3 attempts, no client retry inside
    assert s3_proxy.count("HEAD", path) == 3  # the validation of the source lock, the same
    assert {s.status for s in s3_proxy.seen(path=path)} == {503}
    (failed,) = [r for r in report(spec, "relocate") if r.outcome == "failed"]
    assert (failed.asset_key, failed.attempts, failed.error_class) == ("visual", 3, "transient")
    invalid = [r for r in report(spec, "validate") if r.outcome == "invalid"]
    assert [(r.store, r.attempts, r.error_class) for r in invalid] == [("s3", 3, "transient")]
    assert "503" in invalid[0].message


def test_derive_retries_as_the_spec_says_and_runs_max_workers_at_once(
    tmp_path, origin, prefect_harness, capsys
):
    origin.last_modified = LAST_MODIFIED_HTTP
    keys = [f"scenes/{n}/visual.tif" for n in range(ASSETS)]
    items = []
    for n, key in enumerate(keys):
        origin.write(key, os.urandom(100 + n))
        item = item_dict(f"scene-{n}")
        item["assets"]["visual"] = {"href": f"{origin.url}/{key}", "roles": ["data"]}
        items.append(item)
    (tmp_path / "items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": items})
    )
    origin.fail(keys[0], 503, method="HEAD")  # never derived
    origin.fail(keys[1], 503, method="GET")  # derived, never copied
    origin.stall("/scenes/*", 0.2, method="HEAD")  # long enough to see how many run at once
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
name: derive-retries
stac: items.json
sources:
  api: {{prefix: "{origin.url}/", store: {{allow_http: true}}}}
targets:
  local: {{store: {{type: file, root: copies}}}}
relocate: {{max_workers: {WORKERS}, retry: {FAST}}}
validate: [api, local]
outputs: out
"""
    )
    assert main(["run", str(spec)]) == 1, capsys.readouterr().out

    assert origin.count("HEAD", keys[0]) == 3  # derive: before, one HEAD and no retry
    assert origin.count("GET", keys[1]) == 3  # copy
    (underived,) = [r for r in report(spec, "derive") if r.outcome == "failed"]
    assert (underived.item_id, underived.error_class, underived.attempts) == (
        "scene-0",
        "transient",
        3,
    )
    # Derive and the source lock's validation HEAD every asset; neither went past max_workers.
    assert origin.count("HEAD") >= 2 * (ASSETS - 1)
    assert origin.peak_in_flight == WORKERS


def test_validation_runs_max_workers_at_once(tmp_path, origin, prefect_harness, capsys):
    origin.last_modified = LAST_MODIFIED_HTTP
    assets = {
        (f"scene-{n}", "visual"): (f"scenes/{n}/visual.tif", os.urandom(50 + n))
        for n in range(ASSETS)
    }
    package = make_package(tmp_path / "pkg", origin.root, assets)
    origin.stall("/scenes/*", 0.2, method="HEAD")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
name: validate-workers
package: {package}
sources:
  https: {{prefix: {ORIGIN}/, store: {{endpoint: "{origin.url}/", allow_http: true}}}}
targets:
  local: {{store: {{type: file, root: copies}}}}
relocate: {{max_workers: {WORKERS}}}
validate: [https]
outputs: out
"""
    )
    assert main(["check", str(spec)]) == 0, capsys.readouterr().out
    assert origin.count("HEAD") == ASSETS
    assert origin.peak_in_flight == WORKERS  # before: 8 at once, whatever the spec said


def test_plan_surveys_an_s3_target_with_the_spec_retries_and_workers(
    tmp_path, origin, s3_bucket, s3_proxy, capsys
):
    origin.last_modified = LAST_MODIFIED_HTTP
    assets = {
        (f"scene-{n}", "visual"): (f"scenes/{n}/visual.tif", os.urandom(50 + n))
        for n in range(ASSETS)
    }
    package = make_package(tmp_path / "pkg", origin.root, assets)
    s3_proxy.delay(f"/{s3_bucket}/*", 0.1, method="HEAD")
    s3_proxy.fail(f"/{s3_bucket}/*", 503, method="HEAD")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
name: survey-retries
package: {package}
sources:
  https: {{prefix: {ORIGIN}/, store: {{endpoint: "{origin.url}/", allow_http: true}}}}
targets:
  bucket:
    store: {{type: s3, bucket: {s3_bucket}, endpoint: {s3_proxy.url}, allow_http: true}}
relocate: {{max_workers: {WORKERS}, retry: {{attempts: 2, initial_backoff: 10ms}}}}
outputs: out
"""
    )
    assert main(["plan", str(spec)]) == 0, capsys.readouterr().out
    heads = Counter(s.path for s in s3_proxy.seen("HEAD") if s.path.endswith(".tif"))
    assert len(heads) == ASSETS
    assert set(heads.values()) == {2}  # before: obstore's 3, whatever the spec said
    assert s3_proxy.peak_in_flight == WORKERS
    assert origin.requests == []  # a plan reads no source


def test_validation_honours_retry_after(origin):
    origin.last_modified = LAST_MODIFIED_HTTP
    package = make_package(
        origin.root.parent / "pkg", origin.root, {("a", "visual"): ("a.tif", b"x" * 10)}
    )
    (row,) = read_lock(package / "assets.lock.parquet")
    origin.fail("a.tif", 503, times=1, retry_after=2, method="HEAD")
    check = Check(row, StoreRef("http", origin.url, "", Access(allow_http=True)), "a.tif")
    policy = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=5.0)

    (validated,) = validate_checks([check], "https", checksums=False, retry=policy)

    assert validated.line["valid"] is True
    assert validated.outcome.attempts == 2
    first, second = origin.times("HEAD", "a.tif")
    assert second - first >= 1.5  # the server asked for 2 s; the policy alone waits ~10 ms


def test_a_copy_whose_validation_got_no_answer_is_not_copied_again(
    tmp_path, origin, s3_bucket, s3_proxy, prefect_harness, capsys
):
    """The class reaches the report and the journal: a 503 after every try is `transient`,
    which says nothing about the copy, so the next run trusts it as before (a mismatch would
    make it hash or copy it again)."""
    origin.last_modified = LAST_MODIFIED_HTTP
    assets = {("scene-0", "visual"): ("scenes/0/visual.tif", os.urandom(64))}
    package = make_package(tmp_path / "pkg", origin.root, assets)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
name: unanswered
package: {package}
sources:
  https: {{prefix: {ORIGIN}/, store: {{endpoint: "{origin.url}/", allow_http: true}}}}
targets:
  bucket:
    store: {{type: s3, bucket: {s3_bucket}, endpoint: {s3_proxy.url}, allow_http: true}}
relocate: {{retry: {{attempts: 2, initial_backoff: 10ms}}}}
validate: [bucket]
outputs: out
"""
    )
    assert main(["run", str(spec)]) == 0, capsys.readouterr().out
    s3_proxy.fail(f"/{s3_bucket}/*.tif", 503, method="HEAD")
    assert main(["check", str(spec)]) == 1
    assert "remedy" not in capsys.readouterr().out  # before: "copies again the 1 copy ..."
    checked = read_report(tmp_path / "out" / "validation" / "report.parquet")
    assert [(r.outcome, r.error_class, r.attempts) for r in checked] == [
        ("invalid", "transient", 2)
    ]

    s3_proxy.clear()
    assert main(["run", str(spec)]) == 0, capsys.readouterr().out
    assert [r.outcome for r in report(spec, "relocate")] == ["skipped-verified"]
    assert s3_proxy.count("GET", f"/{s3_bucket}/*.tif") == 0  # trusted, not hashed again
    assert s3_proxy.count("PUT") == 0
