"""The example plugin's detector: its named cases, and tenantwatch's detector contract
(``detectors.testing``), as any plugin's tests would run it."""

from __future__ import annotations

from tenantwatch_example.bulk_read import BulkTenantRead, Settings

import detectors
from detectors.testing import check_detector, event, events
from pipeline.config import parse_config


def reads(n: int, **kw: object) -> list[dict[str, object]]:
    return [event(i, target_tenant="t0002", **kw) for i in range(n)]


def test_keeps_the_contract() -> None:
    check_detector(BulkTenantRead, events(reads(120)))


def test_a_bulk_read_of_one_tenant_is_reported() -> None:
    (found,) = BulkTenantRead().detect(None, events(reads(120))).to_pylist()
    assert (found["detector"], found["event_count"], found["tenants"]) == (
        "bulk_tenant_read",
        120,
        ["t0002"],
    )
    assert found["severity"] == "medium"


def test_few_reads_or_denied_reads_are_not() -> None:
    assert BulkTenantRead().detect(None, events(reads(99))).num_rows == 0
    denied = reads(150, outcome="denied")
    assert BulkTenantRead().detect(None, events(denied)).num_rows == 0


def test_it_is_registered_by_its_entry_point_and_off_until_enabled() -> None:
    entry = detectors.registered()["bulk_tenant_read"]
    assert (entry.origin, entry.version) == ("tenantwatch-example-detector", "0.1.0")
    assert detectors.load("bulk_tenant_read") is BulkTenantRead
    assert "bulk_tenant_read" not in detectors.from_config(parse_config({}, environ={}))
    cfg = parse_config({"detectors": {"bulk_tenant_read": {"enabled": True}}}, environ={})
    built = detectors.from_config(cfg)["bulk_tenant_read"]
    assert isinstance(built.settings, Settings) and built.settings.min_reads == 100
