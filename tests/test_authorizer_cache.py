"""authorizer_cache: named positive and negative cases on small inline data."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

import orjson
import pyarrow as pa

from detectors.authorizer_cache import AuthorizerCache, Settings
from detectors.testing import check_detector
from pipeline.config import Organisation
from tests.factories import T0, api, events

DAYS = 8
INVOICES = "GET /tenants/{tenantId}/invoices"
REPORTS = "GET /tenants/{tenantId}/reports"
SCRIPT = "python-httpx/0.27.2"


def decided(at: float | timedelta, req: str, token: str, **kw: Any) -> list[dict]:
    """A request the authorizer decided: its access-log line and the decision (same request
    id), the decision carrying the token's fingerprint."""
    common = {"request_id": req, **kw}
    return [api(at, **common), api(at, source="authorizer", actor_session=token, **common)]


def hit(at: float | timedelta, req: str, **kw: Any) -> list[dict]:
    """A request answered from the cache: an access-log line with a principal, no decision."""
    return [api(at, request_id=req, **kw)]


def user(u: int, tenant: str) -> dict[str, Any]:
    return {
        "actor_principal": f"usr-{u}",
        "actor_tenant": tenant,
        "target_tenant": tenant,
        "source_ip": f"198.51.100.{u}",
        "user_agent": f"Mozilla/5.0 ({u})",
    }


@cache
def baseline() -> pa.Table:
    """Eight days before T0: tenants t0001-t0003, each hour one decision of a user's token and
    two requests served from its cache (a third of requests miss), on the invoices route."""
    rows: list[dict] = []
    for h in range(DAYS * 24):
        for u in (1, 2, 3):
            at = timedelta(hours=h - DAYS * 24, minutes=5 + u)
            who = user(u, f"t{u:04d}")
            rid = f"b{h}-{u}"
            rows += decided(at, f"{rid}-0", f"tok-{h}-{u}", action=INVOICES, **who)
            rows += hit(at + timedelta(seconds=40), f"{rid}-1", action=INVOICES, **who)
            rows += hit(at + timedelta(seconds=90), f"{rid}-2", action=INVOICES, **who)
    return events(rows, prefix="base")


def detect(rows: list[dict], base: pa.Table | None = None, **settings: Any) -> list[dict]:
    rels = tuple(settings.pop("_rels", ()))
    det = AuthorizerCache(Settings(**settings), rels)
    history = baseline() if base is None else base
    return det.detect(
        history,
        events(rows),
        start=T0,
        end=T0 + timedelta(hours=2),
        baseline_start=T0 - timedelta(days=DAYS),
    ).to_pylist()


def ev(finding: dict) -> dict:
    out: dict = orjson.loads(finding["evidence"])
    return out


def busting(n: int, tenant: str = "t0002", every_s: float = 3.0) -> list[dict]:
    """A script sending ``n`` requests, each with a fresh token: every one a decision."""
    who = {**user(2, tenant), "source_ip": "203.0.113.9", "user_agent": SCRIPT}
    rows: list[dict] = []
    for i in range(n):
        rows += decided(i * every_s, f"bust-{i}", f"fresh-{i}", action=INVOICES, **who)
    return rows


def test_authorizer_cache_keeps_the_detector_contract() -> None:
    check_detector(AuthorizerCache, events(busting(40)))


# --- miss surges ------------------------------------------------------------------------------


def test_a_flood_of_fresh_tokens_on_one_route_pages_as_a_miss_surge() -> None:
    found = detect(busting(300))
    assert [ev(f)["kind"] for f in found] == ["surge"]
    f = found[0]
    assert f["severity"] == "high" and f["tenants"] == ["t0002"] and f["actor"] is None
    e = ev(f)
    assert (e["peak_invocations"], e["miss_share"], e["fresh_token_share"]) == (300, 1.0, 1.0)
    assert e["usual_miss_share"] == 0.333
    assert f["title"].startswith(
        "Authorizer cache busted on GET /tenants/{tenantId}/invoices for tenant t0002: 300 "
    )
    # The evidence names token fingerprints as the authorizer logged them, never a token.
    assert e["distinct_tokens"] == 300 and all(k.startswith("fresh-") for k in e["top_tokens"])


