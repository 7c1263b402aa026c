"""The schedule's soak (``tests.soak_month``, ``make soak-month`` for a month) over two simulated
days: the deployed functions on moto, trail files delivered one by one, some late and some twice,
the scheduled function ticking. No event is lost or doubled, and no notification reaches the
subscriber twice. Timings are measured, never asserted; which labelled attacks paged is reported
by the month (two days are too short a baseline for most detectors)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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
