"""Automatic containment: the incidents the alert stage opens that a ``[containment] auto`` rule
matches (detector, that severity or worse) get their entries in the containment table before
their pages go out, once per incident and subject (``pipeline.containment`` holds the table, the
entries and their record in the lake). Off unless configured."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pipeline import schema
from pipeline.config import AutoContainment, Config
from pipeline.containment import (
    AUTO_ACTOR,
    TOKEN,
    Action,
    Entry,
    Subject,
    Table,
    containment_id,
    read_actions,
    record_after,
    utcnow,
)
from pipeline.lake import Lake

if TYPE_CHECKING:
    from pipeline.alert.incidents import Incident


@dataclass
class AutoContained:
    """What ``auto_contain`` did, for the alert stage's summary."""

    written: list[str] = field(default_factory=list)  # containment ids
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # a rule's subject not containable

    def as_dict(self) -> dict[str, Any]:
        return {"written": len(self.written), "errors": self.errors, "skipped": self.skipped}


def _actor_subject(inc: Incident) -> Subject | str:
    """The incident's actor as a subject, or why it cannot be one."""
    actor = inc.actor or ""
    if not actor:
        return "the incident names no actor"
    ents = set(inc.entities)
    if f"egress:{actor}" in ents:
        return f"its actor {actor} is a shared egress address"
    if f"address:{actor}" in ents or _is_address(actor):
        return Subject.of("address", actor)
    if TOKEN.fullmatch(actor.lower()):
        return Subject.of("token", actor)
    if f"session:{actor}" in ents:
        return f"its actor {actor} is an AWS session, not an API caller"
    return Subject.of("principal", actor)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _subjects(inc: Incident, which: str) -> tuple[list[Subject], str | None]:
    if which == "tenant":
        return [Subject.of("tenant", t) for t in inc.tenants if t], None
    if which == "actor_tenant":
        return ([Subject.of("tenant", inc.actor_tenant)] if inc.actor_tenant else []), None
    got = _actor_subject(inc)
    return ([got], None) if isinstance(got, Subject) else ([], got)


def _matches(rule: AutoContainment, inc: Incident) -> bool:
    detectors = {inc.detector, *(s.detector for s in inc.signals)}
    if rule.detector != "any" and rule.detector not in detectors:
        return False
    return schema.SEVERITY_RANK[inc.severity] >= schema.SEVERITY_RANK[rule.severity]


def planned(
    cfg: Config, opened: Sequence[Incident], now: datetime
) -> tuple[list[Entry], list[str]]:
    """The entries the rules ask for the incidents just opened (the first matching rule per
    incident and subject), and why any asked-for subject cannot be contained."""
    from pipeline.timeparse import duration

    entries: list[Entry] = []
    skipped: list[str] = []
    for inc in opened:
        taken: set[str] = set()
        for i, rule in enumerate(cfg.containment.auto):
            if not _matches(rule, inc):
                continue
            subjects, why = _subjects(inc, rule.subject)
            if why:
                skipped.append(f"{inc.incident_id}: containment.auto[{i}]: {why}")
            for subject in subjects:
                if subject.key in taken:
                    continue
                taken.add(subject.key)
                reason = (
                    f"automatic: containment.auto[{i}] ({rule.detector}, {rule.severity} or "
                    f"worse): {inc.severity} incident: {inc.title}"
                )
                entries.append(
                    Entry(
                        containment_id=containment_id(inc.incident_id, subject),
                        subject=subject,
                        mode=rule.mode,
                        expires=now + duration(rule.expires),
                        reason=reason[:1000],
                        incident_id=inc.incident_id,
                        created_by=AUTO_ACTOR,
                        created_at=now,
                        origin="auto",
                    )
                )
    return entries, skipped


def auto_contain(
    lake: Lake, cfg: Config, opened: Sequence[Incident], now: datetime | None = None
) -> AutoContained:
    """Contain what ``[containment] auto`` asks for the incidents just opened: each entry once
    (none recorded with its id, none in the table: a conditional write), then recorded. Never
    raises: a failure is one line of ``errors``."""
    out = AutoContained()
    if not cfg.containment.auto or not opened:
        return out
    now = now or utcnow()
    try:
        entries, out.skipped = planned(cfg, opened, now)
        if not entries:
            return out
        done = {a.containment_id for a in read_actions(lake)}
    except Exception as exc:
        out.errors.append(f"containment: {type(exc).__name__}: {exc}"[:300])
        return out
    table = Table(cfg.containment.table, cfg.containment.region)
    for e in entries:
        if e.containment_id in done:
            continue
        try:
            table.put(e, only_new=True)
            action = Action.of("contain", e, e.reason, AUTO_ACTOR, now, "auto", table.name)
            record_after(lake, action, table)
        except Exception as exc:
            msg = f"{e.incident_id}: containment of {e.subject.key}: {exc}"
            out.errors.append(" ".join(msg.split())[:300])
            continue
        out.written.append(e.containment_id)
    return out
