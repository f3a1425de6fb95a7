"""Small tmpfs mounts for full and read-only disks, made inside a user + mount namespace.

`unshare --user --map-root-user --mount` gives an unprivileged process (and root, without
touching the host's mounts) a mount table of its own: a command run there sees the tmpfs, the
rest of the machine does not, and the mounts vanish with it. Where user namespaces are disabled
(some hardened CI kernels, some containers), `namespace_problem` says why, for the skip message.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


@functools.cache
def namespace_problem() -> str | None:
    """Why no tmpfs can be mounted in a namespace of our own here (None: it can)."""
    if shutil.which("unshare") is None:
        return "no `unshare` command (util-linux) on this machine"
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(
            [*UNSHARE, "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder],
            capture_output=True,
            text=True,
            check=False,
        )
    if probe.returncode != 0:
        return (
            "cannot mount a tmpfs in a user+mount namespace "
            f"({probe.stderr.strip() or probe.returncode}); the kernel or container forbids "
            "unprivileged user namespaces (kernel.unprivileged_userns_clone, seccomp)"
        )
    return None


def mounting(full: Sequence[tuple[Path, str]] = (), read_only: Sequence[Path] = ()) -> list[str]:
    """A command prefix that mounts a tmpfs of the given size at each `full` folder and an empty,
    read-only one at each `read_only` folder, then runs the command that follows."""
    steps = [f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(f))}" for f, size in full]
    steps += [f"mount -t tmpfs -o ro,size=64k tmpfs {shlex.quote(str(f))}" for f in read_only]
    return [*UNSHARE, "sh", "-c", " && ".join([*steps, 'exec "$@"']), "mounts"]
