"""Latency benchmark: from a log object landing in S3 to the page on the incident topic's
subscriber, the way a user sees it, through both deployed functions on moto over real HTTP;
beside the delivery times GuardDuty and CloudTrail Insights document.

    .venv/bin/python bench/run.py --only latency [--attacks 50] [--bursts 5]

Each measurement deploys the stack afresh (``tests.soak_month.deploy``) into one moto server on
127.0.0.1, in a process of its own (``tests.soak_month.server``), so moto's work is not counted
as the functions' time; the lake starts as the pooled sample's (``sample_logs/``), ingested,
compacted, detected and alerted as a deployed stack would hold it (``history_lake``).

S3 -> function is moto's own wiring: the buckets send their events to EventBridge and the stack's
rule matches "Object Created". moto cannot invoke a Lambda target (it raises, which also stops the
delivery to every later rule), so the rule's target is re-pointed at an SQS queue, which a thread
long-polls and hands, one event at a time, to ``pipeline.handler.on_s3_object``, as Lambda's
asynchronous invocation would. The stack's rule names the trail bucket only; the API Gateway
exports reach the function through a rule of the same pattern for the export bucket. Another
thread long-polls the SQS queue subscribed to the incident topic: the pager.

1. ``objects_latency``: ``--attacks`` objects, CloudTrail delivery files and API Gateway
   access-log exports in turn, each holding a cross-tenant access by an actor and an address of
   its own (so each is an incident of its own and pages once), put one at a time: from the put
   to the page's arrival, matched to its object by the actor and address it names.
2. ``windowed_latency``: a burst of authorization failures (``authz_failure_spike``, which needs
   history) in a CloudTrail file delivered at a random moment of an hour; the scheduled function
   ticks in simulated time (its Scheduler event's ``time``) from there until it pages.
3. ``sample_hour``: the sample's busiest hour delivered object by object, the scheduled function
   ticking every 5 simulated minutes over it and the lag after: its time and peak memory per tick.

The scheduled function's measurements take one row per entry of ``SCHEDULES``, the schedule
modes (clock-aligned windows alone, and with the sliding window at every tick); another mode is
one more ``Schedule`` there.

The figures are moto's in-process speed on this machine: real Lambda adds cold starts, and S3 ->
EventBridge -> Lambda its own delivery time (bench/README.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.soak_month import Delivery

from bench.latency_setup import (
    ATTACK_DAY,
    LAG_MINUTES,
    PAGE_TIMEOUT_S,
    SAMPLE,
    TICK_MINUTES,
    WINDOW_MINUTES,
    Planted,
    Run,
    benign_object,
    busiest_hour,
    cross_tenant_objects,
    denial_burst,
    deployed,
    floor_to,
    history_lake,
    percentile,
    sample_deliveries,
    split,
)

# Reached through this module by its tests and bench/run.py.
__all__ = ["ATTACK_DAY", "busiest_hour", "floor_to", "percentile", "sample_deliveries", "split"]

# --- 1: the object function -----------------------------------------------------------------------


@dataclass
class Delivered:
    planted: Planted
    latency_s: float | None  # put -> page; None: no page within PAGE_TIMEOUT_S
    run: Run | None
    pages: int = 0  # pages naming it, counted at the end


@dataclass
class ObjectsResult:
    delivered: list[Delivered]
    first_run: Run | None  # the deployment's first object (nothing to report), not counted
    unmatched: int  # pages naming none of the objects
    errors: list[str]

    @property
    def paged(self) -> int:
        return sum(1 for d in self.delivered if d.latency_s is not None)


def objects_latency(
    endpoint: str, lake: Path | None, attacks: int, pause_s: float = 0.2
) -> ObjectsResult:
    """Put ``attacks`` objects one at a time, each after the page of the one before (or its
    timeout) and a pause; from each put to its page."""
    planted = cross_tenant_objects(attacks, ATTACK_DAY + timedelta(hours=10))
    out: list[Delivered] = []
    with deployed(endpoint, lake) as h:
        warm = benign_object(ATTACK_DAY + timedelta(hours=9, minutes=50))
        h.put(warm)
        first = h.run_of(warm.key)
        for i, p in enumerate(planted):
            t0 = h.put(p)
            page = h.page_of(p)
            out.append(Delivered(p, page.received - t0 if page else None, h.run_of(p.key)))
            if (i + 1) % 10 == 0:
                print(f"  objects: {i + 1} of {attacks} put", file=sys.stderr, flush=True)
            time.sleep(pause_s)
        time.sleep(1.0)  # a page sent twice would be here by now
        with h.cond:
            pages = list(h.pages)
        errors = h.errors
    for d in out:
        d.pages = sum(1 for x in pages if x.names & d.planted.names)
    unmatched = sum(1 for x in pages if not any(x.names & d.planted.names for d in out))
    return ObjectsResult(out, first, unmatched, errors)


# --- 2: the schedule ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """How the scheduled function runs: one row of each table. ``env`` is set on the functions
    (``TENANTWATCH_RUN_*``); ``tick_minutes`` is the Scheduler's period; ``due(delivered,
    last_event)`` is the tick that should page a burst delivered then (its last event then)."""

    name: str
    tick_minutes: int
    env: Mapping[str, str]
    due: Callable[[datetime, datetime], datetime]

    def watermark_at(self, t: datetime) -> datetime:
        """The watermark a schedule that has ticked since long before ``t`` holds at ``t``:
        the last window whose end the lag has passed at the last tick."""
        last_tick = floor_to(t, self.tick_minutes)
        return floor_to(last_tick - timedelta(minutes=LAG_MINUTES), WINDOW_MINUTES)


def _first_tick_at_or_after(t: datetime, minutes: int) -> datetime:
    tick = floor_to(t, minutes)
    return tick if tick == t else tick + timedelta(minutes=minutes)


def _aligned_due(delivered: datetime, last_event: datetime) -> datetime:
    """The first tick at or after the end of the last event's window plus the lag (a burst
    across an hour's end can page a window earlier, from its first part)."""
    end = floor_to(last_event, WINDOW_MINUTES) + timedelta(minutes=WINDOW_MINUTES)
    return _first_tick_at_or_after(end + timedelta(minutes=LAG_MINUTES), TICK_MINUTES)


