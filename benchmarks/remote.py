"""Throughput from an origin that behaves like a remote one (issue 14, goal 5).

Loopback is one fast pipe; a real origin answers after tens of milliseconds and caps each TCP
connection, so parallel streams add up where one stream cannot. The tests' origin does both on
request (`latency`, `rate`); here stacflow's byte phase and `rclone copy` (which splits objects
above its multi-thread cutoff into parallel ranged streams) copy each size class from it into a
local folder, interleaved, one run each.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import cases, servers
from benchmarks.data import LAST_MODIFIED_HTTP

if TYPE_CHECKING:
    from benchmarks.run import Bench

LATENCY_MS = 30.0
RATE_MBPS = 25.0
MB = 1e6


def measure(bench: Bench) -> None:
    """One row per size class: stacflow's MB/s, rclone's, and their ratio."""
    from benchmarks.run import Row, met  # noqa: PLC0415 - run imports this module

    local = bench.origin_url, bench.origin_pid
    with servers.origin(
        bench.tmp / "origin",
        LAST_MODIFIED_HTTP,
        bench.logs,
        latency_ms=LATENCY_MS,
        rate_mbps=RATE_MBPS,
    ) as origin:
        bench.origin_url, bench.origin_pid = origin.url, origin.pid
        try:
            for name, _, _ in bench.suite.classes:
                data = bench.datasets[name]
                seconds = _copy_both(bench, name)
                mine, theirs = seconds.get("stacflow"), seconds.get("rclone")
                parts = [
                    f"{engine} {data.total / t / MB:.0f} MB/s ({t:.2f} s)"
                    for engine, t in seconds.items()
                    if t
                ]
                ratio = theirs / mine if mine and theirs else None
                bench.rows.append(
                    Row(
                        "remote",
                        f"{data.label} → local folder",
                        f"stacflow byte phase vs rclone copy, origin {LATENCY_MS:.0f} ms to first "
                        f"byte, {RATE_MBPS:.0f} MB/s per connection",
                        " · ".join(parts) or "failed (see notes)",
                        ratio=f"{ratio:.2f}x rclone" if ratio else "",
                        target="≥ 1.0x rclone",
                        met=met(ratio >= 1.0 if ratio else None),
                        runs="1",
                    )
                )
        finally:
            bench.origin_url, bench.origin_pid = local


def _copy_both(bench: Bench, name: str) -> dict[str, float | None]:
    data = bench.datasets[name]
    case = f"{name}-remote"
    target = bench.target("local", case, "stacflow")
    spec, outputs = bench.spec(data, target, f"{case}-stacflow")
    bench.prepare(Path(target["root"]), outputs)
    done = bench.engine("stacflow", {"spec": str(spec)}, f"{case}-stacflow")
    bench.fail_note(f"stacflow {case}", done)
    seconds: dict[str, float | None] = {"stacflow": done.seconds if done.ok else None}
    if bench.rclone:
        clone = bench.target("local", case, "rclone")
        bench.prepare(Path(clone["root"]))
        command = cases.rclone_command(
            bench.rclone,
            bench.origin_url,
            data.files_from,
            target=clone,
            transfers=done.result.get("workers", 8),
            object_size=data.size,
        )
        log = bench.logs / f"{case}-rclone.log"
        copy = functools.partial(cases.measure, command, bench.env, bench.work, log)
        result = bench.counted(copy)
        bench.fail_note(f"rclone {case}", result)
        seconds["rclone"] = result.wall if result.ok else None
    cases.clear(bench.work / case)
    return seconds
