"""The schedule's soak (``tests.soak_month``, ``make soak-month`` for a month) over two simulated
days: the deployed functions on moto, trail files delivered one by one, some late and some twice,
the scheduled function ticking. No event is lost or doubled, and no notification reaches the
subscriber twice. Timings are measured, never asserted; which labelled attacks paged is reported
by the month (two days are too short a baseline for most detectors)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.soak_month import MonthSpec, plan, run, simulate, summary
from tests.soak_month.server import MotoProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Small enough for make test: an hourly tick, a few of the trail files announced to the object
# function (the scheduled run lists and ingests the rest), many of those late and doubled, and the
# lake in a local folder (its reads are then not counted).
SPEC = MonthSpec(
    days=2,
    events_per_day=100,
    tenants=20,
    tick_minutes=60,
    notify_share=0.05,
    late_share=0.2,
    twice_share=0.5,
)


def test_two_simulated_days_lose_nothing_double_nothing_and_page_nothing_twice(
    tmp_path: Path,
) -> None:
    simulate(SPEC, tmp_path / "logs")
    deliveries = plan(SPEC, tmp_path / "logs")
    # The delivery plan has what the soak is about: events twice, and files late.
    again = [d for d in deliveries if d.path is None]
    assert again and all(d.notify for d in again)
    assert any(d.notify for d in deliveries if d.path is not None)

    spec = dataclasses.replace(SPEC, local_lake=tmp_path / "lake")
    lines: list[str] = []
    with MotoProcess() as endpoint:
        res = run(spec, tmp_path, endpoint, progress=lines.append)
    text = summary(res)

    assert not res.stopped_early and not res.errors, text
    assert res.truth_events > 0 and res.lake_events == res.truth_events, text
    assert (res.lost, res.duplicated, res.unexpected) == (0, 0, 0), text
    assert res.notifications > 0 and res.paged_twice == [], text
    assert res.outbox_unreceived == [], text
    # Both functions ran.
    assert any(t.object_s for t in res.ticks) and all(t.sched_s > 0 for t in res.ticks)
    assert res.files_before.get("events", 0) > 0
    assert "| 2 |" in text
    # Each day's row is printed once the day is played (a month stopped early keeps them).
    assert [line.split("|")[1].strip() for line in lines] == ["1", "2"], lines


def test_the_soak_servers_indexed_listings_answer_as_moto_does() -> None:
    """The soak's server seeks listings to their prefix (``server.index_listings``): the same
    keys, folders and pages as moto's own scan, as objects come, are replaced and go."""
    import random

    import boto3
    from moto import mock_aws

    from tests.soak_month.server import index_listings

    def listing(s3: Any, **kw: Any) -> list[Any]:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket="soak-b", PaginationConfig={"PageSize": 7}, **kw
        )
        return [
            (
                [o["Key"] for o in p.get("Contents", [])],
                [c["Prefix"] for c in p.get("CommonPrefixes", [])],
            )
            for p in pages
        ]

    rng = random.Random(3)
    queries = [
        {"Prefix": "a/"},
        {"Prefix": "a/", "Delimiter": "/"},
        {"Prefix": "a/b"},
        {"Prefix": "c/d/", "Delimiter": "/"},
        {"Prefix": "zz/"},
        {"Delimiter": "/"},
        {},
    ]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="soak-b")
        names = [f"{rng.choice('abc')}/{rng.choice('bd')}/{rng.choice('ef')}{i}" for i in range(60)]
        seen: list[list[list[Any]]] = []
        for step in range(2):
            for n in names:
                s3.put_object(Bucket="soak-b", Key=n, Body=b"x" * (step + 1))
            for n in rng.sample(names, 15):
                s3.delete_object(Bucket="soak-b", Key=n)
            plain = [listing(s3, **q) for q in queries]
            undo = index_listings()
            try:
                s3.put_object(Bucket="soak-b", Key="a/b/new", Body=b"1")  # a key the index adds
                s3.delete_object(Bucket="soak-b", Key="a/b/new")  # and removes
                indexed = [listing(s3, **q) for q in queries]
            finally:
                undo()
            assert indexed == plain
            seen.append(plain)
        assert any(keys for pages in seen[0] for keys, _ in pages)  # the listings found keys


class _Killed(KeyboardInterrupt):
    """The month's process stopped right after a day's checkpoint."""


