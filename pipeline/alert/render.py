"""What an on-call engineer reads, and what a machine parses: pure functions of an incident.

``message(...)`` returns one notification: a subject (< 100 printable ASCII characters, one line),
a text for people (email, chat: what happened, who, which tenants, counts, UTC times, top actions
and addresses, why it was flagged against which baseline, the numbered runbook, where the
evidence is and its hash, and the commands that reproduce it), an OCSF Detection Finding (class
2004) for machines, and SNS message attributes for subscription filter policies.

Every value that came from a log goes through ``sanitize.clean`` before it is placed in any of
them. SNS refuses messages over 256 KB (message, subject and attributes together), so when the
evidence makes the message too large it is cut, level by level, with a note pointing at the
snapshot that holds all of it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.alert.incidents import Incident
from pipeline.alert.query import evidence_query
from pipeline.alert.sanitize import ascii_line, clean, deep_clean

# SNS: 256 KiB for message + subject + attributes. We stay a few KB under it, for the SQS
# envelope that wraps the message and for a margin against our own arithmetic.
MAX_MESSAGE_BYTES = 250_000
SUBJECT_MAX = 99
MAX_TENANT_ATTRIBUTE = 50  # tenant ids in the tenant_id attribute (it counts against the limit)
OCSF_VERSION = "1.3.0"
PRODUCT = {"name": "tenantwatch", "vendor_name": "tenantwatch", "version": "0.1.0"}
SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
# How much of the evidence survives at each level: (longest string, longest list).
LEVELS: tuple[tuple[int, int | None], ...] = ((1000, None), (300, 20), (120, 5), (60, 0))
# Evidence shown under its own heading, or (ids) only in the snapshot and the OCSF body.
STANDARD_KEYS = (
    "top_actions",
    "source_ips",
    "user_agents",
    "outcomes",
    "sources",
    "event_ids",
    "request_ids",
)
# Protocols that get the machine body; the rest (email, sms, ...) fall back to "default".
# Subscribers that read machines' JSON get the OCSF body; email and chat read the text
# (``default``). SNS picks a message per protocol from ``MessageStructure=json``.
MACHINE_PROTOCOLS = ("sqs", "lambda", "http", "https", "email-json", "firehose")
# The OCSF profiles the body uses: ``cloud`` (the ``cloud`` object) and ``host`` (``actor``).
PROFILES = ("cloud", "host")


@dataclass(frozen=True)
class Context:
    """What the text needs beyond the incident: all of it ours, none of it from logs."""

    runbook: str
    lake_root: str
    athena_table: str
    margin: timedelta


@dataclass(frozen=True)
class Message:
    notification_id: str
    kind: str  # new | escalation | update | digest
    subject: str
    text: str
    body: Any  # an OCSF event (dict), or a list of them for a digest
    envelope: str  # the SNS MessageStructure=json message
    attributes: dict[str, dict[str, str]]  # SNS MessageAttributes
    size_bytes: int
    truncated: bool


# --- the pieces --------------------------------------------------------------------------------


def _t(ts: datetime | None) -> str:
    return "-" if ts is None else ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ms(ts: datetime | None) -> int | None:
    return None if ts is None else int(ts.timestamp() * 1000)


def _span(a: datetime | None, b: datetime | None) -> str:
    if a is None or b is None:
        return ""
    s = int((b - a).total_seconds())
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s / 3600:.1f} h"


def _evidence(inc: Incident) -> dict[str, Any]:
    try:
        ev = json.loads(inc.evidence)
    except ValueError:
        return {"unparsed": inc.evidence}
    return ev if isinstance(ev, dict) else {"value": ev}


def _counted(rows: Any, limit: int) -> list[str]:
    out = []
    for item in (rows or [])[:limit]:
        if isinstance(item, list | tuple) and len(item) == 2:
            out.append(f"  {clean(item[1], 12):>7}  {clean(item[0], 200)}")
        else:
            out.append(f"  {clean(item, 200)}")
    return out


def subject(inc: Incident, kind: str) -> str:
    label = {"update": "Updated: ", "escalation": "Escalated: "}.get(kind, "")
    more = len(inc.signals) - 1
    tail = f" (+{more} signal{'s' if more != 1 else ''})" if more > 0 else ""
    # The tail is kept whole: a title is cut before it is.
    title = ascii_line(f"[{inc.severity.upper()}] {label}{inc.title}", SUBJECT_MAX - len(tail))
    return title + tail


def attributes(
    severity: str, detector: str, tenants: Sequence[str], **ids: str
) -> dict[str, dict[str, str]]:
    attrs = {
        "severity": {"DataType": "String", "StringValue": severity},
        "detector": {"DataType": "String", "StringValue": ascii_line(detector, 64)},
    }
    shown = [ascii_line(t, 64) for t in tenants[:MAX_TENANT_ATTRIBUTE]]
    shown = [t for t in shown if t]
    if shown:  # SNS rejects empty attribute values
        attrs["tenant_id"] = {"DataType": "String.Array", "StringValue": json.dumps(shown)}
    for name, value in ids.items():
        attrs[name] = {"DataType": "String", "StringValue": value}
    return attrs


def affected_tenants(inc: Incident) -> list[str]:
    """Target tenants first, then the actor's: both are affected by a cross-tenant access."""
    out = list(inc.tenants)
    if inc.actor_tenant and inc.actor_tenant not in out:
        out.append(inc.actor_tenant)
    return out


