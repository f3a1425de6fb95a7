"""The YAML loader: every user mistake is one `file:line: field: problem` line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stacflow.flows.specfile import (
    MAX_VALUES,
    LineIndex,
    SpecFieldError,
    load_model,
    load_yaml,
    validate,
)
from stacflow.tasks.errors import SpecError

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileStore(Strict):
    type: Literal["file"]
    root: str

    @model_validator(mode="after")
    def _allowed_root(self, info: ValidationInfo) -> FileStore:
        if info.context and self.root in info.context["forbidden_roots"]:
            raise SpecFieldError("root", f"refusing to write into {self.root}")
        return self


class S3Store(Strict):
    type: Literal["s3"]
    bucket: str
    region: str | None = None
    anonymous: bool = False


class Alternate(Strict):
    key: str


class Target(Strict):
    store: Annotated[FileStore | S3Store, Field(discriminator="type")]
    alternate: Alternate | None = None
    layout: Literal["item-asset", "source-key"] = "item-asset"


class Source(Strict):
    prefix: str | None = None
    lock: str | None = None
    store: S3Store | FileStore | None = None  # a plain union: pydantic names members in locs


class Relocate(Strict):
    max_workers: int = Field(4, gt=0)
    memory_limit: str = "512MiB"
    ratio: float = 1.0


class Spec(Strict):
    name: str
    package: str
    items: str | None = None
    sources: dict[Name, Source] = Field(default_factory=dict)
    targets: dict[Name, Target]
    relocate: Relocate = Field(default_factory=Relocate)
    validate_: list[str] = Field(default_factory=list, alias="validate")
    outputs: str

    @field_validator("name")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with spaces")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Spec:
        known = {*self.sources, *self.targets}
        for i, name in enumerate(self.validate_):
            if name not in known:
                raise SpecFieldError(("validate", i), f"'{name}' is neither a source nor a target")
        for name, target in self.targets.items():
            if isinstance(target.store, FileStore) and target.store.root.startswith(self.package):
                loc = ("targets", name, "store", "root")
                raise SpecFieldError(loc, "the target root lies inside the package folder")
        return self


SPEC = """\
# yaml-language-server: $schema=../stacflow.schema.json
name: demo
package: data/demo.pkg
sources:
  https:
    prefix: https://example.com/
  s3:
    lock: data/s3.lock.parquet
    store: {type: s3, bucket: b, anonymous: true}
targets:
  local:
    store: {type: file, root: local-assets}
    alternate: {key: local}
    layout: item-asset