def test_a_surge_under_the_floor_does_not_page() -> None:
    assert detect(busting(25)) == []
    assert [ev(f)["kind"] for f in detect(busting(25), min_invocations=20)] == ["surge"]


def test_a_cache_flush_re_deciding_tokens_in_use_does_not_page() -> None:
    # 40 users at work, their tokens decided in the half hour before; a deploy flushes the cache
    # and each token is decided again on its next request: 40 misses in the hour, none fresh.
    before: list[dict] = []
    rows: list[dict] = []
    for u in range(40):
        who = {**user(u, "t0002"), "actor_principal": f"usr-f{u}"}
        at = timedelta(minutes=-30 + u % 25)
        before += decided(at, f"pre-{u}", f"tok-f{u}", action=INVOICES, **who)
        rows += decided(1800 + u, f"post-{u}", f"tok-f{u}", action=INVOICES, **who)
    base = pa.concat_tables([baseline(), events(before, prefix="before")])
    assert detect(rows, base=base) == []
    # What keeps it quiet is the fresh-token share: without it the flush would page.
    assert [ev(f)["kind"] for f in detect(rows, base=base, min_fresh_share=0.0)] == ["surge"]


def test_a_token_decided_just_before_the_window_is_not_fresh() -> None:
    rows = busting(60)
    before = []
    for r in rows:
        if r["source"] == "authorizer":
            at = timedelta(minutes=-20)
            before += decided(at, f"x-{r['request_id']}", r["actor_session"], action=INVOICES)
    base = pa.concat_tables([baseline(), events(before, prefix="before")])
    assert detect(rows, base=base) == []
    assert len(detect(rows)) == 1


def test_a_busier_tenant_with_its_usual_miss_share_does_not_page() -> None:
    # Three times the usual traffic, a third of it missing as always: more runs, same share.
    rows: list[dict] = []
    for u in range(60):
        who = {**user(u, "t0001"), "actor_principal": f"usr-b{u}"}
        at = 50 * u
        rows += decided(at, f"r{u}-0", f"tok-b{u}", action=INVOICES, **who)
        rows += hit(at + 10, f"r{u}-1", action=INVOICES, **who)
        rows += hit(at + 20, f"r{u}-2", action=INVOICES, **who)
    assert detect(rows) == []


def test_with_no_history_a_surge_pages_at_medium_and_says_so() -> None:
    # The lake begins with the window: nothing says what is usual, the floor alone decides.
    out = AuthorizerCache().detect(
        None, events(busting(300)), start=T0, end=T0 + timedelta(hours=1), baseline_start=T0
    )
    (found,) = out.to_pylist()
    assert found["severity"] == "medium"
    assert found["baseline"].startswith("no history before the window: baseline unknown")


# --- the authorizer's log not ingested ------------------------------------------------------


def test_without_the_authorizers_log_nothing_is_guessed_and_the_skip_is_said() -> None:
    rows = [r for r in busting(300) if r["source"] != "authorizer"]
    det = AuthorizerCache()
    out = det.detect(baseline(), events(rows), start=T0, end=T0 + timedelta(hours=1))
    assert out.num_rows == 0
    assert "authorizer's log is not ingested" in det.skipped["*"]


def test_an_api_whose_requests_have_no_decision_is_skipped_by_name() -> None:
    other = "execute-api:zz9zz9zz9z/prod"
    unlogged = [
        {**r, "service": other, "request_id": f"u-{r['request_id']}"}
        for r in busting(300)
        if r["source"] == "apigateway"
    ]
    det = AuthorizerCache()
    out = det.detect(
        baseline(), events(busting(10) + unlogged), start=T0, end=T0 + timedelta(hours=1)
    )
    assert out.num_rows == 0  # the 300 requests of the other API are not taken for misses
    assert set(det.skipped) == {other}
    assert det.skipped[other].startswith("300 requests name an authorizer principal")


# --- collisions -------------------------------------------------------------------------------


