"""Unattended runs (Lambda): windows, a watermark, a lease and a time budget around the stages.

A scheduled run ingests whatever arrived since the watermark, then detects and alerts window by
window. Windows are aligned to the clock (``window_minutes``, an hour by default: the detectors
count in hours) and a window is taken only once it ended ``ingest.cloudtrail_lag_minutes`` ago,
for CloudTrail's late delivery. After each window has been detected *and* alerted the watermark
moves to its end: that is the checkpoint. A run that is short of time stops before the next
window (or between two ingested batches) and the next run continues from the watermark.

Why the same result however often it runs:

- windows depend only on the watermark and the clock, so a repeated run takes the same windows,
  and the detectors give the same finding ids for the same window;
- every input object is ingested as its own batch, so an S3-triggered run and a scheduled run
  that race over one object write the same file (a batch's file is named by its inputs) instead
  of two copies;
- detect and alert run under the lake's lease (``pipeline.lease``, which the CLI's runs take
  too), so two overlapping runs never publish the same incident twice: the second one finds the
  lease held and stops, and the next run does the work.

The pipeline's health (``pipeline.health``) is measured once per run, at its end, whatever
number of windows it detected; the handler sends it.

The stages are reached through ``Stages`` (ingest, detect, alert), the one seam a test or a later
deployment (AWS Glue) can re-point.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from pipeline import tickets
from pipeline.config import Config
from pipeline.errors import ConfigError, TenantwatchError
from pipeline.lease import Lease

if TYPE_CHECKING:
    from pipeline.health import RunHealth

WATERMARK = "_state/watermark/scheduled.parquet"


class RunError(TenantwatchError):
    """A stage failed: the watermark stays where it was and the next run repeats the window."""


class OutOfTime(Exception):
    """Raised inside a stage's progress callback when the time budget is spent."""


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """How unattended runs behave; from ``TENANTWATCH_RUN_*`` (see ``from_environ``)."""

    sources: tuple[str, ...] = ()
    window_minutes: int = 60
    backfill_hours: int = 24  # where the very first scheduled run starts
    reserve_seconds: float = 60.0  # stop when less than this (or the slowest window) is left
    lease_seconds: int = 16 * 60  # longer than Lambda's 15 minutes: a dead holder's lease expires

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RunSettings:
        def num(key: str, default: float, kind: type = int) -> Any:
            name = f"TENANTWATCH_RUN_{key}"
            raw = environ.get(name, "")
            if not raw.strip():
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
            if value <= 0:
                raise ConfigError(f"{name}: expected a positive number, got {raw!r}")
            return value

        raw_sources = environ.get("TENANTWATCH_RUN_SOURCES", "")
        s = cls(
            sources=tuple(x.strip() for x in raw_sources.split(",") if x.strip()),
            window_minutes=num("WINDOW_MINUTES", cls.window_minutes),
            backfill_hours=num("BACKFILL_HOURS", cls.backfill_hours),
            reserve_seconds=num("RESERVE_SECONDS", cls.reserve_seconds, float),
            lease_seconds=num("LEASE_SECONDS", cls.lease_seconds),
        )
        if (24 * 60) % s.window_minutes:
            raise ConfigError(
                f"TENANTWATCH_RUN_WINDOW_MINUTES: {s.window_minutes} does not divide a day"
            )
        return s


def per_object(cfg: Config) -> Config:
    """``cfg`` with one input object per ingest batch (see the module docstring)."""
    return msgspec.structs.replace(
        cfg, ingest=msgspec.structs.replace(cfg.ingest, batch_input_bytes=1)
    )


# --- the seam to the stages ------------------------------------------------------------------


