"""Byte sizes as people write them in specs: `512MiB`, `8 MiB`, `1GB`, `4096`."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | str) -> int:
    """Bytes from an int or a string with a decimal (kB, MB) or binary (KiB, MiB) unit."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 8MiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(
            f"expected a size like 512MiB, 8MiB or 1GB (units: B, kB, MB, GB, TB, KiB, MiB, "
            f"GiB, TiB), got {value!r}"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: float) -> str:
    """Binary units with one decimal, for summaries people read."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
