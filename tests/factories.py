"""Small EVENTS-shaped tables from a few keyword arguments (for detector tests).

``event(actor_tenant="t0001", target_tenant="t0002")`` is one row with sensible defaults (an
assumed-role S3 read, success, 2026-11-16 10:00 UTC); ``events(rows)`` makes an Arrow table of
the pinned schema, numbering event ids in order so that tests are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipeline import schema

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)  # a Monday
ACCOUNT = "111122223333"


def role(role_name: str, session: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{session}"


def event(at: float | timedelta = 0, **kw: Any) -> dict[str, Any]:
    """One event; ``at`` is seconds (or a timedelta) after ``T0`` unless ``event_time`` is given."""
    offset = at if isinstance(at, timedelta) else timedelta(seconds=at)
    target = kw.get("target_tenant", "t0001")
    row: dict[str, Any] = {
        "event_time": T0 + offset,
        "source": "cloudtrail",
        "event_kind": "api_call",
        "service": "s3.amazonaws.com",
        "action": "GetObject",
        "actor_principal": role("tenant-scoped-access", "usr-a"),
        "actor_type": "AssumedRole",
        "actor_session": "ASIAEXAMPLE0000001",
        "actor_tenant": "t0001",
        "actor_tenant_source": "session_tag",
        "target_tenant": target,
        "target_tenant_source": "s3_key",
        "tenant_conflict": None,
        "resource": f"s3://acme-saas-tenant-data/tenants/{target}/invoices/x.pdf",
        "outcome": "success",
        "error_code": None,
        "status_code": None,
        "source_ip": "198.51.100.7",
        "user_agent": "aws-cli/2.18.7",
        "account_id": ACCOUNT,
        "region": "us-east-1",
        "request_id": None,
        "raw": "{}",
        "record_hash": None,
        "input_uri": "test://factory",
    }
    row.update(kw)
    return row


def api(at: float | timedelta = 0, **kw: Any) -> dict[str, Any]:
    """An API Gateway access-log event of user ``usr-a`` (tenant t0001) on its own tenant."""
    target = kw.get("target_tenant", "t0001")
    defaults: dict[str, Any] = {
        "source": "apigateway",
        "event_kind": "access_log",
        "service": "execute-api:a1b2c3d4e5/prod",
        "action": "GET /tenants/{tenantId}/invoices",
        "actor_principal": "usr-a",
        "actor_type": "token",
        "actor_session": None,
        "actor_tenant_source": "authorizer_context",
        "target_tenant_source": "api_path",
        "resource": f"/prod/tenants/{target}/invoices",
        "status_code": 200,
        "user_agent": "Mozilla/5.0",
    }
    defaults.update(kw)
    return event(at, **defaults)


def events(rows: Iterable[dict[str, Any]], prefix: str = "ev") -> pa.Table:
    """An EVENTS table; rows without ``event_id`` get ``<prefix>-000001``, ... in order."""
    out = []
    for i, row in enumerate(rows, 1):
        r = dict(row)
        r.setdefault("event_id", f"{prefix}-{i:06d}")
        out.append(r)
    cols = {name: [r.get(name) for r in out] for name in schema.EVENTS.names}
    return pa.Table.from_pydict(cols, schema=schema.EVENTS)
