"""HttpStore against the fault-injecting origin: what a long copy from a real origin meets.

Facts must come from the response that carried the bytes, a cut body must resume only onto
the same object (Range + If-Match), and every failure must leave as a classified AssetError.
"""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote

import pytest

from stacflow.tasks.access import Access
from stacflow.tasks.buffers import MAX_READ
from stacflow.tasks.errors import AssetError, ErrorClass
from stacflow.tasks.stores import StoreRef
from stacflow.tasks.stores import http as http_store
from stacflow.tasks.stores.http import HttpStore

KEY = "upload/0/scene.tif"
DATA = os.urandom(300_000)  # several chunks and socket buffers, so cuts land mid-body
CHUNK = 64 * 1024
LAST_MODIFIED = "Mon, 12 Sep 2022 09:43:21 GMT"
ETAG = f'"{hashlib.md5(DATA).hexdigest()}"'  # S3's single-part ETag, not security


@pytest.fixture
def served(origin):
    origin.write(KEY, DATA)
    origin.last_modified = LAST_MODIFIED
    return origin


def _store(container: str, **access) -> HttpStore:
    settings = {"allow_http": True, **access}
    return HttpStore(StoreRef("http", container, "", Access(**settings), CHUNK))


def _read(store: HttpStore, path: str = KEY) -> bytes:
    with store.open(path) as reader:
        return b"".join(bytes(chunk) for chunk in reader.chunks())


def _error(call, *args) -> AssetError:
    with pytest.raises(AssetError) as caught:
        call(*args)
    return caught.value


@pytest.fixture
def connects(monkeypatch):
    """Every TCP connection the store opens, by port."""
    opened: list[int] = []
    original = http_store._Connection.connect

    def counting(self) -> None:
        opened.append(self.port)
        original(self)

    monkeypatch.setattr(http_store._Connection, "connect", counting)
    return opened


# --- facts and bytes -----------------------------------------------------------------------


def test_a_large_chunk_size_still_reads_in_cache_sized_slices(origin):
    """chunk_size sizes multipart parts; reads stay at MAX_READ so a slice is hashed and written
    while it is still in the CPU cache."""
    data = os.urandom(3 * MAX_READ + 12345)
    origin.write(KEY, data)
    store = HttpStore(StoreRef("http", origin.url, "", Access(allow_http=True), 8 * MAX_READ))
    with store.open(KEY) as reader:
        sizes = [len(chunk) for chunk in reader.chunks()]
        assert max(sizes) == MAX_READ
    assert sum(sizes) == len(data)


def test_head_and_get_report_the_origin_facts(served):
    store = _store(served.url)
    facts = store.head(KEY)
    assert (facts.size, facts.etag, facts.last_modified) == (
        len(DATA),
        ETAG,
        "2022-09-12T09:43:21+00:00",
    )
    with store.open(KEY) as reader:
        assert reader.facts == facts
        assert b"".join(bytes(c) for c in reader.chunks()) == DATA
    assert [(r.method, r.status) for r in served.requests] == [("HEAD", 200), ("GET", 200)]


def test_keys_are_percent_encoded_once(origin):
    key = "dir with space/ünï%cøde#1.bin"
    origin.write(key, b"odd name")
    store = _store(origin.url)
    assert _read(store, key) == b"odd name"
    assert origin.requests[-1].path == "/" + key
    assert "%25" in store.describe(key)  # `%` itself is encoded, once


def test_keep_alive_reuses_one_connection(served, connects):
    store = _store(served.url)
    for _ in range(3):
        store.head(KEY)
    assert _read(store) == DATA
    assert _read(store) == DATA
    store.head(KEY)
    assert served.count() == 6
    assert len(connects) == 1


def test_a_dropped_idle_connection_is_reopened_once(served, connects):
    store = _store(served.url)
    store.head(KEY)
    served.reset_connection(KEY, times=1, method="GET")
    assert _read(store) == DATA
    assert [r.method for r in served.requests] == ["HEAD", "GET", "GET"]
    assert len(connects) == 2


def test_origin_without_content_length_is_read_to_its_end(served):
    served.no_length(KEY)
    store = _store(served.url)
    with store.open(KEY) as reader:
        assert reader.facts.size is None
        assert b"".join(bytes(c) for c in reader.chunks()) == DATA


def test_plain_http_is_refused_unless_allowed(served):
    error = _error(HttpStore, StoreRef("http", served.url, "", Access(), CHUNK))
    assert error.error_class == ErrorClass.PERMANENT
    assert "allow_http" in error.message
    assert served.requests == []


@pytest.mark.parametrize("container", [None, "", "ftp://host/x", "http:///no-host"])
def test_a_container_that_is_no_origin_is_permanent(container):
    error = _error(HttpStore, StoreRef("http", container))
    assert error.error_class == ErrorClass.PERMANENT
    assert "not an http(s) origin" in error.message


