"""The schedule soaked for a simulated month: the deployed functions fed object by object on moto.

``run(spec, workdir, endpoint)`` simulates ``spec.days`` days of the pooled world
(``pipeline.simulate``), deploys the stack (``tests.awsstack``) into the moto server at
``endpoint`` and then plays the month as AWS would, in simulated time:

- each CloudTrail file is put into the trail bucket when its 5-minute delivery slot ends, and the
  S3-triggered function (``pipeline.handler.on_s3_object``) gets its "Object Created" event; a
  share of the files arrive late (``late_share``, 5 to ``late_max_minutes`` minutes), and a share
  of the events come twice (``twice_share``, S3 delivers at least once); digests come hourly;
- each day's API Gateway access-log and authorizer-log exports (CloudWatch Logs export tasks, as
  the simulator writes them) land in an export bucket shortly after the day ends;
- the scheduled function (``pipeline.handler.scheduled``) ticks every ``tick_minutes``, its
  Scheduler event carrying the tick's time (the function's "now").

The simulated month lies in the past (``START``): the scheduled function never takes a time later
than the clock's. The stack's lag (``LagMinutes``) covers the latest delivery. The moto server
keeps the month's time (``server.set_clock``): an object is stamped with the time of its
delivery, and what a function writes with the time of its run.

Measured for each tick (the scheduled run and the object runs since the tick before): run time,
peak memory of this process (its high-water mark, reset before each run: Linux), the lake's files
read (objects the moto server was asked for, ``server.CountingApp``) and the rows of the state
files among them (``_state/`` and ``incidents/``), and the listings made (of any bucket). At the
end: every event of the simulator's truth is in the lake once, no notification reached the topic's
subscriber twice, every labelled attack paged; the lake's file count, and again after
``tenantwatch compact`` where the CLI has it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
import random
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.soak_month import checkpoint
from tests.soak_month.measure import Reads, lake_files, peak_rss_mb, reset_peak_rss
from tests.soak_month.server import set_clock
from tests.soak_month.table import row_of, table

START = date(2026, 10, 5)  # a Monday; the month must end before the clock's today
TRAIL = "org-trail"
EXPORTS = "tw-log-exports"
TICK_S = 300

_SLOT = re.compile(r"_(\d{8}T\d{4})Z_[A-Za-z0-9]+\.json\.gz$")
_DIGEST = re.compile(r"_(\d{8}T\d{6})Z\.json\.gz$")


@dataclass(frozen=True)
class MonthSpec:
    days: int = 30
    events_per_day: int = 600
    tenants: int = 50
    seed: int = 7
    tick_minutes: int = 5
    sliding: bool = True  # the stack's SlidingWindows: every tick also detects the last hour
    late_share: float = 0.03  # CloudTrail files delivered late
    late_max_minutes: int = 60
    twice_share: float = 0.02  # "Object Created" events delivered twice
    # Trail files whose event reaches the object function; the scheduled run lists and ingests
    # the others (as it does when the function is throttled). Below 1 only to make a short run.
    notify_share: float = 1.0
    wall_limit_s: float | None = None  # stop playing when this much wall time has passed
    # The lake in a local folder instead of the stack's bucket (faster; reads are then not
    # counted, as they do not reach the server).
    local_lake: Path | None = None

    @property
    def lag_minutes(self) -> int:
        # CloudTrail's own delay in the simulator (events 0-15 minutes into a 5-minute slot)
        # plus the latest late delivery, rounded up to a quarter hour.
        worst = 20 + self.late_max_minutes
        return -(-worst // 15) * 15


@dataclass(frozen=True)
class Delivery:
    at: datetime
    bucket: str
    key: str
    path: Path | None  # the file to put; None: an event for an object already there
    notify: bool  # the object function gets an "Object Created" event


@dataclass
class Tick:
    day: int
    sched_s: float = 0.0
    object_s: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    files_read: int = 0
    state_rows: int = 0
    listings: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


@dataclass
class Result:
    spec: MonthSpec
    ticks: list[Tick] = field(default_factory=list)
    day_files: dict[int, int] = field(default_factory=dict)  # lake files at each day's end
    days_played: int = 0
    stopped_early: bool = False
    stop_reason: str = "the wall-time limit was reached"
    truth_events: int = 0
    lake_events: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    quarantined: int = 0
    notifications: int = 0  # messages the subscriber received
    paged_twice: list[str] = field(default_factory=list)  # notification ids received twice
    outbox_unreceived: list[str] = field(default_factory=list)  # sent, never received
    attacks: int = 0
    unpaged: list[str] = field(default_factory=list)
    repaged: list[str] = field(default_factory=list)  # an attack paged by two incidents
    files_before: dict[str, int] = field(default_factory=dict)
    files_after: dict[str, int] | None = None
    compaction: str = "not available"
    resumed: int = 0  # times the month was played on from a checkpoint
    restored: int = 0  # objects put back into the moto server when it last was
    lake_root: str = ""
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.stopped_early
            or self.lost
            or self.duplicated
            or self.unexpected
            or self.paged_twice
            or self.outbox_unreceived
            or self.unpaged
            or self.errors
        )


# --- the simulated month and its deliveries ------------------------------------------------------


def simulate(spec: MonthSpec, out: Path) -> None:
    from pipeline.simulate import SimulationSpec
    from pipeline.simulate import simulate as write_world

    if START + timedelta(days=spec.days + 2) > datetime.now(UTC).date():
        raise ValueError(f"{spec.days} days from {START} reach past today: fewer days")
    sim = SimulationSpec(
        seed=spec.seed,
        tenants=spec.tenants,
        days=spec.days,
        events_per_day=spec.events_per_day,
        start=START,
        world="pooled",
    )
    write_world(out, sim)


def _parse(stamp: str) -> datetime:
    fmt = "%Y%m%dT%H%M%S" if len(stamp) == 15 else "%Y%m%dT%H%M"
    return datetime.strptime(stamp, fmt).replace(tzinfo=UTC)


def _export_day(path: Path) -> date:
    """The day an export file's lines are from (its first line's timestamp)."""
    with gzip.open(path, "rt") as f:
        first = f.readline()
    return datetime.fromisoformat(first.split(" ", 1)[0].replace("Z", "+00:00")).date()


def plan(spec: MonthSpec, logs: Path) -> list[Delivery]:
    """Every delivery of the month, in time order (deterministic for a spec)."""
    rng = random.Random(spec.seed)
    out: list[Delivery] = []
    for p in sorted(logs.glob("AWSLogs/**/*.json.gz")):
        key = p.relative_to(logs).as_posix()
        if m := _SLOT.search(key):
            at = _parse(m.group(1)) + timedelta(minutes=5, seconds=rng.randrange(60))
            if rng.random() < spec.late_share:
                at += timedelta(minutes=rng.uniform(5, spec.late_max_minutes))
            notify = rng.random() < spec.notify_share
            out.append(Delivery(at, TRAIL, key, p, notify))
            if notify and rng.random() < spec.twice_share:
                again = at + timedelta(minutes=rng.uniform(0.5, 15))
                out.append(Delivery(again, TRAIL, key, None, True))
        elif m := _DIGEST.search(key):
            notify = rng.random() < spec.notify_share
            out.append(Delivery(_parse(m.group(1)), TRAIL, key, p, notify))
    for folder in ("apigateway", "authorizer"):
        for p in sorted((logs / folder).glob("**/*.gz")):
            day = datetime.combine(_export_day(p), datetime.min.time(), UTC)
            at = day + timedelta(days=1, minutes=20 + rng.randrange(20))
            out.append(Delivery(at, EXPORTS, p.relative_to(logs).as_posix(), p, False))
    out.sort(key=lambda d: (d.at, d.key, d.path is None))
    return out


# --- the month --------------------------------------------------------------------------------


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block, every other ``TENANTWATCH_*`` and
    ``POWERTOOLS_*`` variable out of it; all as they were after."""
    saved = {k: os.environ.get(k) for k in values}
    drop = [k for k in os.environ if k.startswith(("TENANTWATCH_", "POWERTOOLS_"))]
    dropped = {k: os.environ.pop(k) for k in drop}
    os.environ.update(values)
    try:
        yield
    finally:
        for k in values:
            os.environ.pop(k, None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})
        os.environ.update(dropped)


