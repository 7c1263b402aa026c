"""token_replay: named positive and negative cases on small inline data."""

from __future__ import annotations

from datetime import timedelta
from itertools import count
from typing import Any

import orjson
import pandas as pd
import pytest

from detectors.testing import check_detector
from detectors.token_replay import Settings, TokenReplay, returns
from pipeline.config import Consultant, Organisation
from pipeline.errors import ConfigError
from tests.factories import T0, api, event, events

FP = "sha256:0123456789abcdef"
OTHER_FP = "sha256:fedcba9876543210"
OWNER = ("198.51.100.7", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/130.0.0.0")
THIEF = ("203.0.113.66", "python-requests/2.32.3")
PHONE = ("198.51.100.7", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile Safari")
CARRIER = ("100.64.20.9", PHONE[1])
EXPIRED = "token expired"
RELATIONSHIPS = (
    Organisation(parent="t0010", children=("t0011",)),
    Consultant(principal="ext-consultant-ana", tenants=("t0020",)),
)
_ids = count(1)


def decision(
    at: float,
    client: tuple[str, str] = OWNER,
    *,
    fp: str = FP,
    allowed: bool = True,
    reason: str | None = None,
    principal: str | None = "usr-a",
    claim: str | None = "t0001",
    target: str = "t0001",
    client_in_authorizer: bool = False,
) -> list[dict[str, Any]]:
    """One request the authorizer decided: its decision (the token's fingerprint, no address
    unless ``client_in_authorizer``) and the access-log line of the same request (the client)."""
    rid = f"req-{next(_ids):06d}"
    status = 200 if allowed else 401 if reason == EXPIRED else 403
    outcome = "success" if allowed else "denied"
    ip, ua = client
    auth = event(
        at,
        event_id=f"fn-{rid}",
        source="authorizer",
        event_kind="authorizer_decision",
        service="lambda:tenant-authorizer",
        action="authorize GET /tenants/{tenantId}/invoices",
        actor_principal=principal,
        actor_type="token",
        actor_session=fp,
        actor_tenant=claim,
        actor_tenant_source="authorizer_claim" if claim else None,
        target_tenant=target,
        resource=f"/tenants/{target}/invoices",
        outcome=outcome,
        error_code=None if allowed else reason or f"tenant claim {claim} does not match",
        source_ip=ip if client_in_authorizer else None,
        user_agent=ua if client_in_authorizer else None,
        request_id=rid,
    )
    access = api(
        at,
        event_id=rid,
        request_id=rid,
        actor_principal=principal,
        actor_tenant=claim,
        target_tenant=target,
        outcome=outcome,
        status_code=status,
        source_ip=ip,
        user_agent=ua,
    )
    return [auth, access]


def cached(at: float, client: tuple[str, str]) -> dict[str, Any]:
    """A request served from the authorizer cache: an access-log line and no decision."""
    rid = f"req-{next(_ids):06d}"
    return api(at, event_id=rid, request_id=rid, source_ip=client[0], user_agent=client[1])


def uses(*plan: tuple[float, tuple[str, str]], **kw: Any) -> list[dict[str, Any]]:
    return [row for at, client in plan for row in decision(at, client, **kw)]


def detect(rows: list[dict[str, Any]], baseline: list[dict[str, Any]] | None = None, **s: Any):
    det = TokenReplay(Settings(**s), RELATIONSHIPS)
    base = events(baseline, prefix="base") if baseline else None
    return det.detect(base, events(rows)).to_pylist()


def only(findings: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(findings) == 1, [f["title"] for f in findings]
    return findings[0]


def ev(finding: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(finding["evidence"])


INTERLEAVED = ((0, OWNER), (300, THIEF), (620, OWNER), (900, THIEF), (1250, OWNER))


def test_token_replay_keeps_the_contract() -> None:
    check_detector(TokenReplay, events(uses(*INTERLEAVED)), RELATIONSHIPS)


# --- positives ---------------------------------------------------------------------------------


def test_stolen_token_interleaved_with_its_owner_and_allowed_is_high() -> None:
    f = only(detect(uses(*INTERLEAVED)))
    e = ev(f)
    assert f["severity"] == "high"
    assert f["actor"] == FP and f["actor_tenant"] == "t0001"
    assert e["cases"] == ["concurrent"]
    assert e["returns"] == 3 and e["succeeded"] == 5
    assert {(c["source_ip"], c["user_agent"]) for c in e["clients"]} == {OWNER, THIEF}
    # The decisions and their access-log lines are the evidence: ten events.
    assert f["event_count"] == 10 and len(e["request_ids"]) == 5
    assert "2 clients at once" in f["title"] and "usr-a" in f["title"]


def test_concurrent_use_every_attempt_denied_is_medium() -> None:
    rows = uses(*INTERLEAVED, allowed=False, reason="containment: token suspended")
    f = only(detect(rows))
    assert f["severity"] == "medium"
    assert ev(f)["cases"] == ["concurrent"] and ev(f)["succeeded"] == 0


def test_client_read_from_the_authorizer_line_itself() -> None:
    rows = [r for r in uses(*INTERLEAVED, client_in_authorizer=True) if r["source"] != "apigateway"]
    f = only(detect(rows))
    assert ev(f)["cases"] == ["concurrent"] and ev(f)["clients_unknown"] == 0


def test_expired_token_tried_past_the_floor_is_medium() -> None:
    rows = uses(*((60 * i, THIEF) for i in range(4)), allowed=False, reason=EXPIRED, claim=None)
    f = only(detect(rows))
    e = ev(f)
    assert f["severity"] == "medium"
    assert e["cases"] == ["expired"] and e["expired_denials"] == 4
    # An expired token's claims are not logged: no tenant to judge, and said so.
    assert e["tenant_unresolved"] == 4 and f["actor_tenant"] is None
    assert "tried 4 times expired" in f["title"]


def test_token_allowed_after_the_authorizer_called_it_expired_is_high() -> None:
    rows = decision(0, THIEF, allowed=False, reason=EXPIRED, claim=None, principal=None)
    rows += decision(40, THIEF)  # an authorizer instance whose clock is behind
    f = only(detect(rows))
    e = ev(f)
    assert f["severity"] == "high"
    assert e["cases"] == ["expired"] and e["allowed_after_expiry"] == 1
    assert "allowed 1 times after expiry" in f["title"]


def test_token_claiming_one_tenant_sent_to_another_is_reported() -> None:
    rows = decision(0, OWNER, allowed=False, target="t0002")
    f = only(detect(rows))
    e = ev(f)
    assert f["severity"] == "medium" and e["cases"] == ["tenant"]
    assert f["tenants"] == ["t0002"] and e["tenant_mismatches"] == 1


def test_token_allowed_on_another_tenant_than_its_claim_is_high() -> None:
    f = only(detect(decision(0, OWNER, allowed=True, target="t0002")))
    assert f["severity"] == "high" and ev(f)["cases"] == ["tenant"]


def test_stolen_token_used_at_once_and_after_expiry_names_both_cases() -> None:
    rows = uses(*INTERLEAVED)
    rows += uses((3700, THIEF), (3760, THIEF), (3820, THIEF), allowed=False, reason=EXPIRED)
    f = only(detect(rows))
    assert f["severity"] == "high"
    assert ev(f)["cases"] == ["concurrent", "expired"]


def test_a_return_across_the_window_start_is_seen_in_the_history() -> None:
    before = uses((-500, OWNER), (-200, THIEF))
    f = only(detect(uses((100, OWNER), (150, OWNER)), baseline=before))
    assert ev(f)["cases"] == ["concurrent"]
    # Only the window's own events are the finding's rows.
    assert f["first_seen"] == T0 + timedelta(seconds=100) and f["event_count"] == 2


# --- negatives ---------------------------------------------------------------------------------


def test_phone_changing_network_one_after_the_other_is_not_reported() -> None:
    plan = [(300 * i, PHONE) for i in range(4)] + [(1200 + 300 * i, CARRIER) for i in range(4)]
    assert detect(uses(*plan)) == []


def test_two_tabs_behind_one_office_nat_are_one_client() -> None:
    assert detect(uses(*((100 * i, OWNER) for i in range(10)))) == []


def test_two_devices_behind_one_nat_each_with_its_own_token_are_not_reported() -> None:
    rows = []
    for i in range(8):
        fp, client = (FP, OWNER) if i % 2 else (OTHER_FP, PHONE)
        rows += decision(120 * i, client, fp=fp)
    assert detect(rows) == []


def test_returns_further_apart_than_the_span_are_not_concurrent() -> None:
    rows = uses((0, OWNER), (2000, THIEF), (4000, OWNER))
    assert detect(rows) == []
    assert only(detect(rows, span_s=4000))["severity"] == "high"


def test_one_stale_tab_after_expiry_is_not_reported() -> None:
    rows = uses((0, OWNER), (3000, OWNER))
    rows += decision(3700, OWNER, allowed=False, reason=EXPIRED, claim=None, principal=None)
    assert detect(rows) == []


def test_a_relationship_explains_a_claim_other_than_the_tenant() -> None:
    rows = decision(0, OWNER, claim="t0010", target="t0011")  # the parent on its subsidiary
    rows += decision(10, OWNER, fp=OTHER_FP, principal="ext-consultant-ana", claim="t0030")
    rows[-2]["target_tenant"] = rows[-1]["target_tenant"] = "t0020"
    assert detect(rows) == []


def test_tenant_case_can_be_turned_off() -> None:
    assert detect(decision(0, OWNER, allowed=False, target="t0002"), tenant_mismatch=False) == []


def test_requests_served_from_the_cache_are_not_attributed_to_a_token() -> None:
    # The thief's requests hit the cache the owner's decision filled: no decision, no token.
    rows = uses((0, OWNER), (320, OWNER), (640, OWNER))
    rows += [cached(30 + 40 * i, THIEF) for i in range(12)]
    assert detect(rows) == []


def test_a_decision_without_any_client_is_counted_not_guessed() -> None:
    rows = uses(*INTERLEAVED)
    extra = decision(1000, THIEF)[0]  # its access-log line never arrived
    f = only(detect([*rows, extra]))
    assert ev(f)["clients_unknown"] == 1 and ev(f)["returns"] == 3


def test_no_token_reaches_the_finding_only_its_fingerprint() -> None:
    f = only(detect(uses(*INTERLEAVED)))
    assert ev(f)["token_fingerprint"] == FP
    assert "Bearer" not in f["evidence"] and "eyJ" not in f["evidence"]


def test_a_bad_setting_is_a_config_error_before_any_data_is_read() -> None:
    with pytest.raises(ConfigError, match=r"^detectors\.token_replay\.min_expired: "):
        TokenReplay.parse_settings({"min_expired": "three"})
    with pytest.raises(ConfigError, match="expired_reason: not a regular expression"):
        TokenReplay.parse_settings({"expired_reason": "(token"})


def test_returns_counts_comebacks_only() -> None:
    t = pd.Series([0, 1, 2, 3, 4]).to_numpy() * 1_000_000
    n, marked = returns(t, pd.Series(["a", "a", "b", "b", "a"]).to_numpy(dtype=object), 10**7)
    assert n == 1 and marked.tolist() == [False, True, True, True, True]
    n, _ = returns(t, pd.Series(["a", "a", "b", "b", "b"]).to_numpy(dtype=object), 10**7)
    assert n == 0