def _events(inc: Incident, findings: str) -> str:
    if len(inc.signals) <= 1:
        return f"{inc.event_count:,} in {findings}"
    # Signals count the same events in their own ways (a denial is a cross-tenant attempt and
    # a failure): their sum is not a number of requests.
    largest = max(x.event_count for x in inc.signals)
    return (
        f"{largest:,} in the largest of {len(inc.signals)} signals"
        f" ({inc.event_count:,} counted in all; signals overlap)"
    )


def _timeline(inc: Incident, max_items: int | None) -> list[str]:
    """The story's signals in the order they began: what each detector saw, when, how much."""
    shown = inc.signals if max_items is None else inc.signals[: max(max_items, 3)]
    lines = ["", f"SIGNALS (in order; {len(inc.signals)} in this incident)"]
    for i, x in enumerate(shown, 1):
        span = _span(x.first_seen, x.last_seen)
        lines.append(
            f"  {i}. {x.first_seen.astimezone(UTC):%H:%M:%S}-{x.last_seen.astimezone(UTC):%H:%M:%S}"
            f" UTC  {x.severity.upper():<8} {x.detector} / {clean(x.kind, 40)}"
            f"  {x.event_count:,} events, {x.finding_count} finding"
            + ("s" if x.finding_count != 1 else "")
            + (f", {span}" if span else "")
        )
        lines.append(f"       {clean(x.title, 200)}")
    if len(shown) < len(inc.signals):
        lines.append(f"  ... and {len(inc.signals) - len(shown)} more (in the OCSF body)")
    return lines


ENTITY_LABELS = {
    "principal": "Principal",
    "session": "Session/token",
    "address": "Address",
    "egress": "Shared egress",
}


def _entities(inc: Incident, max_items: int | None) -> list[str]:
    """Who the story is about: every principal, session and address its signals name."""
    if not inc.entities:
        return []
    cap = 20 if max_items is None else max(max_items, 3)
    lines = ["", "ENTITIES"]
    for e in inc.entities[:cap]:
        kind, _, value = e.partition(":")
        note = "  (shared: never joins findings)" if kind == "egress" else ""
        lines.append(f"  {ENTITY_LABELS.get(kind, kind) + ':':<15} {clean(value, 300)}{note}")
    if len(inc.entities) > cap:
        lines.append(f"  ... and {len(inc.entities) - cap} more (in the OCSF body)")
    return lines


