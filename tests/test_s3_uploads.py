"""Multipart uploads a killed run left open are aborted, and only those; SigV4 as botocore signs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from stacflow.tasks.access import Access, ResolvedKeys
from stacflow.tasks.errors import AssetError, ErrorClass
from stacflow.tasks.stores import StoreRef
from stacflow.tasks.stores.s3_uploads import abort_stale_uploads, sigv4_headers
from tests.servers.s3 import KEY_ID, REGION, SECRET, list_multipart_uploads
from tests.servers.s3 import client as s3_client


def test_signature_matches_botocore():
    keys = ResolvedKeys(access_key_id="AKIDEXAMPLE", secret_access_key="wJalrXUtnFEMI/K7MDENG")
    now = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
    url = "http://127.0.0.1:9000/my-bucket/some%20dir/key.tif?uploadId=abc%2F1&x=1"
    ours = sigv4_headers("DELETE", url, region="eu-west-1", keys=keys, now=now)

    request = AWSRequest(
        method="DELETE",
        url=url,
        headers={
            "X-Amz-Date": ours["x-amz-date"],
            "X-Amz-Content-SHA256": ours["x-amz-content-sha256"],
        },
    )
    request.context["timestamp"] = ours["x-amz-date"]
    signer = S3SigV4Auth(BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG"), "s3", "eu-west-1")
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    assert ours["Authorization"].endswith(f"Signature={signer.signature(string_to_sign, request)}")


def test_only_the_plans_stale_uploads_are_aborted(moto_endpoint, s3_bucket, monkeypatch):
    client = s3_client(moto_endpoint)
    for key in ("mirror/a/visual.tif", "mirror/b/visual.tif", "elsewhere/c.tif"):
        client.create_multipart_upload(Bucket=s3_bucket, Key=key)
    ref = StoreRef(
        "s3",
        s3_bucket,
        "mirror",
        Access(endpoint=moto_endpoint, allow_http=True, region=REGION),
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)

    later = datetime.now(UTC) + timedelta(minutes=5)
    assert abort_stale_uploads(ref, ["a/visual.tif"], later) == 1
    left = {upload["Key"] for upload in list_multipart_uploads(moto_endpoint, s3_bucket)}
    assert left == {"mirror/b/visual.tif", "elsewhere/c.tif"}

    # moto reports every upload as initiated in 2010, so "begun before this batch" cannot be
    # shown failing here; the key filter above is what keeps other writers' uploads safe.


def test_a_batch_aborts_the_uploads_a_killed_run_left_on_its_keys(
    moto_endpoint, s3_bucket, tmp_path, origin
):
    from stacflow.tasks.locks import LockRow  # noqa: PLC0415
    from stacflow.tasks.moves import Leg, Move  # noqa: PLC0415
    from stacflow.tasks.relocate import CopyPolicy, relocate_batch  # noqa: PLC0415

    client = s3_client(moto_endpoint)
    client.create_multipart_upload(Bucket=s3_bucket, Key="m/a.bin")
    (origin.root / "a.bin").write_bytes(b"payload")
    target = StoreRef("s3", s3_bucket, "m", Access(endpoint=moto_endpoint, allow_http=True))
    source = LockRow("i", "a", "http", origin.url, None, "a.bin", 7)
    move = Move(
        source=source,
        source_store=StoreRef("http", origin.url, "", Access(allow_http=True)),
        source_path="a.bin",
        legs=(Leg("s3", target, "a.bin", LockRow("i", "a", "s3", s3_bucket, None, "m/a.bin")),),
    )
    [moved] = relocate_batch([move], CopyPolicy(workers=1, attempts=1))

    assert moved.outcome.outcome == "copied"
    assert list_multipart_uploads(moto_endpoint, s3_bucket) == []


@contextmanager
def loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class ContainerCredentials(BaseHTTPRequestHandler):
    """What ECS and EKS pod identity serve at AWS_CONTAINER_CREDENTIALS_FULL_URI."""

    asked = 0

    def do_GET(self) -> None:
        type(self).asked += 1
        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = json.dumps(
            {
                "AccessKeyId": "ASIACONTAINERKEY0001",
                "SecretAccessKey": "container-secret",
                "Token": "container-session-token",
                "Expiration": expires,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _no_keys_in_env(monkeypatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_without_spec_keys_the_sweep_signs_with_the_aws_credential_chain(
    moto_endpoint, s3_bucket, monkeypatch
):
    client = s3_client(moto_endpoint)
    client.create_multipart_upload(Bucket=s3_bucket, Key="m/a.tif")
    _no_keys_in_env(monkeypatch)
    ref = StoreRef("s3", s3_bucket, "m", Access(endpoint=moto_endpoint, allow_http=True))
    with loopback(ContainerCredentials) as url:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{url}/credentials")
        later = datetime.now(UTC) + timedelta(minutes=5)
        assert abort_stale_uploads(ref, ["a.tif"], later) == 1
    assert ContainerCredentials.asked >= 1
    assert list_multipart_uploads(moto_endpoint, s3_bucket) == []


def test_no_keys_anywhere_is_said_not_skipped_in_silence(moto_endpoint, s3_bucket, monkeypatch):
    _no_keys_in_env(monkeypatch)
    ref = StoreRef("s3", s3_bucket, "m", Access(endpoint=moto_endpoint, allow_http=True))
    with pytest.raises(AssetError) as caught:
        abort_stale_uploads(ref, ["a.tif"], datetime.now(UTC))
    assert caught.value.message.startswith("no S3 keys to look for uploads a killed run left")
    assert "install stacflow[aws]" in caught.value.message


def test_a_listing_that_fails_raises_instead_of_finding_nothing(moto_endpoint):
    ref = StoreRef("s3", "no-such-bucket", "m", Access(endpoint=moto_endpoint, allow_http=True))
    with pytest.raises(AssetError) as caught:
        abort_stale_uploads(ref, ["a.tif"], datetime.now(UTC))
    assert caught.value.message.startswith("not found (HTTP 404): S3 GET ")
    assert "/no-such-bucket?<redacted>" in caught.value.message


class AbortRefused(BaseHTTPRequestHandler):
    """An S3 endpoint that lists one stale upload and answers its abort with 503."""

    def do_GET(self) -> None:
        body = (
            b'<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<IsTruncated>false</IsTruncated><Upload><Key>m/a.tif</Key>"
            b"<UploadId>secret-upload-id</UploadId>"
            b"<Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>"
            b"</ListMultipartUploadsResult>"
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_abort_that_fails_is_not_counted_as_done():
    with loopback(AbortRefused) as url:
        ref = StoreRef("s3", "bucket", "m", Access(endpoint=url, allow_http=True))
        with pytest.raises(AssetError) as caught:
            abort_stale_uploads(ref, ["a.tif"], datetime.now(UTC))
    assert caught.value.error_class is ErrorClass.TRANSIENT
    assert caught.value.message.startswith(
        "aborted 0 of 1 uploads a killed run left in s3://bucket/m; 1 could not be aborted: "
        "HTTP 503 from S3 DELETE"
    )
    assert "secret-upload-id" not in caught.value.message


def test_a_sweep_that_fails_is_in_the_run_summary(
    tmp_path, prefect_harness, moto_endpoint, origin, capsys
):
    from stacflow.flows.cli import main  # noqa: PLC0415
    from stacflow.tasks.state import RUNNING, STATE_DIR  # noqa: PLC0415
    from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package  # noqa: PLC0415

    assets = {("scene", "visual"): ("scene/visual.tif", b"bytes")}
    package = make_package(tmp_path / "pkg", origin.root, assets)
    origin.last_modified = LAST_MODIFIED_HTTP
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
name: sweep-fails
package: {package}
sources:
  https: {{prefix: {ORIGIN}/, store: {{endpoint: "{origin.url}/", allow_http: true}}}}
targets:
  bucket: {{store: {{type: s3, bucket: gone-bucket, endpoint: {moto_endpoint}, allow_http: true}}}}
validate: []
outputs: out
"""
    )
    state = tmp_path / "out" / STATE_DIR
    state.mkdir(parents=True)
    (state / "run.lock").write_bytes(RUNNING)  # the previous run was killed: sweep first

    assert main(["run", str(spec)]) == 1
    out = capsys.readouterr().out
    assert (
        "note: could not sweep what a killed run left in gone-bucket: not found (HTTP 404)" in out
    )
