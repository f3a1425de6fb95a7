"""Target keys from hostile item ids and asset keys: never outside the root, never shared.

Item ids and asset keys come from other people's catalogs. Whatever they hold, the key a
target gets stays under the target root, and two assets that would share a key are refused
before a byte moves.
"""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stacflow.flows.compile import compile_plan
from stacflow.flows.inputs import Inputs
from stacflow.flows.layouts import checked_path, safe_segment, target_path
from stacflow.flows.spec import Spec
from stacflow.tasks.errors import AssetError
from stacflow.tasks.locks import LockRow
from stacflow.tasks.stores import StoreRef
from stacflow.tasks.stores.file import FolderStore

ROOT = Path("/srv/target")
STORE = FolderStore(StoreRef("file", None, str(ROOT)))
HOSTILE = [
    "../../etc",
    "..",
    ".",
    "...",
    "a/b",
    "a_b",
    "/abs",
    "with space",
    "100%",
    "%2e%2e",
    "ünïcødé",
    "日本語",
    "tab\there",
    "nul\x00byte",
    "line\nbreak",
    "del\x7f",
    "c1\x85next",
    "back\\slash",
    "x" * 300,
]


def _row(item_id: str, asset_key: str, key: str = "upload/0/scene.tif") -> LockRow:
    return LockRow(item_id, asset_key, "https", "https://origin.example", None, key, 10)


def _plan(rows: list[LockRow], layout: str = "item-asset"):
    spec = Spec.model_validate(
        {
            "name": "keys",
            "package": "pkg",
            "sources": {"origin": {}},
            "targets": {"local": {"store": {"type": "file", "root": str(ROOT)}, "layout": layout}},
            "outputs": "out",
        }
    )
    return compile_plan(Inputs(spec, Path("/specs/keys.yaml"), rows, None))


def _assert_stays_under_root(path: str) -> None:
    parts = path.split("/")
    assert not path.startswith("/")
    assert all(part not in {"", ".", ".."} for part in parts), path
    assert not any(ord(c) < 32 or ord(c) == 127 for c in path)
    full = STORE._full(path)
    assert full.is_relative_to(ROOT)
    assert ".." not in full.relative_to(ROOT).parts
    assert posixpath.normpath(full.as_posix()).startswith(f"{ROOT}/")


# --- safe_segment and checked_path ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("../../etc", ".._.._etc"),
        ("..", "__"),
        (".", "_"),
        ("...", "___"),
        ("", "_"),
        ("a/b", "a_b"),
        ("with space", "with_space"),
        ("100%", "100_"),
        ("ünï", "_n_"),
        ("tab\there", "tab_here"),
        ("nul\x00byte", "nul_byte"),
        ("back\\slash", "back_slash"),
        ("keep.this-one_=ok", "keep.this-one_=ok"),
    ],
)
def test_safe_segment(value, segment):
    assert safe_segment(value) == segment


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/etc/passwd", "is absolute"),
        ("", "would not stay under the target root"),
        ("..", "would not stay under the target root"),
        ("a/../../b", "would not stay under the target root"),
        ("a/./b", "would not stay under the target root"),
        ("a//b", "would not stay under the target root"),
        ("a/", "would not stay under the target root"),
        ("a/b\x00c", "holds control characters"),
        ("a/b\nc", "holds control characters"),
        ("a/b\x7f", "holds control characters"),
    ],
)
def test_checked_path_refuses(path, problem):
    with pytest.raises(ValueError, match=problem):
        checked_path(path)


def test_checked_path_refuses_c1_control_characters():
    with pytest.raises(ValueError, match="control characters"):
        checked_path("upload/next\x85line.tif")


# --- target_path ---------------------------------------------------------------------------


@pytest.mark.parametrize("item_id", HOSTILE)
@pytest.mark.parametrize("asset_key", ["visual", "..", ".", "a/b", "日本", "x\ny"])
def test_item_asset_keys_stay_under_the_root(item_id, asset_key):
    path = target_path("item-asset", _row(item_id, asset_key), None)
    assert path.count("/") == 1
    assert path.endswith(".tif")
    _assert_stays_under_root(path)


