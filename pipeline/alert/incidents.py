"""Findings -> incidents (attack stories): pure grouping, no I/O (``store`` reads and writes).

One attacker's activity shows up in several detectors and under several names: a user trying
tenant ids one after another is a cross-tenant denial, a tenant switch and a failure spike; a
cached authorizer decision is an API principal in the access log and a role session in
CloudTrail. An incident gathers them into one story, so that one attack pages once.

A finding joins an incident when

- it has the dedup key of one of the incident's signals and falls in that signal's dedup period
  (the detector's ``dedup_period``, or the configured default), or
- it shares an entity with the incident (``entities.linked``: principal, session, token,
  address, request or event id, an API principal and the role session acting for it) and lies
  within ``gap`` of the incident's first-to-last-seen span.

Tenants never join findings, nor do addresses on the shared egress list. The incident keeps a
timeline of its **signals** (one per dedup key: detector, kind, severity, first and last seen,
counts), the union of its entities, tenants and links, and its worst severity; the worst finding
leads (title, score, evidence). A later run that adds findings to a stored incident bumps its
revision once (status ``updated``). Two stored incidents are never merged (each has paged on its
own); incidents opened in the same run that a finding bridges are merged before anything pages.

Incident ids are ``sha256(dedup_key, window start)`` of the incident's first finding: the same
findings give the same ids on any machine, and re-running over findings already absorbed (their
ids are kept) changes nothing, which is what makes ``alert`` safe to re-run.

A window can be detected more than once as its events arrive (the S3-object function detects it
on its first object's events, the schedule once it is complete, a sliding window before that),
and each time its finding for a group has the same id. An incident keeps each finding's event
count, so a finding seen again with more events grows the incident it is in (events, time span,
entities, severity: an update, or an escalation if worse) instead of being skipped as known or
counted twice; seen again with the same count or fewer, it changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pipeline.alert.entities import Egress, linked, profile, sort_key
from pipeline.schema import SEVERITY_RANK as RANK

DEFAULT_GAP = timedelta(hours=1)
NO_EGRESS = Egress()


@dataclass(frozen=True)
class Signal:
    """One detector's view of the story: the findings of one dedup key."""

    detector: str
    kind: str  # the group the detector flagged: "cross_tenant", "actor", "principal", ...
    dedup_key: str
    severity: str
    title: str
    first_seen: datetime
    last_seen: datetime
    finding_count: int
    event_count: int
    period_start: datetime  # findings of this key in [start, end) belong here whatever the gap
    period_end: datetime

    def as_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("first_seen", "last_seen", "period_start", "period_end"):
            d[k] = d[k].isoformat()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Signal:
        data = dict(d)
        for k in ("first_seen", "last_seen", "period_start", "period_end"):
            data[k] = datetime.fromisoformat(data[k])
        return cls(**data)


@dataclass(frozen=True)
class Incident:
    """One row of ``schema.INCIDENTS``."""

    incident_id: str
    dedup_key: str  # the first finding's (with its window, the id)
    detector: str  # the lead finding's
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
    signals: tuple[Signal, ...] = ()  # in order of first seen
    entities: tuple[str, ...] = ()  # "principal:...", "session:...", "address:...", "egress:..."
    links: tuple[str, ...] = ()  # what later findings are joined by (entities.profile)
    snapshot_revision: int | None = None  # the revision the snapshot covers
    paged_severity: str | None = None  # the worst severity it has paged with (None: not yet)
    # The event count of each of ``finding_ids`` when absorbed, in the same order (empty when
    # stored before it was kept): a finding seen again with more events grows the incident.
    finding_events: tuple[int, ...] = ()

    def finding_counts(self) -> dict[str, int | None]:
        """Each finding id -> its event count when absorbed (None where not kept)."""
        if len(self.finding_events) != len(self.finding_ids):
            return dict.fromkeys(self.finding_ids)
        return dict(zip(self.finding_ids, self.finding_events, strict=True))

    def as_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["tenants"] = list(self.tenants)
        row["finding_ids"] = list(self.finding_ids)
        row["finding_events"] = list(self.finding_events)
        row["signals"] = json.dumps([s.as_json() for s in self.signals], sort_keys=True)
        row["entities"] = list(self.entities)
        row["links"] = list(self.links)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Incident:
        data: dict[str, Any] = {f.name: row.get(f.name) for f in dataclasses.fields(cls)}
        data["tenants"] = tuple(row.get("tenants") or ())
        data["finding_ids"] = tuple(row.get("finding_ids") or ())
        data["finding_events"] = tuple(row.get("finding_events") or ())
        data["entities"] = tuple(row.get("entities") or ())
        data["links"] = tuple(row.get("links") or ())
        data["signals"] = tuple(Signal.from_json(s) for s in json.loads(row.get("signals") or "[]"))
        inc = cls(**data)
        if inc.signals:
            return inc
        # Written before incidents told stories: one signal, joined by its lead's entities.
        p = profile(row, Egress())
        return dataclasses.replace(
            inc,
            signals=(_signal_of_row(inc),),
            entities=tuple(sorted(p.entities, key=sort_key)),
            links=tuple(sorted(p.links)),
        )