def _sliding_due(delivered: datetime, last_event: datetime) -> datetime:
    """The first tick after the delivery: its window (the hour up to the tick) holds the burst."""
    return floor_to(delivered, TICK_MINUTES) + timedelta(minutes=TICK_MINUTES)


CLOCK_ALIGNED = Schedule(
    "clock-aligned 1-hour windows, 15-min lag, 5-min ticks",
    TICK_MINUTES,
    {"TENANTWATCH_RUN_SLIDE": "0"},
    _aligned_due,
)
SLIDING = Schedule(
    "the same and a sliding 1-hour window at every tick",
    TICK_MINUTES,
    {"TENANTWATCH_RUN_SLIDE": "1"},
    _sliding_due,
)
SCHEDULES: tuple[Schedule, ...] = (CLOCK_ALIGNED, SLIDING)


@dataclass
class Burst:
    delivered_at: datetime  # simulated
    due_by: datetime  # the tick that should page it (``Schedule.due``)
    paged_at: datetime | None  # the tick that paged (simulated)
    tick_s: float | None  # wall time of that tick
    ticks: int  # ticks run until it paged

    @property
    def delay_min(self) -> float | None:
        if self.paged_at is None:
            return None
        return (self.paged_at - self.delivered_at).total_seconds() / 60


@dataclass
class WindowedResult:
    schedule: Schedule
    bursts: list[Burst]
    idle_tick_s: list[float]  # the other ticks' wall times
    errors: list[str]


def windowed_latency(
    endpoint: str, lake: Path | None, schedule: Schedule, bursts: int, seed: int = 7
) -> WindowedResult:
    """``bursts`` denial bursts, each delivered at a random moment of its own hour (stratified:
    the k-th in the k-th of ``bursts`` equal parts of the hour), each in its own three hours;
    the scheduled function ticks from the delivery on until it pages (three hours at most)."""
    from pipeline.runs.watermark import write_watermark

    rng = random.Random(seed)
    step = timedelta(minutes=schedule.tick_minutes)
    out: list[Burst] = []
    idle: list[float] = []
    with deployed(endpoint, lake, schedule.env) as h:
        for k in range(bursts):
            offset = (k + rng.random()) * 3600 / bursts
            at = ATTACK_DAY + timedelta(hours=3 * k + 1, seconds=offset)
            write_watermark(h.root, schedule.watermark_at(at), "latency-bench")
            p = denial_burst(k, at)
            h.put(p)
            h.run_of(p.key)  # the object function ingests it (nothing there it pages)
            burst = Burst(at, schedule.due(at, at - timedelta(minutes=1)), None, None, 0)
            tick = floor_to(at, schedule.tick_minutes) + step
            while tick <= at + timedelta(hours=3):
                report, seconds = h.tick(tick, f"latency-{k}-{burst.ticks}")
                burst.ticks += 1
                sent = (report.get("alert") or {}).get("notifications_sent", 0)
                if h.page_of(p, PAGE_TIMEOUT_S if sent else 0.0):
                    burst.paged_at, burst.tick_s = tick, seconds
                    break
                idle.append(seconds)
                tick += step
            out.append(burst)
            paged = f"paged at {burst.paged_at:%H:%M}" if burst.paged_at else "not paged"
            print(
                f"  {schedule.name}: burst {k + 1} of {bursts} at {at:%H:%M:%S}, {paged}",
                file=sys.stderr,
                flush=True,
            )
        errors = h.errors
    return WindowedResult(schedule, out, idle, errors)


