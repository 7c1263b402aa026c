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

Each tick also runs the windowed detectors (those that compare with history: the failure spike,
tenant switching) over the sliding window that ends at the tick (``RunSettings.slide``,
``pipeline.detect.run_live``): a burst pages within a tick of its delivery rather than after its
clock-aligned window and the lag. Its findings take the ids the aligned window gives the same
group, and incidents grow rather than page again, so a burst is paged once however many ticks
and windows see it.

The pipeline's health (``pipeline.health``) is measured once per run, at its end, whatever
number of windows it detected, and sent as the CLI's runs send theirs.

A window too large for the function (``RunSettings.spark_handoff_bytes``) is handed to the AWS
Glue job instead (``pipeline.runs.handoff``), and the watermark waits for the job's run.

The stages are reached through ``Stages`` (``pipeline.runs.stages``: ingest, detect, alert), the
one seam a test or a deployment re-points (the Glue job: ``pipeline.glue_job``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pipeline import tickets
from pipeline.config import Config
from pipeline.errors import ConfigError, TenantwatchError
from pipeline.lease import Lease
from pipeline.runs.handoff import Handoffs
from pipeline.runs.results import RunResult
from pipeline.runs.stages import PipelineStages, Stages
from pipeline.runs.watermark import read_watermark, write_watermark


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
    backfill_hours: int = 24  # the first scheduled run starts this long before now less the lag
    reserve_seconds: float = 60.0  # stop when less than this (or the slowest window) is left
    lease_seconds: int = 16 * 60  # longer than Lambda's 15 minutes: a dead holder's lease expires
    # Every tick also runs the windowed detectors over the window that ends at the tick (a
    # sliding window of ``window_minutes``), so a burst pages within a tick of its delivery.
    slide: bool = True
    # A window whose event files pass this many bytes goes to the Glue job ``spark_job``, tried
    # up to ``spark_attempts`` times (``pipeline.runs.handoff``); 0: every window stays here.
    spark_handoff_bytes: int = 0
    spark_job: str = ""
    spark_attempts: int = 3

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RunSettings:
        def num(key: str, default: float, kind: type = int, least: float = 1e-9) -> Any:
            name = f"TENANTWATCH_RUN_{key}"
            raw = environ.get(name, "")
            if not raw.strip():
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
            if value < least:
                what = "a positive number" if least > 0 else "a number, 0 or more"
                raise ConfigError(f"{name}: expected {what}, got {raw!r}")
            return value

        def flag(key: str, default: bool) -> bool:
            name = f"TENANTWATCH_RUN_{key}"
            raw = environ.get(name, "").strip().lower()
            if not raw:
                return default
            if raw not in ("0", "1", "true", "false"):
                raise ConfigError(f"{name}: expected 1 or 0 (true or false), got {raw!r}")
            return raw in ("1", "true")

        raw_sources = environ.get("TENANTWATCH_RUN_SOURCES", "")
        s = cls(
            sources=tuple(x.strip() for x in raw_sources.split(",") if x.strip()),
            window_minutes=num("WINDOW_MINUTES", cls.window_minutes),
            backfill_hours=num("BACKFILL_HOURS", cls.backfill_hours),
            reserve_seconds=num("RESERVE_SECONDS", cls.reserve_seconds, float),
            lease_seconds=num("LEASE_SECONDS", cls.lease_seconds),
            slide=flag("SLIDE", cls.slide),
            spark_handoff_bytes=num("SPARK_HANDOFF_BYTES", cls.spark_handoff_bytes, least=0),
            spark_job=environ.get("TENANTWATCH_RUN_SPARK_JOB", "").strip(),
            spark_attempts=num("SPARK_ATTEMPTS", cls.spark_attempts),
        )
        if (24 * 60) % s.window_minutes:
            raise ConfigError(
                f"TENANTWATCH_RUN_WINDOW_MINUTES: {s.window_minutes} does not divide a day"
            )
        if s.spark_handoff_bytes and not s.spark_job:
            raise ConfigError("TENANTWATCH_RUN_SPARK_HANDOFF_BYTES: no TENANTWATCH_RUN_SPARK_JOB")
        return s


def per_object(cfg: Config) -> Config:
    """``cfg`` with one input object per ingest batch (see the module docstring)."""
    return msgspec.structs.replace(
        cfg, ingest=msgspec.structs.replace(cfg.ingest, batch_input_bytes=1)
    )


def rule_detectors() -> tuple[str, ...]:
    """Detectors that need no history (cheap enough to run for every new object)."""
    import detectors

    out = []
    for d in detectors.REGISTRY:
        try:
            if detectors.load(d).lookback == timedelta(0):
                out.append(d)
        except detectors.PluginError:
            continue  # left out of every run (detectors.unavailable says why)
    return tuple(out)


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


# --- the runs ----------------------------------------------------------------------------------


@dataclass
class Report:
    """What an unattended run did, JSON-able (``as_dict``), returned by the handler and logged."""

    run_id: str
    kind: str  # scheduled | objects | glue (pipeline.glue_job)
    run: RunResult = field(default_factory=lambda: RunResult(started_at=datetime.now(UTC)))
    status: str = "done"  # done | checkpoint (out of time) | busy (lease held) | nothing_to_do
    watermark_before: str | None = None
    watermark_after: str | None = None
    windows: list[str] = field(default_factory=list)  # "start/end" of each window completed
    compaction: dict[str, Any] = field(default_factory=dict)  # pipeline.compact's summary
    retention: dict[str, Any] = field(default_factory=dict)  # pipeline.retention's summary
    sliding: dict[str, Any] = field(default_factory=dict)  # the sliding window's detection
    late: list[str] = field(default_factory=list)  # windows detected again for late events
    handoff: list[dict[str, Any]] = field(default_factory=list)  # windows on the Glue job
    failed: list[str] = field(default_factory=list)  # windows whose every job run failed
    held_by: str = ""  # busy: who holds the lease (``glue:<job run>``: the Glue job)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "watermark_before": self.watermark_before,
            "watermark_after": self.watermark_after,
            "windows": self.windows,
            "ingest": self.run.ingest.as_dict() if self.run.ingest is not None else {},
            "findings": self.run.findings(),
            "alert": self.run.alert_counts(),
            "health": self.run.health_dict(),
            "compaction": self.compaction,
            "retention": self.retention,
            "sliding": self.sliding,
            "late_windows": self.late,
            "handoff": self.handoff,
            "failed_windows": self.failed,
            "held_by": self.held_by,
            "seconds": round(self.seconds, 3),
        }


