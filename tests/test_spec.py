"""Good specs load into the model `flows/spec.py` documents, defaults included."""

from __future__ import annotations

import shutil
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from stacflow.flows.inputs import load_spec
from stacflow.flows.spec import (
    DEFAULT_BATCH_ASSETS,
    DEFAULT_MAX_WORKERS,
    Spec,
    Validate,
)
from stacflow.tasks.access import Access, EnvRef, resolve_credentials
from stacflow.tasks.errors import InputError, SpecError
from stacflow.tasks.stores.file import FileStore
from stacflow.tasks.stores.s3 import S3Store

OAM = Path(__file__).resolve().parent / "data" / "oam-austria"
PACKAGE = OAM / "openaerialmap-austria.pkg"
S3_LOCK = OAM / "openaerialmap-austria.s3.assets.lock.parquet"
ITEMS = OAM / "openaerialmap-austria.enriched.items.parquet"
MiB = 2**20


def write(folder: Path, text: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load(folder: Path, text: str, env: dict[str, str] | None = None) -> Spec:
    return load_spec(write(folder, text), env={} if env is None else env)


def minimal(extra: str = "") -> str:
    head = f"name: demo\npackage: {PACKAGE}\nsources: {{https: {{}}}}\noutputs: out\n"
    return head + textwrap.dedent(extra)


def test_the_tutorial_shape_loads(tmp_path):
    spec = load(
        tmp_path,
        f"""\
        name: openaerialmap-austria
        package: {PACKAGE}
        items: {ITEMS}
        sources:
          https:
            prefix: https://oin-hotosm-temp.s3.amazonaws.com/
          s3:
            lock: {S3_LOCK}
            store: {{anonymous: true, region: us-east-1}}
        targets:
          local:
            store: {{type: file, root: local-assets}}
            alternate: {{key: local}}
            layout: item-asset
        relocate: {{max_workers: 4, memory_limit: 512MiB, chunk_size: 8MiB}}
        validate: [https, s3, local]
        outputs: out/openaerialmap-austria
        """,
    )
    assert spec.name == "openaerialmap-austria"
    assert spec.package == PACKAGE
    assert list(spec.sources) == ["https", "s3"]
    assert spec.sources["https"].prefix == "https://oin-hotosm-temp.s3.amazonaws.com/"
    assert spec.sources["s3"].lock == S3_LOCK
    assert spec.sources["s3"].store.anonymous is True
    assert spec.sources["s3"].store.region == "us-east-1"
    assert spec.targets["local"].store == FileStore(type="file", root=Path("local-assets"))
    assert spec.relocate.max_workers == 4
    assert spec.relocate.memory_limit == 512 * MiB
    assert spec.relocate.chunk_size == 8 * MiB
    assert spec.validate_ == Validate(locks=["https", "s3", "local"], checksums=False)
    assert spec.outputs == Path("out/openaerialmap-austria")
    assert spec.relocate_source == "https"


def test_defaults_are_what_the_model_documents(tmp_path):
    spec = load(tmp_path, minimal("targets: {local: {store: {type: file, root: assets}}}\n"))
    assert spec.stac is None
    assert spec.items is None
    assert spec.select.items == []
    assert spec.select.collections == []
    assert spec.select.assets.include == []
    assert spec.select.assets.exclude == []
    assert spec.select.metadata_assets is False
    assert spec.validate_ is None
    source = spec.sources["https"]
    assert source.prefix is None
    assert source.lock is None
    assert source.compare == ["size", "etag", "last_modified"]
    assert source.store == Access()
    assert source.store.endpoint is None
    assert source.store.allow_http is False
    assert source.store.anonymous is False
    assert source.store.requester_pays is False
    assert source.store.credentials is None
    assert source.store.timeout == timedelta(minutes=30)
    assert source.store.connect_timeout == timedelta(seconds=10)
    assert source.store.read_timeout == timedelta(seconds=60)
    target = spec.targets["local"]
    assert target.layout == "item-asset"
    assert target.promote is False
    assert target.alternate.key is None
    assert target.alternate.name is None
    relocate = spec.relocate
    assert relocate.source is None
    assert relocate.max_workers == DEFAULT_MAX_WORKERS == 8
    assert relocate.memory_limit == 512 * MiB
    assert relocate.chunk_size == 8 * MiB
    assert relocate.batch.assets == DEFAULT_BATCH_ASSETS == 2000
    assert relocate.batch.bytes == 4 * 2**30
    assert relocate.retry.attempts == 5
    assert relocate.retry.initial_backoff == timedelta(seconds=1)
    assert relocate.retry.max_backoff == timedelta(seconds=60)
    assert relocate.on_drift == "refuse"
    assert relocate.fail_fast is False


def test_validation_only_spec_needs_no_targets(tmp_path):
    spec = load(tmp_path, minimal("validate: [https]\n"))
    assert spec.targets == {}
    assert spec.validate_.locks == ["https"]


def test_an_s3_target_with_keys_from_named_variables(tmp_path, monkeypatch):
    spec = load(
        tmp_path,
        minimal(
            """\
            targets:
              bucket:
                store:
                  type: s3
                  bucket: my-relocated-assets
                  prefix: /oam/austria/
                  region: eu-central-1
                  endpoint: https://s3.eu-central-1.amazonaws.com
                  credentials:
                    access_key_id: {env: RELOCATE_KEY_ID}
                    secret_access_key: {env: RELOCATE_SECRET}
                    session_token: {env: RELOCATE_TOKEN}
            """
        ),
    )
    store = spec.targets["bucket"].store
    assert isinstance(store, S3Store)
    assert store.bucket == "my-relocated-assets"
    assert store.prefix == "oam/austria"
    assert store.credentials.access_key_id == EnvRef(env="RELOCATE_KEY_ID")
    assert store.credentials.secret_access_key == EnvRef(env="RELOCATE_SECRET")
    assert store.credentials.session_token == EnvRef(env="RELOCATE_TOKEN")

    monkeypatch.setenv("RELOCATE_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("RELOCATE_SECRET", "secret-value")
    monkeypatch.setenv("RELOCATE_TOKEN", "token-value")
    keys = resolve_credentials(store.credentials)
    assert (keys.access_key_id, keys.secret_access_key, keys.session_token) == (
        "AKIAEXAMPLE",
        "secret-value",
        "token-value",
    )
    assert "secret-value" not in repr(keys)
    monkeypatch.delenv("RELOCATE_SECRET")
    with pytest.raises(InputError, match="environment variable RELOCATE_SECRET is not set"):
        resolve_credentials(store.credentials)


def test_a_prefect_secret_credential(tmp_path):
    spec = load(
        tmp_path,
        minimal(
            "targets:\n  bucket:\n    store:\n      type: s3\n      bucket: my-assets\n"
            "      credentials: {prefect_secret: relocate-aws-keys}\n"
        ),
    )
    credentials = spec.targets["bucket"].store.credentials
    assert credentials.prefect_secret == "relocate-aws-keys"
    assert credentials.access_key_id is None


@pytest.mark.parametrize(
    "credentials",
    [
        "{access_key_id: {env: K}, secret_access_key: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYKEY'}",
        "{access_key_id: {env: K}, secret_access_key: 1234567890123}",
        "'wJalrXUtnFEMI/K7MDENG+bPxRfiCYKEY'",
        "{prefect_secret: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYKEY'}",
        "{access_key_id: {env: K}, secret_access_key: {env: 'wJalrXUtnFEMI/K7MDENG'}}",
        "{access_key_id: {env: AKIAIOSFODNN7EXAMPLE}, secret_access_key: {env: S}}",
    ],
)
def test_a_literal_secret_is_refused_and_never_echoed(tmp_path, credentials):
    store = f"{{type: s3, bucket: my-assets, credentials: {credentials}}}"
    text = minimal(f"targets:\n  bucket:\n    store: {store}\n")
    with pytest.raises(SpecError) as error:
        load(tmp_path, text)
    message = str(error.value)
    assert error.value.line == 7
    assert error.value.field.startswith("targets.bucket.store.credentials")
    for secret in ("wJalrXUtnFEMI", "1234567890123", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://admin:hunter2@minio.internal:9000",
        "https://token@minio.internal",
        "https://minio.internal/?X-Amz-Signature=hunter2",
    ],
)
def test_an_endpoint_with_a_secret_in_it_is_refused_and_never_echoed(tmp_path, url):
    text = minimal(
        f"targets:\n  b:\n    store: {{type: s3, bucket: my-assets, endpoint: '{url}'}}\n"
    )
    with pytest.raises(SpecError) as error:
        load(tmp_path, text)
    assert error.value.field == "targets.b.store.endpoint"
    assert "hunter2" not in str(error.value)
    assert "token@" not in str(error.value)


@pytest.mark.parametrize(
    "layout",
    [
        "item-asset",
        "source-key",
        "{item_id}/{asset_key}{ext}",
        "{collection}/{item_id}/{asset_key}{ext}",
        "mirror/{source_key}",
        "{source_dir}/{item_id}-{source_name}",
    ],
)
def test_template_layouts_load(tmp_path, layout):
    spec = load(
        tmp_path,
        minimal(
            f"targets:\n  local:\n    store: {{type: file, root: a}}\n    layout: '{layout}'\n"
        ),
    )
    assert spec.targets["local"].layout == layout


def test_validate_short_and_long_forms(tmp_path):
    targets = "targets: {local: {store: {type: file, root: a}}}\n"
    short = load(tmp_path, minimal(targets + "validate: [https, local]\n"))
    assert short.validate_ == Validate(locks=["https", "local"])
    assert not short.validate_.with_checksums("local")

    some = load(
        tmp_path, minimal(targets + "validate: {locks: [https, local], checksums: [local]}\n")
    )
    assert some.validate_.locks == ["https", "local"]
    assert some.validate_.with_checksums("local")
    assert not some.validate_.with_checksums("https")

    every = load(
        tmp_path, minimal(targets + "validate: {locks: [https, local], checksums: true}\n")
    )
    assert every.validate_.with_checksums("https")
    assert every.validate_.with_checksums("local")


def test_variables_are_interpolated_outside_credentials(tmp_path):
    spec = load(
        tmp_path,
        """\
        name: ${NAME}-nightly
        package: ${DATA}/openaerialmap-austria.pkg
        sources:
          https:
            prefix: https://oin-hotosm-temp.s3.amazonaws.com/
            store:
              endpoint: ${MIRROR:-https://oin-hotosm-temp.s3.amazonaws.com/}
              allow_http: ${ALLOW_HTTP:-false}
        targets:
          local:
            store: {type: file, root: '${OUT}/assets'}
            alternate: {key: '${KEY:-local}'}
        relocate:
          max_workers: ${WORKERS}
          memory_limit: ${MEMORY:-256MiB}
          retry: {max_backoff: '${BACKOFF:-2min}'}
        outputs: ${OUT}/results-$${literal}
        """,
        env={"NAME": "oam", "DATA": str(OAM), "OUT": "build", "WORKERS": "3", "ALLOW_HTTP": ""},
    )
    assert spec.name == "oam-nightly"
    assert spec.package == PACKAGE
    assert spec.sources["https"].store.endpoint == "https://oin-hotosm-temp.s3.amazonaws.com/"
    assert spec.sources["https"].store.allow_http is False
    assert spec.targets["local"].store.root == Path("build/assets")
    assert spec.alternate_key("local") == "local"
    assert spec.relocate.max_workers == 3
    assert spec.relocate.memory_limit == 256 * MiB
    assert spec.relocate.retry.max_backoff == timedelta(minutes=2)
    assert spec.outputs == Path("build/results-${literal}")


def test_an_http_mirror_with_allow_http_and_a_folder_mirror_load(tmp_path):
    sources = (
        "sources:\n"
        "  https: {store: {endpoint: 'http://127.0.0.1:8080/', allow_http: true}}\n"
        "  folder: {store: {endpoint: mirror/origin}}\n"
        "  file-url: {store: {endpoint: 'file:///srv/mirror'}}\n"
    )
    spec = load(tmp_path, minimal().replace("sources: {https: {}}\n", sources))
    assert spec.sources["https"].store.endpoint == "http://127.0.0.1:8080/"
    assert spec.sources["folder"].store.endpoint == "mirror/origin"
    assert spec.sources["file-url"].store.endpoint == "file:///srv/mirror"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5min", 300), ("5m", 300), ("2h", 7200), ("1.5", 1.5)],
)
def test_durations(tmp_path, text, seconds):
    spec = load(
        tmp_path, minimal(f"relocate: {{retry: {{initial_backoff: '{text}', max_backoff: 3h}}}}\n")
    )
    assert spec.relocate.retry.initial_backoff == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [("64KiB", 64 * 1024), ("8 MiB", 8 * MiB), ("10MB", 10**7), ("1048576", MiB), ("2GiB", 2**31)],
)
def test_sizes(tmp_path, text, size):
    spec = load(tmp_path, minimal(f"relocate: {{chunk_size: '{text}', memory_limit: 16GiB}}\n"))
    assert spec.relocate.chunk_size == size


