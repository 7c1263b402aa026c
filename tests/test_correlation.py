"""Findings of one actor -> one incident (an attack story); different actors stay apart.

Named positive cases (what joins) and negative cases (what never does) for the grouping in
pipeline/alert/incidents.py and the links of pipeline/alert/entities.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from pipeline.alert.entities import Egress
from pipeline.alert.incidents import NO_EGRESS, Grouped, Incident, group
from tests.alertfactory import DAY, HOUR, PERIODS, finding

MIN = timedelta(minutes=1)
ROLE = "arn:aws:sts::111122223333:assumed-role/tenant-reports/tenant-t0008-usr-4e4ee6be"


def _ev(ips: Sequence[str] = (), events: Sequence[str] = (), requests: Sequence[str] = ()) -> str:
    return json.dumps(
        {
            "source_ips": [[ip, 1] for ip in ips],
            "event_ids": list(events),
            "request_ids": list(requests),
        }
    )


def _f(detector: str, kind: str, actor: str | None, **kw: Any) -> dict[str, Any]:
    """A finding of ``detector`` about ``actor``, with evidence of its own unless given."""
    group_key = actor or "|".join(kw.get("tenants", ["t0002"]))
    kw.setdefault("evidence", _ev(events=[f"{detector}-{kind}-{group_key}"]))
    return finding(
        detector=detector,
        dedup_key=f"{detector}:{kind}|{group_key}",
        actor=actor,
        title=f"{detector} {kind} {actor}",
        **kw,
    )


def _group(
    findings: list[dict[str, Any]],
    existing: Sequence[Incident] = (),
    egress: Egress = NO_EGRESS,
) -> Grouped:
    return group(findings, list(existing), PERIODS, DAY, HOUR, egress)


# --- what joins ----------------------------------------------------------------------------------


def test_three_detectors_on_one_actor_are_one_incident_with_a_timeline() -> None:
    walk = [
        _f("authz_failure_spike", "actor", "usr-e", first_seen=None, severity="high"),
        _f("cross_tenant_access", "cross_tenant", "usr-e", severity="high"),
        _f("tenant_switching", "principal", "usr-e", severity="critical", score=9.0),
    ]
    walk[0]["first_seen"] = walk[1]["first_seen"] + 2 * MIN  # began two minutes later
    (inc,) = _group(walk).changed
    assert inc.finding_count == 3 and inc.severity == "critical"
    assert [s.detector for s in inc.signals] == [
        "cross_tenant_access",
        "tenant_switching",
        "authz_failure_spike",
    ]
    assert [s.kind for s in inc.signals] == ["cross_tenant", "principal", "actor"]
    # The worst signal leads; the id is the first finding's, as before.
    assert inc.detector == "tenant_switching" and inc.title == "tenant_switching principal usr-e"
    assert "principal:usr-e" in inc.entities and "address:198.51.100.7" not in inc.entities


def test_an_api_principal_and_the_role_session_acting_for_it_are_one_incident() -> None:
    api = _f("cross_tenant_access", "cross_tenant", "usr-4e4ee6be", severity="critical")
    backend = _f("cross_tenant_access", "cross_tenant", ROLE, severity="critical")
    (inc,) = _group([api, backend]).changed
    assert {e for e in inc.entities if e.startswith("principal:")} == {
        "principal:usr-4e4ee6be",
        f"principal:{ROLE}",
    }
    assert inc.finding_count == 2 and len(inc.signals) == 2


def test_the_two_copies_of_a_cross_account_call_are_one_incident() -> None:
    requester = "arn:aws:sts::111122223333:assumed-role/platform-export/job-7"
    owner = "aws-account:111122223333/job-7"  # the resource owner's copy names the account
    ev_a = _ev(events=["ev-a"], requests=["REQ1"])
    ev_b = _ev(events=["ev-b"], requests=["REQ1"])  # its own event id, the same request
    a = _f("cross_tenant_access", "cross_tenant", requester, evidence=ev_a)
    b = _f("cross_tenant_access", "cross_tenant", owner, evidence=ev_b)
    assert len(_group([a, b]).changed) == 1
    # The session name alone ties them too (the account and the session are the same).
    c = _f("cross_tenant_access", "cross_tenant", owner, evidence=_ev(events=["ev-c"]))
    assert len(_group([a, c]).changed) == 1


def test_an_address_joins_an_actor_to_the_address_level_finding() -> None:
    user = _f("tenant_switching", "principal", "usr-x", evidence=_ev(ips=["203.0.113.5"]))
    ip = _f("authz_failure_spike", "ip", "203.0.113.5", evidence=_ev(ips=["203.0.113.5"]))
    (inc,) = _group([user, ip]).changed
    assert inc.entities == ("principal:usr-x", "address:203.0.113.5")


@pytest.mark.parametrize("token", ["sha256:00000000000000e1", "redacted:sha256:00000000000000e1"])
def test_a_token_fingerprint_is_a_session_of_the_story(token: str) -> None:
    """A token's fingerprint, as the authorizer logs it or as ingest redacts a token it found in
    a log line, is a session: the token's findings join the user's story by it."""
    replay = _f("token_replay", "token", token, evidence=_ev(ips=["203.0.113.5"]))
    user = _f("tenant_switching", "principal", "usr-x", evidence=_ev(ips=["203.0.113.5"]))
    (inc,) = _group([replay, user]).changed
    assert f"session:{token}" in inc.entities
    assert f"principal:{token}" not in inc.entities


def test_a_finding_bridging_two_new_stories_merges_them_before_anything_pages() -> None:
    a = _f("tenant_switching", "principal", "usr-x", evidence=_ev(ips=["203.0.113.5"]))
    b = _f("cross_tenant_access", "cross_tenant", "usr-y", evidence=_ev(ips=["203.0.113.6"]))
    both = _f(
        "authz_failure_spike",
        "ip",
        "203.0.113.5",
        evidence=_ev(ips=["203.0.113.5", "203.0.113.6"]),
        at=timedelta(minutes=1),
    )
    (inc,) = _group([a, b, both]).changed
    assert inc.finding_count == 3


def test_a_later_run_joins_the_stored_story_and_bumps_its_revision_once() -> None:
    (first,) = _group([_f("cross_tenant_access", "cross_tenant", "usr-e")]).changed
    later = [
        _f("tenant_switching", "principal", "usr-e", at=HOUR),
        _f("authz_failure_spike", "actor", "usr-e", at=HOUR),
    ]
    (inc,) = _group(later, [first]).changed
    assert inc.incident_id == first.incident_id
    assert (inc.status, inc.revision, inc.finding_count, len(inc.signals)) == ("updated", 2, 3, 3)


# --- what never joins ----------------------------------------------------------------------------


def test_actors_that_share_only_a_tenant_stay_apart() -> None:
    a = _f("cross_tenant_access", "cross_tenant", "usr-a", evidence=_ev(ips=["203.0.113.1"]))
    b = _f("cross_tenant_access", "cross_tenant", "usr-b", evidence=_ev(ips=["203.0.113.2"]))
    spike = _f("authz_failure_spike", "tenant", None, evidence=_ev(ips=["203.0.113.1"]))
    incs = _group([a, b, spike]).changed
    assert len(incs) == 3  # the tenant-level spike's addresses are many actors': no link
    assert all(i.tenants == ("t0002",) for i in incs)


def test_actors_behind_a_shared_egress_address_stay_apart() -> None:
    nat = "198.51.100.7"
    a = _f("cross_tenant_access", "cross_tenant", "usr-a", evidence=_ev(ips=[nat]))
    b = _f("tenant_switching", "principal", "usr-b", evidence=_ev(ips=[nat]))
    assert len(_group([a, b]).changed) == 1  # an ordinary address: one actor
    apart = _group([a, b], egress=Egress.of(["198.51.100.0/24"])).changed
    assert len(apart) == 2
    assert all(f"egress:{nat}" in i.entities for i in apart)
    # The address itself on the list: the address-level finding joins no one either.
    ip = _f("authz_failure_spike", "ip", nat, evidence=_ev(ips=[nat]))
    assert len(_group([a, b, ip], egress=Egress.of([nat])).changed) == 3


def test_two_role_sessions_ending_alike_are_not_one_actor() -> None:
    a = _f("cross_tenant_access", "cross_tenant", "arn:aws:sts::1:assumed-role/reports/x-admin")
    b = _f("cross_tenant_access", "cross_tenant", "arn:aws:sts::1:assumed-role/billing/y-admin")
    assert len(_group([a, b]).changed) == 2


def test_one_actor_again_after_the_gap_is_a_new_incident() -> None:
    a = _f("cross_tenant_access", "cross_tenant", "usr-e")
    b = _f("tenant_switching", "principal", "usr-e", at=3 * HOUR)  # 2 h 45 min after a ended
    assert len(_group([a, b]).changed) == 2
    assert len(group([a, b], [], PERIODS, DAY, 3 * HOUR).changed) == 1  # the gap is a setting


def test_two_stored_stories_are_never_merged_after_they_paged() -> None:
    a = _f("tenant_switching", "principal", "usr-x", evidence=_ev(ips=["203.0.113.5"]))
    b = _f("cross_tenant_access", "cross_tenant", "usr-y", evidence=_ev(ips=["203.0.113.6"]))
    stored = _group([a, b]).changed
    both = _f(
        "authz_failure_spike",
        "ip",
        "203.0.113.5",
        evidence=_ev(ips=["203.0.113.5", "203.0.113.6"]),
        at=timedelta(minutes=1),
    )
    (inc,) = _group([both], stored).changed
    assert inc.finding_count == 2 and inc.revision == 2
    assert inc.incident_id in {i.incident_id for i in stored}


def test_an_incident_stored_before_stories_reads_as_one_signal() -> None:
    (inc,) = _group([_f("cross_tenant_access", "cross_tenant", "usr-e")]).changed
    row = inc.as_row()
    for column in ("signals", "entities", "links", "snapshot_revision"):
        row[column] = None
    old = Incident.from_row(row)
    assert [s.dedup_key for s in old.signals] == [inc.dedup_key]
    assert "actor:usr-e" in old.links
    (joined,) = _group([_f("tenant_switching", "principal", "usr-e", at=HOUR)], [old]).changed
    assert joined.incident_id == inc.incident_id and len(joined.signals) == 2