def shared_reports(attacker_tenant: str = "t0003") -> list[dict]:
    """usr-1 of t0001 is allowed on /reports; within the TTL another client reads t0003's
    reports under the cached Allow (the access log names usr-1 and t0001)."""
    owner = user(1, "t0001")
    rows = decided(0, "r-own", "tok-1", action=REPORTS, **owner)
    for i in range(4):
        rows += hit(
            30 + 40 * i,
            f"r-other-{i}",
            action=REPORTS,
            **{
                **owner,
                "target_tenant": attacker_tenant,
                "source_ip": "203.0.113.50",
                "user_agent": SCRIPT,
            },
        )
    return rows


def test_a_cached_allow_served_on_another_tenants_path_is_a_critical_collision() -> None:
    found = detect(shared_reports())
    kinds = {ev(f)["kind"]: f for f in found}
    assert set(kinds) == {"collision", "route"}
    c = kinds["collision"]
    assert (c["severity"], c["actor"], c["actor_tenant"]) == ("critical", "usr-1", "t0001")
    assert c["tenants"] == ["t0001", "t0003"]
    e = ev(c)
    assert e["collision"] == "cross" and e["served"]["tenants"] == ["t0003"]
    assert e["decisions"][0]["request_id"] == "r-own"
    assert e["decisions"][0]["token_fingerprint"] == "tok-1"
    assert set(e["request_ids"]) == {"r-own", *(f"r-other-{i}" for i in range(4))}
    assert c["title"].startswith("Cached authorizer decision for usr-1 (t0001) served on tenant")
    r = kinds["route"]
    assert (r["severity"], r["actor"], r["tenants"]) == ("high", None, ["t0001", "t0003"])
    assert r["title"].startswith("Authorizer cache key of GET /tenants/{tenantId}/reports")


def test_the_route_is_reported_once_however_many_principals_collide() -> None:
    rows = shared_reports()
    other = user(7, "t0004")
    rows += decided(10, "r-own-7", "tok-7", action=REPORTS, **other)
    rows += hit(50, "r-x-7", action=REPORTS, **{**other, "target_tenant": "t0005"})
    found = detect(rows)
    assert sorted(ev(f)["kind"] for f in found) == ["collision", "collision", "route"]
    route = next(f for f in found if ev(f)["kind"] == "route")
    assert route["tenants"] == ["t0001", "t0003", "t0004", "t0005"]


def test_a_parent_companys_cached_allow_on_its_child_is_no_collision() -> None:
    rows = decided(0, "p-0", "tok-p", action=INVOICES, **user(1, "t0001"))
    rows += hit(60, "p-1", action=INVOICES, **{**user(1, "t0001"), "target_tenant": "t0003"})
    rels = (Organisation(parent="t0001", children=("t0003",)),)
    assert detect(rows, _rels=rels) == []
    assert sorted(ev(f).get("collision", "route") for f in detect(rows)) == ["cross", "route"]


def test_a_cached_deny_on_other_tenants_paths_is_no_collision() -> None:
    # Walking tenants with one token: the cached, tenant-scoped policy refuses each one.
    rows = decided(0, "w-0", "tok-w", action=INVOICES, **user(1, "t0001"))
    for i, t in enumerate(("t0002", "t0003", "t0004")):
        who = {**user(1, "t0001"), "target_tenant": t, "outcome": "denied", "status_code": 403}
        rows += hit(10 * (i + 1), f"w-{i + 1}", action=INVOICES, **who)
    assert detect(rows) == []


def test_a_cached_allow_used_from_another_address_and_agent_is_a_client_collision() -> None:
    rows = decided(0, "c-0", "tok-c", action=INVOICES, **user(1, "t0001"))
    moved = {**user(1, "t0001"), "source_ip": "203.0.113.77", "user_agent": SCRIPT}
    rows += hit(30, "c-1", action=INVOICES, **moved)
    found = detect(rows)
    assert [(ev(f)["collision"], f["severity"]) for f in found] == [("client", "medium")]
    assert found[0]["title"].startswith("Cached authorizer decision for usr-1 served to another")


