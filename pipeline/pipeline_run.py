"""The CLI's runs: ``run`` (ingest, detect and alert in one go) and ``alert``, each under the
lake's lease, each sending the pipeline's health once.

The stages still hand off through the lake (DESIGN.md "Stages"); this calls them in order, holds
the lease (``pipeline.lease``: a CLI run waits up to ``lease_wait_s`` for a run that holds it,
then gives up with ``LeaseBusy``) and measures the run's health (``pipeline.health``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline import tickets
from pipeline.alert.run import AlertResult, run_alert
from pipeline.config import Config
from pipeline.health import RunHealth
from pipeline.lake import Lake
from pipeline.lease import CLI_WAIT_S, cli_owner, hold


@dataclass(frozen=True)
class RunResult:
    summary: dict[str, Any]  # {"ingest": ..., "detect": ..., "alert": ..., "health": ...}
    alert: AlertResult


def send_health(lake_root: str, cfg: Config, health: RunHealth) -> dict[str, Any] | None:
    """The run's health to CloudWatch (``PutMetricData``), when a namespace is configured."""
    if not cfg.alerting.cloudwatch_namespace:
        return None
    from pipeline.alert import metrics

    a = cfg.alerting
    return metrics.put(Lake(lake_root), a.cloudwatch_namespace, health.data(), a.region)


def run_all(
    sources: list[str],
    lake_root: str,
    cfg: Config,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    workers: int | None = None,
    lease_wait_s: float = CLI_WAIT_S,
    progress: Callable[[str], Callable[[int, int], None]] | None = None,
    warn: Callable[[str], None] | None = None,
) -> RunResult:
    """Ingest ``sources`` into the lake, detect over [since, until) (default: the latest day),
    and alert, holding the lake's lease throughout. ``progress(stage)`` returns the progress
    callback for that stage; ``warn`` hears of expired suppressions (``run_detect``)."""
    from pipeline.detect import run_detect
    from pipeline.ingest.run import ingest

    started = datetime.now(UTC)
    # Tickets are read before anything else: a file or table that cannot be read stops the run
    # while nothing has happened yet.
    cfg = tickets.resolve(cfg)

    def cb(stage: str) -> Callable[[int, int], None] | None:
        return progress(stage) if progress else None

    # The whole run, ingest included (as the scheduled Lambda run): a second run started
    # meanwhile waits, then finds the inputs ingested and the notifications sent.
    with hold(lake_root, cli_owner(), wait_s=lease_wait_s) as lease:
        ingested = ingest(sources, lake_root, cfg, workers=workers, progress=cb("ingesting"))
        detected = run_detect(lake_root, cfg, since, until, progress=cb("detecting"), warn=warn)
        alerted = run_alert(lake_root, cfg, progress=cb("alerting"), may_publish=lease.ok)
    health = RunHealth.measure(lake_root, started, ingested, [detected.summary])
    summary: dict[str, Any] = {
        "ingest": ingested,
        "detect": detected.summary,
        "alert": alerted.summary,
        "health": health.as_dict(),
    }
    sent = send_health(lake_root, cfg, health)
    if sent is not None:
        summary["health_metrics"] = sent
    summary["seconds"] = round(health.duration_s, 3)
    return RunResult(summary, alerted)


def alert_all(
    lake_root: str,
    cfg: Config,
    *,
    since: datetime | None = None,
    resend: Sequence[str] = (),
    mark_sent: Sequence[str] = (),
    lease_wait_s: float = CLI_WAIT_S,
    progress: Callable[[int, int], None] | None = None,
) -> AlertResult:
    """``tenantwatch alert``: the alert stage under the lake's lease, then the run's health."""
    started = datetime.now(UTC)
    with hold(lake_root, cli_owner(), wait_s=lease_wait_s) as lease:
        result = run_alert(
            lake_root,
            cfg,
            since=since,
            resend=resend,
            mark_sent=mark_sent,
            progress=progress,
            may_publish=lease.ok,
        )
    health = RunHealth.measure(lake_root, started)
    result.summary["health"] = health.as_dict()
    sent = send_health(lake_root, cfg, health)
    if sent is not None:
        result.summary["health_metrics"] = sent
    return result
