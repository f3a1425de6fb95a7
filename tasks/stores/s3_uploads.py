"""Abort the S3 multipart uploads a killed run left behind, so a rerun ends in a clean state.

obstore aborts its multipart upload when a write fails, but a SIGKILL leaves the upload open:
invisible, yet billed. obstore has no call to list or abort uploads, so this module signs the two
S3 requests itself (SigV4, checked against botocore's signer in the tests). It only touches
uploads of keys the current plan writes, started before the current run: never another writer's.

Its keys are the spec's `credentials`, else the AWS credential chain through botocore (the `aws`
extra: environment, profiles and SSO, web identity, container and instance roles), else
`AWS_ACCESS_KEY_ID`. A sweep that cannot run, or an upload it cannot abort, raises: the caller
puts it in the run's log and summary, and a failed abort is never counted as done.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree as ET

from stacflow.tasks.access import ResolvedKeys, resolve_credentials
from stacflow.tasks.errors import AssetError, ErrorClass, Reach, redact
from stacflow.tasks.stores.base import StoreRef, status_error

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Upload:
    key: str
    upload_id: str
    initiated: datetime


def abort_stale_uploads(ref: StoreRef, paths: Iterable[str], started: datetime) -> int:
    """Abort open uploads to the planned keys begun before `started`; returns how many.

    Raises `AssetError` when it cannot look (no keys, the listing failed) or an abort failed,
    after trying every other one; the message says how many were aborted.
    """
    if ref.access.anonymous:
        return 0  # unsigned requests can neither list nor abort uploads
    where = f"s3://{ref.container}/{ref.root.strip('/')}"
    keys = _keys(ref)
    if keys is None:
        raise AssetError(
            ErrorClass.PERMANENT,
            f"no S3 keys to look for uploads a killed run left in {where}: name credentials in "
            "the spec, or install stacflow[aws] for the AWS credential chain (profiles, SSO, "
            "web identity, container and instance roles)",
        )
    prefix = ref.root.strip("/")
    wanted = {"/".join(p for p in (prefix, path) if p) for path in paths}
    stale = [
        upload
        for upload in list_uploads(ref, keys, prefix)
        if upload.key in wanted and upload.initiated < started
    ]
    failed: list[AssetError] = []
    for upload in stale:
        try:
            _request(ref, keys, "DELETE", upload.key, {"uploadId": upload.upload_id})
        except AssetError as error:
            failed.append(error)
    if failed:
        raise AssetError(
            failed[0].error_class,
            f"aborted {len(stale) - len(failed)} of {len(stale)} uploads a killed run left in "
            f"{where}; {len(failed)} could not be aborted: {failed[0].message}",
        )
    return len(stale)


def list_uploads(ref: StoreRef, keys: ResolvedKeys, prefix: str) -> list[Upload]:
    uploads: list[Upload] = []
    query = {"uploads": "", "prefix": prefix}
    while True:
        body = _request(ref, keys, "GET", "", query)
        root = ET.fromstring(body)  # noqa: S314 - the answer of our own S3 endpoint
        uploads.extend(
            Upload(
                key=node.findtext(f"{S3_NS}Key", ""),
                upload_id=node.findtext(f"{S3_NS}UploadId", ""),
                initiated=_parse_time(node.findtext(f"{S3_NS}Initiated", "")),
            )
            for node in root.iter(f"{S3_NS}Upload")
        )
        if root.findtext(f"{S3_NS}IsTruncated", "false").lower() != "true":
            return uploads
        query = {
            **query,
            "key-marker": root.findtext(f"{S3_NS}NextKeyMarker", ""),
            "upload-id-marker": root.findtext(f"{S3_NS}NextUploadIdMarker", ""),
        }


def sigv4_headers(
    method: str,
    url: str,
    *,
    region: str,
    keys: ResolvedKeys,
    now: datetime,
    payload_hash: str = EMPTY_SHA256,
) -> dict[str, str]:
    """AWS Signature Version 4 headers for a request with an empty body."""
    parts = urlsplit(url)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": stamp}
    if keys.session_token:
        headers["x-amz-security-token"] = keys.session_token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            parts.path or "/",  # already encoded by the caller; S3 does not encode it twice
            _canonical_query(parts.query),
            "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers)),
            signed,
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + (keys.secret_access_key or "")).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={keys.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return headers


def _request(
    ref: StoreRef, keys: ResolvedKeys, method: str, key: str, query: dict[str, str]
) -> bytes:
    endpoint = (ref.access.endpoint or f"https://s3.{_region(ref)}.amazonaws.com").rstrip("/")
    path = "/" + quote(f"{ref.container}/{key}".rstrip("/"), safe="/~")
    text = "&".join(
        f"{quote(k, safe='~')}={quote(v, safe='~')}" if v else quote(k, safe="~")
        for k, v in sorted(query.items())
    )
    url = f"{endpoint}{path}?{text}"
    headers = sigv4_headers(method, url, region=_region(ref), keys=keys, now=datetime.now(UTC))
    headers.pop("host")
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
    what = f"S3 {method} {redact(url)}"
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as error:
        raise status_error(error.code, what) from None
    except urllib.error.URLError as error:
        raise AssetError(
            ErrorClass.TRANSIENT, f"{what}: {redact(str(error.reason))}", reach=Reach.CONNECTION
        ) from None
    except TimeoutError:
        raise AssetError(ErrorClass.TRANSIENT, f"{what}: timed out") from None


def _canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((name, value))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _keys(ref: StoreRef) -> ResolvedKeys | None:
    """The spec's keys, else the AWS credential chain, else the AWS_* variables."""
    resolved = resolve_credentials(ref.access.credentials) or credential_chain()
    if resolved is None and os.environ.get("AWS_ACCESS_KEY_ID"):
        resolved = ResolvedKeys(
            access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            session_token=os.environ.get("AWS_SESSION_TOKEN"),
        )
    return resolved if resolved and resolved.secret_access_key else None


def credential_chain() -> ResolvedKeys | None:
    """Keys from botocore's chain, where the `aws` extra installed it (None: not installed, or
    nothing in the chain). Temporary keys are fetched now, once per sweep."""
    try:
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415 - optional: stacflow[aws]
        from botocore.session import Session  # noqa: PLC0415
    except ImportError:
        return None
    try:
        found = Session().get_credentials()
        if found is None:
            return None
        frozen = found.get_frozen_credentials()
    except BotoCoreError as error:
        raise AssetError(
            ErrorClass.PERMANENT, f"the AWS credential chain gave no keys: {redact(str(error))}"
        ) from None
    return ResolvedKeys(
        access_key_id=frozen.access_key,
        secret_access_key=frozen.secret_key,
        session_token=frozen.token,
    )


def _region(ref: StoreRef) -> str:
    return ref.access.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