def aws_environment(endpoint: str) -> dict[str, str]:
    """What points boto3 and pyarrow at the moto server at ``endpoint``."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }


@dataclass
class Deployment:
    stack: Any  # tests.awsstack.Stack
    env: dict[str, str]  # the functions' environment
    queue: str  # URL of an SQS queue subscribed to the incident topic


def deploy(lag_minutes: int, tick_minutes: int, config: str) -> Deployment:
    """The stack deployed into the moto server ``AWS_ENDPOINT_URL`` names (inside
    ``environment(aws_environment(endpoint))``) as the soak runs it: the trail bucket, the export
    bucket (its API Gateway and authorizer logs are read by the scheduled run too), ``config``
    (the pipeline's TOML) in the stack's SSM parameter and a queue subscribed to the topic."""
    import boto3
    from aws_lambda_powertools.utilities import parameters

    from pipeline import aws
    from tests import awsstack

    parameters.clear_caches()
    aws.reset()
    stack = awsstack.deploy(
        TRAIL,
        {
            "LagMinutes": str(lag_minutes),
            "BackfillHours": "1",
            "ScheduleMinutes": str(tick_minutes),
        },
    )
    if stack.status != "CREATE_COMPLETE":
        raise RuntimeError(f"the stack: {stack.status}")
    env = dict(stack.env)
    env["TENANTWATCH_RUN_SOURCES"] = ",".join(
        [
            env["TENANTWATCH_RUN_SOURCES"],
            f"s3://{EXPORTS}/apigateway/",
            f"s3://{EXPORTS}/authorizer/",
        ]
    )
    boto3.client("s3").create_bucket(Bucket=EXPORTS)
    boto3.client("ssm").put_parameter(
        Name=stack.outputs["ConfigParameterName"], Value=config, Type="String", Overwrite=True
    )
    return Deployment(stack, env, awsstack.subscribe(stack.outputs["IncidentTopicArn"]))


def run(
    spec: MonthSpec,
    workdir: Path,
    endpoint: str,
    progress: Callable[[str], None] | None = None,
    resume: bool = False,
) -> Result:
    """Simulate, deploy and play the month (see the module docstring); the checks' results.
    Each simulated day ends with a checkpoint in ``workdir`` (``checkpoint``); ``resume``
    plays on from the last one, if there is one."""
    started = time.perf_counter()
    logs = workdir / "logs"
    saved = workdir / "checkpoint"
    position = checkpoint.load(saved) if resume else None
    if position is None and saved.exists():
        shutil.rmtree(saved)  # a new month
    if position is not None:
        if position.spec != checkpoint.spec_of(spec):
            raise ValueError(
                f"{saved} is the checkpoint of another month ({position.spec}): play it with "
                "the same options, or start again without --resume"
            )
        started -= position.wall_s
    if not (logs / "truth.parquet").exists():
        simulate(spec, logs)
    with environment(aws_environment(endpoint)):
        checkpoint.seed_moto(endpoint)  # the stack's names as in every other deployment
        config = (logs / "tenantwatch.toml").read_text()
        first = datetime.combine(START, datetime.min.time(), UTC)
        set_clock(endpoint, datetime.fromisoformat(position.now) if position else first)
        deployed = deploy(spec.lag_minutes, spec.tick_minutes, config)
        restored = checkpoint.restore(saved, endpoint) if position is not None else 0
        env = dict(deployed.env)
        env["TENANTWATCH_RUN_SLIDE"] = "1" if spec.sliding else "0"
        if spec.local_lake is not None:
            env["TENANTWATCH_LAKE_ROOT"] = str(spec.local_lake)
        with environment(env):
            res = _play(spec, logs, deployed, endpoint, started, progress, saved, position)
            res.restored = restored
            return res


def _play(
    spec: MonthSpec,
    logs: Path,
    deployed: Deployment,
    endpoint: str,
    started: float,
    progress: Callable[[str], None] | None,
    saved: Path,
    position: checkpoint.Position | None,
) -> Result:
    import boto3

    from pipeline import handler
    from tests import awsstack
    from tests.fakes import object_created

    s3 = boto3.client("s3")
    stack, queue = deployed.stack, deployed.queue
    root = os.environ["TENANTWATCH_LAKE_ROOT"]  # the stack's s3://bucket/prefix, or a folder
    lake_bucket, _, lake_prefix = stack.outputs["LakeRoot"][len("s3://") :].partition("/")
    lake_prefix = lake_prefix.rstrip("/") + "/"
    reads = Reads(endpoint, lake_bucket, lake_prefix)
    handler.logger.setLevel(logging.WARNING)  # a month of INFO lines is not wanted

    res = Result(spec, lake_root=root)
    received: Counter[str] = Counter()
    deliveries = plan(spec, logs)
    start = datetime.combine(START, datetime.min.time(), UTC)
    end = start + timedelta(days=spec.days)
    step = timedelta(minutes=spec.tick_minutes)
    last_tick = end + timedelta(minutes=spec.lag_minutes) + 2 * timedelta(hours=1)
    sink = io.StringIO()
    i = 0
    n = 0
    now = start
    if position is not None:  # played on from the end of a day
        res.ticks = [Tick(**{**t, "statuses": Counter(t["statuses"])}) for t in position.ticks]
        res.day_files = {int(k): v for k, v in position.day_files.items()}
        res.days_played, res.resumed = position.days_played, position.resumed + 1
        received.update(position.received)
        i, n, now = position.delivered, position.ticks_played, datetime.fromisoformat(position.now)
    try:
        while True:
            now += step
            if now > last_tick:
                break
            day = min((now - step - start) // timedelta(days=1) + 1, spec.days)
            tick = Tick(day)
            touched: dict[str, int] = {}
            while i < len(deliveries) and deliveries[i].at <= now:
                d = deliveries[i]
                i += 1
                set_clock(endpoint, d.at)  # what S3 stamps on the object, and on what the
                # function it notifies writes
                if d.path is not None:
                    s3.put_object(Bucket=d.bucket, Key=d.key, Body=d.path.read_bytes())
                if d.notify:
                    event = object_created(d.bucket, d.key, d.at)
                    out, seconds, peak, got, listed = _invoke(
                        reads, sink, handler.on_s3_object, event
                    )
                    tick.listings += listed
                    tick.object_s.append(seconds)
                    tick.peak_mb = max(tick.peak_mb, peak)
                    tick.statuses[f"object:{out.get('status')}"] += 1
                    for k, c in got.items():
                        touched[k] = touched.get(k, 0) + c
            n += 1
            set_clock(endpoint, now)
            event = awsstack.scheduler_event(stack.template, now, f"soak-{n}")
            out, seconds, peak, got, listed = _invoke(reads, sink, handler.scheduled, event)
            tick.listings += listed
            tick.sched_s = seconds
            tick.peak_mb = max(tick.peak_mb, peak)
            tick.statuses[f"scheduled:{out.get('status')}"] += 1
            for k, c in got.items():
                touched[k] = touched.get(k, 0) + c
            tick.files_read = len(touched)
            tick.state_rows = reads.state_rows(list(touched))
            res.ticks.append(tick)
            for m in awsstack.drain(queue):
                attrs = m.get("MessageAttributes", {})
                received[attrs.get("notification_id", {}).get("Value", m.get("MessageId", ""))] += 1
            if (now - start) % timedelta(days=1) == timedelta(0) and now <= end:
                res.day_files[day] = sum(lake_files(lake_bucket, lake_prefix).values())
                res.days_played = day
                at = checkpoint.Position.of(
                    spec, now, i, n, res, received, time.perf_counter() - started
                )
                checkpoint.save(saved, at)
                if progress is not None:
                    progress(_progress_line(res, day, time.perf_counter() - started))
            if spec.wall_limit_s is not None and time.perf_counter() - started > spec.wall_limit_s:
                res.stopped_early = now < last_tick
                break
    except KeyboardInterrupt:  # a month stopped by hand still prints what it measured
        res.stopped_early, res.stop_reason = True, "interrupted"
    res.wall_s = time.perf_counter() - started
    if not res.stopped_early:
        _check(res, logs, root, received)
        res.files_before = lake_files(lake_bucket, lake_prefix)
        _compact(res, root, end, lake_bucket, lake_prefix)
    res.notifications = sum(received.values())
    res.paged_twice = sorted(k for k, c in received.items() if c > 1)
    return res


def _invoke(
    reads: Reads, sink: io.StringIO, fn: Callable[[Any, Any], dict[str, Any]], event: Any
) -> tuple[dict[str, Any], float, float, dict[str, int], int]:
    from tests.fakes import FakeContext

    reads.take()  # start counting here
    reset_peak_rss()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink):  # the functions' metric lines (EMF)
        out = fn(event, FakeContext())
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()
    got, listings = reads.take()
    sink.seek(0)
    sink.truncate()
    return out, seconds, peak, got, listings


def _progress_line(res: Result, day: int, wall: float) -> str:
    """The day's row of the table, as soon as the day is played."""
    row = row_of(day, [t for t in res.ticks if t.day == day], res.day_files.get(day, ""))
    return f"{row} {wall / 60:.1f} min so far"


def _check(res: Result, logs: Path, root: str, received: Counter[str]) -> None:
    import pyarrow.parquet as pq

    from eval.evaluate import matches
    from eval.paging import PAGES, score_pages
    from pipeline.alert import store
    from pipeline.config import load_config
    from pipeline.detect import read_findings
    from pipeline.lake import Lake, read_events, read_quarantine

    truth = pq.read_table(logs / "truth.parquet", columns=["source", "event_id"]).to_pylist()
    want = Counter((r["source"], r["event_id"]) for r in truth)
    lake = read_events(root, columns=["source", "event_id"]).to_pylist()
    have = Counter((r["source"], r["event_id"]) for r in lake)
    res.truth_events, res.lake_events = sum(want.values()), sum(have.values())
    res.lost = sum(1 for k in want if k not in have)
    res.duplicated = sum(c - 1 for c in have.values() if c > 1)
    res.unexpected = sum(1 for k in have if k not in want)
    res.quarantined = read_quarantine(root).num_rows

    cfg = load_config(logs / "tenantwatch.toml", environ={})
    labels = json.loads((logs / "labels.json").read_text())
    findings = read_findings(root).to_pylist()
    paging = score_pages(root, cfg, findings, labels, matches)
    res.attacks = paging.attacks
    res.unpaged = list(paging.unpaged)
    res.repaged = list(paging.repaged)
    outbox = store.load_outbox(Lake(root), full=True).values()
    sent = [r["notification_id"] for r in outbox if r["kind"] in PAGES and r["state"] == "sent"]
    res.outbox_unreceived = sorted(x for x in sent if x not in received)


def _compact(res: Result, root: str, end: datetime, bucket: str, prefix: str) -> None:
    """``tenantwatch compact`` over the closed days, where the CLI has the command."""
    from click.testing import CliRunner

    from pipeline.cli import cli

    if "compact" not in getattr(cli, "commands", {}):
        return
    before = f"{end.date():%Y-%m-%d}"
    out = CliRunner().invoke(cli, ["compact", "--lake", root, "--before", before])
    if out.exit_code != 0:
        res.compaction = f"failed ({out.exit_code}): {out.output.strip()[-300:]}"
        res.errors.append(res.compaction)
        return
    res.compaction = "tenantwatch compact --before " + before
    res.files_after = lake_files(bucket, prefix)


def summary(res: Result) -> str:
    s = res.spec
    out = [
        f"{s.days} simulated days, {s.events_per_day} tenant events/day, {s.tenants} tenants, "
        f"seed {s.seed}; a tick every {s.tick_minutes} min"
        + ("" if s.sliding else " (no sliding window)")
        + f", lag {s.lag_minutes} min; "
        f"{s.late_share:.0%} of trail files late (up to {s.late_max_minutes} min), "
        f"{s.twice_share:.0%} of object events twice"
        + (f", {s.notify_share:.0%} of trail files notified" if s.notify_share < 1 else "")
        + f"; {res.wall_s / 60:.1f} min wall"
        + (
            f" (played on {res.resumed} time(s) from the checkpoint of a day's end, the "
            "functions started cold)"
            if res.resumed
            else ""
        ),
        "",
        "Per tick (the scheduled run and the object runs since the tick before), the median of "
        "the day's ticks:",
        "",
        table(res),
        "",
    ]
    if res.stopped_early:
        out.append(f"stopped on day {res.days_played + 1} (of {s.days}): {res.stop_reason}")
        return "\n".join(out)
    out += [
        f"events: {res.truth_events} in the simulator's truth, {res.lake_events} in the lake; "
        f"lost {res.lost}, duplicated {res.duplicated}, not in the truth {res.unexpected}, "
        f"quarantined {res.quarantined}",
        f"notifications received: {res.notifications}; received twice: {len(res.paged_twice)}; "
        f"sent pages never received: {len(res.outbox_unreceived)}",
        f"labelled attacks paged: {res.attacks - len(res.unpaged)} of {res.attacks}"
        + (f" (unpaged: {', '.join(res.unpaged)})" if res.unpaged else "")
        + (f"; paged by more than one incident: {', '.join(res.repaged)}" if res.repaged else ""),
        "lake files at the end: " + _areas(res.files_before),
    ]
    if res.files_after is None:
        out.append(f"compaction: {res.compaction}")
    else:
        out.append(f"after {res.compaction}: " + _areas(res.files_after))
    out += [f"error: {e}" for e in res.errors]
    return "\n".join(out)


def _areas(counts: dict[str, int]) -> str:
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"{sum(counts.values())} ({parts})"
