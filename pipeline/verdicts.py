"""Verdicts: what the people on call decided each incident was, kept in the lake beside it.

``tenantwatch incident close`` writes one verdict (true positive, false positive, benign or
remediated, a note, who and when) as a file of its own under a fresh id: two people closing at
the same moment, on one machine or two, each keep theirs, with no lock and nothing read first.
An incident's latest verdict is the one that counts; the earlier ones stay as its history. With
``--suppress`` the close also writes a suppression made from the incident's entities
(``pipeline.suppressions``) so that ``detect`` marks the same activity as suppressed from then
on, until it expires. ``tenantwatch verify-fix --close`` records ``remediated`` the same way,
once the incident's detectors found no recurrence (``pipeline.verify_fix``).

Incidents are read through ``read_incidents`` alone: whatever shape alerting gives an incident,
this module sees an ``IncidentRecord``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from pipeline import schema
from pipeline.config import Suppression
from pipeline.errors import InputError
from pipeline.lake import FINDINGS, VERDICTS, Lake, verdict_file

_DURATION = re.compile(r"(?P<n>[1-9]\d{0,3})(?P<unit>[hdw])")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


@dataclass(frozen=True)
class IncidentRecord:
    """An incident as verdicts see it: who, from where, against which tenants, when."""

    incident_id: str
    revision: int
    severity: str
    title: str
    status: str
    detectors: tuple[str, ...]
    actors: tuple[str, ...]
    addresses: tuple[str, ...]
    tenants: tuple[str, ...]  # the actors' and the targets'
    first_seen: datetime | None
    last_seen: datetime | None
    finding_count: int
    event_count: int
    snapshot_uri: str | None


@dataclass(frozen=True)
class Verdict:
    """One row of ``schema.VERDICTS``."""

    verdict_id: str
    incident_id: str
    incident_revision: int | None
    detectors: tuple[str, ...]
    verdict: str
    note: str
    closed_by: str
    closed_at: datetime
    suppression_id: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {**self.__dict__, "detectors": list(self.detectors)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Verdict:
        return cls(**{**row, "detectors": tuple(row.get("detectors") or ())})


def _addresses(evidence: str | None) -> list[str]:
    try:
        doc = orjson.loads(evidence or "{}")
    except orjson.JSONDecodeError:
        return []
    pairs = doc.get("source_ips") if isinstance(doc, dict) else None
    return [str(p[0]) for p in pairs or () if p]


def read_incidents(lake: Lake) -> list[IncidentRecord]:
    """Every incident alerting has stored, newest activity first, with the entities of all its
    findings (the lead finding's alone when its findings are no longer in the lake)."""
    from pipeline.alert import store

    incidents = store.load_incidents(lake)
    wanted = {fid for inc in incidents for fid in inc.finding_ids}
    findings: dict[str, dict[str, Any]] = {}
    if wanted:
        table = store.read_folder(lake, FINDINGS, schema.FINDINGS)
        findings = {r["finding_id"]: r for r in table.to_pylist() if r["finding_id"] in wanted}
    out = []
    for inc in incidents:
        found = [findings[f] for f in inc.finding_ids if f in findings]
        actors = {inc.actor} | {f["actor"] for f in found}
        tenants = {inc.actor_tenant, *inc.tenants}
        addresses = set(_addresses(inc.evidence))
        for f in found:
            tenants |= {f["actor_tenant"], *(f["tenants"] or ())}
            addresses |= set(_addresses(f["evidence"]))
        out.append(
            IncidentRecord(
                incident_id=inc.incident_id,
                revision=inc.revision,
                severity=inc.severity,
                title=inc.title,
                status=inc.status,
                detectors=tuple(sorted({inc.detector} | {f["detector"] for f in found})),
                actors=tuple(sorted(a for a in actors if a)),
                addresses=tuple(sorted(addresses)),
                tenants=tuple(sorted(t for t in tenants if t)),
                first_seen=inc.first_seen,
                last_seen=inc.last_seen,
                finding_count=inc.finding_count,
                event_count=inc.event_count,
                snapshot_uri=inc.snapshot_uri,
            )
        )
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(out, key=lambda r: (r.last_seen or epoch, r.incident_id), reverse=True)


def find(records: Sequence[IncidentRecord], wanted: str) -> IncidentRecord:
    """The incident whose id is ``wanted`` or starts with it (as ``incident list`` shortens
    them); ``InputError`` (exit code 2) for none or several."""
    exact = [r for r in records if r.incident_id == wanted]
    hits = exact or [r for r in records if wanted and r.incident_id.startswith(wanted)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise InputError(f"no incident {wanted!r} in this lake (tenantwatch incident list)")
    raise InputError(f"incident id {wanted!r} is ambiguous ({len(hits)} incidents start with it)")


# --- verdicts in the lake ------------------------------------------------------------------------


def verdict_path(v: Verdict) -> str:
    return verdict_file(f"{v.closed_at.astimezone(UTC):%Y-%m-%d}", v.verdict_id)


def read_verdicts(lake: Lake) -> list[Verdict]:
    """Every verdict, oldest first."""
    from pipeline.alert import store

    rows = store.read_folder(lake, VERDICTS, schema.VERDICTS).to_pylist()
    return sorted((Verdict.from_row(r) for r in rows), key=lambda v: (v.closed_at, v.verdict_id))


def latest(verdicts: Iterable[Verdict]) -> dict[str, Verdict]:
    """Incident id -> the verdict that counts (the latest)."""
    out: dict[str, Verdict] = {}
    for v in sorted(verdicts, key=lambda v: (v.closed_at, v.verdict_id)):
        out[v.incident_id] = v
    return out


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h`` or ``2w``; ``ValueError`` otherwise."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise ValueError(f"expected a number of hours, days or weeks such as 30d, got {text!r}")
    return int(m["n"]) * _UNITS[m["unit"]]


def suppression_for(
    rec: IncidentRecord, suppression_id: str, reason: str, owner: str, expires: datetime
) -> Suppression:
    """A suppression matching what this incident's findings name: its actors, addresses and
    tenants exactly, for its detector (any detector when the incident spans several)."""
    from pipeline import suppressions

    detector = rec.detectors[0] if len(rec.detectors) == 1 else "any"
    patterns = {
        "actor": suppressions.exact(rec.actors),
        "address": suppressions.exact(rec.addresses),
        "tenant": suppressions.exact(rec.tenants),
    }
    if not any(patterns.values()):
        raise InputError(
            f"incident {rec.incident_id} names no actor, address or tenant to suppress"
        )
    return Suppression(
        id=suppression_id,
        detector=detector,
        reason=reason,
        owner=owner,
        expires=expires,
        **patterns,
    )


def close(
    lake: Lake,
    rec: IncidentRecord,
    verdict: str,
    note: str,
    by: str,
    *,
    suppress_for: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[Verdict, Suppression | None]:
    """Record ``verdict`` on ``rec`` (and, with ``suppress_for``, a suppression of its
    entities until then). The suppression is written first: a stored verdict that names one
    always has it."""
    from pipeline import suppressions

    if verdict not in schema.VERDICT_KINDS:
        raise InputError(f"verdict {verdict!r}: expected one of {', '.join(schema.VERDICT_KINDS)}")
    if not note.strip():
        raise InputError("--note: expected a non-empty text (why this verdict)")
    if not by.strip():
        raise InputError("--by: expected who gives the verdict")
    now = now or datetime.now(UTC)
    verdict_id = uuid.uuid4().hex
    sup = None
    if suppress_for is not None:
        sup = suppression_for(rec, f"verdict-{verdict_id[:16]}", note, by, now + suppress_for)
        suppressions.write(lake, sup)
    v = Verdict(
        verdict_id=verdict_id,
        incident_id=rec.incident_id,
        incident_revision=rec.revision,
        detectors=rec.detectors,
        verdict=verdict,
        note=note,
        closed_by=by,
        closed_at=now,
        suppression_id=sup.id if sup else None,
    )
    lake.write_table(verdict_path(v), pa.Table.from_pylist([v.as_row()], schema=schema.VERDICTS))
    return v, sup


def precision(
    records: Sequence[IncidentRecord], verdicts: Iterable[Verdict]
) -> list[dict[str, Any]]:
    """Per detector, from each closed incident's latest verdict: how many were closed as each
    kind, and the precision of its pages (true positives, remediated ones among them, over closed
    incidents; a benign one was real but needed nobody). An incident of several detectors counts
    for each."""
    current = latest(verdicts)
    known = {r.incident_id: r for r in records}
    counts: dict[str, dict[str, int]] = {}
    for incident_id, v in current.items():
        rec = known.get(incident_id)
        for det in rec.detectors if rec else v.detectors:
            c = counts.setdefault(det, dict.fromkeys(schema.VERDICT_KINDS, 0))
            c[v.verdict] += 1
    out = []
    for det in sorted(counts):
        c = counts[det]
        closed = sum(c.values())
        out.append(
            {
                "detector": det,
                "closed": closed,
                **c,
                "precision": (c["true_positive"] + c["remediated"]) / closed,
            }
        )
    return out