def finish(lake_root: str, cfg: Config, report: Report, in_lambda: bool = True) -> None:
    """The run's health, once, for a run that did anything (also one that failed half way),
    sent to CloudWatch: in the embedded metric format in Lambda, else by ``PutMetricData``."""
    if not report.run.did_anything:
        return
    from pipeline import health

    try:
        report.run.health = health.RunHealth.measure(
            lake_root, report.run, relationships=cfg.relationships
        )
    except Exception as exc:  # in a ``finally``: must not hide why the run itself failed
        report.run.health_error = f"{type(exc).__name__}: {exc}"[:300]
        return
    health.send(lake_root, cfg, report.run.health, in_lambda=in_lambda)


def detect_and_alert(
    stages: Stages,
    lake_root: str,
    cfg: Config,
    window: tuple[datetime, datetime],
    only: tuple[str, ...] | None,
    report: Report,
) -> None:
    start, end = window
    detected = stages.detect(lake_root, cfg, start, end, only)
    report.run.detect.append(detected)
    if detected.failed:
        # Not a success: no checkpoint; the next run repeats this window.
        raise RunError(f"window {start.isoformat()}: detectors failed: {dict(detected.failed)}")
    report.run.alert.append(stages.alert(lake_root, cfg, start))
    report.windows.append(f"{start.isoformat()}/{end.isoformat()}")


