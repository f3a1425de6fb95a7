from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stacflow.tasks.errors import InputError, UsageError
from stacflow.tasks.locations import Location, normalise_store_type, parse_href, to_href

HOST = "https://oin-hotosm-temp.s3.amazonaws.com"


# --- the contract's table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("href", "location", "rebuilt"),
    [
        ("/abs/path", Location("file", None, None, "/abs/path"), "file:///abs/path"),
        ("file:///abs/path", Location("file", None, None, "/abs/path"), "file:///abs/path"),
        ("s3://bucket/k", Location("s3", "bucket", None, "k"), "s3://bucket/k"),
        ("gs://bucket/k", Location("gs", "bucket", None, "k"), "gs://bucket/k"),
        ("az://container/k", Location("az", "container", None, "k"), "az://container/k"),
        ("https://host/p", Location("https", "https://host", None, "p"), "https://host/p"),
        (
            "https://host/p?query",
            Location("https", "https://host/p?query", None, ""),
            "https://host/p?query",
        ),
    ],
)
def test_contract_table(href, location, rebuilt):
    assert parse_href(href) == location
    assert to_href(location) == rebuilt
    assert location.href == rebuilt


def test_fixture_lock_row_rebuilds_the_item_href():
    key = "631ee60c3cdf1c0006b63c56/0/631ee60c3cdf1c0006b63c57.tif"
    assert parse_href(f"{HOST}/{key}") == Location("https", HOST, None, key)


# --- aliases and normalisation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "store_type"),
    [
        ("local", "file"),
        ("FILE", "file"),
        ("s3a", "s3"),
        ("gcs", "gs"),
        ("abfs", "az"),
        ("abfss", "az"),
        ("HTTPS", "https"),
        (None, None),
        ("", None),
    ],
)
def test_normalise_store_type(alias, store_type):
    assert normalise_store_type(alias) == store_type


def test_unknown_store_type_names_value_and_accepted_ones():
    with pytest.raises(InputError, match=r"'ftp'.*file, s3, gs, az, http, https, local, s3a"):
        normalise_store_type("ftp")


@pytest.mark.parametrize(
    ("href", "location"),
    [
        ("s3a://b/k", Location("s3", "b", None, "k")),
        ("gcs://b/k", Location("gs", "b", None, "k")),
        ("abfs://c/k", Location("az", "c", None, "k")),
        ("abfss://c/k", Location("az", "c", None, "k")),
        ("S3://b/k", Location("s3", "b", None, "k")),
    ],
)
def test_scheme_aliases(href, location):
    assert parse_href(href) == location


def test_http_scheme_and_host_are_lowercased_but_path_is_not():
    loc = parse_href("HTTP://Example.COM:8080/Some/Key.TIF")
    assert loc == Location("http", "http://example.com:8080", None, "Some/Key.TIF")
    assert loc.href == "http://example.com:8080/Some/Key.TIF"


def test_file_uri_with_localhost_authority():
    assert parse_href("file://localhost/x/y") == Location("file", None, None, "/x/y")


# --- percent-encoding: keys as written, as stacpkg keeps them -------------------------------------


@pytest.mark.parametrize(
    ("href", "key"),
    [
        ("s3://b/d%C3%A9j%C3%A0/x%3Fy%23z", "d%C3%A9j%C3%A0/x%3Fy%23z"),
        ("https://h/a%20b/c+d.tif", "a%20b/c+d.tif"),
        ("https://h/scene%2001/ortho%20image.tif", "scene%2001/ortho%20image.tif"),
        ("https://h/100%25.tif", "100%25.tif"),
        ("s3://b/a b.tif", "a b.tif"),
    ],
)
def test_remote_keys_are_kept_exactly_as_the_href_writes_them(href, key):
    loc = parse_href(href)
    assert loc.key == key
    assert loc.href == href


@pytest.mark.parametrize(
    ("href", "key"),
    [
        ("file:///data/a%20b.tif", "/data/a b.tif"),
        ("file:///data/100%25.tif", "/data/100%.tif"),
        ("file:///data/k%3Dv/%C3%BC.tif", "/data/k=v/ü.tif"),
    ],
)
def test_a_file_href_is_decoded_into_the_path_it_names(href, key):
    loc = parse_href(href)
    assert loc.key == key
    assert loc.href == href


def test_plain_path_is_taken_literally():
    loc = parse_href("/data/a%20b.tif")
    assert loc.key == "/data/a%20b.tif"
    assert loc.href == "file:///data/a%2520b.tif"


def test_a_bucket_or_origin_href_joins_the_key_as_written():
    key = "a:b@c!$&'()*+,;=-._~/ %?#[]\"<>\\^`{|}é"
    assert Location("s3", "b", None, key).href == f"s3://b/{key}"
    assert Location("https", "https://h", None, key).href == f"https://h/{key}"


def test_a_file_href_is_encoded_as_path_as_uri_encodes_it():
    loc = Location("file", None, None, "/x/a=b/k+v ~t;@:!$&'()*%é")
    assert loc.href == Path(loc.key).as_uri()
    assert loc.href == "file:///x/a%3Db/k%2Bv%20~t%3B%40%3A%21%24%26%27%28%29%2A%25%C3%A9"