def test_item_asset_key_is_stacpkgs():
    """stacpkg's rules (the whole corpus is in test_stacpkg_keys): runs of unsafe characters
    become one `_`, `.`, `_` and `/` go from both ends, the href's suffix is kept as written."""
    row = _row("631ee6653cdf1c0006b63c5b", "visual", "631ee60c3cdf1c0006b63c56/0/x.tif")
    assert target_path("item-asset", row, None) == "631ee6653cdf1c0006b63c5b/visual.tif"
    assert target_path("item-asset", _row("../../etc", "passwd"), None) == "etc/passwd.tif"
    assert target_path("item-asset", _row("..", ".", "up/.."), None) == "item/asset"
    assert target_path("item-asset", _row("i", "a", "up/scene.t if"), None) == "i/a.t if"
    assert target_path("item-asset", _row("i", "a.tif", "up/x.tif"), None) == "i/a.tif"


def test_an_extension_no_key_can_hold_is_refused_at_plan_time():
    with pytest.raises(ValueError, match="control characters"):
        target_path("item-asset", _row("i", "a", "up/x.t\x01f"), None)


@pytest.mark.parametrize(
    "key",
    ["../../etc/passwd", "up/../../x", "up/./x", "up//x", "up/x/", "up/\x00x", "up/\nx", ".."],
)
def test_source_key_layout_refuses_keys_that_would_escape(key):
    with pytest.raises(ValueError, match="key"):
        target_path("source-key", _row("i", "a", key), None)


def test_source_key_layout_keeps_a_clean_key():
    assert target_path("source-key", _row("i", "a", "/up/0/x.tif"), None) == "up/0/x.tif"
    assert target_path("source-key", _row("i", "a", "up/ü %/x.tif"), None) == "up/ü %/x.tif"


def test_templates_are_checked_after_filling():
    row = _row("../i", "a b", "up/0/x.tif")
    layout = "{collection}/{item_id}/{asset_key}{ext}"
    assert target_path(layout, row, None) == "no-collection/.._i/a_b.tif"
    assert target_path(layout, row, "../c") == ".._c/.._i/a_b.tif"
    with pytest.raises(ValueError, match="is absolute"):
        target_path("{source_dir}/{item_id}{ext}", _row("i", "a", "x.tif"), None)
    with pytest.raises(ValueError, match="would not stay under"):
        target_path("{source_dir}/{source_name}", _row("i", "a", "up/../../x.tif"), None)


# --- conflicts in the plan -----------------------------------------------------------------


def test_ids_that_sanitise_alike_are_a_conflict():
    plan = _plan([_row("a/b", "visual"), _row("a_b", "visual"), _row("a b", "visual")])
    assert list(plan.conflicts) == [
        f"target local: a/b/visual and a_b/visual both map to {ROOT}/a_b/visual.tif",
        f"target local: a/b/visual and a b/visual both map to {ROOT}/a_b/visual.tif",
    ]
    assert [len(m.legs) for m in plan.moves] == [1, 0, 0]  # the first claim keeps its leg


def test_asset_keys_that_meet_through_the_extension_are_a_conflict():
    plan = _plan([_row("i", "x", "up/f.tif"), _row("i", "x.tif", "up/f")])
    assert list(plan.conflicts) == [
        f"target local: i/x and i/x.tif both map to {ROOT}/i/x.tif",
    ]


def test_unicode_ids_that_sanitise_alike_are_a_conflict():
    plan = _plan([_row("é", "visual"), _row("ü", "visual")])
    assert len(plan.conflicts) == 1
    assert "both map to" in plan.conflicts[0]


