"""Asset href ⇄ lock location, as stacpkg 0.1.4 writes and reads them.

A lock's `key` is the object's name as the href writes it, never decoded or encoded again: for
http(s) the URL's path as written (`scene%2001/ortho%20image.tif`, sent to the origin as is), for
s3/gs/az the object key itself (obstore takes the string verbatim), for a file the absolute
path. `to_href` is stacpkg's `href_from_location`: the key joined unchanged to its container, a
file path encoded as `Path.as_uri()` does. Two departures: a `file://` href is decoded into the
path it names (stacpkg keeps `%20` in the key, then looks for a file with `%2520` in its
name), and a relative path needs an explicit base (stacpkg resolves it against `/`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from stacflow.tasks.errors import InputError, redact

if TYPE_CHECKING:
    from pathlib import Path
    from urllib.parse import SplitResult

STORE_TYPES = ("file", "s3", "gs", "az", "http", "https")
_ALIASES = {"local": "file", "s3a": "s3", "gcs": "gs", "abfs": "az", "abfss": "az"}
_BUCKET_TYPES = ("s3", "gs", "az")
_HTTP_TYPES = ("http", "https")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_USERINFO = re.compile(r"^(?P<scheme>[^:/?#]+://)[^/?#]*@")


@dataclass(frozen=True, slots=True)
class Location:
    """Where an object lives, in the lock's own terms (the endpoint is not part of the href)."""

    store_type: str | None
    store_container: str | None
    store_endpoint_url: str | None
    key: str | None

    @property
    def href(self) -> str:
        return to_href(self)


def normalise_store_type(value: str | None) -> str | None:
    """Map stacpkg's accepted aliases onto the six store types every lock row uses."""
    if value is None or not value.strip():
        return None
    lowered = value.strip().lower()
    store_type = _ALIASES.get(lowered, lowered)
    if store_type not in STORE_TYPES:
        accepted = ", ".join([*STORE_TYPES, *_ALIASES])
        raise InputError(f"unknown store type {value!r} (expected one of: {accepted})")
    return store_type


