"""A temporary server skips its migration check only while the database is known migrated."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import pytest

from stacflow.flows import api_server
from stacflow.flows.server_db import MIGRATE, STAMP, migration_env, remember_migrated


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / "prefect.db").write_bytes(b"")
    return home


def test_a_database_never_stamped_is_checked(home: Path) -> None:
    assert migration_env(home, {}) == {}


def test_a_stamped_database_skips_the_check(home: Path) -> None:
    remember_migrated(home, {})
    assert metadata.version("prefect") in (home / STAMP).read_text()
    assert migration_env(home, {}) == {MIGRATE: "false"}


def test_a_replaced_database_is_checked_again(home: Path) -> None:
    remember_migrated(home, {})
    (home / "other.db").write_bytes(b"")
    (home / "other.db").replace(home / "prefect.db")  # a new inode, as a restore would make
    assert migration_env(home, {}) == {}


def test_another_prefect_version_is_checked_again(home: Path) -> None:
    remember_migrated(home, {})
    (home / STAMP).write_text("2.0.0 " + (home / STAMP).read_text().split()[1])
    assert migration_env(home, {}) == {}


@pytest.mark.parametrize(
    "environ",
    [
        {"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://db/prefect"},
        {"PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "true"},
    ],
)
def test_prefect_decides_when_the_user_configured_the_database(
    home: Path, environ: dict[str, str]
) -> None:
    remember_migrated(home, {})
    assert migration_env(home, environ) == {}


def test_a_profile_naming_another_database_lets_prefect_decide(home: Path) -> None:
    remember_migrated(home, {})
    (home / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\n'
        'PREFECT_API_DATABASE_CONNECTION_URL = "postgresql+asyncpg://db/prefect"\n'
    )
    assert migration_env(home, {}) == {}


def test_a_server_started_without_the_check_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The real thing: a server that checked stamps the DB; the next one skips and answers."""
    from tests.conftest import _prefect_cache  # noqa: PLC0415
    from tests.servers.prefect_harness import template_db  # noqa: PLC0415 - imports Prefect

    home = tmp_path / "home"
    home.mkdir()
    cache = _prefect_cache(request, request.getfixturevalue("tmp_path_factory"))
    shutil.copyfile(template_db(cache), home / "prefect.db")
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.setenv("PREFECT_API_BLOCKS_REGISTER_ON_START", "false")
    for migrates in (True, False):
        server = api_server.start_server()
        try:
            server.wait_ready()
            assert api_server.healthy(server.url)
            environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
            assert b"PREFECT_UI_ENABLED=0" in environ  # the server's own environment, read
            assert (f"{MIGRATE}=false".encode() in environ) is not migrates
        finally:
            server.stop()
        assert (home / STAMP).exists()