def run_scheduled(
    now: datetime,
    lake_root: str,
    cfg: Config,
    settings: RunSettings,
    budget: Budget,
    run_id: str,
    stages: Stages | None = None,
) -> Report:
    """Ingest since the watermark (minus the lag), then detect + alert each finished window;
    the run's health is measured and sent once at its end."""
    started = time.perf_counter()
    stages = stages or PipelineStages()
    report = Report(run_id, "scheduled")
    if not settings.sources:
        raise ConfigError("TENANTWATCH_RUN_SOURCES: no sources to ingest (s3://bucket/prefix,...)")
    lag = timedelta(minutes=cfg.ingest.cloudtrail_lag_minutes)
    lease = Lease(lake_root)
    if not lease.acquire(run_id, settings.lease_seconds):
        report.status = "busy"
        report.held_by = str((lease.holder() or {}).get("owner", ""))
        return report
    try:
        stored = mark = read_watermark(lake_root)
        # A first run starts ``backfill_hours`` before the newest window it can detect (one
        # lag ago): counted from the clock instead, a backfill shorter than the lag would leave
        # every window beyond reach, and no run would ever detect.
        first = floor_to(
            now - lag - timedelta(hours=settings.backfill_hours), settings.window_minutes
        )
        mark = mark or first
        report.watermark_before = report.watermark_after = mark.isoformat()
        todo = windows(mark, floor_to(now - lag, settings.window_minutes), settings.window_minutes)
        run_cfg = tickets.resolve(per_object(cfg))  # read once, for every window
        try:
            # Objects are keyed by delivery day: from the day the oldest open window's late
            # events could have been delivered on, to now.
            report.run.ingest = stages.ingest(
                list(settings.sources), lake_root, run_cfg, mark - lag, now, budget.check
            )
        except OutOfTime:
            report.status = "checkpoint"
            return report
        # Events delivered later than the lag (a daily log export, a trail file hours late) fall
        # in windows detected already: each such window is marked, and detected again below.
        # (A first run has detected nothing yet: what lies before its backfill stays history.)
        # So are windows on the Glue job: their job run may have read their events already.
        handoffs = Handoffs(lake_root, settings, run_id) if settings.spark_handoff_bytes else None
        if stored is not None:
            on_glue = handoffs.pending() if handoffs is not None else set()
            new = report.run.ingest.summary.get("new_events")
            _mark_late(lake_root, new, mark, settings, on_glue)
        for window in todo:
            if not budget.enough_for_window():
                report.status = "checkpoint"
                break
            t0 = time.perf_counter()
            went = handoffs.step(window, report) if handoffs is not None else "local"
            if went in ("waiting", "failed"):
                break  # the watermark is one checkpoint: the windows after this one wait too
            if went == "local":
                detect_and_alert(stages, lake_root, run_cfg, window, None, report)
            else:  # its job run detected and alerted it
                report.windows.append(f"{window[0].isoformat()}/{window[1].isoformat()}")
            write_watermark(lake_root, window[1], run_id)
            report.watermark_after = window[1].isoformat()
            budget.slowest_window_s = max(budget.slowest_window_s, time.perf_counter() - t0)
        if report.status != "checkpoint":
            _redetect_late(stages, lake_root, run_cfg, settings, budget, report, handoffs)
        if settings.slide and report.status != "checkpoint":
            _slide(stages, lake_root, run_cfg, now, settings, budget, report)
        if not todo and report.status == "done":
            report.status = "nothing_to_do"
        # Upkeep once a window: a tick that detected nothing has nothing new to compact or
        # expire (a day closes with its last window), and skips the listings it costs.
        if report.status != "checkpoint" and (report.windows or report.late):
            _upkeep(lake_root, cfg, floor_to(now - lag, 24 * 60), budget, report)
    finally:
        lease.release()
        finish(lake_root, cfg, report)
        report.seconds = time.perf_counter() - started
    return report