# --- HEAD refused --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [405, 501])
def test_head_refused_falls_back_to_a_one_byte_get(served, status):
    expected = _store(served.url).head(KEY)
    served.clear()
    served.fail(KEY, status, method="HEAD")
    assert _store(served.url).head(KEY) == expected
    assert [(r.method, r.range, r.status) for r in served.requests] == [
        ("HEAD", None, status),
        ("GET", "bytes=0-0", 206),
    ]


def test_head_refused_by_an_origin_without_range_still_gives_facts(served):
    served.fail(KEY, 405, method="HEAD")
    served.no_range(KEY)
    facts = _store(served.url).head(KEY)
    assert (facts.size, facts.etag) == (len(DATA), ETAG)


# --- statuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class", "words"),
    [
        (404, ErrorClass.PERMANENT, "not found (HTTP 404)"),
        (403, ErrorClass.PERMANENT, "access denied (HTTP 403)"),
        (401, ErrorClass.PERMANENT, "access denied (HTTP 401)"),
        (400, ErrorClass.PERMANENT, "HTTP 400"),
        (500, ErrorClass.TRANSIENT, "HTTP 500"),
        (503, ErrorClass.TRANSIENT, "HTTP 503"),
        (429, ErrorClass.TRANSIENT, "HTTP 429"),
    ],
)
def test_statuses_are_classified_once(served, status, error_class, words):
    served.fail(KEY, status)
    store = _store(served.url)
    for call in (store.head, lambda p: store.open(p).__enter__()):
        error = _error(call, KEY)
        assert (error.error_class, error.status) == (error_class, status)
        assert words in error.message
        assert f"{served.url}/{KEY}" in error.message


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_seconds_reach_the_error(served, status):
    served.fail(KEY, status, retry_after=7, times=1)
    error = _error(lambda: _store(served.url).open(KEY).__enter__())
    assert error.retry_after == 7.0
    assert _read(_store(served.url)) == DATA  # the fault was used up


def test_a_missing_retry_after_is_none(served):
    served.fail(KEY, 503, times=1)
    assert _error(_store(served.url).head, KEY).retry_after is None


class _Answer:
    """Just the headers `_retry_after` reads."""

    def __init__(self, retry_after: str) -> None:
        self.retry_after = retry_after

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.retry_after if name == "Retry-After" else default


def test_retry_after_as_an_http_date():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 20 < http_store._retry_after(_Answer(later)) <= 30
    earlier = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert http_store._retry_after(_Answer(earlier)) == 0.0
    assert http_store._retry_after(_Answer(" 12 ")) == 12.0
    assert http_store._retry_after(_Answer("soon")) is None
    assert http_store._retry_after(_Answer("²")) is None
    assert http_store._retry_after(_Answer("")) is None


# --- cut, stalled and changed bodies -------------------------------------------------------


def test_cut_body_resumes_with_range_onto_the_same_object(served):
    served.truncate(KEY, after_bytes=100_000, times=1)
    assert _read(_store(served.url)) == DATA
    assert [(r.method, r.range, r.status) for r in served.requests] == [
        ("GET", None, 200),
        ("GET", "bytes=100000-", 206),
    ]


def test_object_changed_before_the_resume_is_drift_412(served):
    """If-Match on the resume: a replaced object is never stitched onto the old bytes."""
    served.truncate(KEY, after_bytes=100_000, times=1)
    store = _store(served.url)
    with store.open(KEY) as reader:
        chunks = reader.chunks()
        next(chunks)
        served.write(KEY, os.urandom(len(DATA)))
        with pytest.raises(AssetError) as caught:
            for _ in chunks:
                pass
    assert (caught.value.error_class, caught.value.status) == (ErrorClass.DRIFT, 412)
    assert [(r.range, r.status) for r in served.requests] == [
        (None, 200),
        ("bytes=100000-", 412),
    ]


def test_cut_body_without_etag_is_not_resumed(served):
    served.no_etag(KEY)
    served.truncate(KEY, after_bytes=100_000, times=1)
    error = _error(_read, _store(served.url))
    assert error.error_class == ErrorClass.TRANSIENT
    assert f"body cut off after 100000 of {len(DATA)} bytes" in error.message
    assert served.count("GET") == 1


def test_cut_body_from_an_origin_ignoring_range_is_not_stitched(served):
    served.no_range(KEY)
    served.truncate(KEY, after_bytes=100_000, times=1)
    error = _error(_read, _store(served.url))
    assert error.error_class == ErrorClass.TRANSIENT
    assert [(r.range, r.status) for r in served.requests] == [
        (None, 200),
        ("bytes=100000-", 200),
    ]


def test_body_cut_on_every_try_gives_up_after_the_resume_budget(served):
    served.truncate(KEY, after_bytes=50_000)
    error = _error(_read, _store(served.url))
    assert error.error_class == ErrorClass.TRANSIENT
    assert served.count("GET") == 1 + http_store.MAX_RESUMES