relocate: {max_workers: 4, memory_limit: 512MiB, ratio: 0.5}
validate: [https, s3, local]
outputs: out/demo
"""


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    """Writes a spec as `spec.yaml` in the working directory, so messages name `spec.yaml`."""
    monkeypatch.chdir(tmp_path)

    def write(text: str, *, dedent: bool = True) -> Path:
        path = Path("spec.yaml")
        path.write_text(textwrap.dedent(text) if dedent else text, encoding="utf-8")
        return path

    return write


def load_error(path: Path, **kwargs) -> str:
    with pytest.raises(SpecError) as caught:
        load_model(Spec, path, env=kwargs.pop("env", {}), **kwargs)
    return str(caught.value)


def edited(*replacements: tuple[str, str]) -> str:
    text = SPEC
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


# --- success ---------------------------------------------------------------------------------


def test_loads_the_spec_into_the_model(spec_file):
    spec = load_model(Spec, spec_file(SPEC), env={})
    assert spec.name == "demo"
    assert spec.sources["s3"].store == S3Store(type="s3", bucket="b", anonymous=True)
    assert spec.targets["local"].store == FileStore(type="file", root="local-assets")
    assert spec.targets["local"].alternate == Alternate(key="local")
    assert spec.relocate == Relocate(max_workers=4, memory_limit="512MiB", ratio=0.5)
    assert spec.validate_ == ["https", "s3", "local"]
    assert spec.outputs == "out/demo"


def test_scalars_are_typed_but_timestamps_stay_strings(spec_file):
    path = spec_file("""\
        i: 1
        b: true
        n: null
        f: 1.5
        s: "1"
        d: 2022-01-01
        t: 2022-01-01T10:00:00Z
        on_word: off
        """)
    data, _ = load_yaml(path, env={})
    assert data == {
        "i": 1,
        "b": True,
        "n": None,
        "f": 1.5,
        "s": "1",
        "d": "2022-01-01",
        "t": "2022-01-01T10:00:00Z",
        "on_word": False,
    }


def test_line_index_records_value_and_key_lines_deep_in_mappings_and_lists(spec_file):
    path = spec_file("""\
        a:
          b:
            - x: 1
              y:
                - 10
                - 20
            - x: 2
        c: [1, {d: e}]
        name:
          demo
        """)
    data, lines = load_yaml(path, env={})
    assert data == {
        "a": {"b": [{"x": 1, "y": [10, 20]}, {"x": 2}]},
        "c": [1, {"d": "e"}],
        "name": "demo",
    }
    assert lines.line(("a",)) == 1
    assert lines.line(("a", "b")) == 2
    assert lines.line(("a", "b", 0)) == 3
    assert lines.line(("a", "b", 0, "x")) == 3
    assert lines.line(("a", "b", 0, "y")) == 4  # a list is found at its key
    assert lines.line(("a", "b", 0, "y", 1)) == 6
    assert lines.line(("a", "b", 1, "x")) == 7
    assert lines.line(("c", 1, "d")) == 8
    assert lines.line(("name",)) == 10  # a scalar is found where it is written
    assert lines.line(("name",), key=True) == 9
    assert lines.line(("a", "b", 0, "z")) == 3  # missing: the nearest parent


def test_anchors_aliases_and_merge_keys_are_resolved(spec_file):
    path = spec_file("""\
        defaults: &store {type: s3, bucket: b, region: eu}
        other: &more {anonymous: true, region: us}
        one: *store
        two:
          <<: [*store, *more]
          bucket: c
        """)
    data, lines = load_yaml(path, env={})
    assert data["one"] == {"type": "s3", "bucket": "b", "region": "eu"}
    assert data["two"] == {"type": "s3", "bucket": "c", "region": "eu", "anonymous": True}
    assert lines.line(("two", "bucket")) == 6
    assert lines.line(("two", "anonymous")) == 2  # where the merged value is written


# --- reading and YAML errors -----------------------------------------------------------------


def test_missing_file(spec_file):
    assert (
        load_error(Path("nope.yaml"))
        == "nope.yaml: cannot read the file (No such file or directory)"
    )


def test_directory_instead_of_file(spec_file, tmp_path):
    (tmp_path / "specs").mkdir()
    assert load_error(Path("specs")) == "specs: cannot read the file (Is a directory)"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file(spec_file, text):
    assert load_error(spec_file(text)) == "spec.yaml:1: the file is empty"


def test_not_utf8(spec_file):
    path = spec_file("")
    path.write_bytes(b"name: demo\nroot: caf\xe9\n")
    assert load_error(path) == "spec.yaml:2: the file is not UTF-8 text"


def test_control_character(spec_file):
    path = spec_file("name: demo\nroot: a\x07b\n")
    assert load_error(path) == "spec.yaml:2: the file contains the control character #x0007"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("name: demo\npackage\noutputs: x\n", 2, "expected 'key: value', but this line has no ':'"),
        ("targets:\n\tlocal: 1\n", 2, "a tab cannot indent a line or start a value; use spaces"),
        ("name: @demo\n", 1, "a value cannot start with '@'; put the value in quotes"),
        (
            "name: a: b\n",
            1,
            "unexpected ':'; check the indentation, or quote a value that contains ': '",
        ),
        (
            "targets:\n  - a\n - b\n",
            3,
            "this line does not line up with the lines above it; check the indentation",
        ),
        ("name: 'demo\npackage: x\n", 1, "a quoted value is never closed"),
        ("a: 1\nvalidate: [https, s3\n", 2, "a '[' is never closed"),
        ("a: {b: 1\n", 1, "a '{' is never closed"),
        ("name: *demo\n", 1, "alias *demo has no anchor &demo before it"),
        ("a: &x 1\nb: &x 2\n", 2, "anchor &x is defined twice"),
        ("name: a\n---\nname: b\n", 2, "the file holds more than one YAML document"),
        (
            "store: {root: ${ROOT}}\n",
            1,
            "quote a value that contains '{' inside [...] or {...}, e.g. '${VAR}'",
        ),
        ("a: [1, 2}\n", 1, "a '[' is closed with '}'"),
        ("a: {b: 1]\n", 1, "a '{' is closed with ']'"),
        (
            "a: [1, 2\nb: 3\n",
            1,
            "a '[' is not closed on its line, or a ',' is missing between its values",
        ),
        (
            "a: {b: 1, c: 2\nd: 3\n",
            1,
            "a '{' is not closed on its line, or a ',' is missing between its entries",
        ),
        (
            "# a comment\nname demo  # no colon\npackage: x\n",
            3,
            "this line starts the 'key: value' lines, but the text above it has no ':'",
        ),
    ],
)
def test_yaml_syntax_errors_name_the_line(spec_file, text, line, problem):
    expected = f"spec.yaml:{line}: YAML syntax error: {problem}"
    assert load_error(spec_file(text, dedent=False)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "spec.yaml:1: expected a mapping at the top level, got a list"),
        (
            "# header\njust text\n",
            "spec.yaml:2: expected a mapping at the top level, got 'just text'",
        ),
    ],
)
def test_top_level_must_be_a_mapping(spec_file, text, expected):
    assert load_error(spec_file(text, dedent=False)) == expected


def test_duplicate_top_level_key(spec_file):
    path = spec_file(SPEC + "targets:\n  other: {store: {type: file, root: x}}\n")
    assert load_error(path) == "spec.yaml:18: targets: duplicate key 'targets' (first at line 10)"


def test_duplicate_nested_key_in_a_flow_mapping(spec_file):
    path = spec_file(edited(("{key: local}", "{key: local, key: other}")))
    expected = "spec.yaml:13: targets.local.alternate.key: duplicate key 'key' (first at line 13)"
    assert load_error(path) == expected


def test_duplicate_merge_key(spec_file):
    path = spec_file("a: &a {x: 1}\nb:\n  <<: *a\n  <<: *a\n")
    assert load_error(path) == "spec.yaml:4: b.<<: duplicate key '<<' (first at line 3)"


def test_keys_written_next_to_a_merge_override_it_without_being_duplicates(spec_file):
    data, _ = load_yaml(spec_file("a: &a {x: 1, y: 2}\nb: {<<: *a, x: 3}\n"), env={})
    assert data["b"] == {"x": 3, "y": 2}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "targets:\n  2024: x\n",
            "spec.yaml:2: targets: key 2024 is not a string; write it in quotes: '2024'",
        ),
        (
            "targets:\n  on: x\n",
            "spec.yaml:2: targets: key on is not a string; write it in quotes: 'on'",
        ),
        ("? [a, b]\n: 1\n", "spec.yaml:1: a key must be a string, got a list"),
    ],
)
def test_non_string_keys(spec_file, text, expected):
    assert load_error(spec_file(text, dedent=False)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: !secret x\n", "spec.yaml:1: name: unsupported tag '!secret'"),
        ("name: !!binary aGk=\n", "spec.yaml:1: name: unsupported tag '!!binary'"),
        ("name: !!set {a}\n", "spec.yaml:1: name: unsupported tag '!!set'"),
        ("n: !!int abc\n", "spec.yaml:1: n: cannot read 'abc' as !!int"),
    ],
)
def test_tags_outside_the_core_schema_are_refused(spec_file, text, expected):
    assert load_error(spec_file(text, dedent=False)) == expected


def test_merge_of_a_scalar_is_refused(spec_file):
    path = spec_file("a: &a 1\nb:\n  <<: *a\n")
    assert (
        load_error(path) == "spec.yaml:1: b: a merge key '<<' takes a mapping or a list of mappings"
    )


def test_recursive_alias_is_refused(spec_file):
    path = spec_file("a: &a\n  b: *a\n")
    assert (
        load_error(path)
        == "spec.yaml:2: a.b: an alias refers to a mapping or list that contains it"
    )


def test_deep_nesting_is_refused(spec_file):
    path = spec_file("a: " + "[" * 700 + "]" * 700 + "\n")
    assert load_error(path) == "spec.yaml: mappings and lists are nested too deeply"


def test_alias_bomb_is_refused(spec_file):
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 7)]
    message = load_error(spec_file("\n".join(levels) + "\n"))
    assert message.endswith(f"more than {MAX_VALUES} values; check anchors and aliases")


# --- interpolation ---------------------------------------------------------------------------


def test_interpolation_set_default_empty_and_escaped(spec_file):
    path = spec_file("""\
        set: ${ROOT}/assets
        default: ${MISSING:-fallback}
        empty_default: ${EMPTY:-used}
        empty_default_none: x${MISSING:-}y
        escaped: $${ROOT} and $$ and $5
        two: ${ROOT}-${REGION:-eu-west-1}
        list: [a, "${ROOT}"]
        ${ROOT}: keys are not interpolated
        number: 4
        """)
    data, _ = load_yaml(path, env={"ROOT": "/data", "EMPTY": ""})
    assert data == {
        "set": "/data/assets",
        "default": "fallback",
        "empty_default": "used",
        "empty_default_none": "xy",
        "escaped": "${ROOT} and $$ and $5",
        "two": "/data-eu-west-1",
        "list": ["a", "/data"],
        "${ROOT}": "keys are not interpolated",
        "number": 4,
    }


def test_interpolated_values_are_validated_like_written_ones(spec_file):
    path = spec_file(edited(("max_workers: 4", "max_workers: '${WORKERS}'")))
    assert load_model(Spec, path, env={"WORKERS": "8"}).relocate.max_workers == 8
    expected = "spec.yaml:15: relocate.max_workers: expected an integer, got 'eight'"
    assert load_error(path, env={"WORKERS": "eight"}) == expected


def test_interpolation_reads_os_environ_by_default(spec_file, monkeypatch):
    monkeypatch.setenv("STACFLOW_TEST_OUTPUT", "elsewhere")
    path = spec_file(edited(("outputs: out/demo", "outputs: ${STACFLOW_TEST_OUTPUT}")))
    assert load_model(Spec, path).outputs == "elsewhere"


def test_unset_variable_names_variable_line_and_field(spec_file):
    path = spec_file(edited(("root: local-assets", "root: '${OUTPUT_ROOT}/assets'")))
    expected = "spec.yaml:12: targets.local.store.root: environment variable OUTPUT_ROOT is not set"
    assert load_error(path) == expected


def test_unset_variable_in_a_list_item(spec_file):
    path = spec_file(edited(("[https, s3, local]", "[https, '${SOURCE}', local]")))
    assert load_error(path) == "spec.yaml:16: validate[1]: environment variable SOURCE is not set"


@pytest.mark.parametrize("value", ["${1ROOT}", "${ROOT", "${ROOT:-${OTHER}}", "${ROOT-x}"])
def test_malformed_reference(spec_file, value):
    path = spec_file(edited(("outputs: out/demo", f"outputs: '{value}'")))
    expected = (
        "spec.yaml:17: outputs: a '${' must start ${NAME} or ${NAME:-default};"
        " write '$${' for a '${'"
    )
    assert load_error(path, env={"ROOT": "r", "OTHER": "o"}) == expected


def test_a_field_can_refuse_interpolation(spec_file):
    seen = []

    def refuse(loc):
        seen.append(loc)
        if loc[-1] == "bucket":
            return "secrets and buckets are not read from the environment here"
        return None

    path = spec_file(edited(("bucket: b", "bucket: '${BUCKET}'")))
    expected = (
        "spec.yaml:9: sources.s3.store.bucket:"
        " secrets and buckets are not read from the environment here"
    )
    assert load_error(path, env={"BUCKET": "b"}, refuse_interpolation=refuse) == expected
    assert seen == [("sources", "s3", "store", "bucket")]
    escaped = spec_file(edited(("bucket: b", "bucket: '$${BUCKET}'")))
    spec = load_model(Spec, escaped, env={}, refuse_interpolation=refuse)
    assert spec.sources["s3"].store.bucket == "${BUCKET}"


# --- validation errors -----------------------------------------------------------------------


def test_unknown_top_level_key_lists_the_allowed_keys(spec_file):
    path = spec_file(SPEC + "foo: 1\n")
    expected = (
        "spec.yaml:18: foo: unknown key 'foo' (expected one of: name, package, items, sources,"
        " targets, relocate, validate, outputs)"
    )
    assert load_error(path) == expected


def test_misspelled_nested_key_suggests_the_field(spec_file):
    path = spec_file(edited(("layout: item-asset", "layuot: item-asset")))
    expected = "spec.yaml:14: targets.local.layuot: unknown key 'layuot' (did you mean 'layout'?)"
    assert load_error(path) == expected


def test_misspelled_alias_suggests_the_alias_not_the_attribute(spec_file):
    path = spec_file(edited(("validate: [", "valdate: [")))
    expected = "spec.yaml:16: valdate: unknown key 'valdate' (did you mean 'validate'?)"
    assert load_error(path) == expected


def test_misspelled_key_in_a_discriminated_union_uses_the_tagged_model(spec_file):
    path = spec_file(edited(("root: local-assets", "rot: local-assets")))
    message = load_error(path)
    assert message == (
        "spec.yaml:12: targets.local.store.root: required key missing (and 1 more problem)"
    )
    path = spec_file(edited(("type: file, root: local-assets", "type: file, root: a, buckt: b")))
    expected = (
        "spec.yaml:12: targets.local.store.buckt: unknown key 'buckt' (expected one of: type, root)"
    )
    assert load_error(path) == expected


def test_other_member_of_the_discriminated_union(spec_file):
    path = spec_file(edited(("{type: file, root: local-assets}", "{type: s3, bucket: out}")))
    assert load_model(Spec, path, env={}).targets["local"].store == S3Store(type="s3", bucket="out")
    path = spec_file(edited(("{type: file, root: local-assets}", "{type: s3, bukket: out}")))
    message = load_error(path)
    assert message.startswith("spec.yaml:12: targets.local.store.bucket: required key missing")


def test_unknown_discriminator_value(spec_file):
    path = spec_file(edited(("type: file", "type: ftp")))
    expected = "spec.yaml:12: targets.local.store.type: expected one of 'file', 's3', got 'ftp'"
    assert load_error(path) == expected


def test_missing_discriminator(spec_file):
    path = spec_file(
        edited(("    store: {type: file, root: local-assets}", "    store:\n      root: x"))
    )
    assert load_error(path) == "spec.yaml:12: targets.local.store.type: required key missing"


def test_plain_union_member_names_are_not_shown_as_keys(spec_file):
    path = spec_file(edited(("{type: s3, bucket: b, anonymous: true}", "{type: s3}")))
    assert load_error(path) == (
        "spec.yaml:9: sources.s3.store.bucket: required key missing (and 2 more problems)"
    )


def test_missing_nested_key_is_reported_at_its_parent(spec_file):
    path = spec_file(edited(("    alternate: {key: local}\n", "    alternate: {}\n")))
    assert load_error(path) == "spec.yaml:13: targets.local.alternate.key: required key missing"


def test_missing_top_level_key_is_reported_at_the_first_key(spec_file):
    path = spec_file(edited(("outputs: out/demo\n", "")))
    assert load_error(path) == "spec.yaml:2: outputs: required key missing"


def test_wrong_scalar_type(spec_file):
    path = spec_file(edited(("max_workers: 4", "max_workers: abc")))
    assert load_error(path) == "spec.yaml:15: relocate.max_workers: expected an integer, got 'abc'"


def test_list_where_a_mapping_is_expected(spec_file):
    path = spec_file(edited(("    alternate: {key: local}", "    alternate:\n      - local")))
    assert (
        load_error(path) == "spec.yaml:13: targets.local.alternate: expected a mapping, got a list"
    )


def test_literal_value_not_allowed(spec_file):
    path = spec_file(edited(("layout: item-asset", "layout: flat")))
    expected = (
        "spec.yaml:14: targets.local.layout: expected one of 'item-asset', 'source-key', got 'flat'"
    )
    assert load_error(path) == expected


def test_constraint_violation(spec_file):
    path = spec_file(edited(("max_workers: 4", "max_workers: 0")))
    assert load_error(path) == "spec.yaml:15: relocate.max_workers: must be greater than 0, got 0"


def test_invalid_mapping_key_is_reported_at_the_key(spec_file):
    path = spec_file(edited(("  local:\n", "  Local_Store:\n")))
    expected = (
        "spec.yaml:11: targets.Local_Store: must match pattern '^[a-z][a-z0-9-]*$',"
        " got 'Local_Store'"
    )
    assert load_error(path) == expected


def test_validator_message_loses_the_pydantic_prefix(spec_file):
    path = spec_file(edited(("name: demo", "name: ' demo'")))
    assert load_error(path) == "spec.yaml:2: name: must not start or end with spaces"


def test_cross_field_error_points_at_the_sub_path(spec_file):
    path = spec_file(edited(("root: local-assets", "root: data/demo.pkg/assets")))
    expected = (
        "spec.yaml:12: targets.local.store.root: the target root lies inside the package folder"
    )
    assert load_error(path) == expected


def test_cross_field_error_at_a_list_index(spec_file):
    path = spec_file(edited(("[https, s3, local]", "[https,\n  s3,\n  lokal]")))
    expected = "spec.yaml:18: validate[2]: 'lokal' is neither a source nor a target"
    assert load_error(path) == expected


def test_nested_validator_with_context_blames_a_field_inside_a_union_member(spec_file):
    path = spec_file(SPEC)
    with pytest.raises(SpecError) as caught:
        load_model(Spec, path, env={}, context={"forbidden_roots": ["local-assets"]})
    expected = "spec.yaml:12: targets.local.store.root: refusing to write into local-assets"
    assert str(caught.value) == expected


def test_first_problem_in_document_order_wins_and_the_rest_are_counted(spec_file):
    # pydantic reports `package` (declared second) before `relocate`; the file has it later
    path = spec_file(
        edited(
            ("package: data/demo.pkg\n", ""),
            ("outputs: out/demo\n", "outputs: out/demo\npackage: []\n"),
            ("max_workers: 4", "max_workers: many"),
            ("layout: item-asset", "layout: flat"),
        )
    )
    expected = (
        "spec.yaml:13: targets.local.layout: expected one of 'item-asset', 'source-key',"
        " got 'flat' (and 2 more problems)"
    )
    assert load_error(path) == expected


def test_list_length_constraint(spec_file):
    class Short(BaseModel):
        items: list[int] = Field(max_length=1)

    path = spec_file("items: [1, 2]\n")
    with pytest.raises(SpecError) as caught:
        load_model(Short, path, env={})
    expected = "spec.yaml:1: items: must have at most 1 item after validation, not 2"
    assert str(caught.value) == expected


def test_single_allowed_value(spec_file):
    class Only(BaseModel):
        kind: Literal["file"]

    with pytest.raises(SpecError) as caught:
        load_model(Only, spec_file("kind: s3\n"), env={})
    assert str(caught.value) == "spec.yaml:1: kind: expected 'file', got 's3'"


def test_the_error_is_a_spec_error_with_parts(spec_file):
    path = spec_file(edited(("layout: item-asset", "layout: flat")))
    with pytest.raises(SpecError) as caught:
        load_model(Spec, path, env={})
    error = caught.value
    assert (error.file, error.line, error.field) == ("spec.yaml", 14, "targets.local.layout")
    assert error.exit_code == 2


def test_validate_without_lines_names_file_and_field(spec_file):
    with pytest.raises(SpecError) as caught:
        validate(Spec, {"package": "p", "targets": {}, "outputs": "o"}, LineIndex(), "spec.yaml")
    assert str(caught.value) == "spec.yaml: name: required key missing"


class Checks(Strict):
    """A section with a short form: a plain list stands for `{names: [...]}`."""

    names: list[Name]
    strict: bool = False

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: object) -> object:
        return {"names": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _no_twice(self) -> Checks:
        for i, name in enumerate(self.names):
            if name in self.names[:i]:
                raise SpecFieldError(("names", i), f"'{name}' is listed twice")
        return self


class WithChecks(Strict):
    checks: Checks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checks:\n  - a\n  - B\n", "spec.yaml:3: checks[1]: must match pattern"),
        ("checks: [a, b, a]\n", "spec.yaml:1: checks[2]: 'a' is listed twice"),
        ("checks:\n  names:\n    - a\n    - a\n", "spec.yaml:4: checks.names[1]: 'a' is listed"),
    ],
)
def test_a_short_form_list_is_blamed_as_written(spec_file, text, expected):
    """A loc through the field a list stands for stays on the list the author wrote."""
    with pytest.raises(SpecError) as caught:
        load_model(WithChecks, spec_file(text), env={})
    assert str(caught.value).startswith(expected)


class Keys(Strict):
    token: Annotated[str, StringConstraints(pattern=r"^[A-Z_]+$")]
    length: int = 0


class Store(Strict):
    credentials: Keys | None = None
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$")] = "us-east-1"


@pytest.mark.parametrize(
    "text",
    [
        "credentials: {token: 'hunter2/secret'}\n",
        "credentials: {token: X, length: hunter2}\n",
        "credentials: hunter2\n",
    ],
)
def test_values_under_credentials_are_never_echoed(spec_file, text):
    message = load_error_of(Store, spec_file(text))
    assert "hunter2" not in message
    assert "credentials are never echoed" in message


def test_values_elsewhere_are_echoed(spec_file):
    message = load_error_of(Store, spec_file("region: EU_WEST\n"))
    assert "got 'EU_WEST'" in message


def load_error_of(model: type[BaseModel], path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_model(model, path, env={})
    return str(caught.value)
