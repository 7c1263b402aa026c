"""What each stage of a run hands back, typed: ``IngestResult``, ``DetectResult``,
``AlertResult``, and ``RunResult``, which holds a run's stage results and its health.

Each stage result has typed fields for what the runs, the pipeline's health and the CLI read, and
keeps the stage's whole JSON-able summary: ``as_dict()`` gives it back, with the keys the CLI
prints and the Lambda functions return. A result made without a summary (a stand-in stage in a
test) gives its typed fields instead.

Importing this module is cheap (the Lambda handler imports it): only the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pipeline.alert.run
    import pipeline.detect
    from pipeline.alert.incidents import Incident
    from pipeline.health import RunHealth


def _int(value: Any) -> int:
    return int(value or 0)


@dataclass(frozen=True)
class IngestResult:
    """``pipeline.ingest.run.ingest``'s summary, typed where it is read."""

    records_in: int = 0
    ingested: int = 0
    quarantined_total: int = 0
    files_skipped: int = 0
    decoder: str = ""
    lake: str = ""
    summary: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> IngestResult:
        return cls(
            records_in=_int(summary.get("records_in")),
            ingested=_int(summary.get("ingested")),
            quarantined_total=_int(summary.get("quarantined_total")),
            files_skipped=_int(summary.get("files_skipped")),
            decoder=str(summary.get("decoder") or ""),
            lake=str(summary.get("lake") or ""),
            summary=summary,
        )

    def as_dict(self) -> dict[str, Any]:
        if self.summary:
            return dict(self.summary)
        return {
            "records_in": self.records_in,
            "ingested": self.ingested,
            "quarantined_total": self.quarantined_total,
            "files_skipped": self.files_skipped,
            "decoder": self.decoder,
            "lake": self.lake,
        }


@dataclass(frozen=True)
class DetectResult:
    """One window's detection (``pipeline.detect.run_detect``), typed where it is read; the
    findings themselves are in the lake."""

    window_start: str | None = None  # ISO 8601
    window_end: str | None = None
    findings: int = 0
    suppressed: int = 0
    failed: Mapping[str, str] = field(default_factory=dict)  # detector -> why it failed
    summary: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, detected: pipeline.detect.Detected) -> DetectResult:
        return cls.of_summary(detected.summary)

    @classmethod
    def of_summary(cls, summary: Mapping[str, Any]) -> DetectResult:
        return cls(
            window_start=summary.get("window_start"),
            window_end=summary.get("window_end"),
            findings=_int(summary.get("findings")),
            suppressed=_int(summary.get("suppressed")),
            failed=dict(summary.get("failed") or {}),
            summary=summary,
        )

    def as_dict(self) -> dict[str, Any]:
        if self.summary:
            return dict(self.summary)
        return {
            "window_start": self.window_start,
            "window_end": self.window_end,
            "findings": self.findings,
            "suppressed": self.suppressed,
            "failed": dict(self.failed),
        }


@dataclass(frozen=True)
class AlertResult:
    """One alert stage (``pipeline.alert.run.run_alert``), typed where it is read, with the
    notifications it sent and the incidents it changed."""

    incidents_new: int = 0
    incidents_updated: int = 0
    notifications_sent: int = 0
    notifications_failed: int = 0
    notifications_in_doubt: int = 0  # every notification in doubt now, not only this run's
    # Automatic containment entries that could not be written (``[containment] auto``).
    containment_errors: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list, repr=False)  # outbox rows
    incidents: list[Incident] = field(default_factory=list, repr=False)
    summary: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, alerted: pipeline.alert.run.Alerted) -> AlertResult:
        s = alerted.summary
        notes = s.get("notifications") or {}
        return cls(
            incidents_new=_int(s.get("incidents_new")),
            incidents_updated=_int(s.get("incidents_updated")),
            notifications_sent=_int(notes.get("sent")),
            notifications_failed=_int(notes.get("failed")),
            notifications_in_doubt=_int(notes.get("in_doubt")),
            containment_errors=list((s.get("containment") or {}).get("errors") or ()),
            sent=alerted.sent,
            incidents=alerted.incidents,
            summary=s,
        )

    def as_dict(self) -> dict[str, Any]:
        if self.summary:
            return dict(self.summary)
        return {
            "incidents_new": self.incidents_new,
            "incidents_updated": self.incidents_updated,
            "notifications": {
                "sent": self.notifications_sent,
                "failed": self.notifications_failed,
                "in_doubt": self.notifications_in_doubt,
            },
        }


@dataclass
class RunResult:
    """What one run did, stage by stage: a CLI ``run`` detects and alerts one window, an
    unattended run one per window, ``tenantwatch alert`` alerts alone. ``health`` is measured
    once, at the run's end (``pipeline.health.RunHealth.measure``)."""

    started_at: datetime  # wall clock, for the run's duration
    ingest: IngestResult | None = None  # None: the run ingested nothing
    detect: list[DetectResult] = field(default_factory=list)
    alert: list[AlertResult] = field(default_factory=list)
    health: RunHealth | None = None
    health_error: str | None = None  # why the health could not be measured
    health_sent: dict[str, Any] | None = None  # what sending it to CloudWatch did (CLI)

    @property
    def did_anything(self) -> bool:
        return self.ingest is not None or bool(self.detect)

    def health_dict(self) -> dict[str, Any]:
        if self.health_error is not None:
            return {"error": self.health_error}
        return self.health.as_dict() if self.health is not None else {}

    @property
    def seconds(self) -> float:
        return self.health.duration_s if self.health is not None else 0.0

    def as_dict(self) -> dict[str, Any]:
        """``tenantwatch run``'s summary: the one window's stages, the health, the seconds."""
        (detected,) = self.detect
        (alerted,) = self.alert
        out: dict[str, Any] = {
            "ingest": self.ingest.as_dict() if self.ingest is not None else {},
            "detect": detected.as_dict(),
            "alert": alerted.as_dict(),
            "health": self.health_dict(),
        }
        if self.health_sent is not None:
            out["health_metrics"] = self.health_sent
        out["seconds"] = round(self.seconds, 3)
        return out

    def alert_dict(self) -> dict[str, Any]:
        """``tenantwatch alert``'s summary: the alert stage's, then the health."""
        (alerted,) = self.alert
        out = {**alerted.as_dict(), "health": self.health_dict()}
        if self.health_sent is not None:
            out["health_metrics"] = self.health_sent
        return out

    def findings(self) -> int:
        """Findings of the windows detected without a failure."""
        return sum(d.findings for d in self.detect if not d.failed)

    def alert_counts(self) -> dict[str, int]:
        """The alert stages' counts summed over the windows (the notifications in doubt: the
        last stage's, which reports every one still in doubt); empty when nothing alerted."""
        if not self.alert:
            return {}
        return {
            "incidents_new": sum(a.incidents_new for a in self.alert),
            "incidents_updated": sum(a.incidents_updated for a in self.alert),
            "notifications_sent": sum(a.notifications_sent for a in self.alert),
            "notifications_failed": sum(a.notifications_failed for a in self.alert),
            "notifications_in_doubt": self.alert[-1].notifications_in_doubt,
        }
