"""Which read size suits the byte path: receive, SHA-256 and write, as stacflow's copier does.

Four streams of 256 MiB each over loopback (a sendfile server in this process), each read into
one reused buffer, hashed, and written to a file; CPU seconds and wall time per read size,
median of 3, page cache dropped before each. The 1 MiB cap on reads (tasks/buffers.py) rests
on this: a slice that stays in the CPU cache between the three passes costs the least CPU.

    python -m benchmarks.read_size
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.cases import drop_page_cache

STREAM = 256 * 1024 * 1024
STREAMS = 4
SIZES = (64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024, 8 * 1024 * 1024)
RUNS = 3


def _serve(listener: socket.socket, source: Path) -> None:
    while True:
        connection, _ = listener.accept()

        def send(connection: socket.socket = connection) -> None:
            with connection, source.open("rb") as handle:
                os.sendfile(connection.fileno(), handle.fileno(), 0, STREAM)

        threading.Thread(target=send, daemon=True).start()


def _receive(address: tuple[str, int], read_size: int, target: Path) -> None:
    buffer = memoryview(bytearray(read_size))
    digest = hashlib.sha256()
    with socket.create_connection(address) as connection, target.open("wb", buffering=0) as out:
        received = 0
        while received < STREAM and (count := connection.recv_into(buffer)):
            digest.update(buffer[:count])
            out.write(buffer[:count])
            received += count


def measure(read_size: int, address: tuple[str, int], work: Path) -> tuple[float, float]:
    """Wall and CPU seconds (this process: receivers and sender) for all streams."""
    drop_page_cache()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    streams = [
        threading.Thread(target=_receive, args=(address, read_size, work / f"out-{i}"))
        for i in range(STREAMS)
    ]
    for stream in streams:
        stream.start()
    for stream in streams:
        stream.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="stacflow-read-size-"))
    try:
        source = work / "source"
        source.write_bytes(os.urandom(STREAM))
        listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=_serve, args=(listener, source), daemon=True).start()
        address = listener.getsockname()[:2]
        results: dict[int, list[tuple[float, float]]] = {size: [] for size in SIZES}
        for _ in range(RUNS):
            for size in SIZES:  # interleaved: this VM's speed drifts between minutes
                results[size].append(measure(size, address, work))
        gib = STREAM * STREAMS / 2**30
        print(
            f"{STREAMS} x {STREAM >> 20} MiB over loopback: recv + SHA-256 + write, median of "
            f"{RUNS}"
        )
        print("| read size | wall s | CPU s | CPU s per GiB |\n|---|---|---|---|")
        for size, runs in results.items():
            wall = sorted(w for w, _ in runs)[RUNS // 2]
            cpu = sorted(c for _, c in runs)[RUNS // 2]
            print(f"| {size >> 10} KiB | {wall:.2f} | {cpu:.2f} | {cpu / gib:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