_LATE_NAME = "%Y%m%dT%H%M"


def _mark_late(
    lake_root: str,
    span: Mapping[str, str] | None,
    mark: datetime,
    settings: RunSettings,
    on_glue: set[datetime],
) -> None:
    """A marker for each window before the watermark ``mark``, or handed to the Glue job
    (``on_glue``: their starts), that the run's new events fall in (written before any is
    detected again: a run that stops leaves them to the next)."""
    from pipeline.alert import store
    from pipeline.lake import STATE_LATE, Lake

    touched = touched_windows(span, settings.window_minutes)
    late = [w for w in touched if w[1] <= mark or w[0] in on_glue]
    lake = Lake(lake_root)
    for start, _ in late:
        store.write_bytes(lake, f"{STATE_LATE}/{start:{_LATE_NAME}}", b"")


def _redetect_late(
    stages: Stages,
    lake_root: str,
    cfg: Config,
    settings: RunSettings,
    budget: Budget,
    report: Report,
    handoffs: Handoffs | None,
) -> None:
    """Detect and alert again each window a marker names (``_mark_late``), oldest first, and
    remove its marker: the same findings keep their ids, new ones join or open incidents. A
    window the watermark has not passed (on the Glue job) waits; one over the hand-off bound
    goes to the job, and keeps its marker until its job run is done."""
    import pyarrow.fs as pafs

    from pipeline import lake_io
    from pipeline.lake import STATE_LATE, Lake

    lake = Lake(lake_root)
    sel = pafs.FileSelector(lake.path(STATE_LATE), allow_not_found=True)
    names = sorted(i.base_name for i in lake.fs.get_file_info(sel) if i.type == pafs.FileType.File)
    step = timedelta(minutes=settings.window_minutes)
    passed = datetime.fromisoformat(report.watermark_after or "9999-12-31T00:00:00+00:00")
    for name in names:
        try:
            start = datetime.strptime(name, _LATE_NAME).replace(tzinfo=UTC)
        except ValueError:
            continue  # not a marker of ours (a temporary of a write that died)
        if start + step > passed:
            continue
        if not budget.enough_for_window():
            report.status = "checkpoint"
            return
        went = handoffs.step((start, start + step), report) if handoffs is not None else "local"
        if went in ("waiting", "failed"):
            continue
        if went == "local":
            detect_and_alert(stages, lake_root, cfg, (start, start + step), None, report)
        report.late.append(f"{start.isoformat()}/{(start + step).isoformat()}")
        lake_io.delete(lake, f"{STATE_LATE}/{name}")


def _slide(
    stages: Stages,
    lake_root: str,
    cfg: Config,
    now: datetime,
    settings: RunSettings,
    budget: Budget,
    report: Report,
) -> None:
    """The windowed detectors over the window that ends now, then alerting if they found
    anything (``pipeline.detect.run_live``). What arrived late is still detected by the aligned
    windows, so a detector that fails here is reported and the run goes on."""
    if not budget.enough_for_window():
        report.status = "checkpoint"
        return
    length = timedelta(minutes=settings.window_minutes)
    mark = datetime.fromisoformat(report.watermark_after) if report.watermark_after else None
    live = stages.slide(lake_root, cfg, now, length, mark)
    report.sliding = live.as_dict()
    if live.summary.get("news"):  # nothing the lake did not have: nothing to alert
        report.run.alert.append(
            stages.alert(lake_root, cfg, floor_to(now - length, settings.window_minutes))
        )