def test_an_address_change_alone_is_recorded_low_not_paged() -> None:
    rows = decided(0, "m-0", "tok-m", action=INVOICES, **user(1, "t0001"))
    rows += hit(30, "m-1", action=INVOICES, **{**user(1, "t0001"), "source_ip": "192.0.2.200"})
    assert [(ev(f)["collision"], f["severity"]) for f in detect(rows)] == [
        ("client_partial", "low")
    ]


def test_a_hit_explained_by_its_own_clients_decision_is_no_collision() -> None:
    # Two sessions of one user: the office one's hit follows its own decision, even though the
    # home session's decision (another address) is later.
    office, home = user(1, "t0001"), {**user(1, "t0001"), "source_ip": "192.0.2.9"}
    rows = decided(0, "o-0", "tok-o", action=INVOICES, **office)
    rows += decided(20, "h-0", "tok-h", action=INVOICES, **home)
    rows += hit(40, "o-1", action=INVOICES, **office)
    rows += hit(50, "h-1", action=INVOICES, **home)
    assert detect(rows) == []


def test_a_hit_is_linked_to_a_decision_of_its_own_api_only() -> None:
    # One user on two APIs. On the first, the authorizer itself allowed t0003's path (and the
    # hit is served from that decision); the second API's later decision for t0001 is in
    # another cache and explains nothing about the first's hit.
    first, second = "execute-api:a1b2c3d4e5/prod", "execute-api:f6g7h8i9j0/prod"
    partner = {**user(1, "t0001"), "target_tenant": "t0003"}
    rows = decided(0, "a-0", "tok-a", action=REPORTS, service=first, **partner)
    rows += decided(20, "b-0", "tok-b", action=INVOICES, service=second, **user(1, "t0001"))
    rows += hit(40, "a-1", action=REPORTS, service=first, **partner)
    assert detect(rows) == []
    # Were both on one API, the hit would follow the later decision (for t0001): a collision.
    same = [{**r, "service": first} for r in rows]
    assert sorted(ev(f).get("collision", "route") for f in detect(same)) == ["cross", "route"]


def test_a_hit_past_the_ttl_is_linked_to_no_decision() -> None:
    rows = decided(0, "l-0", "tok-l", action=REPORTS, **user(1, "t0001"))
    late = {**user(1, "t0001"), "target_tenant": "t0003", "source_ip": "203.0.113.5"}
    rows += hit(400, "l-1", action=REPORTS, **late)
    assert detect(rows) == []
    assert len(detect(rows, cache_ttl_s=600)) == 2


def test_a_decision_without_a_tenant_is_compared_by_client_and_says_so() -> None:
    rows = decided(
        0, "n-0", "tok-n", action=INVOICES, **{**user(1, "t0001"), "target_tenant": None}
    )
    moved = {**user(1, "t0001"), "source_ip": "203.0.113.8", "user_agent": SCRIPT}
    rows += hit(30, "n-1", action=INVOICES, **moved)
    (found,) = detect(rows)
    e = ev(found)
    assert (e["collision"], e["tenant_unknown"]) == ("client", 1)
    assert "compared by client only" in e["tenant_note"]


def test_cache_answers_tells_hits_misses_and_unguarded_requests() -> None:
    from detectors.base import to_frame
    from detectors.evidence import cache_answers

    rows = decided(0, "a-0", "tok-a", **user(1, "t0001"))
    rows += hit(10, "a-1", **user(1, "t0001"))
    rows += [api(20, request_id="login", actor_principal=None, action="POST /x/session")]
    rows += [api(30, request_id="expired", actor_principal=None, status_code=401)]
    rows += [api(30, source="authorizer", request_id="expired", actor_principal=None)]
    answers = cache_answers(to_frame(events(rows)))
    assert answers is not None
    hits, misses = answers
    assert hits.tolist() == [False, False, True, False, False, False]
    assert misses.tolist() == [True, False, False, False, True, False]
    assert cache_answers(to_frame(events([r for r in rows if r["source"] != "authorizer"]))) is None
