"""The stages as a run calls them, each handing back its typed result
(``pipeline.runs.results``), and ``Stages``: the seam through which the unattended runs reach
them, which a test or a later deployment (AWS Glue) can re-point.

The stages themselves (``pipeline.ingest``, ``pipeline.detect``, ``pipeline.alert``) are imported
on first use: they pull in pyarrow, pandas and scikit-learn, which the Lambda handler must not
load when it is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from pipeline.config import Config
from pipeline.runs.results import AlertResult, DetectResult, IngestResult

Progress = Callable[[int, int], None]


def ingest(
    sources: list[str],
    lake_root: str,
    cfg: Config,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    from pipeline.ingest.run import ingest as run_ingest

    summary = run_ingest(
        sources, lake_root, cfg, since=since, until=until, workers=workers, progress=progress
    )
    return IngestResult.of(summary)


def detect(
    lake_root: str,
    cfg: Config,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    only: tuple[str, ...] | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> DetectResult:
    from pipeline.detect import run_detect

    return DetectResult.of(
        run_detect(lake_root, cfg, since, until, only=only, progress=progress, warn=warn)
    )


def fast(
    lake_root: str,
    cfg: Config,
    window: tuple[datetime, datetime],
    files: Sequence[str],
    only: tuple[str, ...] | None,
    settled: datetime | None,
) -> DetectResult:
    """The rules over the events of ``files`` in ``window`` (an S3 object's own events)."""
    from pipeline.detect import run_fast

    return DetectResult.of(run_fast(lake_root, cfg, window, files, only=only, settled=settled))


def slide(
    lake_root: str, cfg: Config, end: datetime, length: timedelta, settled: datetime | None
) -> DetectResult:
    """The windowed detectors over the sliding window that ends at ``end`` (windows ending by
    ``settled`` have had their own detection)."""
    from pipeline.detect import run_live

    return DetectResult.of(run_live(lake_root, cfg, end, length, settled=settled))


def alert(
    lake_root: str,
    cfg: Config,
    *,
    since: datetime | None = None,
    resend: Sequence[str] = (),
    mark_sent: Sequence[str] = (),
    in_lambda: bool = False,
    progress: Progress | None = None,
    may_publish: Callable[[], bool] | None = None,
) -> AlertResult:
    from pipeline.alert.run import run_alert

    return AlertResult.of(
        run_alert(
            lake_root,
            cfg,
            since=since,
            resend=resend,
            mark_sent=mark_sent,
            in_lambda=in_lambda,
            progress=progress,
            may_publish=may_publish,
        )
    )


class Stages(Protocol):
    """The stages of an unattended run."""

    def ingest(
        self,
        sources: list[str],
        lake_root: str,
        cfg: Config,
        since: datetime | None,
        until: datetime | None,
        progress: Progress,
    ) -> IngestResult: ...

    def detect(
        self,
        lake_root: str,
        cfg: Config,
        since: datetime,
        until: datetime,
        only: tuple[str, ...] | None,
    ) -> DetectResult: ...

    def fast(
        self,
        lake_root: str,
        cfg: Config,
        window: tuple[datetime, datetime],
        files: Sequence[str],
        only: tuple[str, ...] | None,
        settled: datetime | None,
    ) -> DetectResult: ...

    def slide(
        self,
        lake_root: str,
        cfg: Config,
        end: datetime,
        length: timedelta,
        settled: datetime | None,
    ) -> DetectResult: ...

    def alert(self, lake_root: str, cfg: Config, since: datetime | None) -> AlertResult: ...


class PipelineStages:
    """The real stages, as Lambda runs them."""

    def ingest(
        self,
        sources: list[str],
        lake_root: str,
        cfg: Config,
        since: datetime | None,
        until: datetime | None,
        progress: Progress,
    ) -> IngestResult:
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
    ) -> DetectResult:
        return detect(lake_root, cfg, since, until, only=only)

    def fast(
        self,
        lake_root: str,
        cfg: Config,
        window: tuple[datetime, datetime],
        files: Sequence[str],
        only: tuple[str, ...] | None,
        settled: datetime | None,
    ) -> DetectResult:
        return fast(lake_root, cfg, window, files, only, settled)

    def slide(
        self,
        lake_root: str,
        cfg: Config,
        end: datetime,
        length: timedelta,
        settled: datetime | None,
    ) -> DetectResult:
        return slide(lake_root, cfg, end, length, settled)

    def alert(self, lake_root: str, cfg: Config, since: datetime | None) -> AlertResult:
        return alert(lake_root, cfg, since=since, in_lambda=True)
