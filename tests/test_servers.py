"""The loopback servers behave like real origins, as seen through obstore (the product's client).

If one of these fails, every product test built on the servers is suspect, so they run first
in spirit: each fault must produce the error obstore would get from a real S3 bucket or nginx.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from typing import TYPE_CHECKING

import obstore as obs
import pyarrow.parquet as pq
import pytest
from obstore.exceptions import (
    GenericError,
    NotModifiedError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
)

from tests.servers import s3
from tests.servers.origin import Origin, Request, http_store

if TYPE_CHECKING:
    from pathlib import Path

HTTPS_LOCK = "openaerialmap-austria.pkg/assets.lock.parquet"
S3_LOCK = "openaerialmap-austria.s3.assets.lock.parquet"
KEY = "a/b.bin"
PATH = "/a/b.bin"
DATA = os.urandom(3_000_000)  # several socket buffers, so a cut really lands mid-body


def _rows(oam_data: Path, lock: str) -> list[dict]:
    return pq.read_table(oam_data / lock).to_pylist()


def _md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'  # S3's ETag, not security


@pytest.fixture
def served(origin: Origin) -> Origin:
    """The origin with DATA at KEY."""
    origin.write(KEY, DATA)
    return origin


def _raw(origin: Origin, method: str, target: str) -> http.client.HTTPResponse:
    """A request obstore cannot send (it refuses `..` itself), straight onto the socket."""
    conn = http.client.HTTPConnection("127.0.0.1", int(origin.url.rsplit(":", 1)[1]), timeout=5)
    conn.request(method, target)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


# --- the oam-austria fixture ---------------------------------------------------------------


def test_oam_origin_heads_match_the_https_lock(oam_origin, oam_data):
    store = http_store(oam_origin.url)
    for row in _rows(oam_data, HTTPS_LOCK):
        meta = obs.head(store, row["key"])
        assert meta["size"] == row["size_bytes"]
        assert meta["e_tag"] == row["etag"]
        assert meta["last_modified"] == datetime.fromisoformat(row["last_modified"])
    assert oam_origin.count("HEAD") == 4


def test_oam_origin_serves_content_type_and_bytes(oam_origin, oam_data):
    key = _rows(oam_data, HTTPS_LOCK)[1]["key"]
    result = obs.get(http_store(oam_origin.url), key)
    assert result.attributes["Content-Type"] == "image/tiff"
    assert bytes(result.bytes()) == (oam_data / "origin" / key).read_bytes()


def test_oam_s3_validates_the_s3_lock_anonymously_and_with_keys(moto_endpoint, oam_s3, oam_data):
    https_etags = {r["key"]: r["etag"] for r in _rows(oam_data, HTTPS_LOCK)}
    anonymous = s3.s3_store(moto_endpoint, oam_s3, skip_signature=True)
    keyed = s3.s3_store(moto_endpoint, oam_s3)
    for row in _rows(oam_data, S3_LOCK):
        assert row["store_container"] == oam_s3
        for store in (anonymous, keyed):
            meta = obs.head(store, row["key"])
            assert meta["size"] == row["size_bytes"]
            assert meta["e_tag"] == https_etags[row["key"]]


# --- plain HTTP behaviour ------------------------------------------------------------------


def test_head_facts(served):
    meta = obs.head(http_store(served.url), KEY)
    assert meta["size"] == len(DATA)
    assert meta["e_tag"] == _md5(DATA)
    mtime = (served.root / KEY).stat().st_mtime
    assert meta["last_modified"].timestamp() == int(mtime)


def test_ranges(served):
    store = http_store(served.url)
    assert bytes(obs.get_range(store, KEY, start=10, end=20)) == DATA[10:20]
    assert (
        bytes(obs.get(store, KEY, options={"range": {"offset": 2_999_990}}).bytes()) == DATA[-10:]
    )
    assert bytes(obs.get(store, KEY, options={"range": {"suffix": 7}}).bytes()) == DATA[-7:]
    with pytest.raises(GenericError, match="416"):
        obs.get(store, KEY, options={"range": {"offset": len(DATA)}})
    assert [(r.range, r.status) for r in served.requests] == [
        ("bytes=10-19", 206),
        ("bytes=2999990-", 206),
        ("bytes=-7", 206),
        ("bytes=3000000-", 416),
    ]


def test_conditional_requests(served):
    store = http_store(served.url)
    with pytest.raises(PreconditionError):
        obs.get(store, KEY, options={"if_match": '"not-the-etag"'})
    with pytest.raises(NotModifiedError):
        obs.get(store, KEY, options={"if_none_match": _md5(DATA)})
    manual_resume = {"range": {"offset": 100}, "if_match": _md5(DATA)}
    assert bytes(obs.get(store, KEY, options=manual_resume).bytes()) == DATA[100:]


def test_missing_file_is_file_not_found(origin):
    with pytest.raises(FileNotFoundError):
        obs.head(http_store(origin.url), "nope.tif")
    assert origin.requests == [Request("HEAD", "/nope.tif", None, 404)]


def test_paths_cannot_escape_the_root(origin):
    (origin.root.parent / "secret.txt").write_text("outside")
    origin.write("in side.txt", b"inside")
    assert _raw(origin, "GET", "/../secret.txt").status == 404
    assert _raw(origin, "GET", "/%2e%2e/secret.txt").status == 404
    assert _raw(origin, "GET", "/").status == 404
    assert _raw(origin, "GET", "/in%20side.txt").status == 200


def test_write_swaps_bytes_and_etag_at_once(served):
    store = http_store(served.url)
    assert obs.head(store, KEY)["e_tag"] == _md5(DATA)
    swapped = bytes(reversed(DATA))  # same size, written within the same clock tick
    served.write(KEY, swapped)
    assert obs.head(store, KEY)["e_tag"] == _md5(swapped)
    assert bytes(obs.get(store, KEY).bytes()) == swapped


def test_nginx_etag_style(served):
    served.etag_style = "nginx"
    st = (served.root / KEY).stat()
    assert obs.head(http_store(served.url), KEY)["e_tag"] == f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def test_request_log_and_count(served):
    store = http_store(served.url)
    obs.head(store, KEY)
    obs.get(store, KEY).bytes()
    with pytest.raises(FileNotFoundError):
        obs.get(store, "a/missing.bin")
    assert served.count() == 3
    assert served.count("GET") == 2
    assert served.count(path=PATH) == 2
    assert served.count("GET", "/a/*") == 2
    assert served.requests[-1] == Request("GET", "/a/missing.bin", None, 404)
    served.clear()
    assert served.requests == []


def test_control_endpoints_count_and_reset_only_when_asked(served):
    assert _raw(served, "GET", "/__stats").status == 404  # an ordinary path by default
    served.clear()
    served.control = True
    store = http_store(served.url)
    obs.head(store, KEY)
    obs.get(store, KEY).bytes()
    deadline = time.monotonic() + 5  # the last slice is counted once sendfile returns
    while served.stats()["bytes"] < len(DATA) and time.monotonic() < deadline:
        time.sleep(0.01)
    with urllib.request.urlopen(f"{served.url}/__stats") as response:
        assert json.loads(response.read()) == {"GET": 1, "HEAD": 1, "bytes": len(DATA)}
    assert _raw(served, "POST", "/__reset").status == 200
    assert served.stats() == {"GET": 0, "HEAD": 0, "bytes": 0}


def test_remote_like_origin_waits_and_caps_each_connection(served):
    served.latency, served.rate = 0.05, 10e6
    started = time.monotonic()
    assert bytes(obs.get(http_store(served.url), KEY).bytes()) == DATA
    # Lower bounds only: the sleeps guarantee them, whatever the machine's load.
    assert time.monotonic() - started >= 0.05 + len(DATA) / 10e6
    # The server counts a slice once sendfile returns, which can be after the client has it.
    deadline = time.monotonic() + 5
    while served.stats()["bytes"] < len(DATA) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served.stats()["bytes"] == len(DATA)


def test_large_body_is_sent_whole(origin):
    big = origin.root / "big.bin"
    with big.open("wb") as f:
        f.truncate(64 << 20)  # sparse: exercises sendfile without 64 MiB of test data
    store = http_store(origin.url)
    digest = hashlib.sha256()
    for chunk in obs.get(store, "big.bin").stream(min_chunk_size=8 << 20):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(bytes(64 << 20)).hexdigest()


# --- faults ----------------------------------------------------------------------------


def test_503_twice_is_retried_by_obstore_itself(served):
    served.fail(PATH, 503, times=2)
    assert bytes(obs.get(http_store(served.url), KEY).bytes()) == DATA
    assert [r.status for r in served.requests] == [503, 503, 200]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_persistent_transient_status_exhausts_retries(served, status):
    served.fail(PATH, status)
    with pytest.raises(GenericError, match=f"non-2xx status code: {status}"):
        obs.get(http_store(served.url), KEY)
    assert served.count("GET") == 3  # 1 + FAST_RETRY's max_retries


@pytest.mark.parametrize(
    ("status", "error"), [(404, FileNotFoundError), (403, PermissionDeniedError)]
)
def test_permanent_status_is_not_retried(served, status, error):
    served.fail("/a/*", status)
    with pytest.raises(error):
        obs.get(http_store(served.url), KEY)
    assert served.count() == 1


def test_retry_after_is_sent_but_obstore_does_not_wait_for_it(served):
    served.fail(PATH, 429, times=1, retry_after=2)
    response = _raw(served, "GET", PATH)
    assert (response.status, response.getheader("Retry-After")) == (429, "2")
    served.fail(PATH, 429, times=1, retry_after=2)
    started = time.monotonic()
    assert bytes(obs.get(http_store(served.url), KEY).bytes()) == DATA
    assert time.monotonic() - started < 1.5


def test_fault_limited_to_get_leaves_head_working(served):
    served.fail(PATH, 500, method="GET")
    store = http_store(served.url)
    assert obs.head(store, KEY)["size"] == len(DATA)
    with pytest.raises(GenericError, match="500"):
        obs.get(store, KEY)


def test_reset_once_is_retried_and_reset_forever_fails(served):
    store = http_store(served.url)
    served.reset_connection(PATH, times=1)
    assert bytes(obs.get(store, KEY).bytes()) == DATA
    assert [r.status for r in served.requests] == [None, 200]
    served.clear()
    served.reset_connection(PATH)
    with pytest.raises(GenericError, match="error sending request"):
        obs.get(store, KEY)
    assert served.count() == 3


def test_truncated_body_with_etag_is_resumed_by_range(served):
    served.truncate(PATH, after_bytes=100_000, times=1)
    assert bytes(obs.get(http_store(served.url), KEY).bytes()) == DATA
    assert [(r.range, r.status) for r in served.requests] == [
        (None, 200),
        (f"bytes=100000-{len(DATA) - 1}", 206),
    ]


def test_truncated_body_without_etag_fails(served):
    served.no_etag(PATH)
    served.truncate(PATH, after_bytes=100_000, times=1)
    with pytest.raises(GenericError, match="body error"):
        obs.get(http_store(served.url), KEY).bytes()
    assert served.count() == 1


def test_stall_before_headers_times_out_and_is_retried(served):
    served.stall(PATH, 2.0, times=1)
    store = http_store(served.url, timeout="300ms")
    assert bytes(obs.get(store, KEY).bytes()) == DATA
    assert served.count("GET") == 2


def test_stall_mid_body_is_resumed_after_read_timeout(served):
    served.stall(PATH, 2.0, after_bytes=1000, times=1)
    store = http_store(served.url, read_timeout="300ms")
    assert bytes(obs.get(store, KEY).bytes()) == DATA
    assert [r.range for r in served.requests] == [None, f"bytes=1000-{len(DATA) - 1}"]


def test_resume_fails_when_the_source_changed(served):
    """obstore sends no If-Match on resume: it compares the new ETag itself and gives up."""
    served.stall(PATH, 2.0, after_bytes=1000, times=1)

    def swap_once_the_first_body_started() -> None:
        while not served.requests or served.requests[0].status is None:
            time.sleep(0.005)
        served.write(KEY, bytes(reversed(DATA)))

    threading.Thread(target=swap_once_the_first_body_started, daemon=True).start()
    store = http_store(served.url, read_timeout="500ms")
    with pytest.raises(GenericError, match="body error"):
        obs.get(store, KEY).bytes()
    assert [(r.range, r.status) for r in served.requests] == [
        (None, 200),
        (f"bytes=1000-{len(DATA) - 1}", 206),
    ]


def test_no_range_makes_get_range_unsupported(served):
    served.no_range(PATH)
    with pytest.raises(NotSupportedError):
        obs.get_range(http_store(served.url), KEY, start=0, end=10)


def test_no_length_is_refused_by_obstore(served):
    served.no_length(PATH)
    store = http_store(served.url)
    with pytest.raises(GenericError, match="Content-Length Header missing"):
        obs.head(store, KEY)
    with pytest.raises(GenericError, match="Content-Length Header missing"):
        obs.get(store, KEY)
    body = _raw(served, "GET", PATH)
    assert body.getheader("Transfer-Encoding") == "chunked"


def test_times_must_be_positive(origin):
    with pytest.raises(ValueError, match="times"):
        origin.fail(PATH, times=0)


def test_origin_runs_as_a_script(oam_data):
    command = [sys.executable, "-m", "tests.servers.origin", str(oam_data / "origin")]
    modified = ["--last-modified", "Mon, 12 Sep 2022 09:43:21 GMT"]
    root = oam_data.parents[2]
    with subprocess.Popen(
        [*command, *modified], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as process:
        try:
            url = process.stdout.readline().decode().strip()
            key = _rows(oam_data, HTTPS_LOCK)[0]["key"]
            meta = obs.head(http_store(url), key)
            assert meta["last_modified"] == datetime.fromisoformat("2022-09-12T09:43:21+00:00")
        finally:
            process.terminate()


def test_origin_is_a_context_manager(tmp_path):
    with Origin(tmp_path) as standalone:
        assert _raw(standalone, "HEAD", "/missing").status == 404
    with pytest.raises(ConnectionRefusedError):
        _raw(standalone, "HEAD", "/missing")


# --- S3 ------------------------------------------------------------------------------------


def test_private_object_needs_keys(moto_endpoint, s3_bucket):
    etag = s3.put_object(moto_endpoint, s3_bucket, "k/private.bin", b"secret")
    assert etag == _md5(b"secret")
    keyed = s3.s3_store(moto_endpoint, s3_bucket)
    assert bytes(obs.get(keyed, "k/private.bin").bytes()) == b"secret"
    with pytest.raises(PermissionDeniedError):
        obs.get(s3.s3_store(moto_endpoint, s3_bucket, skip_signature=True), "k/private.bin")


def test_public_object_reads_anonymously(moto_endpoint, s3_bucket):
    s3.put_object(moto_endpoint, s3_bucket, "k/public.bin", b"open", public=True)
    anonymous = s3.s3_store(moto_endpoint, s3_bucket, skip_signature=True)
    assert bytes(obs.get(anonymous, "k/public.bin").bytes()) == b"open"
    assert obs.head(anonymous, "k/public.bin")["e_tag"] == _md5(b"open")


def test_aborted_obstore_upload_leaves_no_multipart(moto_endpoint, s3_bucket):
    store = s3.s3_store(moto_endpoint, s3_bucket)
    with (  # noqa: PT012 - the failure inside the writer is the point
        pytest.raises(RuntimeError, match="source died"),
        obs.open_writer(store, "big.bin", buffer_size=5 << 20) as writer,
    ):
        writer.write(bytes(6 << 20))
        writer.flush()
        assert len(s3.list_multipart_uploads(moto_endpoint, s3_bucket)) == 1
        raise RuntimeError("source died")
    assert s3.list_multipart_uploads(moto_endpoint, s3_bucket) == []
    with pytest.raises(FileNotFoundError):
        obs.head(store, "big.bin")


def test_reset_drops_every_bucket(moto_endpoint, s3_bucket):
    s3.put_object(moto_endpoint, s3_bucket, "x", b"x")
    s3.reset(moto_endpoint)
    with pytest.raises(FileNotFoundError):
        obs.head(s3.s3_store(moto_endpoint, s3_bucket), "x")


def test_environment_is_sealed():
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert "AWS_PROFILE" not in os.environ
    # empty, unless the session's Prefect harness is up and points it at itself
    api_url = os.environ["PREFECT_API_URL"]
    assert api_url == "" or api_url.startswith("http://127.0.0.1:")
    assert os.environ["DO_NOT_TRACK"] == "1"


# --- Prefect -------------------------------------------------------------------------------


def test_prefect_harness_runs_a_flow_and_reads_back_an_artifact(prefect_harness):
    from prefect import flow, task  # noqa: PLC0415 - only tests with the harness import Prefect
    from prefect.artifacts import create_markdown_artifact  # noqa: PLC0415
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import (  # noqa: PLC0415
        ArtifactFilter,
        ArtifactFilterFlowRunId,
    )

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def smoke(x: int) -> int:
        create_markdown_artifact(markdown="# smoke ok", key="servers-smoke")
        return double(x)

    state = smoke(21, return_state=True)
    assert state.is_completed()
    assert state.result() == 42
    run_id = state.state_details.flow_run_id
    assert os.environ["PREFECT_API_URL"] == prefect_harness  # for CLI runs in subprocesses
    with get_client(sync_client=True) as client:
        assert client.api_url == prefect_harness + "/"
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    assert [(a.key, a.type, a.data) for a in artifacts] == [
        ("servers-smoke", "markdown", "# smoke ok")
    ]


def test_prefect_server_creates_and_reads_a_work_pool(prefect_server):
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import WorkPoolCreate  # noqa: PLC0415
    from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: PLC0415

    with (
        temporary_settings({PREFECT_API_URL: prefect_server}),
        get_client(sync_client=True) as client,
    ):
        client.create_work_pool(WorkPoolCreate(name="servers-smoke", type="process"))
        pool = client.read_work_pool("servers-smoke")
    assert (pool.name, pool.type) == ("servers-smoke", "process")