def text(
    inc: Incident, kind: str, ctx: Context, level: int = 0, previous: str | None = None
) -> str:
    max_str, max_items = LEVELS[level]
    ev = _evidence(inc)
    outcomes = ev.get("outcomes") or {}
    outcome_text = ", ".join(f"{clean(k, 40)} {clean(v, 12)}" for k, v in outcomes.items())
    findings = f"{inc.finding_count} finding" + ("s" if inc.finding_count != 1 else "")
    tenants = [clean(t, 64) for t in inc.tenants]
    shown_tenants = ", ".join(tenants[:20]) + (
        f", … (+{len(tenants) - 20})" if len(tenants) > 20 else ""
    )
    state = {
        "update": f"updated, revision {inc.revision}",
        "escalation": f"ESCALATED from {previous or '-'} to {inc.severity}, "
        f"revision {inc.revision}",
    }.get(kind, "new")
    n = len(inc.signals)
    lines = [
        f"{inc.severity.upper()}: {clean(inc.title, 300)}",
        f"Incident {inc.incident_id} ({state}) - {n} signal{'s' if n != 1 else ''}"
        f" - severity {inc.severity}",
    ]
    if kind == "escalation":
        worse = [x for x in inc.signals if x.severity == inc.severity]
        lines.append(
            f"  Severity rose from {previous or '-'} to {inc.severity} with "
            + ", ".join(f"{x.detector} ({x.kind})" for x in worse[-3:])
            + ". This is the same attack as the earlier page, not a new one."
        )
    lines += [
        "",
        "WHAT HAPPENED",
        f"  Actor:          {clean(inc.actor, 300)}",
        f"  Actor tenant:   {clean(inc.actor_tenant, 64)}",
        f"  Tenants:        {shown_tenants or '-'}  ({len(tenants)})",
        f"  Events:         {_events(inc, findings)}"
        + (f"; worst signal: {outcome_text}" if outcome_text and n > 1 else "")
        + (f" ({outcome_text})" if outcome_text and n <= 1 else ""),
        f"  First seen:     {_t(inc.first_seen)}",
        f"  Last seen:      {_t(inc.last_seen)}"
        + (f"  ({_span(inc.first_seen, inc.last_seen)})" if inc.first_seen else ""),
    ]
    lines += _timeline(inc, max_items)
    lines += _entities(inc, max_items)
    limit = 5 if max_items is None else min(5, max_items)
    for title, key in (
        ("TOP ACTIONS", "top_actions"),
        ("SOURCE IPS", "source_ips"),
        ("USER AGENTS", "user_agents"),
    ):
        rows = _counted(ev.get(key), limit)
        if rows:
            lines += ["", title, *rows]
    lines += [
        "",
        "WHY IT WAS FLAGGED",
        f"  Score {inc.score:g} >= threshold {inc.threshold:g} ({inc.detector}, the worst signal;"
        " every signal is in the snapshot).",
        f"  Baseline: {clean(inc.baseline, 500)}",
    ]
    details = {k: v for k, v in ev.items() if k not in STANDARD_KEYS and v not in (None, [], {})}
    if details and level < len(LEVELS) - 1:
        for k, v in sorted(details.items()):
            shown = json.dumps(deep_clean(v, max_str, max_items), ensure_ascii=False)
            lines.append(f"  {clean(k, 60)}: {clean(shown, max_str)}")
    if level > 0:
        lines.append("  (evidence shortened to fit the message; all of it is in the snapshot)")
    lines += ["", "WHAT TO DO"]
    runbook = ctx.runbook.strip() or "1. Open the snapshot and review the evidence events."
    lines += [f"  {line}" if line.strip() else "" for line in runbook.splitlines()]
    others = sorted({x.detector for x in inc.signals} - {inc.detector})
    if others:
        lines.append(
            f"  (The runbook of {inc.detector}, the worst signal; those of "
            + ", ".join(others)
            + " are in their detectors' documentation.)"
        )
    lines += ["", "EVIDENCE"]
    if inc.snapshot_uri:
        lines += [
            f"  Snapshot: {inc.snapshot_uri}",
            f"  SHA-256:  {inc.snapshot_sha256}  (of manifest.json, which holds every file's hash)",
            f"  Verify:   tenantwatch snapshot verify {shlex.quote(inc.snapshot_uri)}"
            f" --sha256 {inc.snapshot_sha256}",
        ]
    else:
        lines.append("  No snapshot was written for this incident (see the alert run's summary).")
    q = evidence_query(inc, ctx.margin)
    lines += [
        "",
        "REPRODUCE",
        f"  tenantwatch detect --lake {shlex.quote(ctx.lake_root)}"
        f" --since {inc.window_start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        f" --until {inc.window_end.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} "
        + " ".join(
            f"--detector {d}" for d in sorted({x.detector for x in inc.signals} or {inc.detector})
        ),
        "  Athena (the snapshot's query):",
        *[f"    {line}" for line in q.sql(ctx.athena_table).splitlines()],
    ]
    return "\n".join(lines) + "\n"


