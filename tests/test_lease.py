"""The lake's lease (pipeline/lease.py), on a local disk and on S3 (moto over HTTP): one holder at
a time, a lapsed lease taken over by exactly one run, renewal, and a release that never drops
someone else's lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from pipeline.lease import Lease, LeaseBusy, hold

T0 = datetime(2026, 11, 16, 10, tzinfo=UTC)


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "local":
        yield str(tmp_path / "lake")
        return
    request.getfixturevalue("aws")
    from pipeline import aws

    aws.reset()
    boto3.client("s3").create_bucket(Bucket="lease-lake")
    yield "s3://lease-lake/lake"
    aws.reset()


def test_one_holder_at_a_time_and_release_lets_the_next_in(lake: str) -> None:
    a, b = Lease(lake), Lease(lake)
    assert a.acquire("a", 60)
    assert not b.acquire("b", 60)
    assert (a.holder() or {})["owner"] == "a"
    a.release()
    assert a.holder() is None
    assert b.acquire("b", 60)


def test_a_lapsed_lease_is_taken_over_and_its_old_holder_cannot_renew_or_drop_it(
    lake: str,
) -> None:
    old, new = Lease(lake), Lease(lake)
    assert old.acquire("crashed", 60, now=T0)
    assert not new.acquire("early", 60, now=T0 + timedelta(seconds=30))
    assert new.acquire("later", 60, now=T0 + timedelta(seconds=61))
    assert not old.renew(60)  # it is not the crashed run's any more ...
    old.release()  # ... and its release leaves the new holder's lease alone
    assert (new.holder() or {})["owner"] == "later"
    assert new.renew(60, now=T0 + timedelta(seconds=100))
    expires = datetime.fromisoformat((new.holder() or {})["expires"])
    assert expires == T0 + timedelta(seconds=160)


def test_many_runs_taking_over_a_lapsed_lease_at_once_make_one_holder(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    assert Lease(lake).acquire("crashed", 1, now=T0)
    start = threading.Barrier(8)
    won: list[str] = []

    def take(i: int) -> None:
        lease = Lease(lake)
        start.wait()
        if lease.acquire(f"run-{i}", 60):
            won.append(f"run-{i}")

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and (Lease(lake).holder() or {})["owner"] == won[0]


def test_hold_renews_while_held_and_gives_up_waiting_with_a_clear_error(lake: str) -> None:
    with hold(lake, "first", ttl_s=0.6, wait_s=0) as held:
        time.sleep(1.5)  # more than twice its time to live: renewed meanwhile
        assert held.ok()
        assert (Lease(lake).holder() or {})["owner"] == "first"
        busy = pytest.raises(LeaseBusy, match=r"another run holds the lease of .*\(owner first, ")
        with busy, hold(lake, "second", wait_s=0.3):
            pass
    assert Lease(lake).holder() is None  # released at the end of the block
    with hold(lake, "second", wait_s=0):
        pass


def test_a_run_that_waits_gets_the_lease_once_it_is_released(lake: str) -> None:
    first = Lease(lake)
    assert first.acquire("first", 60)
    threading.Timer(0.5, first.release).start()
    began = time.monotonic()
    with hold(lake, "second", wait_s=10, poll_s=0.1) as held:
        assert held.ok() and (Lease(lake).holder() or {})["owner"] == "second"
    assert 0.4 < time.monotonic() - began < 10


def test_a_forked_worker_never_carries_off_the_lock_of_the_lease(tmp_path: Path) -> None:
    """``run`` forks ingest workers while a thread renews its lease: a child forked inside a
    locked step would hold the lock file for as long as it lives."""
    import os

    lake = str(tmp_path / "lake")
    lease = Lease(lake)
    inside, leave = threading.Event(), threading.Event()

    def step() -> None:
        with lease._locked():  # what every acquire, renew and release does
            inside.set()
            leave.wait(5)

    renewer = threading.Thread(target=step)
    renewer.start()
    inside.wait()
    threading.Timer(0.3, leave.set).start()
    pid = os.fork()  # waits until the step is over
    if pid == 0:  # a worker that lives on
        time.sleep(1.5)
        os._exit(0)
    try:
        renewer.join()
        taken: list[bool] = []
        other = threading.Thread(target=lambda: taken.append(Lease(lake).acquire("next", 60)))
        other.start()
        other.join(timeout=1.0)  # the worker still lives: the lock must not be its
        assert taken == [True]
    finally:
        os.waitpid(pid, 0)