# --- 3: an hour of the sample ---------------------------------------------------------------------


@dataclass
class Tick:
    at: datetime
    seconds: float
    peak_mb: float  # the process's peak RSS during the tick
    before_mb: float  # its RSS when the tick began
    status: str
    windows: int  # aligned windows detected


def rss_mb() -> float:
    """This process's resident memory now (Linux; NaN elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


@dataclass
class HourResult:
    schedule: Schedule
    hour: datetime
    objects: int
    records: int
    ticks: list[Tick]
    object_runs: list[float]
    errors: list[str]


def sample_hour(
    endpoint: str, lake: Path, deliveries: Sequence[Delivery], hour: datetime, schedule: Schedule
) -> HourResult:
    """The hour's objects delivered as they land (each handed to the object function), the
    scheduled function ticking every 5 minutes from the hour's first to the lag after its end."""
    from pipeline.runs.watermark import write_watermark
    from tests.soak_month import peak_rss_mb, reset_peak_rss

    todo = sorted(split(deliveries, hour, hour + timedelta(hours=1))[1], key=lambda d: d.at)
    records = sum(
        len(json.loads(gzip.decompress(d.path.read_bytes())).get("Records", []))
        for d in todo
        if d.path is not None and "/CloudTrail/" in d.key
    )
    ticks: list[Tick] = []
    runs: list[float] = []
    step = timedelta(minutes=TICK_MINUTES)
    with deployed(endpoint, lake, schedule.env) as h:
        write_watermark(h.root, schedule.watermark_at(hour), "latency-bench")
        i = 0
        at = hour
        while at < hour + timedelta(minutes=60 + LAG_MINUTES):
            at += step
            while i < len(todo) and todo[i].at <= at:
                d = todo[i]
                i += 1
                if d.path is None:
                    continue
                h.put(Planted(d.bucket, d.key, d.path.read_bytes(), frozenset(), "sample"))
                run = h.run_of(d.key)
                if run is not None:
                    runs.append(run.seconds)
            before = rss_mb()
            reset_peak_rss()
            report, seconds = h.tick(at, f"latency-hour-{len(ticks)}")
            windows = len(report.get("windows") or [])
            ticks.append(
                Tick(at, seconds, peak_rss_mb(), before, str(report.get("status")), windows)
            )
        errors = h.errors
    return HourResult(schedule, hour, len(todo), records, ticks, runs, errors)


# --- the tables -----------------------------------------------------------------------------------


def _s(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f} s"


def _min(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1f} min"


LATENCY_HEAD = (
    "| path | what pages | paged | delivery -> page p50 | p95 | max | function run p50 | p95 |\n"
    "|---|---|---|---|---|---|---|---|"
)


OBJECT_PATHS = (
    ("cloudtrail", "`on_s3_object`, CloudTrail files put one at a time"),
    ("apigateway", "`on_s3_object`, API Gateway access-log exports put one at a time"),
    ("subscription", "`on_log_events`, access-log subscription payloads, one at a time"),
    ("", "all of the above"),
)


def objects_rows(r: ObjectsResult) -> list[str]:
    """One row per way in, and one for them all."""
    rows = []
    for kind, label in OBJECT_PATHS:
        mine = [d for d in r.delivered if not kind or d.planted.kind == kind]
        if not mine:
            continue
        lat = [d.latency_s for d in mine if d.latency_s is not None]
        runs = [d.run.seconds for d in mine if d.run is not None]
        paged = f"{len(lat)} of {len(mine)}"
        rows.append(
            f"| {label} | cross_tenant_access | {paged} "
            f"| {_s(percentile(lat, 50))} | {_s(percentile(lat, 95))} "
            f"| {_s(max(lat) if lat else math.nan)} | {_s(percentile(runs, 50))} "
            f"| {_s(percentile(runs, 95))} |"
        )
    return rows


def windowed_row(r: WindowedResult) -> str:
    delays = [b.delay_min for b in r.bursts if b.delay_min is not None]
    ticks = [b.tick_s for b in r.bursts if b.tick_s is not None]
    paged = f"{len(delays)} of {len(r.bursts)}"
    return (
        f"| `scheduled`, {r.schedule.name} (simulated time) | authz_failure_spike | {paged} "
        f"| {_min(percentile(delays, 50))} | {_min(percentile(delays, 95))} "
        f"| {_min(max(delays) if delays else math.nan)} "
        f"| {_s(percentile(ticks, 50))} (the paging tick) "
        f"| {_s(max(ticks) if ticks else math.nan)} (max) |"
    )