def test_leading_slash_in_bucket_key_survives():
    loc = Location("s3", "b", None, "/k")
    assert loc.href == "s3://b//k"
    assert parse_href(loc.href) == loc


def test_query_is_kept_whole_and_never_raises():
    href = "https://h.example/p%20q.tif?X-Amz-Signature=abc&x=%20"
    assert parse_href(href) == Location("https", href, None, "")


# --- relative paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("href", "key"),
    [
        ("data/x.tif", "/base/dir/data/x.tif"),
        ("./x.tif", "/base/dir/x.tif"),
        ("../up/x.tif", "/base/up/x.tif"),
        ("a%20b.tif", "/base/dir/a%20b.tif"),
    ],
)
def test_relative_paths_resolve_against_base(href, key):
    assert parse_href(href, base=Path("/base/dir")) == Location("file", None, None, key)


def test_relative_base_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_href("x.tif", base=Path("sub")).key == f"{tmp_path}/sub/x.tif"


def test_relative_path_without_base_is_refused():
    with pytest.raises(InputError, match=r"'data/x.tif' is a relative path"):
        parse_href("data/x.tif")


# --- bad hrefs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("href", "message"),
    [
        ("", "empty asset href"),
        ("   ", "empty asset href"),
        ("ftp://host/x", r"'ftp://host/x': unsupported scheme 'ftp'"),
        ("mailto:a@b", "unsupported scheme 'mailto'"),
        ("s3:///k", "no bucket"),
        ("s3://b/", "no object key"),
        ("gs://b", "no object key"),
        ("s3://b/k?versionId=1", "cannot carry a query"),
        ("https:///p", "no host"),
        ("https://h/p#frag", "fragment"),
        ("file://server/share/x", "file:///<absolute path>"),
        ("file:relative/x", "absolute path"),
        ("http://[::1/x", "not a valid URL"),
        ("file:///x/%FF", "not UTF-8"),
    ],
)
def test_bad_hrefs_are_input_errors_naming_the_problem(href, message):
    with pytest.raises(InputError, match=message):
        parse_href(href)


def test_input_error_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_href("ftp://x/y")


def test_credentials_in_href_are_refused_without_being_echoed():
    with pytest.raises(InputError, match="credentials") as caught:
        parse_href("https://user:hunter2@host/x?sig=secret")
    assert "hunter2" not in str(caught.value)
    assert "secret" not in str(caught.value)


# --- to_href on incomplete locations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "missing"),
    [
        (Location(None, None, None, None), "store_type, key"),
        (Location("s3", None, None, "k"), "store_container"),
        (Location("s3", "", None, None), "store_container, key"),
        (Location("https", "https://h", None, None), "key"),
        (Location("https", None, None, "p"), "store_container"),
        (Location("file", None, None, ""), "key"),
    ],
)
def test_missing_fields_are_listed(location, missing):
    with pytest.raises(InputError, match=f"missing fields: {missing}$"):
        to_href(location)


def test_relative_file_key_cannot_become_an_href():
    with pytest.raises(InputError, match="absolute path"):
        to_href(Location("file", None, None, "rel/x"))


def test_missing_fields_message_redacts_a_signed_container():
    with pytest.raises(InputError) as caught:
        to_href(Location(None, "https://h/x?X-Amz-Signature=s3cr3t", None, ""))
    assert "s3cr3t" not in str(caught.value)


def test_origin_with_trailing_slash_does_not_double_it():
    assert to_href(Location("https", "https://h/", None, "k")) == "https://h/k"


def test_to_href_normalises_aliases():
    assert to_href(Location("s3a", "b", None, "k")) == "s3://b/k"
    assert to_href(Location("local", None, None, "/x")) == "file:///x"


# --- round trips ----------------------------------------------------------------------------------

# Keys an href carries verbatim: no query or fragment marker, no control character (a URL
# parser drops tabs and newlines). A file path is the normalised one `Path.as_uri` writes.
keys = st.text(st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="?#"), max_size=40)
segments = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="/\x00"), min_size=1, max_size=12
).filter(lambda s: s not in {".", ".."})
paths = st.lists(segments, min_size=1, max_size=4).map("/".join)
containers = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,20}", fullmatch=True)
origins = st.builds(
    lambda scheme, host, port: f"{scheme}://{host}{port}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    st.sampled_from(["", ":8080", ":1"]),
)
locations = st.one_of(
    st.builds(lambda k: Location("file", None, None, "/" + k), paths),
    st.builds(
        lambda t, c, k: Location(t, c, None, k),
        st.sampled_from(["s3", "gs", "az"]),
        containers,
        keys.filter(bool),
    ),
    st.builds(
        lambda origin, k: Location(origin.split(":", 1)[0], origin, None, k),
        origins,
        keys,
    ),
)


@given(locations)
def test_location_round_trips_through_its_href(loc):
    assert parse_href(to_href(loc)) == loc


@given(locations)
def test_canonical_href_round_trips_through_its_location(loc):
    href = to_href(loc)
    assert to_href(parse_href(href)) == href


@given(paths)
def test_file_href_never_holds_characters_outside_rfc3986(path):
    href = to_href(Location("file", None, None, "/" + path))
    assert href.isascii()
    assert not any(c in href[len("file://") :] for c in ' ?#"<>[]\\^`{|}')
