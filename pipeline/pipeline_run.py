"""``run``: ingest, detect and alert in one go, plus the pipeline's health for the metrics.

The stages still hand off through the lake (DESIGN.md "Stages"); this only calls them in order
and collects what the health metrics need: records read and quarantined (ingest), detectors
that failed (detect), the lag of the newest event in the lake, and the whole run's duration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc

from pipeline import tickets
from pipeline.alert.run import AlertResult, run_alert
from pipeline.config import Config
from pipeline.lake import Lake, read_events


@dataclass(frozen=True)
class RunResult:
    summary: dict[str, Any]  # {"ingest": ..., "detect": ..., "alert": ..., "seconds": ...}
    alert: AlertResult


def newest_event(lake: Lake) -> datetime | None:
    from pipeline.detect import latest_day

    day = latest_day(lake)
    if day is None:
        return None
    times = read_events(lake, since=day, columns=["event_time"])["event_time"]
    newest: datetime | None = pc.max(times).as_py() if len(times) else None
    return newest


def run_all(
    sources: list[str],
    lake_root: str,
    cfg: Config,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    workers: int | None = None,
    in_lambda: bool = False,
    progress: Callable[[str], Callable[[int, int], None]] | None = None,
) -> RunResult:
    """Ingest ``sources`` into the lake, detect over [since, until) (default: the latest day),
    and alert. ``progress(stage)`` returns the progress callback for that stage."""
    from pipeline.detect import run_detect
    from pipeline.ingest.run import ingest

    started = time.perf_counter()
    # Tickets are read before anything is ingested: a file or table that cannot be read stops
    # the run while nothing has happened yet.
    cfg = tickets.resolve(cfg)

    def cb(stage: str) -> Callable[[int, int], None] | None:
        return progress(stage) if progress else None

    ingested = ingest(sources, lake_root, cfg, workers=workers, progress=cb("ingesting"))
    detected = run_detect(lake_root, cfg, since, until, progress=cb("detecting"))
    newest = newest_event(Lake(lake_root))
    # Simulated or replayed logs can lie in the future: a negative lag is reported as 0.
    lag = max(0.0, (datetime.now(UTC) - newest).total_seconds()) if newest else None
    health = {
        "records_in": ingested.get("records_in"),
        "quarantined_total": ingested.get("quarantined_total"),
        "lag_s": lag,
        "detectors_failed": sorted(detected.summary.get("failed") or {}),
        "duration_s": time.perf_counter() - started,  # so far; alert adds its own
    }
    alerted = run_alert(lake_root, cfg, health=health, in_lambda=in_lambda, progress=cb("alerting"))
    summary = {
        "ingest": ingested,
        "detect": detected.summary,
        "alert": alerted.summary,
        "newest_event": newest.isoformat() if newest else None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return RunResult(summary, alerted)
