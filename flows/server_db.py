"""Whether a temporary Prefect server may skip its migration check on start.

Every temporary server runs Alembic against the database on start (~0.3 s of a command on a
quiet machine, more on a busy one), although only a new database or a new Prefect version can
need a migration. After a server that did check has answered, the command stamps the database
(Prefect's version and the file's inode) in PREFECT_HOME; the next server skips the check while
the stamp matches. A new Prefect, a deleted or replaced database, a database configured
elsewhere (environment or profile), or an explicit MIGRATE_ON_START setting: Prefect decides.
Plain module: no Prefect import.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

MIGRATE = "PREFECT_SERVER_DATABASE_MIGRATE_ON_START"
_MIGRATE_NAMES = (MIGRATE, "PREFECT_API_DATABASE_MIGRATE_ON_START")
_DATABASE_NAMES = ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL")
STAMP = "stacflow-migrated"


def migration_env(home: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Environment for a temporary server: migrations off when the stamp matches the DB."""
    stamp = _stamp(home, environ)
    if stamp is None:
        return {}
    with contextlib.suppress(OSError):
        if (home / STAMP).read_text() == stamp:
            return {MIGRATE: "false"}
    return {}


def remember_migrated(home: Path, environ: Mapping[str, str] = os.environ) -> None:
    """Stamp the database after a server that checked its migrations answered."""
    stamp = _stamp(home, environ)
    if stamp is not None and migration_env(home, environ) == {}:
        with contextlib.suppress(OSError):
            (home / STAMP).write_text(stamp)


def _stamp(home: Path, environ: Mapping[str, str]) -> str | None:
    """`<prefect version> <inode of prefect.db>`, or None when Prefect's own settings decide."""
    settings = {**_profile(home, environ), **environ}
    if any(settings.get(name) for name in (*_MIGRATE_NAMES, *_DATABASE_NAMES)):
        return None
    try:
        return f"{metadata.version('prefect')} {(home / 'prefect.db').stat().st_ino}"
    except (OSError, metadata.PackageNotFoundError):
        return None


def _profile(home: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The active Prefect profile's settings, read as Prefect would choose the profile."""
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
        data = tomllib.loads((home / "profiles.toml").read_text())
        name = environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
        return {k: str(v) for k, v in data.get("profiles", {}).get(name, {}).items()}
    return {}
