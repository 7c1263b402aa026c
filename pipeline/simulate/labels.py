"""Ground truth: one label per injected attack and per labelled negative (``labels.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.simulate import clock


@dataclass
class Evidence:
    """Event ids and the time span of one label, gathered while its events are generated."""

    ids: list[str] = field(default_factory=list)
    first: int | None = None
    last: int | None = None

    def add(self, event_ids: str | Sequence[str], ts: int) -> None:
        """One event, or every copy of one (an event delivered to two accounts)."""
        if isinstance(event_ids, str):
            self.ids.append(event_ids)
        else:
            self.ids.extend(event_ids)
        self.first = ts if self.first is None else min(self.first, ts)
        self.last = ts if self.last is None else max(self.last, ts)


class Recorder:
    """Collects evidence for labels, but only inside ``[start, end)`` (the attack day)."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.evidence: dict[str, Evidence] = {}

    def __call__(self, label: str, event_ids: str | Sequence[str], ts: int) -> None:
        if self.start <= ts < self.end and event_ids:
            self.evidence.setdefault(label, Evidence()).add(event_ids, ts)

    def get(self, label: str) -> Evidence:
        return self.evidence.get(label, Evidence())


def label(
    label_id: str,
    kind: str,
    scenario: str,
    detector: str | None,
    severity: str,
    actor: str | None,
    actor_tenant: str | None,
    tenants: list[str],
    ev: Evidence,
    description: str,
) -> dict[str, Any]:
    return {
        "id": label_id,
        "kind": kind,
        "scenario": scenario,
        "expected_detector": detector,
        "expected_severity": severity,
        "actor": actor,
        "actor_tenant": actor_tenant,
        "tenants": tenants,
        "start": clock.iso(ev.first) if ev.first is not None else None,
        "end": clock.iso(ev.last) if ev.last is not None else None,
        "event_ids": ev.ids,
        "description": description,
    }
