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

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.alert.incidents import Incident


@dataclass(frozen=True)
class EvidenceQuery:
    since: datetime  # inclusive
    until: datetime  # exclusive
    actors: tuple[str, ...]  # principals and sessions: matched against principal and session
    addresses: tuple[str, ...]  # matched against the source address
    tenants: tuple[str, ...]  # matched against the actor's and the target tenant
    event_ids: tuple[str, ...]  # used only when there is neither an actor nor a tenant

    def arrow_filter(self) -> pc.Expression | None:
        expr: pc.Expression | None = None
        terms = []
        if self.actors:
            a = pa.array(self.actors, pa.string())
            terms += [pc.field("actor_principal").isin(a), pc.field("actor_session").isin(a)]
        if self.addresses:
            terms.append(pc.field("source_ip").isin(pa.array(self.addresses, pa.string())))
        for term in terms:
            expr = term if expr is None else expr | term
        if not self.tenants and not (self.actors or self.addresses):
            return pc.field("event_id").isin(list(self.event_ids))
        return expr

    @property
    def _selective(self) -> bool:
        return bool(self.actors or self.addresses or self.tenants)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since),
            "until": _iso(self.until),
            "actors": list(self.actors),
            "addresses": list(self.addresses),
            "tenants": list(self.tenants),
            "event_ids": list(self.event_ids) if not self._selective else [],
            "actor_matches": ["actor_principal", "actor_session"],
            "address_matches": ["source_ip"],
            "tenant_matches": ["actor_tenant", "target_tenant"],
        }

    def sql(self, table: str) -> str:
        """Athena (Trino) SQL over the lake's ``events`` table; values are quoted literals."""
        where = [
            f"date BETWEEN {_lit(f'{self.since:%Y-%m-%d}')} AND {_lit(f'{self.until:%Y-%m-%d}')}",
            f"event_time >= from_iso8601_timestamp({_lit(_iso(self.since))})",
            f"event_time < from_iso8601_timestamp({_lit(_iso(self.until))})",
        ]
        who = []
        if self.actors:
            a = ", ".join(_lit(x) for x in self.actors)
            who += [f"actor_principal IN ({a})", f"actor_session IN ({a})"]
        if self.addresses:
            who.append(f"source_ip IN ({', '.join(_lit(x) for x in self.addresses)})")
        if who:
            where.append("(" + "\n       OR ".join(who) + ")")
        if self.tenants:
            ts = ", ".join(_lit(t) for t in self.tenants)
            where.append(f"(actor_tenant IN ({ts}) OR target_tenant IN ({ts}))")
        elif not who:
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


def story_actors(inc: Incident) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The principals and sessions, and the addresses, of the whole story (the union over its
    signals); the lead's actor for an incident stored before incidents kept their entities. An
    address on the shared egress list is everyone behind it: shown, never selecting evidence."""
    actors, addresses = set(), set()
    for e in inc.entities:
        kind, _, value = e.partition(":")
        if kind in ("principal", "session") and value:
            actors.add(value)
        elif kind == "address" and value:
            addresses.add(value)
    if not inc.entities and inc.actor:
        actors.add(inc.actor)
        addresses.add(inc.actor)
    return tuple(sorted(actors)), tuple(sorted(addresses))


def evidence_query(inc: Incident, margin: timedelta) -> EvidenceQuery:
    """The union of the story's entities over its whole span, within its tenants."""
    first = inc.first_seen or inc.window_start
    last = inc.last_seen or inc.window_end
    actors, addresses = story_actors(inc)
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
        actors=actors,
        addresses=addresses,
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
