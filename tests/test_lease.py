"""The run lock on a bucket (tasks/lease.py), against moto, which honours If-None-Match and
If-Match on PUT: two runs never both hold it, a killed run's lock is taken over once its lease
runs out, and the run that takes it over learns the previous one was killed."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from stacflow.tasks.access import Access
from stacflow.tasks.errors import UsageError
from stacflow.tasks.lease import LOCK_KEY, read, run_lease, take
from stacflow.tasks.stores.base import StoreRef
from stacflow.tasks.stores.s3 import S3Bucket


@pytest.fixture
def bucket(moto_endpoint: str, s3_bucket: str) -> S3Bucket:
    access = Access(endpoint=moto_endpoint, allow_http=True)
    return S3Bucket(StoreRef("s3", s3_bucket, "outputs/demo", access))


def test_a_second_run_is_refused_while_the_first_holds_the_lock(bucket: S3Bucket) -> None:
    with run_lease(bucket) as killed:
        assert killed is False
        with pytest.raises(UsageError) as refused, run_lease(bucket):
            pass
        message = str(refused.value)
        assert "another stacflow run is writing to s3://" in message
        assert "pid" in message  # names the holder
        assert read(bucket).body["state"] == "held"
    assert read(bucket).body["state"] == "free"
    with run_lease(bucket) as killed:  # released: the next run takes it, and was not killed
        assert killed is False


def test_of_runs_racing_for_the_lock_exactly_one_wins(bucket: S3Bucket) -> None:
    start = threading.Barrier(6)
    won, refused = [], []

    def race() -> None:
        start.wait()
        try:
            won.append(take(bucket)[0])
        except UsageError:
            refused.append(1)

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(won), len(refused)) == (1, 5)
    won[0].release()


def test_a_killed_runs_lock_is_taken_over_once_its_lease_runs_out(bucket: S3Bucket) -> None:
    killed_run, _ = take(bucket, timedelta(seconds=1))  # never released nor renewed: killed
    with pytest.raises(UsageError, match="another stacflow run"):
        take(bucket)
    time.sleep(1.5)
    with run_lease(bucket) as killed:
        assert killed is True
        assert read(bucket).body["holder"] != killed_run.holder
    # The killed run, back from the dead, cannot release what another run took over.
    killed_run.release()
    assert read(bucket).body["state"] == "free"


def test_a_renewal_keeps_the_lease_from_running_out(bucket: S3Bucket) -> None:
    lease, _ = take(bucket, timedelta(seconds=1))
    time.sleep(1.5)  # run out: only a renewal makes it live again
    lease.length = timedelta(minutes=5)
    lease.renew()
    assert lease.lost is None
    with pytest.raises(UsageError, match="another stacflow run"):
        take(bucket)
    lease.release()


def test_a_held_lease_is_renewed_by_its_heartbeat(bucket: S3Bucket) -> None:
    with run_lease(bucket, length=timedelta(seconds=1)):
        first = read(bucket)
        deadline = time.monotonic() + 30
        while (renewed := read(bucket)).body["at"] == first.body["at"]:
            assert time.monotonic() < deadline, "no renewal within 30 s"
            time.sleep(0.1)
        assert renewed.etag != first.etag
        assert renewed.body["state"] == "held"


def test_a_run_whose_lease_was_taken_over_knows_it_lost_it(bucket: S3Bucket) -> None:
    stalled, _ = take(bucket, timedelta(seconds=1))  # holds, but its heartbeat never ran
    time.sleep(1.5)
    other, killed = take(bucket)
    assert killed is True
    stalled.renew()
    assert stalled.lost is not None
    assert read(bucket).body["holder"] == other.holder
    other.release()


def test_an_unreachable_store_is_one_clear_line_without_secrets(s3_bucket: str) -> None:
    access = Access(endpoint="http://127.0.0.1:9", allow_http=True, connect_timeout="1s")
    bucket = S3Bucket(StoreRef("s3", s3_bucket, "p", access))
    with pytest.raises(UsageError) as failed, run_lease(bucket):
        pass
    assert str(failed.value).startswith(f"cannot use the run lock s3://{s3_bucket}/p/{LOCK_KEY}")
    assert "\n" not in str(failed.value)
