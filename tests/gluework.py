"""What the tests of the Glue job and of the scheduled run's hand-off to it share: the clock,
CloudTrail hours with a cross-tenant story per session, and what a lake paged."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.lake import Lake
from tests import logfactory as lf

T0 = datetime(2026, 11, 16, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
JOB = "tw-detect"


def z(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def trail_hour(root: Path, at: datetime, sessions: int, tag: str = "") -> None:
    """One CloudTrail file delivered at ``at``: ``sessions`` sessions of tenant t0001, each
    reading another tenant's invoice from an address of its own (a story each)."""
    records = []
    for i in range(sessions):
        key = f"ASIAEXAMPLE{tag}{i:05d}".ljust(18, "0")[:18]
        records += [
            lf.assume_role(tenant="t0001", session=f"u{tag}{i}", new_key_id=key, time=z(at)),
            lf.ct(
                time=z(at + timedelta(minutes=1 + i)),
                session=f"u{tag}{i}",
                key_id=key,
                key=f"tenants/t000{i + 2}/invoices/9.pdf",
                sourceIPAddress=f"198.51.100.{10 + i}",
            ),
        ]
    name = f"{lf.ACCOUNT}_CloudTrail_us-east-1_{at:%Y%m%dT%H%M}Z_{tag or 'x'}.json.gz"
    path = root / f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1/{at:%Y/%m/%d}/{name}"
    lf.delivery_file(path, records)


def incident_rows(lake: str) -> list[tuple[Any, ...]]:
    from pipeline.alert import store

    return sorted(
        (
            i.incident_id,
            i.detector,
            i.severity,
            i.paged_severity,
            tuple(i.finding_ids),
            tuple(i.tenants),
            i.event_count,
            i.snapshot_sha256,
        )
        for i in store.load_incidents(Lake(lake))
    )


def local_notes(lake: str) -> list[dict[str, Any]]:
    """What the local channel sent."""
    out = []
    for f in sorted(Path(lake, "incidents/notifications").rglob("*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines()]
    return sorted(out, key=lambda n: str(n["notification_id"]))


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TENANTWATCH_* from the environment (the job reads it, as the functions do)."""
    from detectors.sigma.rules import PACK_ENV

    for key in [k for k in os.environ if k.startswith("TENANTWATCH_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv(PACK_ENV, raising=False)  # the job may set it: undone after the test
