"""``tenantwatch tenancy explain``: what the configured strategies make of each record of an input.

The input is read exactly as ``ingest`` reads it (any format, the same decoding, the same
lookups), but nothing is written and nothing of a lake is consulted: sessions are learnt from the
input itself, so a call whose ``AssumeRole`` is not in it shows as "session unknown". For every
record: the actor and target tenant ingestion would give it and which strategy gave each, then,
per configured strategy, its tenant or why it gave none (``tenancy.diagnose``). Records that
ingest would quarantine are listed with their reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow as pa

from pipeline import config as c
from pipeline.ingest import prepare, redact, tenancy
from pipeline.ingest.decode import decode_batch
from pipeline.ingest.lookups import load_lookups
from pipeline.ingest.reading import Reading
from pipeline.ingest.run import make_batches
from pipeline.ingest.sources import list_inputs


@dataclass(frozen=True)
class Verdict:
    label: str  # "actor[0] field cloudtrail:userIdentity.accountId -> lookup accounts"
    status: str  # tenancy.STATUSES
    why: str  # the tenant and the value it came from, or why there is none


@dataclass(frozen=True)
class Explained:
    """One record: what it is, what it resolved to, and every strategy's verdict."""

    source: str
    event_id: str
    event_time: str
    action: str | None
    actor_principal: str | None
    input_uri: str
    actor_tenant: str | None
    actor_tenant_source: str | None
    target_tenant: str | None
    target_tenant_source: str | None
    tenant_conflict: str | None
    actor_ticket: str | None
    verdicts: tuple[Verdict, ...]

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "verdicts"}
        out["strategies"] = [v.__dict__ for v in self.verdicts]
        return out


_RESOLVED = [
    "actor_tenant",
    "actor_tenant_source",
    "target_tenant",
    "target_tenant_source",
    "tenant_conflict",
    "actor_ticket",
]


@dataclass
class Explanation:
    records: list[Explained] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"records": [r.as_dict() for r in self.records], "quarantined": self.quarantined}

    def lines(self) -> Iterator[str]:
        """As people read it: a record a paragraph, then the records ingest would quarantine.
        Text from logs is shown as text (control characters escaped, never obeyed)."""
        for r in self.records:
            yield _printable(
                f"{r.source} {r.event_time} {r.action or '-'} {r.event_id} ({r.input_uri})"
            )
            for side, tenant, by in (
                ("actor", r.actor_tenant, r.actor_tenant_source),
                ("target", r.target_tenant, r.target_tenant_source),
            ):
                yield _printable(f"  {side}: " + (f"{tenant} by {by}" if tenant else "unresolved"))
            if r.tenant_conflict:
                yield _printable(f"  conflict: {r.tenant_conflict}")
            if r.actor_ticket:
                yield _printable(f"  ticket: {r.actor_ticket}")
            for v in r.verdicts:
                yield _printable(f"    {v.label}: {v.why}")
        for q in self.quarantined:
            many = f" ({q['records']} records)" if q["records"] > 1 else ""
            yield _printable(f"quarantined: {q['input_uri']} #{q['position']}: {q['reason']}{many}")
        if not self.records and not self.quarantined:
            yield "no records"


def _printable(text: str) -> str:
    from pipeline.alert.sanitize import clean

    return clean(text, 4000)


def explain(sources: list[str], cfg: c.Config, limit: int | None = None) -> Explanation:
    """Every record of ``sources`` (at most ``limit``), explained."""
    reading = Reading.of(cfg, load_lookups(cfg))
    refs, _ = list_inputs(sources)
    sessions = tenancy.SessionMap(timedelta(hours=cfg.tenancy.session_ttl_hours))
    out = Explanation()
    decoded = [decode_batch(b, cfg.ingest, reading) for b in make_batches(refs, 1 << 62)]
    for d in decoded:  # every session first: an input is one sample, not a stream
        sessions.learn(d.sessions)
        out.quarantined += [
            {
                "input_uri": q.input_uri,
                "position": q.position,
                "reason": q.reason,
                "records": q.records,
            }
            for q in d.quarantine
        ]
    rows = pa.concat_tables([d.rows for d in decoded]) if decoded else None
    if rows is None or not rows.num_rows:
        return out
    if limit is not None:
        rows = rows.slice(0, limit)
    planned = prepare.plan_rows(rows, reading)
    resolved, _ = tenancy.finish(planned, reading, sessions)
    found = tenancy.diagnose(rows, reading, sessions)
    shown = rows.select(["source", "event_id", "event_time", "action", "actor_principal"])
    outcome = resolved.select(_RESOLVED).to_pylist()
    uris = rows["input_uri"].to_pylist()
    for i, row in enumerate(shown.to_pylist()):
        verdicts = tuple(
            Verdict(d.label, str(d.status[i].as_py()), _scrub(d.why(i))) for d in found
        )
        out.records.append(
            Explained(
                source=row["source"],
                event_id=row["event_id"],
                event_time=row["event_time"].isoformat(),
                action=row["action"],
                actor_principal=row["actor_principal"],
                input_uri=str(uris[i]),
                verdicts=verdicts,
                **outcome[i],
            )
        )
    return out


def _scrub(text: str) -> str:
    """Values read from logs, shown: never a secret (the hints were read before redaction)."""
    return redact.scrub_text(text)
