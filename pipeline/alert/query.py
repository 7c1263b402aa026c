"""The query that selects an incident's evidence events: one definition, three renderings.

The snapshot runs it as an Arrow filter over the lake; the manifest records it; the notification
prints it as Athena SQL so that an analyst can reproduce the snapshot from the lake. Keeping them
in one place is what makes "the snapshot holds exactly what this query returns" true.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.compute as pc

from pipeline.alert.incidents import Incident


@dataclass(frozen=True)
class EvidenceQuery:
    since: datetime  # inclusive
    until: datetime  # exclusive
    actor: str | None  # matched against principal, session and source IP
    tenants: tuple[str, ...]  # matched against the actor's and the target tenant
    event_ids: tuple[str, ...]  # used only when there is neither an actor nor a tenant

    def arrow_filter(self) -> pc.Expression | None:
        expr: pc.Expression | None = None
        if self.actor is not None:
            a = self.actor
            expr = (
                (pc.field("actor_principal") == a)
                | (pc.field("actor_session") == a)
                | (pc.field("source_ip") == a)
            )
        if not self.tenants and self.actor is None:
            return pc.field("event_id").isin(list(self.event_ids))
        return expr

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since),
            "until": _iso(self.until),
            "actor": self.actor,
            "tenants": list(self.tenants),
            "event_ids": list(self.event_ids) if not (self.actor or self.tenants) else [],
            "actor_matches": ["actor_principal", "actor_session", "source_ip"],
            "tenant_matches": ["actor_tenant", "target_tenant"],
        }

    def sql(self, table: str) -> str:
        """Athena (Trino) SQL over the lake's ``events`` table; values are quoted literals."""
        where = [
            f"date BETWEEN {_lit(f'{self.since:%Y-%m-%d}')} AND {_lit(f'{self.until:%Y-%m-%d}')}",
            f"event_time >= from_iso8601_timestamp({_lit(_iso(self.since))})",
            f"event_time < from_iso8601_timestamp({_lit(_iso(self.until))})",
        ]
        if self.actor is not None:
            a = _lit(self.actor)
            where.append(f"(actor_principal = {a} OR actor_session = {a} OR source_ip = {a})")
        if self.tenants:
            ts = ", ".join(_lit(t) for t in self.tenants)
            where.append(f"(actor_tenant IN ({ts}) OR target_tenant IN ({ts}))")
        elif self.actor is None:
            where.append(f"event_id IN ({', '.join(_lit(e) for e in self.event_ids)})")
        cols = (
            "event_time, source, action, actor_principal, actor_tenant, target_tenant, "
            "outcome, source_ip, resource, event_id"
        )
        return (
            f"SELECT {cols}\nFROM {table}\nWHERE "
            + "\n  AND ".join(where)
            + "\nORDER BY event_time"
        )


def evidence_query(inc: Incident, margin: timedelta) -> EvidenceQuery:
    first = inc.first_seen or inc.window_start
    last = inc.last_seen or inc.window_end
    tenants = set(inc.tenants)
    if inc.actor_tenant:
        tenants.add(inc.actor_tenant)
    try:
        ids = tuple(str(x) for x in json.loads(inc.evidence).get("event_ids") or ())
    except (ValueError, AttributeError):
        ids = ()
    return EvidenceQuery(
        since=first - margin,
        # +1 µs: ``until`` is exclusive and last seen must be in.
        until=last + margin + timedelta(microseconds=1),
        actor=inc.actor,
        tenants=tuple(sorted(tenants)),
        event_ids=ids,
    )


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _lit(value: str) -> str:
    # A SQL string literal: quotes doubled, and nothing that could end the statement or the
    # line in a copy-paste (control characters are shown escaped).
    from pipeline.alert.sanitize import clean

    return "'" + clean(value, 2000).replace("'", "''") + "'"
