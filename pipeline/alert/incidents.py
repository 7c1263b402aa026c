"""Findings -> incidents: pure grouping, no I/O (the lake is read and written by ``store``).

Findings that share a ``dedup_key`` within a dedup period make one incident. The period starts
at the window of the first finding of the key and lasts the detector's ``dedup_period`` (or the
configured default); a later finding inside it *updates* the incident (count, last seen, worst
severity, status ``updated``) instead of paging again; the first finding after it opens a new
incident.

Incident ids are ``sha256(dedup_key, first window start)``: the same findings give the same ids
on any machine, and re-running over findings already absorbed (their ids are kept) changes
nothing, which is what makes ``alert`` safe to re-run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pipeline.schema import SEVERITIES

RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Incident:
    """One row of ``schema.INCIDENTS``."""

    incident_id: str
    dedup_key: str
    detector: str
    severity: str
    status: str
    revision: int
    title: str
    actor: str | None
    actor_tenant: str | None
    tenants: tuple[str, ...]
    period_start: datetime
    period_end: datetime
    window_start: datetime
    window_end: datetime
    first_seen: datetime | None
    last_seen: datetime | None
    finding_count: int
    event_count: int
    finding_ids: tuple[str, ...]
    score: float
    threshold: float
    baseline: str | None
    evidence: str
    snapshot_uri: str | None = None
    snapshot_sha256: str | None = None

    def as_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["tenants"] = list(self.tenants)
        row["finding_ids"] = list(self.finding_ids)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Incident:
        data: dict[str, Any] = {f.name: row.get(f.name) for f in dataclasses.fields(cls)}
        data["tenants"] = tuple(row.get("tenants") or ())
        data["finding_ids"] = tuple(row.get("finding_ids") or ())
        return cls(**data)


@dataclass(frozen=True)
class Grouped:
    changed: list[Incident]  # new and updated incidents, new ones first, each once
    absorbed: list[dict[str, Any]]  # the findings that were not yet part of an incident


def incident_id(dedup_key: str, first_window: datetime) -> str:
    h = hashlib.sha256(f"{dedup_key}\x1f{first_window.isoformat()}".encode())
    return h.hexdigest()[:32]


def _lead_rank(f: Mapping[str, Any]) -> tuple[int, float, datetime]:
    # The finding that speaks for the incident: the worst, then the highest score, then latest.
    return (RANK[f["severity"]], float(f["score"]), f["window_start"])


def _new(f: Mapping[str, Any], period: timedelta) -> Incident:
    start = f["window_start"]
    return Incident(
        incident_id=incident_id(f["dedup_key"], start),
        dedup_key=f["dedup_key"],
        detector=f["detector"],
        severity=f["severity"],
        status="new",
        revision=1,
        title=f["title"],
        actor=f.get("actor"),
        actor_tenant=f.get("actor_tenant"),
        tenants=tuple(sorted(set(f.get("tenants") or ()))),
        period_start=start,
        period_end=start + period,
        window_start=start,
        window_end=f["window_end"],
        first_seen=f.get("first_seen") or start,
        last_seen=f.get("last_seen") or f["window_end"],
        finding_count=1,
        event_count=int(f["event_count"]),
        finding_ids=(f["finding_id"],),
        score=float(f["score"]),
        threshold=float(f["threshold"]),
        baseline=f.get("baseline"),
        evidence=f["evidence"],
    )


def _absorb(inc: Incident, f: Mapping[str, Any], bump: bool) -> Incident:
    lead = f if _lead_rank(f) > (RANK[inc.severity], inc.score, inc.window_start) else None
    first = f.get("first_seen") or f["window_start"]
    last = f.get("last_seen") or f["window_end"]
    worst = max(inc.severity, f["severity"], key=RANK.__getitem__)
    changes: dict[str, Any] = {
        "severity": worst,
        "tenants": tuple(sorted(set(inc.tenants) | set(f.get("tenants") or ()))),
        "window_start": min(inc.window_start, f["window_start"]),
        "window_end": max(inc.window_end, f["window_end"]),
        "first_seen": min(inc.first_seen, first) if inc.first_seen else first,
        "last_seen": max(inc.last_seen, last) if inc.last_seen else last,
        "finding_count": inc.finding_count + 1,
        "event_count": inc.event_count + int(f["event_count"]),
        "finding_ids": (*inc.finding_ids, f["finding_id"]),
    }
    if lead is not None:
        changes.update(
            title=lead["title"],
            score=float(lead["score"]),
            threshold=float(lead["threshold"]),
            baseline=lead.get("baseline"),
            evidence=lead["evidence"],
        )
    if bump:  # first change to a stored incident in this run: one new revision per run
        changes.update(status="updated", revision=inc.revision + 1)
    return dataclasses.replace(inc, **changes)


def group(
    findings: Iterable[Mapping[str, Any]],
    existing: Iterable[Incident],
    periods: Mapping[str, timedelta],
    default_period: timedelta,
) -> Grouped:
    """Fold ``findings`` into the ``existing`` incidents (their latest revisions).

    ``periods`` maps a detector id to its dedup period. Findings are taken in window order, so
    the result does not depend on the order the lake listed them in.
    """
    by_key: dict[str, list[Incident]] = {}
    seen: set[str] = set()
    for inc in existing:
        by_key.setdefault(inc.dedup_key, []).append(inc)
        seen.update(inc.finding_ids)
    stored = {inc.incident_id for incs in by_key.values() for inc in incs}
    touched: dict[str, Incident] = {}  # incident id -> its state after this run
    absorbed: list[dict[str, Any]] = []
    order = sorted(findings, key=lambda f: (f["window_start"], f["dedup_key"], f["finding_id"]))
    for f in order:
        if f["finding_id"] in seen:
            continue
        seen.add(f["finding_id"])
        absorbed.append(dict(f))
        candidates = by_key.setdefault(f["dedup_key"], [])
        ws = f["window_start"]
        open_ = [i for i in candidates if i.period_start <= ws < i.period_end]
        if open_:
            cur = max(open_, key=lambda i: i.period_start)
            bump = cur.incident_id in stored and cur.incident_id not in touched
            nxt = _absorb(cur, f, bump)
            candidates[candidates.index(cur)] = nxt
        else:
            nxt = _new(f, periods.get(f["detector"], default_period))
            candidates.append(nxt)
        touched[nxt.incident_id] = nxt
    changed = sorted(
        touched.values(),
        key=lambda i: (i.status != "new", -RANK[i.severity], i.period_start, i.incident_id),
    )
    return Grouped(changed, absorbed)
