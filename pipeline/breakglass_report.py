"""``tenantwatch breakglass report``: every use of a break-glass role in a span, per tenant.

What a support lead reviews each month, and what a tenant is told about access to its data: per
target tenant, each actor's use of the break-glass role (first and last time, the actions, the
ticket it named with that ticket's approvers and justification) and whether the use was valid or
which rule it broke. The rules are the detector's own (``detectors.rules.Rules.break_glass_use``):
the report and the pages never disagree about a use.

Events are read one day of the lake at a time, in two passes: the day's principals first, then
the rows of the principals a break-glass relationship names. A month of a busy lake is read in
the memory of its busiest day's break-glass rows, not of its events.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipeline.config import BreakGlass, Config, Ticket
from pipeline.errors import InputError
from pipeline.lake import Lake, read_events

# The rules a use may break, as a person reads them (``detectors.rules``' names).
RULE_TEXT = {
    "no_ticket": "no ticket named",
    "unknown_ticket": "ticket unknown to every ticket source",
    "tenant": "tenant not on the ticket",
    "expired": "after the ticket expired",
    "approvals": "too few distinct approvers",
}
COLUMNS = [
    "event_time",
    "source",
    "action",
    "actor_principal",
    "actor_tenant",
    "target_tenant",
    "actor_ticket",
    "outcome",
]
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Use:
    """One actor's use of the break-glass role on one tenant under one ticket, with one
    outcome of the rules (a use that turned invalid at the ticket's expiry is two)."""

    tenant: str
    actor: str
    ticket: str | None  # the id the events named; None: none
    known: bool  # a ticket source has it
    approvers: tuple[str, ...]
    approvals: int  # distinct approvers
    approvals_required: int
    expires: datetime | None
    justification: str
    first: datetime
    last: datetime
    events: int
    actions: dict[str, int]  # busiest first
    outcomes: dict[str, int]
    broken: tuple[str, ...]  # the rules broken; empty: valid

    @property
    def valid(self) -> bool:
        return not self.broken

    def reasons(self) -> list[str]:
        """The rules broken, in words (``after the ticket expired``, ``1 of 2 distinct
        approvals``)."""
        return [
            f"{self.approvals} of {self.approvals_required} distinct approvals"
            if rule == "approvals"
            else RULE_TEXT[rule]
            for rule in self.broken
        ]

    def verdict(self) -> str:
        """``valid``, or ``invalid:`` and the rules broken in words."""
        return "valid" if self.valid else "invalid: " + "; ".join(self.reasons())

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "actor": self.actor,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "events": self.events,
            "actions": self.actions,
            "outcomes": self.outcomes,
            "ticket": self.ticket,
            "ticket_known": self.known,
            "approvers": list(self.approvers),
            "approvals": self.approvals,
            "approvals_required": self.approvals_required,
            "expires": self.expires.isoformat() if self.expires else None,
            "justification": self.justification or None,
            "valid": self.valid,
            "broken": list(self.broken),
        }


@dataclass(frozen=True)
class Report:
    lake: str
    since: datetime
    until: datetime
    tenant: str | None  # the one tenant asked for; None: every tenant
    uses: list[Use] = field(default_factory=list)  # by tenant, then first use

    def by_tenant(self) -> dict[str, list[Use]]:
        out: dict[str, list[Use]] = {}
        for u in self.uses:
            out.setdefault(u.tenant, []).append(u)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "lake": self.lake,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "tenant": self.tenant,
            "uses": len(self.uses),
            "invalid": sum(not u.valid for u in self.uses),
            "tenants": [
                {"tenant": t, "uses": [u.as_dict() for u in us]}
                for t, us in self.by_tenant().items()
            ],
        }