class Stages(Protocol):
    def ingest(
        self,
        sources: list[str],
        lake_root: str,
        cfg: Config,
        since: datetime | None,
        until: datetime | None,
        progress: Callable[[int, int], None],
    ) -> dict[str, Any]: ...

    def detect(
        self,
        lake_root: str,
        cfg: Config,
        since: datetime,
        until: datetime,
        only: tuple[str, ...] | None,
    ) -> dict[str, Any]: ...

    def alert(self, lake_root: str, cfg: Config, since: datetime | None) -> dict[str, Any]: ...


class PipelineStages:
    """The real stages (imported on first use: they pull in pyarrow, pandas, scikit-learn)."""

    def ingest(
        self,
        sources: list[str],
        lake_root: str,
        cfg: Config,
        since: datetime | None,
        until: datetime | None,
        progress: Callable[[int, int], None],
    ) -> dict[str, Any]:
        from pipeline.ingest.run import ingest

        # One worker: ingest's worker processes have not been tried in Lambda (no /dev/shm, so
        # hand-off files go to /tmp), and the function's memory is sized for one batch in flight.
        return ingest(
            sources, lake_root, cfg, since=since, until=until, workers=1, progress=progress
        )

    def detect(
        self,
        lake_root: str,
        cfg: Config,
        since: datetime,
        until: datetime,
        only: tuple[str, ...] | None,
    ) -> dict[str, Any]:
        from pipeline.detect import run_detect

        return run_detect(lake_root, cfg, since, until, only=only).summary

    def alert(self, lake_root: str, cfg: Config, since: datetime | None) -> dict[str, Any]:
        from pipeline.alert.run import run_alert

        return run_alert(lake_root, cfg, since=since, in_lambda=True).summary


def rule_detectors() -> tuple[str, ...]:
    """Detectors that need no history (cheap enough to run for every new object)."""
    import detectors

    return tuple(d for d in detectors.REGISTRY if detectors.load(d).lookback == timedelta(0))


# --- time ------------------------------------------------------------------------------------


class Budget:
    """What is left of the invocation (Lambda's ``get_remaining_time_in_millis``)."""

    def __init__(self, remaining_ms: Callable[[], int], reserve_s: float) -> None:
        self.remaining_ms = remaining_ms
        self.reserve_s = reserve_s
        self.slowest_window_s = 0.0

    def left_s(self) -> float:
        return self.remaining_ms() / 1000

    def enough_for_window(self) -> bool:
        return self.left_s() >= max(self.reserve_s, 1.5 * self.slowest_window_s)

    def check(self, *_: Any) -> None:
        """A progress callback: stop between two ingested batches when time runs low."""
        if self.left_s() < self.reserve_s:
            raise OutOfTime


def floor_to(ts: datetime, minutes: int) -> datetime:
    ts = ts.astimezone(UTC)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(minutes=minutes)
    return day + ((ts - day) // step) * step


def windows(start: datetime, end: datetime, minutes: int) -> list[tuple[datetime, datetime]]:
    step = timedelta(minutes=minutes)
    out = []
    while start + step <= end:
        out.append((start, start + step))
        start += step
    return out


# --- state in the lake: the watermark ----------------------------------------------------------


def read_watermark(lake_root: str) -> datetime | None:
    from pipeline.lake import Lake

    lake = Lake(lake_root)
    if not lake.exists(WATERMARK):
        return None
    value: datetime | None = lake.read_file(WATERMARK)["watermark"][0].as_py()
    return value


def write_watermark(lake_root: str, watermark: datetime, run_id: str) -> None:
    import pyarrow as pa

    from pipeline.lake import Lake

    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema([("watermark", ts), ("run_id", pa.string()), ("written_at", ts)])
    row = {"watermark": watermark, "run_id": run_id, "written_at": datetime.now(UTC)}
    Lake(lake_root).write_table(WATERMARK, pa.Table.from_pylist([row], schema))


# --- the runs ----------------------------------------------------------------------------------


@dataclass
class Report:
    """What a run did, JSON-able, returned by the handler and logged."""

    run_id: str
    kind: str  # scheduled | objects
    status: str = "done"  # done | checkpoint (out of time) | busy (lease held) | nothing_to_do
    watermark_before: str | None = None
    watermark_after: str | None = None
    windows: list[str] = field(default_factory=list)  # "start/end" of each window completed
    ingest: dict[str, Any] = field(default_factory=dict)
    findings: int = 0
    alert: dict[str, int] = field(default_factory=dict)  # alert counts summed over windows
    seconds: float = 0.0
    detected: list[dict[str, Any]] = field(default_factory=list)  # each window's detect summary
    health: dict[str, Any] = field(default_factory=dict)  # RunHealth.as_dict(), once per run

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
            "windows": self.windows,
            "ingest": self.ingest,
            "findings": self.findings,
            "alert": self.alert,
            "health": self.health,
            "seconds": round(self.seconds, 3),
        }


