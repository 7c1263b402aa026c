"""The CLI's runs: ``run`` (ingest, detect and alert in one go) and ``alert``, each under the
lake's lease, each measuring and sending the pipeline's health once.

The stages still hand off through the lake; this calls them in order, holds the lease
(``pipeline.lease``: a CLI run waits up to ``lease_wait_s`` for a run that holds it, then gives
up with ``LeaseBusy``) and measures the run's health (``pipeline.health``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pipeline import tickets
from pipeline.config import Config
from pipeline.lease import CLI_WAIT_S, cli_owner, hold
from pipeline.runs import stages
from pipeline.runs.results import RunResult


def _finish(lake_root: str, cfg: Config, result: RunResult) -> RunResult:
    """The run's health, measured once at its end and sent to CloudWatch (PutMetricData)."""
    from pipeline import health

    result.health = health.RunHealth.measure(lake_root, result, relationships=cfg.relationships)
    result.health_sent = health.send(lake_root, cfg, result.health, in_lambda=False)
    return result


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
    result = RunResult(started_at=datetime.now(UTC))
    # Tickets are read before anything else: a file or table that cannot be read stops the run
    # while nothing has happened yet.
    cfg = tickets.resolve(cfg)

    def cb(stage: str) -> Callable[[int, int], None] | None:
        return progress(stage) if progress else None

    # The whole run, ingest included (as the scheduled Lambda run): a second run started
    # meanwhile waits, then finds the inputs ingested and the notifications sent.
    with hold(lake_root, cli_owner(), wait_s=lease_wait_s) as lease:
        result.ingest = stages.ingest(
            sources, lake_root, cfg, workers=workers, progress=cb("ingesting")
        )
        result.detect.append(
            stages.detect(lake_root, cfg, since, until, progress=cb("detecting"), warn=warn)
        )
        result.alert.append(
            stages.alert(lake_root, cfg, progress=cb("alerting"), may_publish=lease.ok)
        )
    return _finish(lake_root, cfg, result)


def alert_all(
    lake_root: str,
    cfg: Config,
    *,
    since: datetime | None = None,
    resend: Sequence[str] = (),
    mark_sent: Sequence[str] = (),
    lease_wait_s: float = CLI_WAIT_S,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """``tenantwatch alert``: the alert stage under the lake's lease, then the run's health."""
    result = RunResult(started_at=datetime.now(UTC))
    with hold(lake_root, cli_owner(), wait_s=lease_wait_s) as lease:
        result.alert.append(
            stages.alert(
                lake_root,
                cfg,
                since=since,
                resend=resend,
                mark_sent=mark_sent,
                progress=progress,
                may_publish=lease.ok,
            )
        )
    return _finish(lake_root, cfg, result)
