"""How long `stacflow run` takes to stop after Ctrl-C or SIGTERM, with copies stalled in flight.

    .venv/bin/python -m benchmarks.interrupt [--assets 40] [--stalled 4] [--runs 3]

A loopback origin serves `--assets` objects of 2 MiB; `--stalled` of them stall for ten minutes
after their first MiB, so that many copies are blocked in a read when the signal comes (two
more workers copy the rest meanwhile). Each run uses the command's own temporary Prefect server
(a fresh clone's default). Prints, per signal: seconds from the signal to the command's exit,
its exit code and the line it printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.packages import LAST_MODIFIED_HTTP, ORIGIN, make_package
from tests.servers.origin import Origin

SIZE = 2 * 1024 * 1024


def _spec(folder: Path, package: Path, origin_url: str, workers: int) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(
        f"""
name: interrupt-bench
package: {package}
sources:
  https:
    prefix: {ORIGIN}/
    store: {{endpoint: "{origin_url}/", allow_http: true}}
targets:
  local:
    store: {{type: file, root: {folder / "assets"}}}
relocate: {{max_workers: {workers}}}
outputs: {folder / "out"}
"""
    )
    return spec


def stop_once(work: Path, origin: Origin, package: Path, signum: int, stalled: int) -> tuple:
    folder = Path(tempfile.mkdtemp(dir=work))
    spec = _spec(folder, package, origin.url, workers=stalled + 2)
    command = subprocess.Popen(
        [sys.executable, "-m", "stacflow.flows.cli", "run", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "PREFECT_API_URL": ""},
    )
    while len([p for p in folder.rglob("*stacflow-tmp*") if p.stat().st_size]) < stalled:
        if command.poll() is not None:
            raise SystemExit(command.communicate()[1].decode())
        time.sleep(0.05)
    command.send_signal(signum)
    signalled = time.monotonic()
    out, _ = command.communicate(timeout=600)
    return time.monotonic() - signalled, command.returncode, out.decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=40)
    parser.add_argument("--stalled", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stacflow-bench-interrupt-") as tmp:
        work = Path(tmp)
        with Origin(work / "origin", last_modified=LAST_MODIFIED_HTTP) as origin:
            assets = {
                (f"scene-{i}", "visual"): (f"s/{i}.tif", os.urandom(SIZE))
                for i in range(args.assets)
            }
            package = make_package(work / "pkg", origin.root, assets, checksums=True)
            for i in range(args.stalled):
                origin.stall(f"/s/{i}.tif", 600, after_bytes=1024 * 1024)
            print("| signal | signal → exit (s), median of runs | exit code | printed |")
            print("|---|---|---|---|")
            for signum in (signal.SIGINT, signal.SIGTERM):
                results = [
                    stop_once(work, origin, package, signum, args.stalled) for _ in range(args.runs)
                ]
                seconds = statistics.median(r[0] for r in results)
                codes = sorted({r[1] for r in results})
                print(f"| {signum.name} | {seconds:.2f} | {codes} | {results[-1][2]} |")


if __name__ == "__main__":
    main()
