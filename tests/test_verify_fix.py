"""``tenantwatch verify-fix``: the incident's detectors run again over the scheduled windows
after the fix, without writing findings; a finding of its actors on its tenants is a recurrence
(exit 1, never closed); none, with ``--close``, closes it as ``remediated`` with the span verified
in the note."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline import verdicts
from pipeline.alert.run import run_alert
from pipeline.cli import cli
from pipeline.detect import run_detect
from pipeline.lake import Lake, event_partition
from pipeline.schema import VERDICT_KINDS
from tests import verdictlake as vl
from tests.factories import T0, event, events, role

FIX = "2026-11-16T12:00:00Z"  # the fix: two hours after usr-a's and usr-b's reads at 10:00
USR_C = role("tenant-scoped-access", "usr-c")  # t0005


@pytest.fixture(scope="module")
def alerted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake after detect and alert: usr-a's incident (t0001 on t0002) and usr-b's (t0003 on
    t0004), both of 2026-11-16 10:00."""
    root = tmp_path_factory.mktemp("alerted") / "lake"
    lake = vl.build(str(root))
    run_detect(lake.root, vl.config())
    run_alert(lake.root, vl.config())
    return root


@pytest.fixture
def lake(alerted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    monkeypatch.delenv("TENANTWATCH_RUN_WINDOW_MINUTES", raising=False)
    shutil.copytree(alerted, tmp_path / "lake")
    return Lake(str(tmp_path / "lake"))


def later(lake: Lake, *rows: dict[str, Any]) -> None:
    """Events of 14:00-15:00 after the fix; a quiet afternoon by default: usr-a in its own
    tenant, usr-b back on t0004 (its own incident, not usr-a's) and usr-c on t0006."""
    quiet = [
        event(timedelta(hours=4, minutes=30), target_tenant="t0001"),
        event(
            timedelta(hours=4, minutes=40),
            actor_principal=vl.USR_B,
            actor_session="ASIAEXAMPLE0000002",
            actor_tenant="t0003",
            target_tenant="t0004",
        ),
        event(
            timedelta(hours=4, minutes=45),
            actor_principal=USR_C,
            actor_session="ASIAEXAMPLE0000003",
            actor_tenant="t0005",
            target_tenant="t0006",
        ),
    ]
    table = events([*quiet, *rows], "later")
    lake.write_table(f"{event_partition('cloudtrail', '2026-11-16', '14')}/part-b.parquet", table)


def usr_a(lake: Lake) -> verdicts.IncidentRecord:
    return next(r for r in verdicts.read_incidents(lake) if vl.USR_A in r.actors)


def tw(lake: Lake, incident: str, *args: str) -> Any:
    return CliRunner().invoke(
        cli, ["verify-fix", incident, "--lake", lake.root, "--since", FIX, *args]
    )


def result(lake: Lake, incident: str, *args: str) -> tuple[int, dict[str, Any]]:
    out = tw(lake, incident, *args, "--json")
    return out.exit_code, json.loads(out.stdout)


# --- no recurrence -------------------------------------------------------------------------------


def test_no_recurrence_reports_the_span_verified_and_exits_0(lake: Lake) -> None:
    later(lake)
    rec = usr_a(lake)
    code, doc = result(lake, rec.incident_id[:12])
    assert code == 0
    assert (doc["incident_id"], doc["recurred"], doc["recurrences"]) == (rec.incident_id, False, [])
    assert (doc["detectors"], doc["actors"], doc["tenants"]) == (
        ["cross_tenant_access"], [vl.USR_A], ["t0001", "t0002"],
    )  # fmt: skip
    # From the fix to the lake's newest event (14:45), in the scheduled hours 12, 13 and 14.
    assert (doc["since"], doc["until"]) == (
        "2026-11-16T12:00:00+00:00",
        "2026-11-16T14:45:01+00:00",
    )
    assert (doc["windows"], doc["window_minutes"], doc["closed"]) == (3, 60, None)
    assert verdicts.read_verdicts(lake) == []  # without --close, nothing is recorded


def test_close_without_recurrence_records_remediated_with_the_span_in_the_note(lake: Lake) -> None:
    later(lake)
    rec = usr_a(lake)
    out = tw(lake, rec.incident_id, "--close", "--by", "alice", "--note", "role policy fixed")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        f"verified {rec.incident_id}: no recurrence of cross_tenant_access for {vl.USR_A} on "
        "t0001, t0002 from 2026-11-16 12:00:00Z to 2026-11-16 14:45:01Z (3 windows of 60 minutes)",
        f"closed {rec.incident_id} as remediated by alice",
    ]
    (v,) = verdicts.read_verdicts(lake)
    assert (v.incident_id, v.verdict, v.closed_by) == (rec.incident_id, "remediated", "alice")
    assert v.note == (
        "role policy fixed. no recurrence from 2026-11-16T12:00:00+00:00 to "
        "2026-11-16T14:45:01+00:00 (3 windows of 60 minutes; detectors cross_tenant_access; "
        f"actors {vl.USR_A}; tenants t0001, t0002)"
    )
    listed = CliRunner().invoke(cli, ["incident", "list", "--lake", lake.root, "--json"])
    states = {i["incident_id"]: i["verdict"] for i in json.loads(listed.stdout)["incidents"]}
    assert states[rec.incident_id] == "remediated"


