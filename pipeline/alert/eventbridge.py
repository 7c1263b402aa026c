"""The EventBridge channel: each notification as one event on a bus, by ``PutEvents``.

The event's ``detail`` is the notification's OCSF Detection Finding (class 2004), the body SNS
gives machine subscribers (``render.ocsf``); a digest's body is a list of them, and a detail must
be a JSON object, so there it is ``{"findings": [...]}``. Its
``source`` is ``[alerting] eventbridge_source`` and its ``detail-type`` says what happened
(``DETAIL_TYPES``), so a rule can route opened and escalated incidents to the pager and the
rest to a queue. ``Resources`` is left empty: EventBridge wants ARNs there, and tenants are
not AWS resources.

``PutEvents`` is not idempotent: EventBridge gives every entry it accepts a new event id, so an
entry sent twice is two events and, behind a paging rule, two pages. The channel has no
``retry_window``; a call that may have gone out is ``in_doubt`` (``delivery``), judged like
``sns`` (``calls``). An entry EventBridge answered with an ``ErrorCode`` was not put: ``failed``,
sent again by the next run.

Limits: 10 entries per call and 256 KB per entry (source, detail-type and detail, in UTF-8:
``entry_size``), which we also keep each call's entries under together. SNS's limit already cuts
a message's evidence far below that (the OCSF body is one of several copies in its 256 KB), but a
detail that would still not fit is cut here the same way render cuts SNS messages (evidence,
observables, related events, signals and entities dropped, ``evidence_truncated`` set: the
snapshot holds all of it); one that does not fit even then is ``failed`` with the reason, never
dropped unsaid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from pipeline.alert import calls
from pipeline.alert.delivery import Outcome

BATCH_ENTRIES = 10
MAX_ENTRY_BYTES = 256 * 1024
DETAIL_TYPES = {
    "new": "tenantwatch incident opened",
    "escalation": "tenantwatch incident escalated",
    "update": "tenantwatch incident updated",
    "digest": "tenantwatch incidents digest",
}


def entry_size(entry: dict[str, Any]) -> int:
    """Bytes EventBridge counts against an entry's 256 KB."""
    n = 14 if "Time" in entry else 0
    for key in ("Source", "DetailType", "Detail"):
        n += len(str(entry.get(key, "")).encode())
    return n + sum(len(r.encode()) for r in entry.get("Resources", []))


def _cut(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (one OCSF finding) without its long parts, saying so."""
    out = dict(body)
    out["evidences"] = [{"data": {}}]
    out["observables"] = []
    info = dict(out.get("finding_info") or {})
    info["related_events"] = []
    out["finding_info"] = info
    unmapped = dict(out.get("unmapped") or {})
    tw = dict(unmapped.get("tenantwatch") or {})
    tw.update(signals=[], entities=[], evidence_truncated=True)
    unmapped["tenantwatch"] = tw
    out["unmapped"] = unmapped
    return out


def detail_of(row: dict[str, Any]) -> dict[str, Any]:
    """The OCSF body of an outbox row (what SNS gives ``sqs``, ``lambda`` and ``https``), as a
    JSON object: a digest's list of findings under ``findings``."""
    body: dict[str, Any] | list[dict[str, Any]] = json.loads(json.loads(row["message"])["sqs"])
    return {"findings": body} if isinstance(body, list) else body


class EventBridgeChannel:
    name = "eventbridge"
    retry_window: timedelta | None = None  # PutEvents makes a new event of every entry

    def __init__(self, bus: str, source: str = "tenantwatch", region: str = "") -> None:
        from pipeline import aws

        self.bus = bus
        self.source = source
        self.client = aws.publisher("events", region)

    def entry(self, row: dict[str, Any]) -> dict[str, Any]:
        """The ``PutEvents`` entry of ``row``, its detail cut if it would not fit."""
        body = detail_of(row)
        e = {
            "Source": self.source,
            "DetailType": DETAIL_TYPES.get(row["kind"], f"tenantwatch {row['kind']}"),
            "Detail": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            "EventBusName": self.bus,
        }
        if entry_size(e) > MAX_ENTRY_BYTES:
            if "findings" in body:
                body = {**body, "findings": [_cut(b) for b in body["findings"]]}
            else:
                body = _cut(body)
            e["Detail"] = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return e

    def batches(self, rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        return calls.batched(
            rows, lambda row: entry_size(self.entry(row)), MAX_ENTRY_BYTES, BATCH_ENTRIES
        )

    def send(
        self, rows: Sequence[dict[str, Any]], retry_until: datetime | None = None
    ) -> list[Outcome]:
        """Put ``rows`` as events in one call; an unanswered call is never repeated."""
        out: dict[str, Outcome] = {}
        entries: list[tuple[str, dict[str, Any]]] = []
        for row in rows:
            e = self.entry(row)
            if entry_size(e) > MAX_ENTRY_BYTES:
                out[row["notification_id"]] = Outcome(
                    "failed",
                    error=f"{entry_size(e)} bytes even with its evidence cut: over "
                    f"EventBridge's {MAX_ENTRY_BYTES} per event (the snapshot holds it all)",
                )
            else:
                entries.append((row["notification_id"], e))
        if entries:
            verdict, answer, error = calls.call(
                lambda: self.client.put_events(Entries=[e for _, e in entries]),
                lambda wait: False,
            )
            if verdict != "answered":
                state = "in_doubt" if verdict == "unknown" else "failed"
                for nid, _ in entries:
                    out[nid] = Outcome(state, error=error)
            else:
                answered = answer.get("Entries", [])
                for i, (nid, _) in enumerate(entries):
                    got = answered[i] if i < len(answered) else {}
                    if got.get("EventId") and not got.get("ErrorCode"):
                        out[nid] = Outcome("sent", got["EventId"])
                    else:  # an ErrorCode, or (never seen) no answer for it: not put
                        err = f"{got.get('ErrorCode', 'absent from the PutEvents response')}"
                        err += f": {got.get('ErrorMessage', '')}" if got.get("ErrorMessage") else ""
                        out[nid] = Outcome("failed", error=err[:500])
        return [out[row["notification_id"]] for row in rows]
