"""The latency benchmark's pieces at a tiny size (``bench/latency.py``; ``make bench`` runs it
whole): each object put pages once and every page names an object put, the schedule pages a
burst at the tick its window and lag call for, the sample splits into history and hour with
nothing lost, and the percentile the tables use. The benchmark prints timings; nothing here
asserts one."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from bench import latency


def test_percentile_interpolates_between_the_closest_ranks() -> None:
    assert latency.percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert latency.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert latency.percentile([5.0, 1.0], 0) == 1.0
    assert latency.percentile([5.0, 1.0], 100) == 5.0
    assert latency.percentile([7.0], 95) == 7.0
    assert math.isnan(latency.percentile([], 50))


def test_the_sample_splits_into_history_and_its_busiest_hour() -> None:
    deliveries = latency.sample_deliveries()
    hour = latency.busiest_hour(deliveries)
    end = hour + timedelta(hours=1)
    before, during = latency.split(deliveries, hour, end)
    after = [d for d in deliveries if d.at >= end]
    assert len(before) + len(during) + len(after) == len(deliveries)
    assert all(d.at < hour for d in before) and all(hour <= d.at < end for d in during)
    assert any("/CloudTrail/" in d.key for d in during)
    assert before  # the lake has history before the hour


def test_a_burst_is_due_after_its_window_and_the_lag_or_at_the_next_tick_when_sliding() -> None:
    at = latency.ATTACK_DAY + timedelta(hours=1, minutes=19, seconds=30)
    last_event = at - timedelta(minutes=1)
    assert latency.CLOCK_ALIGNED.due(at, last_event) == at.replace(hour=2, minute=15, second=0)
    assert latency.SLIDING.due(at, last_event) == at.replace(minute=20, second=0)
    assert latency.CLOCK_ALIGNED.watermark_at(at) == at.replace(minute=0, second=0)
    # Before the lag has passed since the hour's end, the hour before is the last one detected.
    early = at.replace(minute=14)
    assert latency.CLOCK_ALIGNED.watermark_at(early) == at.replace(hour=0, minute=0, second=0)


@pytest.mark.e2e
@pytest.mark.slow
def test_each_object_pages_once_and_each_schedule_pages_the_burst_when_it_is_due() -> None:
    from tests.soak_month.server import MotoProcess

    with MotoProcess() as endpoint:
        objects = latency.objects_latency(endpoint, None, attacks=3, pause_s=0.0)
        windowed = [
            latency.windowed_latency(endpoint, None, s, bursts=1) for s in latency.SCHEDULES
        ]

    kinds = [d.planted.kind for d in objects.delivered]
    assert kinds == ["cloudtrail", "apigateway", "subscription"]
    for d in objects.delivered:
        assert d.latency_s is not None and d.pages == 1, d.planted.key
        assert d.run is not None and d.run.status == "done"
    assert objects.unmatched == 0 and objects.errors == []
    assert objects.first_run is not None and objects.first_run.status == "done"

    assert [w.schedule for w in windowed] == [latency.CLOCK_ALIGNED, latency.SLIDING]
    for w in windowed:
        [burst] = w.bursts
        # Paged by the scheduled function at the tick its mode calls for: not before (the
        # object function has no windowed detector), not after.
        assert burst.paged_at == burst.due_by, (w.schedule.name, burst)
        first_tick = latency.floor_to(burst.delivered_at, 5) + timedelta(minutes=5)
        assert burst.ticks == (burst.due_by - first_tick) // timedelta(minutes=5) + 1
        assert w.errors == []
