"""authz_failure_spike: named positive and negative cases on small inline data."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

import orjson
import pyarrow as pa

from detectors.authz_failure_spike import AuthzFailureSpike, Settings
from tests.factories import T0, api, events

WEEKS = 2


@cache
def baseline(monday_surge: int = 0) -> pa.Table:
    """Two weeks before T0 (a Monday 10:00): tenants t0001-t0003 with a steady trickle of
    traffic and one denial every other hour; ``monday_surge`` denials for t0003 in the Monday
    10:00 hour of each week (the same hour of the week as T0)."""
    rows = []
    for h in range(WEEKS * 168):
        at = timedelta(hours=h - WEEKS * 168, minutes=7)
        for u in (1, 2, 3):
            t = f"t{u:04d}"
            rows.append(api(at, actor_principal=f"usr-{u}", actor_tenant=t, target_tenant=t))
            if h % 2 == 0:
                rows.append(
                    api(
                        at,
                        actor_principal=f"usr-{u}",
                        actor_tenant=t,
                        target_tenant=t,
                        outcome="denied",
                        status_code=403,
                    )
                )
        if h % 168 == 0:
            rows += [
                api(
                    at + timedelta(seconds=i),
                    actor_principal=f"usr-s{i}",
                    actor_tenant="t0003",
                    target_tenant="t0003",
                    outcome="denied",
                    status_code=401,
                    source_ip=f"203.0.113.{i % 200}",
                )
                for i in range(monday_surge)
            ]
    return events(rows, prefix="base")


def detect(rows: list[dict], base: pa.Table | None = None, **settings: object) -> list[dict]:
    det = AuthzFailureSpike(Settings(**settings))  # type: ignore[arg-type]
    history = baseline() if base is None else base
    return det.detect(
        history,
        events(rows),
        start=T0,
        end=T0 + timedelta(hours=2),
        baseline_start=T0 - timedelta(weeks=WEEKS),
    ).to_pylist()


def stuffing(n: int, tenant: str = "t0002", spread_s: int = 20, start_s: int = 0) -> list[dict]:
    """n failed logins on one tenant from many addresses, ``spread_s`` seconds apart."""
    return [
        api(
            start_s + spread_s * i,
            actor_principal=None,
            actor_tenant=None,
            target_tenant=tenant,
            action="POST /tenants/{tenantId}/session",
            outcome="denied",
            status_code=401,
            source_ip=f"192.0.2.{i % 40}",
        )
        for i in range(n)
    ]


# --- positives ---------------------------------------------------------------------------------


def test_credential_stuffing_on_one_tenant_is_one_high_finding() -> None:
    f = detect(stuffing(60))
    assert len(f) == 1, [x["title"] for x in f]
    assert (f[0]["severity"], f[0]["actor"], f[0]["tenants"], f[0]["event_count"]) == (
        "high",
        None,
        ["t0002"],
        60,
    )
    ev = orjson.loads(f[0]["evidence"])
    assert (ev["dimension"], ev["peak_count"]) == ("tenant", 60)
    # One denial at this hour of the week in both weeks of history.
    assert f[0]["baseline"].startswith("median 1.0/h, spread 1.0 (hour-of-week, 2 samples)")


def test_a_burst_across_two_buckets_is_still_one_finding() -> None:
    # 40 failures from 10:40 to 11:20: two hourly buckets, one burst, one finding.
    f = detect(stuffing(40, spread_s=60, start_s=40 * 60))
    assert [x["event_count"] for x in f] == [40]


def test_burst_split_by_the_hour_is_caught_by_the_shifted_bucket() -> None:
    # 15 + 15 failures either side of 11:00: neither hour reaches the floor of 20 alone.
    f = detect(stuffing(30, spread_s=15, start_s=3600 - 225))
    assert [x["event_count"] for x in f] == [30]


def test_one_address_failing_across_tenants_is_found_by_address() -> None:
    rows = [
        api(
            30 * i,
            actor_principal=None,
            actor_tenant=None,
            target_tenant=f"t{10 + i:04d}",
            outcome="denied",
            status_code=401,
            source_ip="198.51.100.99",
        )
        for i in range(25)
    ]
    f = detect(rows)
    assert [(x["actor"], x["severity"]) for x in f] == [("198.51.100.99", "medium")]
    assert len(f[0]["tenants"]) == 25


def test_the_actor_and_the_address_of_the_same_requests_are_one_finding() -> None:
    rows = [
        api(
            10 * i,
            actor_principal="usr-x",
            actor_tenant="t0009",
            target_tenant=f"t{20 + i:04d}",
            outcome="denied",
            status_code=403,
            source_ip="198.51.100.7",
        )
        for i in range(30)
    ]
    f = detect(rows)
    assert len(f) == 1
    assert orjson.loads(f[0]["evidence"])["also"] == ["ip|198.51.100.7"]


# --- negatives ---------------------------------------------------------------------------------


def test_two_to_six_failures_do_not_page() -> None:
    rows = [
        api(60 * i, actor_tenant="t0001", target_tenant="t0001", outcome="denied") for i in range(6)
    ]
    assert detect(rows) == []


def test_usual_level_of_failures_is_not_a_spike() -> None:
    # A tenant that always fails about 20 times in this hour of the week.
    f = detect(stuffing(20, tenant="t0003"), base=baseline(monday_surge=20))
    assert f == []


def test_the_same_burst_without_that_history_is_a_spike() -> None:
    assert len(detect(stuffing(20, tenant="t0003"))) == 1


def test_authorizer_decisions_are_not_counted_twice() -> None:
    # 15 denied requests, each in the access log and the authorizer log: 15 failures, not 30.
    rows = []
    for i in range(15):
        common = {"actor_tenant": "t0009", "target_tenant": "t0002", "outcome": "denied"}
        rows += [api(10 * i, status_code=403, **common), api(10 * i, source="authorizer", **common)]
    assert detect(rows) == []


def test_successes_are_not_counted() -> None:
    rows = [api(5 * i, actor_tenant="t0001", target_tenant="t0001") for i in range(200)]
    assert detect(rows) == []


def test_floor_is_a_setting() -> None:
    assert detect(stuffing(12), min_count=20) == []
    assert len(detect(stuffing(12), min_count=10)) == 1