def parse_href(href: str, *, base: Path | None = None) -> Location:
    """Split an asset href into a location; `base` is the directory relative paths are under."""
    if not href or not href.strip():
        raise InputError(f"empty asset href {href!r}")
    if href.startswith("/"):
        return Location("file", None, None, href)
    if not _SCHEME.match(href):
        return Location("file", None, None, _resolve_relative(href, base))
    try:
        parts = urlsplit(href)
    except ValueError:
        raise InputError(f"asset href {_shown(href)} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme in _HTTP_TYPES:
        return _parse_http(href, parts, scheme)
    if parts.fragment:
        raise InputError(f"asset href {_shown(href)}: a '#' fragment names no object")
    if scheme == "file":
        return _parse_file(href, parts)
    if scheme in (*_BUCKET_TYPES, *_ALIASES):
        store_type = normalise_store_type(scheme)
        if store_type in _BUCKET_TYPES:
            return _parse_bucket(href, parts, store_type)
    raise InputError(
        f"asset href {_shown(href)}: unsupported scheme {parts.scheme!r} "
        "(expected a path, file://, s3://, gs://, az://, http:// or https://)"
    )


def to_href(loc: Location) -> str:
    """The href a location stands for, as stacpkg rebuilds it: the key as written."""
    store_type = normalise_store_type(loc.store_type)
    missing = []
    if store_type is None:
        missing.append("store_type")
    elif store_type != "file" and not loc.store_container:
        missing.append("store_container")
    if not loc.key and not (store_type in _HTTP_TYPES and loc.key == ""):
        missing.append("key")
    if missing:
        raise InputError(f"location {_describe(loc)}: missing fields: {', '.join(missing)}")
    assert loc.key is not None
    if store_type == "file":
        if not loc.key.startswith("/"):
            raise InputError(f"location {_describe(loc)}: a file key must be an absolute path")
        return PurePosixPath(loc.key).as_uri()
    if store_type in _BUCKET_TYPES:
        return f"{store_type}://{loc.store_container}/{loc.key}"
    if loc.key == "":
        return str(loc.store_container)
    return f"{str(loc.store_container).rstrip('/')}/{loc.key}"


def unsigned(loc: Location) -> Location:
    """The location a signed URL signs, for a table stacflow writes.

    A query string on an http(s) href is taken for a signature (stacflow never keeps one: it
    cannot tell a signature from the rest), so a signed URL, which stacpkg locks whole in
    `store_container` with the key "", becomes the row of the same href unsigned: its origin and
    its path. Any tool resolves such a row; re-sign it to fetch a private object (docs/spec.md,
    "Signed URLs").
    """
    if loc.store_type not in _HTTP_TYPES or not loc.store_container:
        return loc
    parts = urlsplit(loc.store_container)
    if not parts.query:
        return loc
    origin = f"{parts.scheme}://{parts.netloc}"
    key = loc.key or _strip_slash(parts.path)
    return Location(loc.store_type, origin, loc.store_endpoint_url, key)


def unsigned_href(href: str) -> str:
    """An http(s) href without its query string (see `unsigned`); any other href as given."""
    parts = urlsplit(href)
    if parts.scheme.lower() not in _HTTP_TYPES or not parts.query:
        return href
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _resolve_relative(href: str, base: Path | None) -> str:
    if base is None:
        raise InputError(
            f"asset href {href!r} is a relative path and there is no base directory to resolve "
            "it against"
        )
    return posixpath.normpath(base.absolute().joinpath(href).as_posix())


def _parse_file(href: str, parts: SplitResult) -> Location:
    if parts.netloc not in ("", "localhost") or parts.query:
        raise InputError(
            f"asset href {_shown(href)}: a file:// href must be file:///<absolute path> "
            "(no host, no query)"
        )
    key = _decoded(href, parts.path)
    if not key.startswith("/"):
        raise InputError(f"asset href {_shown(href)}: a file:// href needs an absolute path")
    return Location("file", None, None, key)


def _parse_bucket(href: str, parts: SplitResult, store_type: str) -> Location:
    if not parts.netloc:
        raise InputError(f"asset href {_shown(href)}: no bucket or container after '://'")
    if parts.query:
        raise InputError(f"asset href {_shown(href)}: a {store_type} href cannot carry a query")
    key = _strip_slash(parts.path)
    if not key:
        raise InputError(f"asset href {_shown(href)}: no object key after the {store_type} bucket")
    return Location(store_type, parts.netloc, None, key)


def _parse_http(href: str, parts: SplitResult, scheme: str) -> Location:
    if not parts.hostname:
        raise InputError(f"asset href {_shown(href)}: no host after '{scheme}://'")
    if parts.username is not None or parts.password is not None:
        raise InputError(
            f"asset href {_shown(href)}: credentials in an href are not supported "
            "(they would end up in the lock); configure them on the store instead"
        )
    if parts.query:
        return Location(scheme, href, None, "")
    if parts.fragment:
        raise InputError(f"asset href {_shown(href)}: a '#' fragment names no object")
    origin = f"{scheme}://{parts.netloc.lower()}"
    return Location(scheme, origin, None, _strip_slash(parts.path))


def _strip_slash(path: str) -> str:
    """Drop exactly one leading `/`, so a key that itself starts with `/` survives a round trip."""
    return path.removeprefix("/")


def _decoded(href: str, path: str) -> str:
    try:
        return unquote(path, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InputError(
            f"asset href {_shown(href)}: percent-encoded bytes are not UTF-8"
        ) from None


def _shown(href: str) -> str:
    """Quote an href for a message without its userinfo or query, which may hold secrets."""
    return repr(redact(_USERINFO.sub(r"\g<scheme><redacted>@", href)))


def _describe(loc: Location) -> str:
    fields = {
        "store_type": loc.store_type,
        "store_container": loc.store_container,
        "key": loc.key,
    }
    shown = ", ".join(
        f"{name}={redact(value)!r}" for name, value in fields.items() if value is not None
    )
    return f"({shown})" if shown else "(empty)"
