"""tenant_switching: named positive and negative cases on small inline data."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pyarrow as pa

from detectors.tenant_switching import Settings, TenantSwitching
from pipeline.config import Consultant, ServiceRole
from tests.factories import ACCOUNT, T0, api, event, events, role

RELATIONSHIPS = (
    Consultant(principal="ext-consultant-ana", tenants=("t0020", "t0021", "t0022")),
    ServiceRole(principal_pattern=rf"^arn:aws:sts::{ACCOUNT}:assumed-role/saas-nightly-export/"),
)
DAYS = 3


def baseline(extra: tuple[dict, ...] = ()) -> pa.Table:
    """Three days before T0: ten users on their own tenants every hour, a consultant moving
    between its clients, and the nightly export touching every tenant (and ``extra``)."""
    rows = list(extra)
    for h in range(DAYS * 24):
        at = timedelta(hours=h - DAYS * 24, minutes=5)
        for u in range(1, 11):
            t = f"t{u:04d}"
            rows.append(
                api(
                    at,
                    actor_principal=f"usr-{u}",
                    actor_tenant=t,
                    target_tenant=t,
                    source_ip=f"198.51.100.{u}",
                )
            )
        for i, t in enumerate(("t0020", "t0021", "t0022")):
            rows.append(
                api(
                    at + timedelta(minutes=i),
                    actor_principal="ext-consultant-ana",
                    actor_tenant="t0049",
                    target_tenant=t,
                    source_ip="203.0.113.9",
                )
            )
    for i in range(1, 41):
        rows.append(
            event(
                timedelta(hours=-22, seconds=i),
                target_tenant=f"t{i:04d}",
                actor_principal=role("saas-nightly-export", "saas-nightly-export"),
                actor_tenant=None,
                source_ip="192.0.2.1",
            )
        )
    return events(rows, prefix="base")


def detect(
    window_rows: list[dict], history: tuple[dict, ...] = (), **settings: object
) -> list[dict]:
    det = TenantSwitching(Settings(**settings), RELATIONSHIPS)  # type: ignore[arg-type]
    return det.detect(baseline(history), events(window_rows)).to_pylist()


CLIENTS = tuple(f"t{n:04d}" for n in range(31, 37))


def session_rows(
    at: timedelta, principal: str, home: str, session: str, targets: tuple[str, ...]
) -> list[dict]:
    """A principal's session (CloudTrail, assumed role) touching ``targets`` in turn, 3 each."""
    return [
        event(
            at + timedelta(seconds=60 * i + 5 * k),
            actor_principal=principal,
            actor_session=session,
            actor_tenant=home,
            target_tenant=t,
            source_ip="198.51.100.12",
        )
        for i, t in enumerate(targets)
        for k in range(3)
    ]


def multi_tenant_history() -> tuple[dict, ...]:
    """usr-12 (t0012) works across six client tenants every hour, one fresh session a day."""
    rows = []
    for h in range(DAYS * 24):
        at = timedelta(hours=h - DAYS * 24, minutes=10)
        session = f"ASIAUSR12DAY{h // 24}"
        rows += session_rows(at, "usr-12", "t0012", session, ("t0012", *CLIENTS))
    return tuple(rows)


def walk(first: int, last: int, **kw: object) -> list[dict]:
    """usr-1 (t0001) requesting tenants first..last in order, 20 s apart, denied."""
    base = {
        "actor_principal": "usr-1",
        "actor_tenant": "t0001",
        "source_ip": "198.51.100.1",
        "outcome": "denied",
        "status_code": 403,
    }
    base.update(kw)
    return [
        api(20 * i, target_tenant=f"t{n:04d}", **base) for i, n in enumerate(range(first, last + 1))
    ]


# --- positives ---------------------------------------------------------------------------------


def test_sequential_walk_over_tenants_is_enumeration() -> None:
    findings = detect(walk(2, 25))
    assert len(findings) == 1, [f["title"] for f in findings]
    f = findings[0]
    assert (f["severity"], f["actor"], f["actor_tenant"]) == ("high", "usr-1", "t0001")
    assert f["tenants"] == [f"t{n:04d}" for n in range(2, 26)]
    ev = orjson.loads(f["evidence"])
    assert ev["rule"] == "enumeration"
    assert ev["features"]["new_tenants"] == 24
    named = {u["feature"] for u in ev["unusual_features"]}
    assert {"tenants", "new_tenants"} <= named
    # The address's view of the same requests is folded in, not a second finding.
    assert ev["also"] == ["ip|198.51.100.1"]


def test_enumeration_in_random_order_still_counts_when_mostly_denied() -> None:
    rows = walk(2, 25)
    order = [7, 3, 19, 11, 2, 23, 5, 17, 13, 21, 9, 15, 4, 22, 8, 14, 20, 6, 24, 10, 18, 12, 16, 25]
    rows = [dict(r, target_tenant=f"t{n:04d}") for r, n in zip(rows, order, strict=True)]
    f = detect(rows)
    assert [x["severity"] for x in f] == ["high"]