def test_numbers_are_seconds_and_bytes(tmp_path):
    spec = load(
        tmp_path,
        minimal("relocate: {chunk_size: 65536, memory_limit: 262144, retry: {max_backoff: 90}}\n"),
    )
    assert spec.relocate.chunk_size == 65536
    assert spec.relocate.memory_limit == 262144
    assert spec.relocate.retry.max_backoff == timedelta(seconds=90)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("openaerialmap-austria", "openaerialmap-austria"),
        ("OpenAerialMap Austria (2022)!", "openaerialmap-austria-2022"),
        ("demo_drone.survey", "demo-drone-survey"),
        ("___", "spec"),
    ],
)
def test_slug(tmp_path, name, slug):
    assert load(tmp_path, minimal().replace("name: demo", f"name: '{name}'")).slug == slug


def test_alternate_key_and_name_defaults(tmp_path):
    spec = load(
        tmp_path,
        minimal(
            """\
            targets:
              plain: {store: {type: file, root: a}}
              keyed: {store: {type: file, root: b}, alternate: {key: mirror}}
              named: {store: {type: file, root: c}, alternate: {key: backup, name: Backup copy}}
              only-name: {store: {type: file, root: d}, alternate: {name: Just a name}}
            """
        ),
    )
    # No alternate:name unless the spec gives one, as stacpkg's `items enrich` writes them.
    assert (spec.alternate_key("plain"), spec.alternate_name("plain")) == ("plain", None)
    assert (spec.alternate_key("keyed"), spec.alternate_name("keyed")) == ("mirror", None)
    assert (spec.alternate_key("named"), spec.alternate_name("named")) == ("backup", "Backup copy")
    assert spec.alternate_key("only-name") == "only-name"
    assert spec.alternate_name("only-name") == "Just a name"


