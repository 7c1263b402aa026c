"""Findings -> incidents: named cases for the pure grouping (pipeline/alert/incidents.py)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pipeline.alert.incidents import Grouped, Incident, group, incident_id
from tests.alertfactory import DAY, HOUR, PERIODS, T0, finding


def _group(findings: list[dict[str, Any]], existing: Sequence[Incident] = ()) -> Grouped:
    return group(findings, list(existing), PERIODS, DAY)


def test_new_incident_from_one_finding() -> None:
    (inc,) = _group([finding()]).changed
    assert (inc.status, inc.revision, inc.finding_count, inc.event_count) == ("new", 1, 1, 3)
    assert inc.period_start == T0 and inc.period_end == T0 + DAY
    assert inc.tenants == ("t0002",) and inc.actor == "usr-a"


def test_findings_within_the_dedup_period_make_one_incident() -> None:
    (inc,) = _group([finding(), finding(at=5 * HOUR), finding(at=23 * HOUR)]).changed
    assert inc.finding_count == 3 and inc.event_count == 9 and inc.status == "new"
    assert inc.last_seen == T0 + 23 * HOUR + timedelta(minutes=20)


def test_a_later_run_updates_the_stored_incident() -> None:
    (first,) = _group([finding()]).changed
    later = finding(at=3 * HOUR, tenants=["t0003"], event_count=4)
    result = _group([finding(), later], [first])
    (inc,) = result.changed
    assert inc.incident_id == first.incident_id
    assert (inc.status, inc.revision, inc.finding_count, inc.event_count) == ("updated", 2, 2, 7)
    assert inc.tenants == ("t0002", "t0003")
    assert [f["finding_id"] for f in result.absorbed] == [later["finding_id"]]


def test_two_findings_in_one_later_run_are_one_revision() -> None:
    (first,) = _group([finding()]).changed
    (inc,) = _group([finding(at=HOUR), finding(at=2 * HOUR)], [first]).changed
    assert (inc.revision, inc.finding_count) == (2, 3)


def test_new_incident_after_the_period() -> None:
    a, b = sorted(_group([finding(), finding(at=DAY)]).changed, key=lambda i: i.period_start)
    assert a.incident_id != b.incident_id
    assert b.period_start == T0 + DAY and b.status == "new"


def test_dedup_period_is_the_detectors() -> None:
    f = dict(detector="authz_failure_spike", dedup_key="authz_failure_spike:tenant|t0002")
    incs = _group([finding(**f), finding(at=6 * HOUR, **f)]).changed
    assert len(incs) == 2  # 6 h period: the second window opens a new incident


def test_unknown_detector_uses_the_default_period() -> None:
    f = dict(detector="new_detector", dedup_key="new_detector:x")
    assert len(_group([finding(**f), finding(at=20 * HOUR, **f)]).changed) == 1


def test_severity_is_the_maximum_and_the_worst_finding_leads() -> None:
    worst = finding(at=HOUR, severity="critical", title="worse", score=9.0)
    (inc,) = _group([finding(), worst, finding(at=2 * HOUR, severity="low")]).changed
    assert inc.severity == "critical" and inc.title == "worse" and inc.score == 9.0


def test_ids_are_deterministic_whatever_the_order() -> None:
    fs = [finding(), finding(at=HOUR), finding(at=DAY + HOUR), finding(dedup_key="other")]
    one = _group(fs).changed
    two = _group(list(reversed(fs))).changed
    assert [i.incident_id for i in one] == [i.incident_id for i in two]
    assert one == two
    assert one[0].incident_id == incident_id(one[0].dedup_key, one[0].period_start)


def test_rerunning_over_absorbed_findings_changes_nothing() -> None:
    fs = [finding(), finding(at=HOUR)]
    stored = _group(fs).changed
    again = _group(fs, stored)
    assert again.changed == [] and again.absorbed == []


def test_different_dedup_keys_of_different_actors_are_different_incidents() -> None:
    other = finding(
        dedup_key="cross_tenant_access:cross_tenant|usr-b|t0001",
        actor="usr-b",
        evidence=json.dumps({"source_ips": [["203.0.113.9", 1]], "event_ids": ["e9"]}),
    )
    incs = _group([finding(), other])
    assert len({i.incident_id for i in incs.changed}) == 2


def test_round_trip_through_a_row() -> None:
    (inc,) = _group([finding()]).changed
    assert Incident.from_row(inc.as_row()) == inc
    assert dataclasses.replace(inc, snapshot_uri="x").snapshot_uri == "x"


def test_a_finding_seen_again_with_more_events_grows_its_incident() -> None:
    # The fast path saw the window's first object (3 events); the schedule sees the whole hour.
    (first,) = _group([finding()]).changed
    assert first.finding_events == (3,)
    whole = finding(
        event_count=11,
        last_seen=T0 + timedelta(minutes=55),
        tenants=["t0002", "t0003"],
        severity="critical",
    )
    result = _group([whole], [first])
    (inc,) = result.changed
    assert inc.incident_id == first.incident_id and result.absorbed == []
    assert (inc.status, inc.revision, inc.finding_count, inc.event_count) == ("updated", 2, 1, 11)
    assert inc.finding_events == (11,) and inc.severity == "critical"
    assert inc.last_seen == T0 + timedelta(minutes=55) and inc.tenants == ("t0002", "t0003")
    (signal,) = inc.signals
    assert (signal.finding_count, signal.event_count, signal.severity) == (1, 11, "critical")
    # Seen again as it is now, or seen with fewer events (a later sliding window): no change.
    assert _group([whole], [inc]).changed == []
    assert _group([finding(event_count=5)], [inc]).changed == []


def test_one_run_reading_two_views_of_a_finding_counts_the_larger_once() -> None:
    small, large = finding(), finding(event_count=8)
    for order in ([small, large], [large, small]):
        (inc,) = _group(order).changed
        assert (inc.finding_count, inc.event_count, inc.finding_events) == (1, 8, (8,))


def test_an_incident_stored_without_counts_never_grows_its_findings() -> None:
    (first,) = _group([finding()]).changed
    old = Incident.from_row({**first.as_row(), "finding_events": None})
    assert old.finding_events == ()
    assert _group([finding(event_count=9)], [old]).changed == []
    (inc,) = _group([finding(at=HOUR)], [old]).changed  # a new finding still joins
    assert inc.finding_count == 2 and inc.finding_events == ()