def _signal_of_row(inc: Incident) -> Signal:
    return Signal(
        detector=inc.detector,
        kind=kind_of(inc.dedup_key),
        dedup_key=inc.dedup_key,
        severity=inc.severity,
        title=inc.title,
        first_seen=inc.first_seen or inc.window_start,
        last_seen=inc.last_seen or inc.window_end,
        finding_count=inc.finding_count,
        event_count=inc.event_count,
        period_start=inc.period_start,
        period_end=inc.period_end,
    )


@dataclass(frozen=True)
class Grouped:
    changed: list[Incident]  # new and updated incidents, new ones first, each once
    absorbed: list[dict[str, Any]]  # the findings that were not yet part of an incident


def incident_id(dedup_key: str, first_window: datetime) -> str:
    h = hashlib.sha256(f"{dedup_key}\x1f{first_window.isoformat()}".encode())
    return h.hexdigest()[:32]


def kind_of(dedup_key: str) -> str:
    """``detector:kind|...`` -> ``kind`` (the group a detector flagged)."""
    rest = dedup_key.split(":", 1)[1] if ":" in dedup_key else dedup_key
    return rest.split("|", 1)[0]


def worst(a: str, b: str) -> str:
    return max(a, b, key=RANK.__getitem__)


def _lead_rank(f: Mapping[str, Any]) -> tuple[int, float, datetime]:
    # The finding that speaks for the incident: the worst, then the highest score, then latest.
    return (RANK[f["severity"]], float(f["score"]), f["window_start"])


def _seen(f: Mapping[str, Any]) -> tuple[datetime, datetime]:
    return (f.get("first_seen") or f["window_start"], f.get("last_seen") or f["window_end"])


def _new(f: Mapping[str, Any], period: timedelta, egress: Egress) -> Incident:
    start = f["window_start"]
    first, last = _seen(f)
    p = profile(f, egress)
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
        first_seen=first,
        last_seen=last,
        finding_count=1,
        event_count=int(f["event_count"]),
        finding_ids=(f["finding_id"],),
        finding_events=(int(f["event_count"]),),
        score=float(f["score"]),
        threshold=float(f["threshold"]),
        baseline=f.get("baseline"),
        evidence=f["evidence"],
        signals=(_new_signal(f, period),),
        entities=tuple(sorted(p.entities, key=sort_key)),
        links=tuple(sorted(p.links)),
    )


def _new_signal(f: Mapping[str, Any], period: timedelta) -> Signal:
    first, last = _seen(f)
    return Signal(
        detector=f["detector"],
        kind=kind_of(f["dedup_key"]),
        dedup_key=f["dedup_key"],
        severity=f["severity"],
        title=f["title"],
        first_seen=first,
        last_seen=last,
        finding_count=1,
        event_count=int(f["event_count"]),
        period_start=f["window_start"],
        period_end=f["window_start"] + period,
    )


def _signals(
    signals: tuple[Signal, ...], f: Mapping[str, Any], period: timedelta
) -> tuple[Signal, ...]:
    first, last = _seen(f)
    out = list(signals)
    for i, s in enumerate(out):
        if s.dedup_key == f["dedup_key"]:
            out[i] = dataclasses.replace(
                s,
                severity=worst(s.severity, f["severity"]),
                title=f["title"] if RANK[f["severity"]] > RANK[s.severity] else s.title,
                first_seen=min(s.first_seen, first),
                last_seen=max(s.last_seen, last),
                finding_count=s.finding_count + 1,
                event_count=s.event_count + int(f["event_count"]),
            )
            break
    else:
        out.append(_new_signal(f, period))
    return tuple(sorted(out, key=lambda s: (s.first_seen, s.dedup_key)))