def ocsf(
    inc: Incident, kind: str, ctx: Context, notification_id: str, level: int = 0
) -> dict[str, Any]:
    """An OCSF Detection Finding (class_uid 2004); tenantwatch's own fields under ``unmapped``."""
    max_str, max_items = LEVELS[level]
    ev = _evidence(inc)
    activity = 1 if kind == "new" else 2
    cap = 100 if max_items is None else max(max_items, 3)
    ids = [clean(e, 100) for e in (ev.get("event_ids") or [])]
    if max_items is not None:
        ids = ids[:max_items]
    observables: list[dict[str, Any]] = []
    for ip, _ in (ev.get("source_ips") or [])[: 5 if max_items is None else min(5, max_items)]:
        observables.append(
            {"name": "source_ip", "type_id": 2, "type": "IP Address", "value": clean(ip, 64)}
        )
    if inc.actor:
        observables.append(
            {"name": "actor", "type_id": 4, "type": "User Name", "value": clean(inc.actor, 300)}
        )
    for e in inc.entities[:cap]:
        k, _, value = e.partition(":")
        if k in ("address", "egress"):
            obs = {"name": f"entity.{k}", "type_id": 2, "type": "IP Address"}
        else:
            obs = {"name": f"entity.{k}", "type_id": 4, "type": "User Name"}
        observables.append({**obs, "value": clean(value, 300)})
    body: dict[str, Any] = {
        "activity_id": activity,
        "activity_name": "Create" if activity == 1 else "Update",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200400 + activity,
        "type_name": "Detection Finding: " + ("Create" if activity == 1 else "Update"),
        "severity_id": SEVERITY_ID[inc.severity],
        "severity": inc.severity.capitalize() if inc.severity != "info" else "Informational",
        "status_id": 1,
        "status": "New",
        "time": _ms(inc.last_seen or inc.window_end),
        "start_time": _ms(inc.first_seen),
        "end_time": _ms(inc.last_seen),
        "count": inc.event_count,
        "message": clean(inc.title, 300),
        "metadata": {
            "version": OCSF_VERSION,
            "product": PRODUCT,
            "profiles": list(PROFILES),
            "uid": notification_id,
            "correlation_uid": inc.incident_id,
        },
        "cloud": {"provider": "AWS"},
        "finding_info": {
            "uid": inc.incident_id,
            "title": clean(inc.title, 300),
            "types": sorted({x.detector for x in inc.signals} | {inc.detector}),
            "first_seen_time": _ms(inc.first_seen),
            "last_seen_time": _ms(inc.last_seen),
            "created_time": _ms(inc.period_start),
            "analytic": {"uid": inc.detector, "name": inc.detector, "type_id": 1, "type": "Rule"},
            "related_events": [{"uid": e} for e in ids],
        },
        "actor": {"user": {"uid": clean(inc.actor, 300), "name": clean(inc.actor, 300)}}
        if inc.actor
        else None,
        "resources": [{"uid": clean(t, 64), "type": "Tenant"} for t in affected_tenants(inc)[:100]],
        "observables": observables,
        "evidences": [
            {"data": deep_clean(ev, max_str, max_items) if level < len(LEVELS) - 1 else {}}
        ],
        "remediation": {"desc": ctx.runbook.strip()},
        "unmapped": {
            "tenantwatch": {
                "dedup_key": clean(inc.dedup_key, 300),
                "kind": kind,
                "status": inc.status,
                "signals": [
                    {
                        "detector": x.detector,
                        "kind": clean(x.kind, 40),
                        "severity": x.severity,
                        "title": clean(x.title, max_str),
                        "first_seen_time": _ms(x.first_seen),
                        "last_seen_time": _ms(x.last_seen),
                        "finding_count": x.finding_count,
                        "event_count": x.event_count,
                    }
                    for x in inc.signals[:cap]
                ],
                "entities": [clean(e, 300) for e in inc.entities[:cap]],
                "revision": inc.revision,
                "actor_tenant": clean(inc.actor_tenant, 64) if inc.actor_tenant else None,
                # Cut like the other lists when the message must shrink: every tenant is in
                # the snapshot, and their number here.
                "tenants": [clean(t, 64) for t in inc.tenants[: None if level == 0 else cap]],
                "tenant_count": len(inc.tenants),
                "finding_count": inc.finding_count,
                "score": inc.score,
                "threshold": inc.threshold,
                "baseline": clean(inc.baseline, 500),
                "snapshot": {"uri": inc.snapshot_uri, "sha256": inc.snapshot_sha256},
                # At the last levels only in the text and the snapshot (the body goes to six
                # kinds of subscriber, each its own copy within SNS's 256 KB).
                "athena_sql": evidence_query(inc, ctx.margin).sql(ctx.athena_table)
                if level < len(LEVELS) - 2
                else None,
                "evidence_truncated": level > 0,
            }
        },
    }
    if body["actor"] is None:
        del body["actor"]
    target = tenant_uid(inc)
    if target is not None:
        body["metadata"]["tenant_uid"] = clean(target, 64)
    return body


