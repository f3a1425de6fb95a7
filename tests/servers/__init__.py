"""Loopback servers the tests talk to: an HTTP origin with faults, moto S3, the Prefect harness.

Everything binds to 127.0.0.1 on a free port, so the suite never needs the internet.
"""

from __future__ import annotations

from datetime import timedelta

# obstore's defaults (10 retries, 100 ms .. 15 s backoff) would make a failing test wait for
# seconds; two quick retries still exercise the retry path that production relies on.
FAST_RETRY = {
    "max_retries": 2,
    "backoff": {
        "init_backoff": timedelta(milliseconds=10),
        "max_backoff": timedelta(milliseconds=100),
        "base": 2,
    },
    "retry_timeout": timedelta(seconds=10),
}