def test_stall_mid_body_is_resumed_after_the_read_timeout(served):
    served.stall(KEY, 3.0, after_bytes=100_000, times=1)
    assert _read(_store(served.url, read_timeout=0.5)) == DATA
    first, resumed = served.requests
    assert (first.range, first.status, resumed.status) == (None, 200, 206)
    offset = int(resumed.range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < offset <= 100_000  # a chunk cut by the stall is dropped whole and fetched again


def test_stall_before_the_headers_is_a_transient_timeout(served):
    served.stall(KEY, 3.0, times=1)
    error = _error(_store(served.url, read_timeout=0.5).head, KEY)
    assert error.error_class == ErrorClass.TRANSIENT
    assert "timed out" in error.message
    assert served.count() == 1


def test_stall_on_a_reused_connection_is_not_silently_retried(served):
    """Only a dropped connection is reopened in place; a stall goes to the retry policy."""
    store = _store(served.url, read_timeout=0.5)
    store.head(KEY)
    served.stall(KEY, 3.0, times=1)
    error = _error(store.head, KEY)
    assert "timed out" in error.message
    assert served.count() == 2


# --- redirects -----------------------------------------------------------------------------


class _Redirect(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RedirectServer

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path))
        if self.path.startswith("/odd/"):  # a length no parser should trust
            self.send_response(200)
            self.send_header("Content-Length", unquote(self.path.rsplit("/", 1)[1]))
            self.send_header("ETag", '"odd"')
            self.end_headers()
            return
        routes = {
            "/to-origin/": f"{self.server.origin_url}/",
            "/hop/": "/to-origin/",
            "/rel/x": f"../to-origin/{KEY}",
            "/loop/": "/loop/",
            "/ftp/": "ftp://example.com/",
        }
        prefix = next(p for p in routes if self.path.startswith(p))
        self.send_response(302)
        self.send_header("Location", routes[prefix] + self.path[len(prefix) :])
        self.send_header("Content-Length", "0")
        self.end_headers()


class _RedirectServer(ThreadingHTTPServer):
    daemon_threads = True
    origin_url: str
    seen: list[tuple[str, str]]


@pytest.fixture
def redirector(served):
    server = _RedirectServer(("127.0.0.1", 0), _Redirect)
    server.origin_url, server.seen = served.url, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_redirects_are_followed_for_head_and_get(redirector, served):
    store = _store(f"http://127.0.0.1:{redirector.server_address[1]}")
    facts = store.head(f"hop/{KEY}")
    assert (facts.size, facts.etag) == (len(DATA), ETAG)
    assert _read(store, f"to-origin/{KEY}") == DATA
    assert redirector.seen == [
        ("HEAD", f"/hop/{KEY}"),
        ("HEAD", f"/to-origin/{KEY}"),
        ("GET", f"/to-origin/{KEY}"),
    ]
    assert [(r.method, r.path) for r in served.requests] == [
        ("HEAD", f"/{KEY}"),
        ("GET", f"/{KEY}"),
    ]


def test_a_relative_location_is_resolved_against_the_request(redirector, served):
    store = _store(f"http://127.0.0.1:{redirector.server_address[1]}")
    assert store.head("rel/x").size == len(DATA)
    assert [path for _, path in redirector.seen] == ["/rel/x", f"/to-origin/{KEY}"]


@pytest.mark.parametrize("length", ["lots", "-1", "²"])
def test_an_unparsable_length_is_no_length(redirector, length):
    store = _store(f"http://127.0.0.1:{redirector.server_address[1]}")
    facts = store.head(f"odd/{quote(length)}")
    assert (facts.size, facts.etag) == (None, '"odd"')


def test_a_resume_after_a_redirect_keeps_range_and_if_match(redirector, served):
    served.truncate(KEY, after_bytes=100_000, times=1)
    store = _store(f"http://127.0.0.1:{redirector.server_address[1]}")
    assert _read(store, f"to-origin/{KEY}") == DATA
    assert [(r.range, r.status) for r in served.requests] == [
        (None, 200),
        ("bytes=100000-", 206),
    ]


def test_redirect_loops_and_foreign_schemes_are_permanent(redirector):
    store = _store(f"http://127.0.0.1:{redirector.server_address[1]}")
    error = _error(store.head, "loop/x")
    assert error.error_class == ErrorClass.PERMANENT
    assert "too many redirects" in error.message
    assert len(redirector.seen) == http_store.MAX_REDIRECTS + 1
    error = _error(store.head, "ftp/x")
    assert error.error_class == ErrorClass.PERMANENT
    assert "unsupported scheme 'ftp'" in error.message


# --- secrets -------------------------------------------------------------------------------


def test_a_signed_url_never_shows_its_query(served):
    signed = f"{served.url}/{KEY}?X-Amz-Signature=SIGSECRET&X-Amz-Credential=AKIASECRET"
    store = _store(signed)
    assert _read(store, "") == DATA
    assert store.head("").size == len(DATA)
    assert "SECRET" not in store.describe("")
    served.fail(KEY, 403)
    for call in (store.head, lambda p: store.open(p).__enter__()):
        error = _error(call, "")
        assert "SECRET" not in str(error)
        assert "SECRET" not in error.message
        assert "access denied (HTTP 403)" in error.message