def test_relocate_source_is_the_first_source_unless_named(tmp_path):
    sources = f"sources:\n  https: {{}}\n  s3: {{lock: {S3_LOCK}}}\n"
    first = load(tmp_path, minimal().replace("sources: {https: {}}\n", sources))
    assert first.relocate_source == "https"
    named = load(
        tmp_path, minimal("relocate: {source: s3}\n").replace("sources: {https: {}}\n", sources)
    )
    assert named.relocate_source == "s3"


def test_paths_are_relative_to_the_spec_file_not_the_working_directory(tmp_path, monkeypatch):
    """A target root is checked where a run would write: beside the spec, wherever it runs."""
    here = tmp_path / "repo" / "specs"
    here.mkdir(parents=True)
    shutil.copytree(PACKAGE, here / "data" / "pkg")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = "name: demo\npackage: data/pkg\nsources: {https: {}}\noutputs: out\n"
    assert load(here, text).package == Path("data/pkg")
    inside = text + "targets: {local: {store: {type: file, root: data/pkg/assets}}}\n"
    with pytest.raises(SpecError, match="overlaps the input") as error:
        load(here, inside)
    assert error.value.field == "targets.local.store.root"
    assert str(here / "data" / "pkg") in str(error.value)


def test_a_home_folder_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = load(tmp_path, minimal("targets: {local: {store: {type: file, root: ~/assets}}}\n"))
    assert spec.targets["local"].store.root == tmp_path / "home" / "assets"


def test_the_spec_is_frozen(tmp_path):
    spec = load(tmp_path, minimal())
    with pytest.raises(ValueError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]