def _led_by(f: Mapping[str, Any]) -> dict[str, Any]:
    """What an incident takes from the finding that leads it."""
    return {
        "detector": f["detector"],
        "title": f["title"],
        "actor": f.get("actor"),
        "actor_tenant": f.get("actor_tenant"),
        "score": float(f["score"]),
        "threshold": float(f["threshold"]),
        "baseline": f.get("baseline"),
        "evidence": f["evidence"],
    }


def _absorb(
    inc: Incident, f: Mapping[str, Any], bump: bool, period: timedelta, egress: Egress
) -> Incident:
    lead = f if _lead_rank(f) > (RANK[inc.severity], inc.score, inc.window_start) else None
    first, last = _seen(f)
    p = profile(f, egress)
    changes: dict[str, Any] = {
        "severity": worst(inc.severity, f["severity"]),
        "tenants": tuple(sorted(set(inc.tenants) | set(f.get("tenants") or ()))),
        "window_start": min(inc.window_start, f["window_start"]),
        "window_end": max(inc.window_end, f["window_end"]),
        "first_seen": min(inc.first_seen, first) if inc.first_seen else first,
        "last_seen": max(inc.last_seen, last) if inc.last_seen else last,
        "finding_count": inc.finding_count + 1,
        "event_count": inc.event_count + int(f["event_count"]),
        "finding_ids": (*inc.finding_ids, f["finding_id"]),
        "finding_events": (
            (*inc.finding_events, int(f["event_count"]))
            if len(inc.finding_events) == len(inc.finding_ids)
            else ()  # counts not kept before: unknown for every finding
        ),
        "signals": _signals(inc.signals, f, period),
        "entities": tuple(sorted(set(inc.entities) | p.entities, key=sort_key)),
        "links": tuple(sorted(set(inc.links) | p.links)),
    }
    if lead is not None:
        changes.update(_led_by(lead))
    if bump:  # first change to a stored incident in this run: one new revision per run
        changes.update(status="updated", revision=inc.revision + 1)
    return dataclasses.replace(inc, **changes)


def _grow(inc: Incident, f: Mapping[str, Any], bump: bool, egress: Egress) -> Incident:
    """``inc`` with its finding ``f`` seen again with more events (its window detected again,
    more complete: the fast path saw the first object, the schedule the whole hour): the events
    it adds, its time span, entities and severity; the same number of findings."""
    counts = inc.finding_counts()
    delta = int(f["event_count"]) - (counts[f["finding_id"]] or 0)
    first, last = _seen(f)
    p = profile(f, egress)
    signals = []
    for s in inc.signals:
        if s.dedup_key == f["dedup_key"]:
            s = dataclasses.replace(
                s,
                severity=worst(s.severity, f["severity"]),
                title=f["title"] if RANK[f["severity"]] > RANK[s.severity] else s.title,
                first_seen=min(s.first_seen, first),
                last_seen=max(s.last_seen, last),
                event_count=s.event_count + delta,
            )
        signals.append(s)
    counts[f["finding_id"]] = int(f["event_count"])
    changes: dict[str, Any] = {
        "severity": worst(inc.severity, f["severity"]),
        "tenants": tuple(sorted(set(inc.tenants) | set(f.get("tenants") or ()))),
        "first_seen": min(inc.first_seen, first) if inc.first_seen else first,
        "last_seen": max(inc.last_seen, last) if inc.last_seen else last,
        "event_count": inc.event_count + delta,
        "finding_events": tuple(int(c or 0) for c in counts.values()),
        "signals": tuple(sorted(signals, key=lambda s: (s.first_seen, s.dedup_key))),
        "entities": tuple(sorted(set(inc.entities) | p.entities, key=sort_key)),
        "links": tuple(sorted(set(inc.links) | p.links)),
    }
    # The lead's evidence is refreshed when the grown finding leads (or now outranks it).
    if _lead_rank(f) >= (RANK[inc.severity], inc.score, inc.window_start):
        changes.update(_led_by(f))
    if bump:
        changes.update(status="updated", revision=inc.revision + 1)
    return dataclasses.replace(inc, **changes)


