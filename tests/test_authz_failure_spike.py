"""authz_failure_spike: named positive and negative cases on small inline data."""

from __future__ import annotations

from datetime import timedelta
from functools import cache

import orjson
import pyarrow as pa

from detectors.authz_failure_spike import AuthzFailureSpike, Settings
from tests.factories import T0, api, event, events

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
    # A tenant counts its distinct failing actors or addresses: 60 failures from 40 addresses.
    assert (ev["dimension"], ev["peak_count"]) == ("tenant", 40)
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
    # 12 failures from 12 addresses: 12 failing callers for the tenant, 1 failure per address.
    assert detect(stuffing(12), min_actors=15) == []
    assert len(detect(stuffing(12), min_actors=10)) == 1
    one_address = [{**row, "source_ip": "192.0.2.1"} for row in stuffing(12)]
    assert detect(one_address, min_count=20) == []
    assert [x["actor"] for x in detect(one_address, min_count=10)] == ["192.0.2.1"]


# --- denials by cause ----------------------------------------------------------------------------


def refused(
    user: str, at: float, repeats: int, tenant: str = "t0002", ip: str = "198.51.100.20"
) -> list[dict]:
    """One authorizer Deny for ``user`` (its decision in the authorizer log and its 403 in the
    access log), then ``repeats`` 403s served from the cached Deny: no authorizer line, every
    few seconds inside the 300 s TTL."""
    common = {
        "actor_principal": user,
        "actor_tenant": tenant,
        "target_tenant": tenant,
        "outcome": "denied",
        "source_ip": ip,
    }
    rows = [
        api(at, status_code=403, request_id=f"req-{user}-{at}-0", **common),
        api(at, source="authorizer", request_id=f"req-{user}-{at}-0", **common),
    ]
    rows += [
        api(at + 10 * (i + 1), status_code=403, request_id=f"req-{user}-{at}-{i + 1}", **common)
        for i in range(repeats)
    ]
    return rows


def dims(found: list[dict]) -> list[tuple[str, str]]:
    return [
        (orjson.loads(f["evidence"])["dimension"], orjson.loads(f["evidence"])["value"])
        for f in found
    ]


def test_two_users_cached_denials_are_no_tenant_spike() -> None:
    # 3 authorizer decisions of 2 users became 30 denials in the hour: each user under the floor.
    rows = refused("usr-c1", 0, 9) + refused("usr-c1", 400, 5) + refused("usr-c2", 600, 13)
    assert detect(rows) == []


def test_one_users_cached_denials_page_as_that_actor_not_as_its_tenant() -> None:
    found = detect(refused("usr-c1", 0, 25))
    assert dims(found) == [("actor", "usr-c1")]
    ev = orjson.loads(found[0]["evidence"])
    assert (ev["peak_count"], ev["cached_repeats"]) == (26, 25)


def test_many_users_failing_at_once_are_a_tenant_spike() -> None:
    rows = [r for u in range(12) for r in refused(f"usr-m{u}", 60 * u, 2, ip=f"198.51.100.{u}")]
    found = detect(rows)
    assert dims(found) == [("tenant", "t0002")]
    assert found[0]["title"].startswith(
        "Authorization failures spike for tenant t0002: 12 actors or addresses failing"
    )


def test_an_address_counts_a_cached_decision_once() -> None:
    rows = refused("usr-c1", 0, 25)
    assert detect(rows, dimensions=("ip",)) == []
    # Without the authorizer's log nothing tells a cached 403 from a fresh one: all count.
    unseen = [r for r in rows if r["source"] != "authorizer"]
    assert dims(detect(unseen, dimensions=("ip",))) == [("ip", "198.51.100.20")]


def test_a_403_past_the_cache_ttl_or_of_another_user_is_no_repeat() -> None:
    from detectors.authz_failure_spike import cached_repeats
    from detectors.base import to_frame

    rows = refused("usr-c1", 0, 2)
    rows.append({**rows[-1], "event_time": T0 + timedelta(seconds=400), "request_id": "late"})
    rows.append({**rows[-1], "actor_principal": "usr-other", "request_id": "other"})
    frame = to_frame(events(rows))
    assert cached_repeats(frame, 300).tolist() == [False, False, True, True, False, False]


def delivery_failures(n: int) -> list[dict]:
    return [
        event(
            10 * i,
            actor_principal="delivery.logs.amazonaws.com",
            actor_type="AWSService",
            actor_session=None,
            actor_tenant=None,
            target_tenant=f"t{1 + i % 4:04d}",
            action="PutObject",
            outcome="denied",
            error_code="AccessDenied",
            source_ip="delivery.logs.amazonaws.com",
            user_agent="delivery.logs.amazonaws.com",
        )
        for i in range(n)
    ]


def test_service_principals_are_no_actors_unless_included() -> None:
    assert detect(delivery_failures(300)) == []
    found = detect(delivery_failures(300), include_service_principals=True)
    assert ("actor", "delivery.logs.amazonaws.com") in dims(found)


def test_no_history_is_said_plainly_and_never_high() -> None:
    det = AuthzFailureSpike(Settings())
    found = det.detect(
        None, events(stuffing(60)), start=T0, end=T0 + timedelta(hours=2), baseline_start=T0
    ).to_pylist()
    assert len(found) == 1
    f = found[0]
    assert f["baseline"].startswith("no history before 2026-11-16 10:00 UTC: baseline unknown")
    assert f["title"].endswith("in an hour (no history)")
    assert f["severity"] == "medium"  # the same burst with history is high
    assert orjson.loads(f["evidence"])["history"] is False