def report(
    lake: Lake, cfg: Config, since: datetime, until: datetime, tenant: str | None = None
) -> Report:
    """Every break-glass use in the lake's events of [since, until), on ``tenant`` alone when
    given. ``cfg``'s tickets are read here when a file or table holds them."""
    from pipeline import tickets

    since, until = _utc(since), _utc(until)
    if until <= since:
        raise InputError(f"empty span: until ({until}) is not after since ({since})")
    cfg = tickets.resolve(cfg)
    rels = [r for r in cfg.relationships if isinstance(r, BreakGlass)]
    out = Report(lake.root, since, until, tenant)
    if not rels:
        return out
    frames = []
    with lake.snapshot():
        for day in lake.event_dates():
            start = datetime.fromisoformat(day).replace(tzinfo=UTC)
            lo, hi = max(start, since), min(start + DAY, until)
            if lo < hi:
                table = _day(lake, rels, lo, hi, tenant)
                if table.num_rows:
                    frames.append(table)
    if frames:
        out.uses.extend(_uses(pa.concat_tables(frames), cfg, tenant))
    return out


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _day(
    lake: Lake, rels: list[BreakGlass], lo: datetime, hi: datetime, tenant: str | None
) -> pa.Table:
    """The rows of [lo, hi) whose principal a break-glass relationship names."""
    import re

    import pyarrow.compute as pc

    tenants = (tenant,) if tenant is not None else None
    names = read_events(lake, lo, hi, columns=["actor_principal"], tenants=tenants)
    patterns = [re.compile(r.principal_pattern) for r in rels]
    values = pc.unique(names["actor_principal"].drop_null()).to_pylist()
    mine = [p for p in values if any(rx.search(p) for rx in patterns)]
    if not mine:
        return pa.schema([]).empty_table()
    where = pc.field("actor_principal").isin(mine) & pc.field("target_tenant").is_valid()
    return read_events(lake, lo, hi, columns=COLUMNS, tenants=tenants, where=where)


def _uses(table: pa.Table, cfg: Config, tenant: str | None) -> list[Use]:
    """The rows' break-glass uses, grouped by tenant, actor, ticket and the rules broken."""
    from detectors.evidence import match, text
    from detectors.rules import SESSION_NAME, Rules, approvals

    w = table.to_pandas()
    target = text(w["target_tenant"])
    session = match(w["actor_principal"], SESSION_NAME, "s")
    use = Rules.of(cfg.relationships).break_glass_use(w, session, target)
    keep = use.used & (target == tenant if tenant is not None else True)
    groups: dict[tuple[str, str, str, tuple[str, ...]], list[int]] = {}
    for i in keep[keep].index:
        named = use.ticket[i]
        ident = named.id if isinstance(named, Ticket) else named if isinstance(named, str) else ""
        key = (str(target[i]), str(w.at[i, "actor_principal"]), ident, tuple(use.broken[i]))
        groups.setdefault(key, []).append(i)
    out = []
    for (t, actor, ident, broken), rows in groups.items():
        named = use.ticket[rows[0]]
        ticket = named if isinstance(named, Ticket) else None
        times = w.loc[rows, "event_time"]
        actions = Counter(str(a) for a in w.loc[rows, "action"].fillna("-"))
        outcomes = Counter(str(o) for o in w.loc[rows, "outcome"].fillna("-"))
        out.append(
            Use(
                tenant=t,
                actor=actor,
                ticket=ident or None,
                known=ticket is not None,
                approvers=ticket.approvers if ticket else (),
                approvals=approvals(ticket) if ticket else 0,
                approvals_required=int(use.required[rows[0]]),
                expires=ticket.expires if ticket else None,
                justification=ticket.justification if ticket else "",
                first=times.min().to_pydatetime(),
                last=times.max().to_pydatetime(),
                events=len(rows),
                actions=dict(actions.most_common()),
                outcomes=dict(outcomes.most_common()),
                broken=broken,
            )
        )
    return sorted(out, key=lambda u: (u.tenant, u.first, u.actor, u.ticket or "", u.broken))
