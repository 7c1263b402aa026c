"""Fix verification: did the activity of an incident come back after the fix?

``tenantwatch verify-fix INCIDENT --since T`` runs again the detectors whose findings make the
incident (``IncidentRecord.detectors``) over the scheduled windows (``window_minutes``, as the
scheduled run takes them: ``TENANTWATCH_RUN_WINDOW_MINUTES``, an hour by default, aligned to
the clock) from the window holding ``T`` to the one holding ``--until`` (default now), bounded
by the events the lake holds: a span the lake has no events for proves nothing, so the span
verified is the one recorded. Nothing is written to ``findings/`` (``run_detect(write=False)``):
a verification is a question, not a detection run, and neither pages nor takes the lease.

A recurrence is a finding of those detectors whose actor is one of the incident's actors and
that involves one of its tenants (the actor's or a target), with an event at or after ``T`` and
before the span's end: the same actor back at the same tenants, whatever the window. A finding
that a suppression matches still counts (the activity came back; ``suppressed_by`` says so).

With no recurrence, the fix held over the span: ``close`` records the verdict ``remediated``
(``pipeline.verdicts``) with the span verified in its note. A detector that failed in any
window, or that cannot be built, leaves the question open: no verdict is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.config import Config
from pipeline.errors import InputError, TenantwatchError
from pipeline.lake import Lake
from pipeline.verdicts import IncidentRecord, Verdict


class NotVerified(TenantwatchError):
    """A detector could not run over the span: recurrence can be neither shown nor ruled out."""

    exit_code = 1


@dataclass(frozen=True)
class Recurrence:
    """A finding of the incident's detectors, actors and tenants in the span verified."""

    finding_id: str
    detector: str
    severity: str
    title: str
    actor: str | None
    actor_tenant: str | None
    tenants: tuple[str, ...]
    first_seen: datetime | None
    last_seen: datetime | None
    window_start: datetime
    window_end: datetime
    event_count: int
    suppressed_by: str | None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.__dict__)
        for key in ("first_seen", "last_seen", "window_start", "window_end"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        out["tenants"] = list(self.tenants)
        return out


@dataclass(frozen=True)
class Verification:
    incident_id: str
    detectors: tuple[str, ...]
    actors: tuple[str, ...]
    tenants: tuple[str, ...]
    since: datetime  # the span verified: events from here ...
    until: datetime  # ... to here (exclusive), the lake's events permitting
    window_minutes: int
    windows: int  # scheduled windows detected again
    recurrences: list[Recurrence] = field(default_factory=list)  # first seen first

    @property
    def recurred(self) -> bool:
        return bool(self.recurrences)

    def note(self) -> str:
        """What a ``remediated`` verdict records: the span verified and what was looked for."""
        return (
            f"no recurrence from {_iso(self.since)} to {_iso(self.until)} "
            f"({self.windows} windows of {self.window_minutes} minutes; detectors "
            f"{', '.join(self.detectors)}; actors {', '.join(self.actors) or '-'}; "
            f"tenants {', '.join(self.tenants) or '-'})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "detectors": list(self.detectors),
            "actors": list(self.actors),
            "tenants": list(self.tenants),
            "since": _iso(self.since),
            "until": _iso(self.until),
            "window_minutes": self.window_minutes,
            "windows": self.windows,
            "recurred": self.recurred,
            "recurrences": [r.as_dict() for r in self.recurrences],
        }


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat()


def _utc(ts: datetime) -> datetime:
    """A time given without a zone is UTC, as everywhere in tenantwatch."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def window_minutes(environ: dict[str, str] | None = None) -> int:
    """The scheduled windows' length (``TENANTWATCH_RUN_WINDOW_MINUTES``, checked as the
    scheduled run checks it)."""
    from pipeline.runs.unattended import RunSettings

    return RunSettings.from_environ(dict(os.environ) if environ is None else environ).window_minutes


def verify(
    lake: Lake,
    cfg: Config,
    rec: IncidentRecord,
    since: datetime,
    until: datetime | None = None,
    *,
    minutes: int = 60,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Verification:
    """Detect again, without writing, over the windows of ``minutes`` from the one holding
    ``since`` to the one holding ``until`` (default ``now``, the clock), bounded by the lake's
    events; the findings of ``rec``'s actors and tenants with an event in the span are its
    recurrences. ``NotVerified`` when a detector failed in a window or cannot be built."""
    from pipeline import tickets
    from pipeline.detect import earliest_event, run_detect
    from pipeline.health import newest_event
    from pipeline.runs.unattended import floor_to, windows

    now = now or datetime.now(UTC)
    since = _utc(since)
    end = _utc(until or now)
    first, last = earliest_event(lake), newest_event(lake)
    if first is None or last is None:
        raise InputError(f"lake {lake.root}: no events to verify on")
    start = max(since, first)
    # The newest event is in the span (to the next whole second: events' times are in seconds).
    stop = min(end, last.replace(microsecond=0) + timedelta(seconds=1))
    if stop <= start:
        raise InputError(
            f"lake {lake.root} holds no events from {_iso(since)} to {_iso(end)} (its events: "
            f"{_iso(first)} to {_iso(last)}): nothing to verify"
        )
    step = timedelta(minutes=minutes)
    aligned = floor_to(start, minutes)
    todo = windows(aligned, floor_to(stop - timedelta(microseconds=1), minutes) + step, minutes)
    run_cfg = tickets.resolve(cfg)  # read once, for every window
    found: dict[str, Recurrence] = {}
    failed: dict[str, str] = {}
    for i, (ws, we) in enumerate(todo):
        if progress:
            progress(i, len(todo))
        got = run_detect(lake.root, run_cfg, ws, we, only=rec.detectors, write=False, now=now)
        result = got.summary
        for det_id in rec.detectors:
            if det_id not in result["detectors"] and det_id not in result["failed"]:
                failed.setdefault(det_id, result["unavailable"].get(det_id, "cannot be built"))
        for det_id, why in result["failed"].items():
            failed.setdefault(det_id, f"{why} (window {_iso(ws)})")
        for row in got.findings.to_pylist():
            if _recurs(row, rec, start, stop):
                found[row["finding_id"]] = _recurrence(row)
    if progress:
        progress(len(todo), len(todo))
    if failed:
        said = "; ".join(f"{d}: {why}" for d, why in sorted(failed.items()))
        raise NotVerified(
            f"incident {rec.incident_id}: not verified, a detector did not run: {said}"
        )
    epoch = datetime.min.replace(tzinfo=UTC)
    return Verification(
        incident_id=rec.incident_id,
        detectors=rec.detectors,
        actors=rec.actors,
        tenants=rec.tenants,
        since=start,
        until=stop,
        window_minutes=minutes,
        windows=len(todo),
        recurrences=sorted(
            found.values(), key=lambda r: (r.first_seen or r.window_start or epoch, r.finding_id)
        ),
    )


def _recurs(row: dict[str, Any], rec: IncidentRecord, start: datetime, stop: datetime) -> bool:
    """``row`` names one of ``rec``'s actors and involves one of its tenants, with an event in
    [start, stop)."""
    if rec.actors and row["actor"] not in rec.actors:
        return False
    involved = {row["actor_tenant"], *(row["tenants"] or ())} - {None}
    if rec.tenants and not involved & set(rec.tenants):
        return False
    first = row["first_seen"] or row["window_start"]
    last = row["last_seen"] or row["window_end"]
    return bool(last >= start and first < stop)


def _recurrence(row: dict[str, Any]) -> Recurrence:
    return Recurrence(
        finding_id=row["finding_id"],
        detector=row["detector"],
        severity=row["severity"],
        title=row["title"],
        actor=row["actor"],
        actor_tenant=row["actor_tenant"],
        tenants=tuple(row["tenants"] or ()),
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        event_count=row["event_count"],
        suppressed_by=row["suppressed_by"],
    )


def close(lake: Lake, rec: IncidentRecord, done: Verification, by: str, note: str = "") -> Verdict:
    """Record ``remediated`` on ``rec``, the span verified in the note (after ``note``, what was
    fixed, when given). Refused when the activity recurred."""
    from pipeline import verdicts

    if done.recurred:
        raise InputError(f"incident {rec.incident_id} recurred: not closed as remediated")
    text = f"{note.strip().rstrip('.')}. {done.note()}" if note.strip() else done.note()
    v, _ = verdicts.close(lake, rec, "remediated", text, by)
    return v
