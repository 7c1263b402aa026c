"""cross_tenant_access: an actor of tenant A acted on tenant B, and nothing configured allows it.

Threat
------
The tenant context was lost between authentication and data: a role whose policy lacks the
tenant condition reads another tenant's S3 prefix, a cached authorizer result is reused for
another tenant's path, a token of tenant A is replayed against tenant B's URLs, or support uses
the break-glass role without a ticket.

Signal
------
One row at a time, no history needed. For every event with a target tenant:

- ``cross_tenant``: the actor's tenant differs from the target and no relationship in
  ``[[relationships]]`` (organisation parent -> children, reseller -> clients, consultant ->
  its tenants, matched on the API principal or on the role session name, which may carry a
  prefix such as ``tenant-t0049-ext-consultant-ana``; another account's caller is matched on
  the session its principal id names, ``aws-account:<id>/<session>``) allows the pair. A success
  is critical (data left its tenant); a denied or failed attempt is high.
- ``tenant_conflict``: two trusted sources for one side disagree (``tenant_conflict`` is set by
  ingestion, e.g. session tag says A, role session name says B): high, unless a relationship
  allows the actor on the target (a consultant's token names the client it works for while its
  session is its own tenant's). Ambiguity otherwise fails secure.
- ``unresolved_actor``: a named actor whose tenant cannot be resolved, and which is no service
  role, acted (not merely was denied) on a tenant's resource: low (usually a gap in tenant
  resolution; anonymous requests such as a login page are not reported).
- ``break_glass``: the break-glass role on a tenant's data. Under a valid ticket (known to a
  ticket source, the tenant on the ticket, before its expiry, and at least the relationship's
  ``approvals_required`` distinct approvers, 2 by default): low, recorded and not paged.
  Otherwise high, and the evidence's ``violations`` say which rule each use broke
  (``no_ticket``, ``unknown_ticket``, ``tenant``, ``expired``, ``approvals``) under which ticket,
  with its approvers, expiry and justification. The ticket an event names is ``actor_ticket``
  (resolved at ingest from the relationship's ``ticket_tag`` session tag or its
  ``ticket_pattern``); where that column is null or absent (lakes written before it existed),
  ``ticket_pattern`` over the role session name. The evidence lists each ticket named, with its
  tenants, expiry, approvers and justification.

Service roles (background jobs) may act on every tenant and are never reported. One finding per
(kind, actor, actor tenant) and window, listing every target tenant; its severity is the worst of
its events.

Data needed
-----------
All three sources; ``actor_principal``, ``actor_session``, ``actor_tenant``, ``target_tenant``,
``tenant_conflict``, ``outcome``, ``actor_ticket`` when the lake has it (plus action, address,
user agent, resource for the evidence). Tickets from ``[[relationships]]``, read once per run
(``pipeline.tickets``).

Known false positives
---------------------
- A relationship that exists in the business but not in ``tenantwatch.toml`` (new subsidiary,
  new consultant): add it under ``[[relationships]]``.
- A background job whose role is not matched by a ``service_role`` pattern.
- A tenant-resolution rule that resolves the wrong tenant (e.g. a key layout changed): the
  finding's evidence shows the resources; fix ``[tenancy]``.

Runbook
-------
1. Read the finding: actor, its tenant, the target tenants, the outcome counts and the first and
   last time. ``denied`` only: the control worked; confirm it is not still going on and lower the
   urgency. Any ``success``: treat as a possible data exposure from here on.
2. Check ``[[relationships]]`` and the CRM: is there a parent/child, reseller or consultant
   relationship (or a break-glass ticket) that should have allowed this? If so, add it to the
   configuration, note it on the incident and close it as a false positive. For break-glass,
   the evidence's ``violations`` say which rule was broken, ``tickets`` shows each ticket named
   (tenants, expiry, approvers, justification) and ``tickets_unknown`` the ids no ticket source
   has: ask the approvers (``tenantwatch breakglass report`` lists every use in a span).
3. Pull the evidence events from the lake by the ``event_ids`` in the evidence (``raw`` holds the
   original records): note the resources read, the source IP and the user agent.
4. For an assumed role: find the ``AssumeRole`` that issued the access key (same
   ``actor_session``), who called it, and the session tags. For an API principal: check whether
   ``authorizerLatency`` is ``-`` (a cached authorizer result) and the route's cache key.
5. Contain: ``tenantwatch contain INCIDENT --tenant T --mode read-only --expires 4h --reason ...``
   (or ``--principal``/``--token``/``--address``) for what the SaaS's authorizer enforces; revoke
   the session (IAM "revoke active sessions" on the role, or invalidate the user's tokens), flush
   the API Gateway authorizer cache for the stage, and block the address if it is not the
   customer's.
6. Scope: ``tenantwatch impact INCIDENT`` for whose data was read or written; query the lake for
   the same actor and session over the last 30 days and for other actors on the same target
   tenant; attach the results to the incident.
7. Escalate to the security lead: a confirmed cross-tenant read is a data incident with customer
   notification duties (``tenantwatch impact INCIDENT --notice`` drafts each tenant's notice).
   Keep the forensic snapshot; do not delete logs. After the fix, ``tenantwatch verify-fix``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Self

import numpy as np
import pandas as pd

from detectors.base import SCORED, Detector, DetectorSettings, Partition, Severity
from detectors.evidence import match, positions, severity_max, text
from detectors.rules import BREAK_GLASS_RULES, SESSION_NAME, Rules, approvals
from pipeline.config import Ticket
from pipeline.schema import SEVERITY_RANK


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    min_events: int = 1  # events of one group before it is a finding
    severity_success: Severity = "critical"
    severity_denied: Severity = "high"
    severity_conflict: Severity = "high"
    # Usually a gap in tenant resolution (a session whose tags were never seen), not an attack:
    # recorded, not paged, unless configured otherwise.
    severity_unresolved: Severity = "low"
    severity_break_glass_ticket: Severity = "low"
    severity_break_glass_no_ticket: Severity = "high"


_TITLES = {
    "cross_tenant": "Cross-tenant access",
    "tenant_conflict": "Conflicting tenant context",
    "unresolved_actor": "Tenant data touched by an actor without a tenant",
    "break_glass_ticket": "Break-glass access under an open ticket",
    "break_glass_no_ticket": "Break-glass access without a valid ticket",
}


class CrossTenantAccess(Detector[Settings]):
    id = "cross_tenant_access"
    title = "Cross-tenant access"
    severity = "critical"
    sources = ("cloudtrail", "apigateway", "authorizer")
    columns = (
        "event_id",
        "event_time",
        "source",
        "action",
        "actor_principal",
        "actor_session",
        "actor_tenant",
        "target_tenant",
        "tenant_conflict",
        "resource",
        "outcome",
        "source_ip",
        "user_agent",
        "request_id",
    )
    optional_columns = ("actor_ticket",)
    baseline_columns = ("event_time", "source")
    group_by = ("kind", "actor", "actor_tenant")
    partitions = (Partition(("actor_principal", "actor_session", "source_ip")),)
    """By the actor: a finding's group is (kind, actor, actor tenant), its actor the principal,
    else the session, else the address: the first non-null of the key's columns, so every event
    of a group has one key. Each event is classified alone (relationships and tickets are
    configuration, not events) and a group's title, evidence and severity come from its own
    events."""
    lookback = timedelta(0)  # a rule: no history needed
    dedup_period = timedelta(hours=24)

    def fit(self, baseline: pd.DataFrame) -> Self:
        # Nothing to learn from history: "fitting" reads the relationships into lookups.
        self.rules_ = Rules.of(self.relationships)
        return self

    def _classify(self, w: pd.DataFrame) -> pd.DataFrame:
        """Per event: ``kind`` (None: nothing to report) and ``sev``."""
        s = self.settings
        principal = text(w["actor_principal"])
        actor_t, target = text(w["actor_tenant"]), text(w["target_tenant"])
        has_target = target.notna()
        service = self.rules_.service_role(w["actor_principal"])
        session_name = match(w["actor_principal"], SESSION_NAME, "s")
        allowed = self.rules_.granted(principal, session_name, actor_t, target)
        use = self.rules_.break_glass_use(w, session_name, target)
        bg, ticketed = use.used, use.covered
        quiet = service | bg | allowed
        outcome = text(w["outcome"])
        cross = has_target & actor_t.notna() & (actor_t != target) & ~quiet
        # A declared relationship explains two tenants in one event's context (a consultant's
        # token naming the client it works for, in a session of its own tenant).
        conflict = w["tenant_conflict"].notna() & ~quiet & ~cross
        # Anonymous requests (a login page) have no actor to name; a denied one did nothing.
        unresolved = (
            has_target
            & actor_t.isna()
            & principal.notna()
            & ~quiet
            & (outcome != "denied")
            & ~conflict
        )

        kind = np.select(
            [bg & ticketed, bg, cross, conflict, unresolved],
            [
                "break_glass_ticket",
                "break_glass_no_ticket",
                "cross_tenant",
                "tenant_conflict",
                "unresolved_actor",
            ],
            default="",
        )
        sev = np.select(
            [bg & ticketed, bg, cross & (outcome == "success"), cross, conflict, unresolved],
            [
                s.severity_break_glass_ticket,
                s.severity_break_glass_no_ticket,
                s.severity_success,
                s.severity_denied,
                s.severity_conflict,
                s.severity_unresolved,
            ],
            default="info",
        )
        actor = principal.fillna(text(w["actor_session"])).fillna(text(w["source_ip"]))
        return pd.DataFrame(
            {
                "kind": kind,
                "sev": sev,
                "actor": actor.fillna("unknown"),
                "actor_tenant": actor_t,
                "target": target,
                "ticket": use.ticket,
                "broken": use.broken,
                "required": use.required,
            },
            index=w.index,
        )

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        s = self.settings
        c = self._classify(window)
        c = c[c["kind"] != ""]
        if c.empty:
            return pd.DataFrame(columns=list(SCORED))
        c = c.assign(
            key=c["kind"] + "|" + c["actor"] + "|" + c["actor_tenant"].fillna("-"),
            outcome=text(window.loc[c.index, "outcome"]),
            conflict=text(window.loc[c.index, "tenant_conflict"]),
        )
        out = []
        rows = positions(c, ["key"])
        for key, g in c.groupby("key", sort=True):  # per finding, not per event
            kind = str(g["kind"].iloc[0])
            actor, actor_tenant = g["actor"].iloc[0], g["actor_tenant"].iloc[0]
            tenants = sorted(g["target"].dropna().unique())
            outcomes = g["outcome"].value_counts().to_dict()
            sev = severity_max(g["sev"])
            title = (
                f"{_TITLES[kind]}: {actor} ({actor_tenant or 'no tenant'}) on "
                f"{', '.join(tenants[:5])}{' ...' if len(tenants) > 5 else ''}"
            )
            details = {
                "kind": kind,
                "target_tenants": {t: int(n) for t, n in g["target"].value_counts().items()},
                "conflicts": sorted(g["conflict"].dropna().unique())[:5],
                "succeeded": int(outcomes.get("success", 0)),
                "denied": int(outcomes.get("denied", 0)),
            }
            if kind.startswith("break_glass"):
                details |= _tickets(g["ticket"])
            if kind == "break_glass_no_ticket":
                details["violations"] = _violations(g)
            out.append(
                {
                    "key": key,
                    "score": float(len(g)),
                    "threshold": float(s.min_events),
                    "severity": sev,
                    "actor": actor,
                    "actor_tenant": actor_tenant,
                    "tenants": tenants,
                    "baseline": f"rule: {len(self.relationships)} relationships configured; "
                    "none allows this",
                    "rows": rows[key],
                    "details": details,
                    "title": title,
                }
            )
        out.sort(key=lambda r: (-SEVERITY_RANK[str(r["severity"])], str(r["key"])))
        return pd.DataFrame(out, columns=list(SCORED))


def _tickets(named: pd.Series) -> dict[str, list]:
    """The tickets a group's events named (what approvers to ask), and the ids no ticket source
    has."""
    tickets = {t.id: t for t in named if isinstance(t, Ticket)}
    unknown = sorted({str(t) for t in named if isinstance(t, str)})
    return {
        "tickets": [ticket_evidence(t) for _, t in sorted(tickets.items())],
        "tickets_unknown": unknown,
    }


# A justification is the ticket system's free text: enough of it to read in a page.
JUSTIFICATION_CHARS = 500


def ticket_evidence(t: Ticket) -> dict[str, Any]:
    """A ticket as evidence shows it: its justification only when it has one."""
    out: dict[str, Any] = {
        "id": t.id,
        "tenants": list(t.tenants),
        "expires": t.expires.isoformat(),
        "approvers": list(t.approvers),
    }
    if t.justification:
        out["justification"] = t.justification[:JUSTIFICATION_CHARS]
    return out


def _violations(g: pd.DataFrame) -> list[dict[str, Any]]:
    """Which rule each invalid use broke, per rule and ticket, with the ticket's approvers (and
    how many distinct ones were required), expiry and justification: what the runbook checks."""
    counts: dict[tuple[str, str], int] = {}
    tickets: dict[str, Ticket] = {}
    required: dict[tuple[str, str], int] = {}
    for ticket, broken, need in zip(g["ticket"], g["broken"], g["required"], strict=True):
        if isinstance(ticket, Ticket):
            ident = ticket.id
            tickets[ident] = ticket
        else:
            ident = ticket if isinstance(ticket, str) else ""
        for rule in broken or ():
            counts[(rule, ident)] = counts.get((rule, ident), 0) + 1
            required[(rule, ident)] = int(need)
    out = []
    for (rule, ident), n in sorted(counts.items(), key=lambda kv: (_ORDER[kv[0][0]], kv[0][1])):
        v: dict[str, Any] = {"rule": rule, "ticket": ident or None, "events": n}
        t = tickets.get(ident)
        if t is not None:
            v |= {
                "approvers": list(t.approvers),
                "approvals": approvals(t),
                "approvals_required": required[(rule, ident)],
                "expires": t.expires.isoformat(),
            }
            if t.justification:
                v["justification"] = t.justification[:JUSTIFICATION_CHARS]
        out.append(v)
    return out


_ORDER = {rule: i for i, rule in enumerate(BREAK_GLASS_RULES)}
