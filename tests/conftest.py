"""Shared fixtures: a loopback HTTP origin with faults, moto S3, and the real Prefect engine.

The environment is sealed at import, before anything builds a store or imports Prefect: dummy
AWS credentials and no instance metadata, no telemetry, and no PREFECT_API_URL from a
developer's shell, `.env` or profile. Prefect is imported only by the fixtures that start it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

ROOT = Path(__file__).resolve().parents[1]

from tests.servers import azure, gcs, s3  # noqa: E402
from tests.servers.origin import Origin  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

s3.isolate_aws_env()
azure.isolate_azure_env()
gcs.isolate_google_env()
os.environ.update(
    {
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": "",  # empty beats a `.env` or profile value: never a developer's server
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
)

OAM_DATA = Path(__file__).parent / "data" / "oam-austria"
OAM_BUCKET = "oin-hotosm-temp"
OAM_LAST_MODIFIED = "Mon, 12 Sep 2022 09:43:21 GMT"


# Session servers that cost seconds to start, each started by one xdist worker only: the tests
# that need one run as a group (`--dist loadgroup`) on the worker that started it.
XDIST_GROUPS = {
    "prefect_server": "prefect-server",
    "azurite_endpoint": "azurite",
    "fake_gcs_url": "fake-gcs",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start `prefect server` carry its marker, so `-m "not prefect_server"` works;
    a test that needs an expensive session server joins that server's xdist group."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "prefect_server" in fixtures:
            item.add_marker(pytest.mark.prefect_server)
        group = next((g for fixture, g in XDIST_GROUPS.items() if fixture in fixtures), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


# --- HTTP origin -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def origin_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    with Origin(tmp_path_factory.mktemp("origin")) as server:
        yield server


@pytest.fixture
def origin(origin_session: Origin, tmp_path: Path) -> Origin:
    """The session's origin, reset for this test: no faults, empty log, an empty root of its own."""
    root = tmp_path / "origin"
    root.mkdir()
    origin_session.clear()
    origin_session.root = root
    origin_session.last_modified = None
    origin_session.etag_style = "md5"
    origin_session.latency, origin_session.rate, origin_session.control = 0.0, None, False
    return origin_session


@pytest.fixture(scope="session")
def oam_data() -> Path:
    return OAM_DATA


@pytest.fixture
def oam_origin(origin: Origin, oam_data: Path, tmp_path: Path) -> Origin:
    """The origin serving the oam-austria bytes with the headers the fixture's HTTPS lock expects.

    It serves a per-test copy, so a source-drift test can rewrite files without touching the repo.
    """
    root = tmp_path / "oam-origin"
    shutil.copytree(oam_data / "origin", root)
    origin.root = root
    origin.last_modified = OAM_LAST_MODIFIED
    return origin


# --- S3 ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with s3.moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A new, empty bucket for this test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(moto_endpoint, name)
    return name


@pytest.fixture
def oam_s3(moto_endpoint: str, oam_data: Path) -> str:
    """Bucket `oin-hotosm-temp` holding exactly the fixture's origin bytes, public-read."""
    s3.mirror(moto_endpoint, OAM_BUCKET, oam_data / "origin", public=True)
    return OAM_BUCKET


# --- Azure -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def azurite_endpoint() -> Iterator[str]:
    """Azurite's blob service; its account's endpoint URL (`http://127.0.0.1:PORT/ACCOUNT`)."""
    with azure.azurite() as endpoint:
        yield endpoint


@pytest.fixture
def azure_container(azurite_endpoint: str) -> str:
    """A new, empty container for this test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    azure.create_container(azurite_endpoint, name)
    return name


# --- GCS ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_gcs_url() -> Iterator[str]:
    with gcs.fake_gcs_server() as url:
        yield url


@pytest.fixture
def gcs_bucket(fake_gcs_url: str) -> str:
    """A new, empty bucket for this test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    gcs.create_bucket(fake_gcs_url, name)
    return name


# --- Prefect -----------------------------------------------------------------------------


def _prefect_cache(request: pytest.FixtureRequest, factory: pytest.TempPathFactory) -> Path:
    """Where the template DB lives: pytest's cache dir, so it survives between sessions."""
    cache = getattr(request.config, "cache", None)
    if cache is None:  # -p no:cacheprovider: one template for the session, built once
        base = factory.getbasetemp()
        if hasattr(request.config, "workerinput"):  # an xdist worker: share with the others
            base = base.parent
        shared = base / "prefect-db"
        shared.mkdir(exist_ok=True)
        return shared
    return Path(cache.mkdir("prefect-db"))


@pytest.fixture(scope="session")
def prefect_harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Prefect API server for this session with PREFECT_API_URL pointing at it; yields the URL.

    The URL and home are also exported, so a CLI run in a subprocess joins the same server
    instead of starting its own ephemeral one (~7 s).
    """
    from tests.servers.prefect_harness import harness  # noqa: PLC0415 - Prefect costs ~1-2 s

    cache = _prefect_cache(request, tmp_path_factory)
    home = tmp_path_factory.mktemp("prefect-home")
    with harness(cache, home) as api_url, pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_API_URL", api_url)
        env.setenv("PREFECT_HOME", str(home))
        yield api_url


@pytest.fixture(scope="session")
def prefect_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real `prefect server start` subprocess (own PREFECT_HOME); yields its API URL."""
    from tests.servers.prefect_harness import prefect_server  # noqa: PLC0415

    cache = _prefect_cache(request, tmp_path_factory)
    with prefect_server(cache, tmp_path_factory.mktemp("prefect-server")) as api_url:
        yield api_url


@pytest.fixture(autouse=True)
def fresh_store_clients() -> None:
    """Each test opens its own connections, so attempt and request counts never depend on order;
    and no store is still down from an earlier test."""
    from stacflow.tasks.breaker import BREAKERS  # noqa: PLC0415
    from stacflow.tasks.stores import _open_cached  # noqa: PLC0415 - the process-wide client cache

    _open_cached.cache_clear()
    BREAKERS.clear()


@pytest.fixture(autouse=True)
def fresh_environment_values() -> None:
    """Values an earlier test's spec took from the environment are hidden in its messages only."""
    from stacflow.tasks.errors import forget_environment_values  # noqa: PLC0415

    forget_environment_values()