def tenant_uid(inc: Incident) -> str | None:
    """The tenant whose data the incident is about (OCSF ``metadata.tenant_uid``): its target
    tenant, the first when there are several (all are in ``resources``); the actor's own tenant
    when nothing else was touched; None when no tenant is known."""
    tenants = affected_tenants(inc)
    return tenants[0] if tenants else None


# --- assembling a message that fits -----------------------------------------------------------


def envelope(text_: str, body: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    machine = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    msg = {"default": text_, **{p: machine for p in MACHINE_PROTOCOLS}}
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))


def size_of(subject_: str, envelope_: str, attrs: Mapping[str, Mapping[str, str]]) -> int:
    """Bytes SNS counts against 256 KB: message, subject, attribute names, types and values."""
    n = len(envelope_.encode()) + len(subject_.encode())
    for name, a in attrs.items():
        n += len(name.encode()) + len(a["DataType"].encode()) + len(a["StringValue"].encode())
    return n


def message(
    inc: Incident, kind: str, ctx: Context, notification_id: str, previous: str | None = None
) -> Message:
    """The notification for ``inc``, evidence cut as far as needed to fit SNS's limit;
    ``previous``: the worst severity paged before (for an escalation)."""
    subj = subject(inc, kind)
    attrs = attributes(
        inc.severity,
        inc.detector,
        affected_tenants(inc),
        incident_id=inc.incident_id,
        notification_id=notification_id,
        kind=kind,
    )
    for level in range(len(LEVELS)):
        txt = text(inc, kind, ctx, level, previous)
        body = ocsf(inc, kind, ctx, notification_id, level)
        env = envelope(txt, body)
        size = size_of(subj, env, attrs)
        if size <= MAX_MESSAGE_BYTES:
            return Message(notification_id, kind, subj, txt, body, env, attrs, size, level > 0)
    # Unreachable with sane inputs: the last level keeps only capped strings. Fail loudly rather
    # than let SNS reject it at 3 a.m.
    raise ValueError(f"incident {inc.incident_id}: message of {size} bytes does not fit SNS")


def digest(
    incs: Sequence[Incident], ctx: Context, notification_id: str, limit: int = 20
) -> Message:
    """One message for the incidents that were updated in a run (``updates = "digest"``)."""
    worst = max(incs, key=lambda i: SEVERITY_ID[i.severity])
    n = len(incs)
    subj = ascii_line(
        f"[{worst.severity.upper()}] tenantwatch: {n} open incident(s) updated", SUBJECT_MAX
    )
    lines = [
        f"{n} open incident(s) received new findings in this run, none of them raising its"
        " severity (no new page for them).",
        "",
    ]
    for inc in incs[:limit]:
        lines += [
            f"- [{inc.severity.upper()}] {clean(inc.title, 200)}",
            f"    incident {inc.incident_id}, revision {inc.revision}: "
            f"{len(inc.signals)} signal(s) ("
            + ", ".join(sorted({f"{x.detector}/{clean(x.kind, 40)}" for x in inc.signals}))
            + f"), {inc.finding_count} findings, last seen {_t(inc.last_seen)}",
            f"    snapshot: {inc.snapshot_uri or '-'}",
        ]
    if n > limit:
        lines.append(f"... and {n - limit} more (see incidents/ in the lake).")
    tenants = sorted({t for i in incs for t in affected_tenants(i)})
    detectors = sorted({i.detector for i in incs})
    attrs = attributes(
        worst.severity,
        detectors[0] if len(detectors) == 1 else "multiple",
        tenants,
        notification_id=notification_id,
        kind="digest",
    )
    txt = "\n".join(lines) + "\n"
    for level in range(1, len(LEVELS)):
        # A list of OCSF events, one Detection Finding (Update) per incident.
        body = [ocsf(i, "update", ctx, notification_id, level) for i in incs[:limit]]
        env = envelope(txt, body)
        size = size_of(subj, env, attrs)
        if size <= MAX_MESSAGE_BYTES:
            return Message(notification_id, "digest", subj, txt, body, env, attrs, size, True)
    raise ValueError(f"digest {notification_id}: does not fit SNS")
