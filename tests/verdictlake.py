"""A small lake where two actors each read another tenant's data (one finding each), for the
suppression and verdict tests; and the configuration text that suppresses one of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.config import Config, parse_config
from pipeline.lake import Lake, event_partition
from tests.factories import event, events, role

DAY = datetime(2026, 11, 16, tzinfo=UTC)
NOW = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)  # when suppressions are judged in these tests
USR_A = role("tenant-scoped-access", "usr-a")  # t0001 on t0002, from 198.51.100.7
USR_B = role("tenant-scoped-access", "usr-b")  # t0003 on t0004, from 203.0.113.9


def build(root: str) -> Lake:
    lake = Lake(root)
    b = {
        "actor_principal": USR_B,
        "actor_session": "ASIAEXAMPLE0000002",
        "actor_tenant": "t0003",
        "source_ip": "203.0.113.9",
    }
    rows = [
        event(0, target_tenant="t0002"),
        event(60, target_tenant="t0002"),
        event(120, target_tenant="t0004", **b),
        event(180, target_tenant="t0004", **b),
    ]
    lake.write_table(
        f"{event_partition('cloudtrail', '2026-11-16', '10')}/part-a.parquet", events(rows)
    )
    return lake


def suppression(**kw: Any) -> dict[str, Any]:
    """A ``[[suppressions]]`` table (as TOML decodes it) for usr-a's reads, until 2026-12-01."""
    sup: dict[str, Any] = {
        "id": "usr-a-migration",
        "detector": "cross_tenant_access",
        "actor": r"arn:aws:sts::\d+:assumed-role/tenant-scoped-access/usr-a",
        "reason": "the tenant data migration reads both tenants",
        "owner": "platform-team",
        "expires": datetime(2026, 12, 1, tzinfo=UTC),
    }
    sup.update(kw)
    return sup


def config(*sups: dict[str, Any]) -> Config:
    return parse_config({"suppressions": list(sups)}, environ={})