def _upkeep(lake_root: str, cfg: Config, today: datetime, budget: Budget, report: Report) -> None:
    """After the windows, with the time left: delete what retention no longer keeps, then
    compact yesterday's folders (``today``: 00:00 of the day the lag has reached). Each step
    stops between two partitions when the budget is spent; the next run continues, as both
    are safe to cut short and to repeat."""
    from pipeline import compact, retention
    from pipeline.lake import Lake

    def check() -> None:
        if budget.left_s() < budget.reserve_s:
            raise compact.Stop

    lake = Lake(lake_root)
    try:
        report.retention = retention.apply(lake, cfg.lake.retention_days, today, check).as_dict()
        done = compact.compact(
            lake,
            today,
            since=today - timedelta(days=1),
            target_bytes=cfg.lake.compact_file_mb << 20,
            check=check,
            written_before=today,
        )
    except compact.Stop:
        report.status = "checkpoint"
        return
    report.compaction = done.as_dict()
    if not done.complete:
        report.status = "checkpoint"


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
) -> Report:
    """Ingest just these objects; then, if no other run holds the lease, run the rule detectors
    (no history needed) over the objects' own new events, in the windows they fall in, and
    alert (``pipeline.detect.run_fast``: the fast path, a page seconds after the object lands,
    at the cost of the object, not of its window so far). The run's health is measured and sent
    once at its end.

    The baseline detectors are left to the scheduled run: reading two weeks of history for every
    object CloudTrail delivers would cost far more than it saves. So is an object whose run
    found the lease held: the next tick's sliding window runs the rules too.
    """
    started = time.perf_counter()
    stages = stages or PipelineStages()
    report = Report(run_id, "objects")
    run_cfg = tickets.resolve(per_object(cfg))  # read once, for every window
    try:
        _objects(objects, lake_root, run_cfg, cfg, settings, budget, run_id, stages, report)
    finally:
        finish(lake_root, cfg, report)
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
        ingested = stages.ingest(uris, lake_root, run_cfg, None, None, budget.check)
    except OutOfTime:
        report.status = "checkpoint"  # the scheduled run ingests what is left
        return
    report.run.ingest = ingested
    todo = touched_windows(ingested.summary.get("new_events"), settings.window_minutes)
    if not todo:
        return  # nothing new (all delivered before): the windows were detected then
    lease = Lease(lake_root)
    if not lease.acquire(run_id, settings.lease_seconds):
        # Ingested; the schedule's next tick detects it (its sliding window runs the rules too).
        report.status = "busy"
        return
    try:
        only = rule_detectors()
        # The object's own event files, while few (else its windows as they stand).
        files = ingested.summary.get("new_files")
        settled = read_watermark(lake_root) if files is not None else None
        for window in todo:
            if not budget.enough_for_window():
                report.status = "checkpoint"
                break
            if files is None:
                detect_and_alert(stages, lake_root, run_cfg, window, only, report)
                continue
            detected = stages.fast(lake_root, run_cfg, window, files, only, settled)
            report.run.detect.append(detected)
            if detected.failed:
                raise RunError(
                    f"window {window[0].isoformat()}: rules failed: {dict(detected.failed)}"
                )
            report.run.alert.append(stages.alert(lake_root, run_cfg, window[0]))
            report.windows.append(f"{window[0].isoformat()}/{window[1].isoformat()}")
    finally:
        lease.release()


def touched_windows(
    span: Mapping[str, str] | None, minutes: int
) -> list[tuple[datetime, datetime]]:
    """The windows holding the events a run added (``span``: the ingest summary's
    ``new_events``, their first and last time): an object delivered late is detected in its
    events' windows, not in the windows of when it arrived."""
    if not span:
        return []
    first = floor_to(datetime.fromisoformat(span["first"]), minutes)
    last = floor_to(datetime.fromisoformat(span["last"]), minutes)
    return windows(first, last + timedelta(minutes=minutes), minutes)


def object_run_id(objects: Sequence[ObjectRef]) -> str:
    h = hashlib.sha256("\n".join(sorted(f"{o.bucket}/{o.key}" for o in objects)).encode())
    return f"obj-{h.hexdigest()[:16]}"


def scheduled_run_id(scheduled: datetime, event_id: str) -> str:
    return f"sched-{scheduled:%Y%m%dT%H%M%SZ}-{hashlib.sha256(event_id.encode()).hexdigest()[:8]}"