def test_a_month_stopped_after_a_day_plays_on_from_its_checkpoint(tmp_path: Path) -> None:
    """Stopped once its first day is saved, the month is played on by another process against
    another moto server (the lake on S3: restored with the rest): the same checks hold, and the
    first day's ticks are the first run's."""

    def stop(line: str) -> None:
        raise _Killed(line)

    with MotoProcess() as endpoint:
        first = run(SPEC, tmp_path, endpoint, progress=stop)
    assert first.stopped_early and first.days_played == 1
    assert (tmp_path / "checkpoint" / "state.json").exists()
    day_one = [t.sched_s for t in first.ticks if t.day == 1]

    lines: list[str] = []
    with MotoProcess() as endpoint:
        res = run(SPEC, tmp_path, endpoint, progress=lines.append, resume=True)
        stamped = _written(endpoint, {d.bucket for d in plan(SPEC, tmp_path / "logs")})
    text = summary(res)
    assert res.resumed == 1 and "played on 1 time(s)" in text
    # The stack was named as before, and its buckets (the lake's among them) were put back.
    assert res.lake_root == first.lake_root and res.lake_root.startswith("s3://")
    assert res.restored > 100
    assert not res.stopped_early and not res.errors, text
    assert res.truth_events > 0 and res.lake_events == res.truth_events, text
    assert (res.lost, res.duplicated, res.unexpected) == (0, 0, 0), text
    assert res.notifications > 0 and res.paged_twice == [], text
    assert [t.sched_s for t in res.ticks if t.day == 1] == day_one
    assert [line.split("|")[1].strip() for line in lines] == ["2"], lines
    # Each input is stamped with its delivery's time, the first day's (put back from the
    # checkpoint) as the second's: so a scheduled run takes as new only the log exports written
    # since it began, as on S3.
    put = {(d.bucket, d.key): d.at for d in plan(SPEC, tmp_path / "logs") if d.path is not None}
    whole = {k: t.replace(microsecond=0) for k, t in put.items()}  # S3 lists whole seconds
    assert {k: stamped[k] for k in put} == whole
    assert {t.day for t in res.ticks if t.listings > 0} == {1, 2}


def _written(endpoint: str, buckets: set[str]) -> dict[tuple[str, str], datetime]:
    """Each object's LastModified in ``buckets`` of the moto server at ``endpoint``."""
    import boto3

    from tests.soak_month import aws_environment, environment

    with environment(aws_environment(endpoint)):
        s3 = boto3.client("s3")
        return {
            (b, o["Key"]): o["LastModified"]
            for b in buckets
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b)
            for o in page.get("Contents", [])
        }


def test_the_soak_servers_clock_stamps_what_is_written_from_then_on() -> None:
    from tests.soak_month import aws_environment, environment
    from tests.soak_month.server import set_clock

    at = datetime(2026, 10, 3, 4, 5, 6, tzinfo=UTC)
    with MotoProcess() as endpoint, environment(aws_environment(endpoint)):
        import boto3

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="soak-clock")
        set_clock(endpoint, at)
        s3.put_object(Bucket="soak-clock", Key="then", Body=b"1")
        set_clock(endpoint, at + timedelta(minutes=5))
        s3.put_object(Bucket="soak-clock", Key="later", Body=b"2")
        set_clock(endpoint, None)
        s3.put_object(Bucket="soak-clock", Key="now", Body=b"3")
        got = {
            k: s3.head_object(Bucket="soak-clock", Key=k)["LastModified"]
            for k in ("then", "later", "now")
        }
    assert got["then"] == at and got["later"] == at + timedelta(minutes=5)
    assert abs(got["now"] - datetime.now(UTC)) < timedelta(minutes=10)


def test_resuming_with_other_options_is_refused(tmp_path: Path) -> None:
    from tests.soak_month import checkpoint

    (tmp_path / "checkpoint").mkdir()
    at = checkpoint.Position(
        spec=checkpoint.spec_of(SPEC), now="2026-10-06T00:00:00+00:00", delivered=0,
        ticks_played=0, days_played=1, wall_s=1.0,
    )  # fmt: skip
    (tmp_path / "checkpoint" / "state.json").write_text(
        json.dumps({"position": dataclasses.asdict(at), "objects": [], "tables": {}})
    )
    other = dataclasses.replace(SPEC, tenants=SPEC.tenants + 1)
    with pytest.raises(ValueError, match="checkpoint of another month"):
        run(other, tmp_path, "http://127.0.0.1:1", resume=True)
