"""`python -S peak.py OUT CMD...`: run CMD, write its wall time, CPU time, peak RSS and exit
code to OUT.

Linux counts the RSS a process had before `exec` in the child's ru_maxrss, so a large parent (the
benchmark runner imports pyarrow and Prefect) would inflate every child's peak. This launcher is
a few MiB, started without site-packages, so wait4's ru_maxrss is the command's own peak.
"""

import json
import os
import sys
import time


def main() -> int:
    out, command = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as handle:  # noqa: PTH123 - no pathlib import: stay small
        json.dump(
            {
                "wall": wall,
                "maxrss_kib": usage.ru_maxrss,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "returncode": code,
            },
            handle,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