def test_escaping_and_nested_source_keys_are_conflicts():
    plan = _plan(
        [
            _row("i", "a", "../../etc/passwd"),
            _row("j", "a", "up/scene"),
            _row("k", "a", "up/scene/part.tif"),
        ],
        layout="source-key",
    )
    assert plan.conflicts[0] == (
        "target local: i/a: key '../../etc/passwd' would not stay under the target root"
    )
    assert plan.conflicts[1] == (
        f"target local: j/a maps to {ROOT}/up/scene, which other assets need as a folder"
    )
    assert len(plan.conflicts) == 2


def test_each_conflict_names_its_target_as_data():
    """`stacflow plan` counts each target's conflicts from this field, never from the text."""
    plan = _plan(
        [
            _row("i", "a", "../../etc/passwd"),
            _row("j", "a", "up/scene"),
            _row("k", "a", "up/scene/part.tif"),
            _row("k", "a", "up/scene/again.tif"),
        ],
        layout="source-key",
    )
    assert [(c.split(":")[0], c.target) for c in plan.conflicts] == [
        ("target local", "local"),  # i/a escapes the root
        ("source origin", None),  # k/a locked twice: no target's concern
        ("target local", "local"),  # j/a is a file where k/a needs a folder
    ]


def test_hostile_ids_compile_without_conflict_when_distinct():
    rows = [_row(item_id, "visual") for item_id in ("../../etc", "..", "a/b", "x/../y", "%2e%2e")]
    plan = _plan(rows)
    assert plan.conflicts == ()
    for move in plan.moves:
        (leg,) = move.legs
        _assert_stays_under_root(leg.path)
        assert Path(leg.row.key).is_relative_to(ROOT)


def test_a_segment_too_long_for_a_file_system_is_refused_at_plan_time():
    plan = _plan([_row("x" * 300, "visual")])
    assert any("x" * 300 in conflict for conflict in plan.conflicts)


def test_one_asset_locked_twice_from_different_sources_is_a_conflict():
    plan = _plan([_row("i", "a", "up/x.tif"), _row("i", "a", "other/y.tif")])
    assert len(plan.conflicts) == 1
    assert sum(len(m.legs) for m in plan.moves) <= 1


# --- properties ----------------------------------------------------------------------------

ANY_TEXT = st.text(min_size=1, max_size=80)
# A few characters that sanitise alike, so that collisions are frequent.
CLASHING = st.text(alphabet="ab/_ .é%", min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(item_id=ANY_TEXT, asset_key=ANY_TEXT, key=st.text(max_size=60))
def test_any_item_asset_key_is_refused_or_stays_under_the_root(item_id, asset_key, key):
    """The href's extension is stacpkg's, kept as written: one holding a control character is
    refused; every other key stays one folder deep under the root."""
    try:
        path = target_path("item-asset", _row(item_id, asset_key, key or "x"), None)
    except ValueError:
        return
    _assert_stays_under_root(path)
    assert path.count("/") == 1


@settings(max_examples=300, deadline=None)
@given(key=st.text(max_size=60))
def test_any_source_key_is_refused_or_stays_under_the_root(key):
    try:
        path = target_path("source-key", _row("i", "a", key), None)
    except ValueError:
        return
    _assert_stays_under_root(path)


@settings(max_examples=300, deadline=None)
@given(path=st.text(max_size=60))
def test_file_store_paths_never_leave_the_root(path):
    try:
        full = STORE._full(path)
    except AssetError:
        return
    assert full.is_relative_to(ROOT)
    assert full != ROOT
    assert all(part not in {".", ".."} for part in PurePosixPath(full).relative_to(ROOT).parts)


@settings(max_examples=200, deadline=None)
@given(first=st.tuples(CLASHING, CLASHING), second=st.tuples(CLASHING, CLASHING))
def test_two_assets_mapped_to_one_key_are_a_conflict(first, second):
    assume(first != second)
    rows = [_row(*first), _row(*second)]
    plan = _plan(rows)
    same_key = target_path("item-asset", rows[0], None) == target_path("item-asset", rows[1], None)
    if not same_key:
        assert plan.conflicts == ()
    else:
        (conflict,) = plan.conflicts
        assert "both map to" in conflict
        assert sum(len(m.legs) for m in plan.moves) == 1