def test_new_tenants_that_succeed_are_a_medium_finding() -> None:
    rows = [
        api(60 * i, actor_principal="usr-1", actor_tenant="t0001", target_tenant=t)
        for i, t in enumerate(["t0031", "t0037", "t0042", "t0044", "t0048"] * 3)
    ]
    f = detect(rows)
    assert len(f) == 1
    assert (f[0]["severity"], orjson.loads(f[0]["evidence"])["rule"]) == ("medium", "new_tenants")


def test_unknown_address_touching_several_tenants_is_found_by_address() -> None:
    rows = walk(30, 40, actor_principal=None, actor_tenant=None, source_ip="192.0.2.200")
    f = detect(rows)
    assert [(x["actor"], x["severity"]) for x in f] == [("192.0.2.200", "high")]


def test_fresh_session_of_a_single_tenant_user_spreading_to_foreign_tenants_is_found() -> None:
    # usr-3's history is its own tenant only: the session's tenants are new for its principal.
    rows = session_rows(timedelta(0), "usr-3", "t0003", "ASIASTOLEN3", CLIENTS)
    f = detect(rows, multi_tenant_history(), actor_kinds=("session",))
    assert [(x["actor"], x["severity"]) for x in f] == [("ASIASTOLEN3", "medium")]
    ev = orjson.loads(f[0]["evidence"])
    assert (ev["rule"], ev["features"]["new_tenants"]) == ("new_tenants", 6)
    # With every kind, the principal's finding carries the session's.
    f = detect(rows, multi_tenant_history())
    assert [x["actor"] for x in f] == ["usr-3"]
    assert "session|ASIASTOLEN3" in orjson.loads(f[0]["evidence"])["also"]


# --- negatives ---------------------------------------------------------------------------------


def test_user_on_its_own_tenant_is_not_reported() -> None:
    rows = [
        api(30 * i, actor_principal="usr-2", actor_tenant="t0002", target_tenant="t0002")
        for i in range(50)
    ]
    assert detect(rows) == []


def test_consultant_moving_between_its_clients_is_not_reported() -> None:
    rows = [
        api(
            30 * i,
            actor_principal="ext-consultant-ana",
            actor_tenant="t0049",
            target_tenant=("t0020", "t0021", "t0022")[i % 3],
            source_ip="203.0.113.9",
        )
        for i in range(60)
    ]
    assert detect(rows) == []


def test_service_role_touching_every_tenant_is_not_reported() -> None:
    nightly = role("saas-nightly-export", "saas-nightly-export")
    rows = [
        event(
            i,
            actor_principal=nightly,
            actor_tenant=None,
            target_tenant=f"t{i:04d}",
            source_ip="192.0.2.1",
        )
        for i in range(1, 60)
    ]
    assert detect(rows) == []


def test_aws_service_delivering_to_every_tenant_is_no_actor_unless_included() -> None:
    rows = [
        event(
            10 * i,
            actor_principal="delivery.logs.amazonaws.com",
            actor_type="AWSService",
            actor_session=None,
            actor_tenant=None,
            target_tenant=f"t{1 + i % 30:04d}",
            action="PutObject",
            outcome="denied",
            error_code="AccessDenied",
            source_ip="delivery.logs.amazonaws.com",
        )
        for i in range(120)
    ]
    assert detect(rows) == []
    found = detect(rows, include_service_principals=True)
    assert "delivery.logs.amazonaws.com" in {f["actor"] for f in found}


def test_two_foreign_tenants_are_below_the_floor() -> None:
    assert detect(walk(2, 3)) == []


def test_no_history_still_finds_the_clear_case() -> None:
    det = TenantSwitching(None, RELATIONSHIPS)
    found = det.detect(None, events(walk(2, 25))).to_pylist()
    assert [f["severity"] for f in found] == ["high"]


def test_window_bounds_make_the_ids() -> None:
    det = TenantSwitching(None, RELATIONSHIPS)
    a = det.detect(None, events(walk(2, 25)), start=T0, end=T0 + timedelta(hours=1))
    b = det.detect(None, events(walk(2, 25)), start=T0, end=T0 + timedelta(days=1))
    assert a["finding_id"].to_pylist() != b["finding_id"].to_pylist()
    assert a["dedup_key"].to_pylist() == b["dedup_key"].to_pylist()


def test_fresh_session_of_a_habitual_multi_tenant_user_is_not_new() -> None:
    # A session is born without history; its principal's covers these tenants.
    rows = session_rows(timedelta(0), "usr-12", "t0012", "ASIAUSR12TODAY", ("t0012", *CLIENTS))
    assert detect(rows, multi_tenant_history()) == []
    # Still new to the session, but not to its principal: not counted as new.
    det = TenantSwitching(None, RELATIONSHIPS)
    det.fit(baseline(multi_tenant_history()))
    hours = det.hours(events(rows))
    mine = hours[hours["actor"] == "ASIAUSR12TODAY"].iloc[0]
    assert (mine["foreign"], mine["foreign_new"], mine["over_own_max"]) == (6, 0, 0)
    assert not mine["flagged"]