HealthSink = Callable[["RunHealth"], None]


def _measure(
    lake_root: str, started_at: datetime, report: Report, on_health: HealthSink | None
) -> None:
    """The run's health, once, for a run that did anything (also one that failed half way)."""
    if not report.ingest and not report.detected:
        return
    from pipeline.health import RunHealth

    try:
        health = RunHealth.measure(lake_root, started_at, report.ingest or None, report.detected)
    except Exception as exc:  # in a ``finally``: must not hide why the run itself failed
        report.health = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        return
    report.health = health.as_dict()
    if on_health is not None:
        on_health(health)


def _detect_and_alert(
    stages: Stages,
    lake_root: str,
    cfg: Config,
    window: tuple[datetime, datetime],
    only: tuple[str, ...] | None,
    report: Report,
) -> None:
    start, end = window
    detected = stages.detect(lake_root, cfg, start, end, only)
    report.detected.append(detected)
    failed = detected.get("failed") or {}
    if failed:
        # Not a success: no checkpoint; the next run repeats this window.
        raise RunError(f"window {start.isoformat()}: detectors failed: {failed}")
    report.findings += int(detected.get("findings") or 0)
    alerted = stages.alert(lake_root, cfg, start)
    sent = alerted.get("notifications") or {}
    for key, value in (
        ("incidents_new", alerted.get("incidents_new")),
        ("incidents_updated", alerted.get("incidents_updated")),
        ("notifications_sent", sent.get("sent")),
        ("notifications_failed", sent.get("failed")),
    ):
        report.alert[key] = report.alert.get(key, 0) + int(value or 0)
    # Not a sum: every window's alert reports all that is in doubt so far.
    report.alert["notifications_in_doubt"] = int(sent.get("in_doubt") or 0)
    report.windows.append(f"{start.isoformat()}/{end.isoformat()}")


def run_scheduled(
    now: datetime,
    lake_root: str,
    cfg: Config,
    settings: RunSettings,
    budget: Budget,
    run_id: str,
    stages: Stages | None = None,
    on_health: HealthSink | None = None,
) -> Report:
    """Ingest since the watermark (minus the lag), then detect + alert each finished window;
    ``on_health`` gets the run's health once at its end."""
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    stages = stages or PipelineStages()
    report = Report(run_id, "scheduled")
    if not settings.sources:
        raise ConfigError("TENANTWATCH_RUN_SOURCES: no sources to ingest (s3://bucket/prefix,...)")
    lag = timedelta(minutes=cfg.ingest.cloudtrail_lag_minutes)
    lease = Lease(lake_root)
    if not lease.acquire(run_id, settings.lease_seconds):
        report.status = "busy"
        return report
    try:
        mark = read_watermark(lake_root)
        first = floor_to(now - timedelta(hours=settings.backfill_hours), settings.window_minutes)
        mark = mark or first
        report.watermark_before = report.watermark_after = mark.isoformat()
        todo = windows(mark, floor_to(now - lag, settings.window_minutes), settings.window_minutes)
        run_cfg = tickets.resolve(per_object(cfg))  # read once, for every window
        try:
            # Objects are keyed by delivery day: from the day the oldest open window's late
            # events could have been delivered on, to now.
            report.ingest = stages.ingest(
                list(settings.sources), lake_root, run_cfg, mark - lag, now, budget.check
            )
        except OutOfTime:
            report.status = "checkpoint"
            return report
        for window in todo:
            if not budget.enough_for_window():
                report.status = "checkpoint"
                break
            t0 = time.perf_counter()
            _detect_and_alert(stages, lake_root, run_cfg, window, None, report)
            write_watermark(lake_root, window[1], run_id)
            report.watermark_after = window[1].isoformat()
            budget.slowest_window_s = max(budget.slowest_window_s, time.perf_counter() - t0)
        if not todo and report.status == "done":
            report.status = "nothing_to_do"
    finally:
        lease.release()
        _measure(lake_root, started_at, report, on_health)
        report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    created: datetime


