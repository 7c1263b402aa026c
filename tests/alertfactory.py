"""Findings and incidents from a few keyword arguments (for the alerting tests)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.alert.incidents import Incident, group
from pipeline.alert.render import Context

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
PERIODS = {"cross_tenant_access": DAY, "authz_failure_spike": timedelta(hours=6)}
CTX = Context(
    runbook="1. Look at it.\n2. Contain it.\n3. Tell the security lead.",
    lake_root="lake",
    athena_table="tenantwatch.events",
    margin=HOUR,
)


def finding(at: timedelta = timedelta(0), **kw: Any) -> dict[str, Any]:
    """One FINDINGS row: a cross-tenant read by usr-a of t0001 on t0002 in the hour ``T0 + at``."""
    start = T0 + at
    detector = kw.get("detector", "cross_tenant_access")
    key = kw.get("dedup_key", f"{detector}:cross_tenant|usr-a|t0001")
    row: dict[str, Any] = {
        "finding_id": hashlib.sha256(f"{key}{start}".encode()).hexdigest()[:32],
        "detector": detector,
        "severity": "high",
        "title": "Cross-tenant access: usr-a (t0001) on t0002",
        "actor": "usr-a",
        "actor_tenant": "t0001",
        "tenants": ["t0002"],
        "window_start": start,
        "window_end": start + HOUR,
        "first_seen": start + timedelta(minutes=5),
        "last_seen": start + timedelta(minutes=20),
        "event_count": 3,
        "score": 3.0,
        "threshold": 1.0,
        "baseline": "rule: none allows this",
        "dedup_key": key,
        "evidence": json.dumps(
            {
                "top_actions": [["GetObject", 3]],
                "source_ips": [["198.51.100.7", 3]],
                "outcomes": {"success": 3},
                "event_ids": ["e1", "e2", "e3"],
            }
        ),
    }
    row.update(kw)
    return row


def incident(**kw: Any) -> Incident:
    """The incident that one ``finding(**kw)`` opens."""
    return group([finding(**kw)], [], PERIODS, DAY).changed[0]