PEER_ROWS = (
    "| GuardDuty (documented, not run) | its finding types | | a new finding to EventBridge: "
    '"near real-time" (formerly "within 5 minutes of the finding"); activity to finding: not '
    "documented | | a finding's later occurrences: every 6 hours by default (15 min or 1 h "
    "if set) | | |\n"
    "| CloudTrail Insights (documented, not run) | API call and error rates per minute against "
    "a baseline | | no delivery time per Insights event documented | | up to 36 hours before "
    "the first after enabling | | |"
)


def hour_table(results: Sequence[HourResult]) -> str:
    rows = [
        "| schedule | ticks | tick s p50 | max | ticks detecting an aligned window (s) "
        "| peak RSS MB p50 | max | above the RSS before the tick, MB p50 | max "
        "| object runs s p50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        secs = [t.seconds for t in r.ticks]
        peaks = [t.peak_mb for t in r.ticks]
        grew = [t.peak_mb - t.before_mb for t in r.ticks]
        aligned = ", ".join(f"{t.seconds:.2f}" for t in r.ticks if t.windows) or "none"
        rows.append(
            f"| {r.schedule.name} | {len(r.ticks)} | {percentile(secs, 50):.2f} "
            f"| {max(secs, default=math.nan):.2f} | {aligned} | {percentile(peaks, 50):.0f} "
            f"| {max(peaks, default=math.nan):.0f} | {percentile(grew, 50):.0f} "
            f"| {max(grew, default=math.nan):.0f} | {percentile(r.object_runs, 50):.2f} |"
        )
    return "\n".join(rows)


def main(args: argparse.Namespace) -> None:
    from tests.soak_month.server import MotoProcess

    started = time.perf_counter()
    deliveries = sample_deliveries()
    hour = busiest_hour(deliveries)
    before, _ = split(deliveries, hour, hour + timedelta(hours=1))
    with tempfile.TemporaryDirectory(prefix="tenantwatch-latency-") as tmp:
        print("latency: building the sample's lakes", file=sys.stderr, flush=True)
        full = history_lake(Path(tmp) / "full", deliveries, max(d.at for d in deliveries))
        until_hour = history_lake(Path(tmp) / "before-hour", before, hour)
        with MotoProcess() as endpoint:
            print("latency: the object function", file=sys.stderr, flush=True)
            objs = objects_latency(endpoint, full, args.attacks)
            windowed = [windowed_latency(endpoint, full, s, args.bursts) for s in SCHEDULES]
            print("latency: an hour of the sample", file=sys.stderr, flush=True)
            hourly = [sample_hour(endpoint, until_hour, deliveries, hour, s) for s in SCHEDULES]
    missing = [d.planted.key for d in objs.delivered if d.latency_s is None]
    twice = [d.planted.key for d in objs.delivered if d.pages > 1]
    print(
        f"\nlatency: the pooled sample ({SAMPLE.name}/, 15 days) as history; "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print(LATENCY_HEAD)
    for row in objects_rows(objs):
        print(row)
    for w in windowed:
        print(windowed_row(w))
    print(PEER_ROWS)
    print()
    first = objs.first_run
    lat = [d.latency_s for d in objs.delivered if d.latency_s is not None]
    print(
        f"object function: the deployment's first run (nothing to report) "
        f"{_s(first.seconds if first else math.nan)}; delivery -> page p50 of the first ten "
        f"objects {_s(percentile(lat[:10], 50))}, of the last ten {_s(percentile(lat[-10:], 50))} "
        f"(all in one hour's window); pages naming no object: {objs.unmatched}; objects paged "
        f"more than once: {len(twice)}"
    )
    for key in missing:
        print(f"NOT PAGED within {PAGE_TIMEOUT_S:.0f} s: {key}")
    for w in windowed:
        for b in w.bursts:
            paged = f"{b.paged_at:%H:%M}" if b.paged_at else "NOT PAGED"
            print(
                f"{w.schedule.name}: delivered {b.delivered_at:%Y-%m-%d %H:%M:%S}, due by "
                f"{b.due_by:%H:%M}, paged {paged} after {b.ticks} ticks"
            )
        idle = _s(percentile(w.idle_tick_s, 50)) if w.idle_tick_s else "none ran"
        print(f"{w.schedule.name}: the ticks that did not page, p50 {idle}")
    h = hourly[0]
    print(
        f"\nThe scheduled function over the sample's busiest hour, {h.hour:%Y-%m-%d %H:00} UTC "
        f"({h.objects} objects, {h.records:,} CloudTrail records), a tick every "
        f"{TICK_MINUTES} min from its first to {LAG_MINUTES} min after its end:\n"
    )
    print(hour_table(hourly))
    errors = objs.errors + [e for w in windowed for e in w.errors]
    for err in errors + [e for r in hourly for e in r.errors]:
        print(f"error: {err}")
