"""A store that is down is recognised as down: its assets end at once, the run reports, exit 1.

Hundreds of assets against a closed loopback port, with the default retry policy (5 tries, 1 s
backoff doubling): before the breaker each asset was tried five times, one batch slot at a time
(a 300-asset run took ~20 minutes). Answers that fail (503, 429, resets) are not "down" and keep
being retried per asset.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from stacflow.flows.cli import main
from stacflow.tasks.breaker import CONNECTION_FAILURES, Breakers
from stacflow.tasks.errors import AssetError, ErrorClass, Reach
from stacflow.tasks.report import read_report
from stacflow.tasks.stores import StoreRef
from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package

WORKERS = 4
MANY = {
    (f"scene-{n:03d}", "visual"): (f"scenes/{n:03d}/visual.tif", os.urandom(64 + n))
    for n in range(300)
}


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def write_spec(folder: Path, package: Path, source: str, target: str, retry: str = "{}") -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: store-down
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{source}", allow_http: true}}
targets:
  mirror:
    store: {target}
relocate: {{max_workers: {WORKERS}, retry: {retry}}}
validate: [https, mirror]
outputs: {folder / "out"}
"""
    )
    return spec


def relocated(spec: Path) -> list:
    return [r for r in read_report(spec.parent / "out" / "report.parquet") if r.step == "relocate"]


def test_an_origin_refusing_connections_ends_every_asset_at_once(
    tmp_path, closed_port, prefect_harness, capsys
):
    package = make_package(tmp_path / "pkg", tmp_path / "origin", MANY)
    target = f'{{type: file, root: "{tmp_path / "assets"}"}}'
    spec = write_spec(tmp_path, package, f"http://127.0.0.1:{closed_port}/", target)
    assert main(["run", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "FAILED (300 assets failed)" in out
    assert "origin unreachable: connection refused" in out
    rows = relocated(spec)
    assert len(rows) == len(MANY)
    assert {r.outcome for r in rows} == {"failed"}
    # The first few tries found the store down; every other asset ended without a request.
    assert sum(r.attempts for r in rows) <= CONNECTION_FAILURES + WORKERS
    down = [r for r in rows if r.message.startswith("origin unreachable: connection refused")]
    assert len(down) >= len(MANY) - WORKERS
    validated = [
        r for r in read_report(spec.parent / "out" / "report.parquet") if r.step == "validate"
    ]
    assert len(validated) == len(MANY)
    assert all("unreachable: connection refused" in r.message for r in validated)


def test_a_target_refusing_connections_is_down_too(
    tmp_path, origin, closed_port, prefect_harness, capsys
):
    origin.last_modified = LAST_MODIFIED_HTTP
    assets = dict(list(MANY.items())[:40])
    package = make_package(tmp_path / "pkg", origin.root, assets)
    target = (
        f"{{type: s3, bucket: nowhere, endpoint: 'http://127.0.0.1:{closed_port}', "
        "allow_http: true}"
    )
    spec = write_spec(tmp_path, package, f"{origin.url}/", target)
    assert main(["run", str(spec)]) == 1
    assert "target unreachable: connection refused" in capsys.readouterr().out
    rows = relocated(spec)
    assert {r.outcome for r in rows} == {"failed"}
    assert sum(r.attempts for r in rows) <= CONNECTION_FAILURES + WORKERS
    # An asset whose target was known to be down was never read from the origin.
    assert origin.count("GET") <= CONNECTION_FAILURES + WORKERS


def test_answers_that_fail_are_retried_not_taken_for_a_store_down(
    tmp_path, origin, prefect_harness, capsys
):
    origin.last_modified = LAST_MODIFIED_HTTP
    assets = dict(list(MANY.items())[:24])
    package = make_package(tmp_path / "pkg", origin.root, assets)
    for n, (key, _) in enumerate(assets.values()):
        (
            lambda k: origin.fail(k, 503, times=2),
            lambda k: origin.fail(k, 429, times=2),
            lambda k: origin.reset_connection(k, times=2),
        )[n % 3](f"/{key}")
    target = f'{{type: file, root: "{tmp_path / "assets"}"}}'
    spec = write_spec(tmp_path, package, f"{origin.url}/", target, "{initial_backoff: 10ms}")
    assert main(["run", str(spec)]) == 0, capsys.readouterr().out
    assert {r.outcome for r in relocated(spec)} == {"copied"}


# --- the breaker itself ------------------------------------------------------------------

STORE = StoreRef("http", "http://127.0.0.1:9")
REFUSED = AssetError(ErrorClass.TRANSIENT, "connection refused: x", reach=Reach.CONNECTION)


def test_a_store_is_down_after_consecutive_connection_failures_only():
    breakers = Breakers()
    for _ in range(CONNECTION_FAILURES - 1):
        breakers.record(STORE, REFUSED)
    breakers.record(STORE, AssetError(ErrorClass.TRANSIENT, "HTTP 503"))  # an answer
    for _ in range(CONNECTION_FAILURES - 1):
        breakers.record(STORE, REFUSED)
    assert breakers.refusal(STORE, "origin") is None
    breakers.record(STORE, REFUSED)
    down = breakers.refusal(STORE, "origin")
    assert down is not None
    assert down.message == "origin unreachable: connection refused: x"
    assert down.error_class == ErrorClass.PERMANENT


def test_a_failure_of_the_whole_store_puts_it_down_at_once():
    breakers = Breakers()
    full = AssetError(ErrorClass.PERMANENT, "No space left on device: /x", reach=Reach.STORE)
    breakers.record(STORE, full)
    down = breakers.refusal(STORE, "target")
    assert down is not None
    assert down.message == "target unusable: No space left on device: /x"


def test_a_store_down_is_tried_again_later(monkeypatch):
    monkeypatch.setattr("stacflow.tasks.breaker.DOWN_FOR_S", 0.0)
    breakers = Breakers()
    for _ in range(CONNECTION_FAILURES):
        breakers.record(STORE, REFUSED)
    assert breakers.refusal(STORE, "origin") is None  # one more try is allowed
    breakers.record(STORE, REFUSED)  # and its failure puts the store down again at once
    monkeypatch.setattr("stacflow.tasks.breaker.DOWN_FOR_S", 60.0)
    assert breakers.refusal(STORE, "origin") is not None