def test_close_names_the_login_when_no_one_is_given(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    later(lake)
    code, doc = result(lake, usr_a(lake).incident_id, "--close")
    assert code == 0 and doc["closed"]["verdict"] == "remediated"
    assert doc["closed"]["closed_by"] == "carol"
    assert doc["closed"]["note"].startswith("no recurrence from 2026-11-16T12:00:00+00:00")


def test_findings_of_the_incident_before_the_fix_are_no_recurrence(lake: Lake) -> None:
    # The fix at 10:02: the window holding it (10:00-11:00) has usr-a's reads of 10:00 and 10:01.
    later(lake)
    out = CliRunner().invoke(
        cli,
        ["verify-fix", usr_a(lake).incident_id, "--lake", lake.root,
         "--since", "2026-11-16T10:02:00Z", "--json"],
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert (out.exit_code, doc["recurred"], doc["windows"]) == (0, False, 5)  # hours 10 to 14


def test_a_fix_before_the_incident_finds_the_incident_itself(lake: Lake) -> None:
    later(lake)
    out = CliRunner().invoke(
        cli,
        ["verify-fix", usr_a(lake).incident_id, "--lake", lake.root,
         "--since", "2026-11-16T09:00:00Z", "--json"],
    )  # fmt: skip
    doc = json.loads(out.stdout)
    assert out.exit_code == 1
    assert [r["first_seen"] for r in doc["recurrences"]] == ["2026-11-16T10:00:00+00:00"]


def test_verifying_writes_no_findings(lake: Lake) -> None:
    later(lake, event(timedelta(hours=4, minutes=50), target_tenant="t0002"))
    before = {f: lake.fs.get_file_info(lake.path(f)).size for f in lake.files("findings")}
    code, doc = result(lake, usr_a(lake).incident_id)
    assert code == 1 and doc["recurred"]  # it found something, and wrote none of it
    after = {f: lake.fs.get_file_info(lake.path(f)).size for f in lake.files("findings")}
    assert after == before and before


# --- recurrence ----------------------------------------------------------------------------------


def test_a_recurrence_is_reported_with_its_time_and_is_never_closed(lake: Lake) -> None:
    later(lake, event(timedelta(hours=4, minutes=30, seconds=7), target_tenant="t0002"))
    rec = usr_a(lake)
    out = tw(lake, rec.incident_id, "--close", "--by", "alice")
    assert out.exit_code == 1
    lines = out.stdout.splitlines()
    assert lines[0] == (
        f"incident {rec.incident_id} recurred: 1 finding of cross_tenant_access for {vl.USR_A} "
        "on t0001, t0002 from 2026-11-16 12:00:00Z to 2026-11-16 14:45:01Z (not closed)"
    )
    assert lines[1].startswith("  2026-11-16 14:30:07Z .. 2026-11-16 14:30:07Z  critical ")
    assert "Cross-tenant access" in lines[1] and len(lines) == 2
    assert verdicts.read_verdicts(lake) == []
    code, doc = result(lake, rec.incident_id)
    assert code == 1
    ((r),) = doc["recurrences"]
    assert (r["actor"], r["tenants"], r["first_seen"], r["window_start"], r["window_end"]) == (
        vl.USR_A,
        ["t0002"],
        "2026-11-16T14:30:07+00:00",
        "2026-11-16T14:00:00+00:00",
        "2026-11-16T15:00:00+00:00",
    )


def test_the_incidents_actor_on_another_tenant_recurs_another_actor_on_its_tenant_does_not(
    lake: Lake,
) -> None:
    usr_c_on_t0002 = event(
        timedelta(hours=4, minutes=10),
        actor_principal=USR_C,
        actor_session="ASIAEXAMPLE0000003",
        actor_tenant="t0005",
        target_tenant="t0002",
    )
    later(lake, usr_c_on_t0002, event(timedelta(hours=4, minutes=20), target_tenant="t0009"))
    code, doc = result(lake, usr_a(lake).incident_id)
    assert code == 1
    assert [(r["actor"], r["actor_tenant"], r["tenants"]) for r in doc["recurrences"]] == [
        (vl.USR_A, "t0001", ["t0009"])
    ]


def test_another_incidents_actor_recurring_is_its_own_incident_s_recurrence(lake: Lake) -> None:
    later(lake)  # usr-b read t0004 again at 14:40
    usr_b = next(r for r in verdicts.read_incidents(lake) if vl.USR_B in r.actors)
    code, doc = result(lake, usr_b.incident_id)
    assert code == 1 and [r["first_seen"] for r in doc["recurrences"]] == [
        "2026-11-16T14:40:00+00:00"
    ]
    assert result(lake, usr_a(lake).incident_id)[0] == 0


# --- windows and span ----------------------------------------------------------------------------


def test_windows_are_the_scheduled_windows(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTWATCH_RUN_WINDOW_MINUTES", "30")
    later(lake, event(timedelta(hours=4, minutes=35), target_tenant="t0002"))
    code, doc = result(lake, usr_a(lake).incident_id)
    assert code == 1 and (doc["windows"], doc["window_minutes"]) == (6, 30)  # 12:00 to 15:00
    ((r),) = doc["recurrences"]
    assert (r["window_start"], r["window_end"]) == (
        "2026-11-16T14:30:00+00:00",
        "2026-11-16T15:00:00+00:00",
    )


def test_until_bounds_the_span(lake: Lake) -> None:
    later(lake, event(timedelta(hours=4, minutes=35), target_tenant="t0002"))
    code, doc = result(lake, usr_a(lake).incident_id, "--until", "2026-11-16T14:00:00Z")
    assert (code, doc["until"], doc["windows"], doc["recurred"]) == (
        0, "2026-11-16T14:00:00+00:00", 2, False,
    )  # fmt: skip


def test_a_window_length_that_does_not_divide_a_day_is_a_config_error(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTWATCH_RUN_WINDOW_MINUTES", "7")
    out = tw(lake, usr_a(lake).incident_id)
    assert out.exit_code == 2 and "TENANTWATCH_RUN_WINDOW_MINUTES" in out.stderr


def test_a_span_the_lake_holds_no_events_for_is_exit_2(lake: Lake) -> None:
    out = CliRunner().invoke(
        cli,
        ["verify-fix", usr_a(lake).incident_id, "--lake", lake.root, "--since", "2026-11-20",
         "--close", "--by", "alice"],
    )  # fmt: skip
    assert out.exit_code == 2
    assert "holds no events from 2026-11-20T00:00:00+00:00" in out.stderr
    assert verdicts.read_verdicts(lake) == []


def test_an_unknown_incident_is_exit_2(lake: Lake) -> None:
    out = tw(lake, "f00d", "--close", "--by", "alice")
    assert out.exit_code == 2
    assert out.stderr == (
        "tenantwatch: error: no incident 'f00d' in this lake (tenantwatch incident list)\n"
    )
    assert verdicts.read_verdicts(lake) == []


def test_a_detector_that_fails_leaves_the_incident_open(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from detectors.cross_tenant_access import CrossTenantAccess

    def broken(self: object, window: object) -> None:
        raise RuntimeError("disk on fire")

    later(lake)
    monkeypatch.setattr(CrossTenantAccess, "score", broken)
    out = tw(lake, usr_a(lake).incident_id, "--close", "--by", "alice")
    assert out.exit_code == 1
    assert "not verified, a detector did not run: cross_tenant_access: RuntimeError" in out.stderr
    assert verdicts.read_verdicts(lake) == []


# --- the verdict kind ----------------------------------------------------------------------------


def test_remediated_joins_the_verdict_kinds_and_counts_as_a_true_page(lake: Lake) -> None:
    assert VERDICT_KINDS[:3] == ("true_positive", "false_positive", "benign")
    assert "remediated" in VERDICT_KINDS
    rec = usr_a(lake)
    out = CliRunner().invoke(
        cli,
        ["incident", "close", rec.incident_id, "--verdict", "remediated", "--note", "fixed",
         "--by", "bob", "--lake", lake.root],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    verdicts.close(lake, usr_a(lake), "remediated", "again", "bob", now=T0 + timedelta(days=2))
    other = next(r for r in verdicts.read_incidents(lake) if vl.USR_B in r.actors)
    verdicts.close(lake, other, "false_positive", "a test", "bob")
    (row,) = verdicts.precision(verdicts.read_incidents(lake), verdicts.read_verdicts(lake))
    assert (row["closed"], row["remediated"], row["false_positive"], row["precision"]) == (
        2, 1, 1, 0.5,
    )  # fmt: skip


def test_a_remediated_incident_is_resolved_in_security_hub() -> None:
    from pipeline.alert import securityhub
    from tests.alertfactory import incident

    f = securityhub.asff(incident(), "remediated", "111122223333", "us-east-1", "arn:p", "aws")
    assert (f["Workflow"]["Status"], f["RecordState"]) == ("RESOLVED", "ACTIVE")


def test_verification_is_the_same_from_the_library(lake: Lake) -> None:
    from pipeline import verify_fix
    from pipeline.config import Config

    later(lake)
    # A time without a zone is UTC.
    done = verify_fix.verify(lake, Config(), usr_a(lake), datetime(2026, 11, 16, 12), minutes=60)
    assert not done.recurred and done.windows == 3
    assert done.since == datetime(2026, 11, 16, 12, tzinfo=UTC)
    v = verify_fix.close(lake, usr_a(lake), done, "dave")
    assert (v.verdict, v.note) == ("remediated", done.note())