def _joins(inc: Incident, f: Mapping[str, Any], links: frozenset[str], gap: timedelta) -> bool:
    ws = f["window_start"]
    if any(
        s.dedup_key == f["dedup_key"] and s.period_start <= ws < s.period_end for s in inc.signals
    ):
        return True
    first, last = _seen(f)
    lo = inc.first_seen or inc.window_start
    hi = inc.last_seen or inc.window_end
    return first <= hi + gap and last >= lo - gap and linked(inc.links, links)


def group(
    findings: Iterable[Mapping[str, Any]],
    existing: Iterable[Incident],
    periods: Mapping[str, timedelta],
    default_period: timedelta,
    gap: timedelta = DEFAULT_GAP,
    egress: Egress = NO_EGRESS,
) -> Grouped:
    """Fold ``findings`` into the ``existing`` incidents (their latest revisions).

    ``periods`` maps a detector id to its dedup period; ``gap`` is how far apart in time two
    findings sharing an entity may be; ``egress`` the addresses that join nothing. Findings are
    taken in window order, so the result does not depend on the order the lake listed them in.
    """
    work: dict[str, Incident] = {}
    seen: dict[str, int | None] = {}  # finding id -> its event count when absorbed
    owner: dict[str, str] = {}  # finding id -> the incident holding it
    for inc in existing:
        work[inc.incident_id] = inc
        seen.update(inc.finding_counts())
        owner.update(dict.fromkeys(inc.finding_ids, inc.incident_id))
    stored = set(work)
    members: dict[str, list[Mapping[str, Any]]] = {}  # incidents opened in this run: findings
    touched: set[str] = set()
    absorbed: list[dict[str, Any]] = []

    def period(f: Mapping[str, Any]) -> timedelta:
        return periods.get(f["detector"], default_period)

    def add(inc: Incident, f: Mapping[str, Any]) -> Incident:
        bump = inc.incident_id in stored and inc.incident_id not in touched
        return _absorb(inc, f, bump, period(f), egress)

    order = sorted(findings, key=lambda f: (f["window_start"], f["dedup_key"], f["finding_id"]))
    for f in order:
        fid = f["finding_id"]
        if fid in seen:
            before = seen[fid]
            if before is None or int(f["event_count"]) <= before:
                continue  # absorbed already, as it is now (or its count was not kept)
            # Seen again with more events: the incident holding it grows; not a new finding.
            seen[fid] = int(f["event_count"])
            holder = work[owner[fid]]
            bump = holder.incident_id in stored and holder.incident_id not in touched
            work[holder.incident_id] = _grow(holder, f, bump, egress)
            touched.add(holder.incident_id)
            continue
        seen[fid] = int(f["event_count"])
        absorbed.append(dict(f))
        links = profile(f, egress).links
        hits = [i for i in work.values() if _joins(i, f, links, gap)]
        if not hits:
            nxt = _new(f, period(f), egress)
            members[nxt.incident_id] = [f]
            owner[fid] = nxt.incident_id
        else:
            # A stored incident first (it may have paged), then the earliest.
            hits.sort(key=lambda i: (i.incident_id not in stored, i.period_start, i.incident_id))
            nxt = add(hits[0], f)
            owner[fid] = nxt.incident_id
            touched.add(nxt.incident_id)
            if nxt.incident_id in members:
                members[nxt.incident_id].append(f)
            for other in hits[1:]:
                if other.incident_id in stored:
                    continue  # each has paged on its own: not merged after the fact
                for g in members.pop(other.incident_id):
                    nxt = add(nxt, g)
                    owner[g["finding_id"]] = nxt.incident_id
                    if nxt.incident_id in members:
                        members[nxt.incident_id].append(g)
                del work[other.incident_id]
                touched.discard(other.incident_id)
        work[nxt.incident_id] = nxt
        touched.add(nxt.incident_id)
    changed = sorted(
        (work[i] for i in touched),
        key=lambda i: (i.status != "new", -RANK[i.severity], i.period_start, i.incident_id),
    )
    return Grouped(changed, absorbed)