def in_sources(obj: ObjectRef, sources: Sequence[str]) -> bool:
    uri = f"s3://{obj.bucket}/{obj.key}"
    return any(s.startswith("s3://") and uri.startswith(s) for s in sources)


def run_objects(
    objects: Sequence[ObjectRef],
    lake_root: str,
    cfg: Config,
    settings: RunSettings,
    budget: Budget,
    run_id: str,
    stages: Stages | None = None,
    on_health: HealthSink | None = None,
) -> Report:
    """Ingest just these objects; then, if no other run holds the lease, run the rule detectors
    (no history needed) over the windows their events fall in, and alert. ``on_health`` gets
    the run's health once at its end.

    The baseline detectors are left to the scheduled run: reading two weeks of history for every
    object CloudTrail delivers would cost far more than it saves.
    """
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    stages = stages or PipelineStages()
    report = Report(run_id, "objects")
    run_cfg = tickets.resolve(per_object(cfg))  # read once, for every window
    try:
        _objects(objects, lake_root, run_cfg, cfg, settings, budget, run_id, stages, report)
    finally:
        _measure(lake_root, started_at, report, on_health)
        report.seconds = time.perf_counter() - started
    return report


def _objects(
    objects: Sequence[ObjectRef],
    lake_root: str,
    run_cfg: Config,
    cfg: Config,
    settings: RunSettings,
    budget: Budget,
    run_id: str,
    stages: Stages,
    report: Report,
) -> None:
    try:
        uris = sorted({f"s3://{o.bucket}/{o.key}" for o in objects})
        report.ingest = stages.ingest(uris, lake_root, run_cfg, None, None, budget.check)
    except OutOfTime:
        report.status = "checkpoint"  # the scheduled run ingests what is left
        return
    lag = timedelta(minutes=cfg.ingest.cloudtrail_lag_minutes)
    todo = sorted(
        {
            (w, w + timedelta(minutes=settings.window_minutes))
            for o in objects
            for w in (
                floor_to(o.created - lag, settings.window_minutes),
                floor_to(o.created, settings.window_minutes),
            )
        }
    )
    lease = Lease(lake_root)
    if not lease.acquire(run_id, settings.lease_seconds):
        report.status = "busy"  # ingested; detection is left to the run holding the lease
        return
    try:
        only = rule_detectors()
        for window in todo:
            if not budget.enough_for_window():
                report.status = "checkpoint"
                break
            _detect_and_alert(stages, lake_root, run_cfg, window, only, report)
    finally:
        lease.release()


def object_run_id(objects: Sequence[ObjectRef]) -> str:
    h = hashlib.sha256("\n".join(sorted(f"{o.bucket}/{o.key}" for o in objects)).encode())
    return f"obj-{h.hexdigest()[:16]}"


def scheduled_run_id(scheduled: datetime, event_id: str) -> str:
    return f"sched-{scheduled:%Y%m%dT%H%M%SZ}-{hashlib.sha256(event_id.encode()).hexdigest()[:8]}"
