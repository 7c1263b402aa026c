"""Containment: ``tenantwatch contain`` writes an entry to the DynamoDB table (moto on 127.0.0.1)
and records it in the lake and on the incident; ``--list`` and ``--lift`` (idempotent); bad input
is exit code 2 and a table that cannot be written exit code 1 with nothing said contained;
automatic containment is off by default and writes once per incident and subject. The reference
authorizer's tests are in tests/test_containment_authorizer.py."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import aws as pipeline_aws
from pipeline import containment, containment_auto
from pipeline.alert.run import run_alert
from pipeline.config import Config, parse_config
from pipeline.errors import ConfigError, InputError
from pipeline.ingest.fingerprint import fingerprint
from pipeline.lake import Lake
from tests import verdictlake as vl
from tests.containmentlake import (
    TABLE,
    contain_args,
    create_table,
    detected_lake,
    incident_of,
    items,
    tw,
)
from tests.containmentlake import alert as _alert


@pytest.fixture(scope="module")
def alerted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("contain") / "lake"
    detected_lake(root)
    return root


@pytest.fixture
def detected(alerted: Path, tmp_path: Path) -> Lake:
    shutil.copytree(alerted, tmp_path / "lake")
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def lake(detected: Lake) -> Lake:
    _alert(detected)
    return detected


@pytest.fixture
def table(aws: str) -> Iterator[str]:
    yield create_table()
    pipeline_aws.reset()


# --- contain, list, lift -------------------------------------------------------------------------


def test_contain_then_list_then_lift_and_lift_again(lake: Lake, table: str) -> None:
    rec = incident_of(lake, vl.USR_A)
    before = datetime.now(UTC)
    out = tw(*contain_args(lake, rec.incident_id[:12], "--tenant", "t0002"))
    assert out.exit_code == 0, out.output
    cid = containment.containment_id(rec.incident_id, containment.Subject("tenant", "t0002"))
    assert out.stdout.startswith("contained tenant#t0002 read-only until ")
    assert f"containment {cid} for incident {rec.incident_id}, table {TABLE}" in out.stdout
    (item,) = items()
    s = {k: v.get("S") for k, v in item.items()}
    assert s["subject"] == "tenant#t0002" and s["containment_id"] == cid
    assert (s["kind"], s["value"], s["mode"]) == ("tenant", "t0002", "read-only")
    assert (s["reason"], s["incident_id"], s["created_by"]) == (
        "cross-tenant reads", rec.incident_id, "alice",
    )  # fmt: skip
    expires = datetime.fromisoformat(s["expires"].replace("Z", "+00:00"))
    assert before + timedelta(hours=4) <= expires <= datetime.now(UTC) + timedelta(hours=4)
    assert int(item["expires_at"]["N"]) == int(expires.timestamp())
    assert before <= datetime.fromisoformat(s["created_at"].replace("Z", "+00:00"))

    listed = tw("contain", "--list", "--table", TABLE, "--json")
    assert listed.exit_code == 0, listed.output
    doc = json.loads(listed.stdout)
    assert [(e["containment_id"], e["subject"], e["expired"]) for e in doc["entries"]] == [
        (cid, "tenant#t0002", False)
    ]
    table_out = tw("contain", "--list", "--table", TABLE)
    assert "1 entries in force" in table_out.stdout and cid in table_out.stdout

    lifted = tw("contain", "--lift", cid, "--reason", "tenant confirmed safe", "--by", "bob",
                "--table", TABLE, "--lake", lake.root)  # fmt: skip
    assert lifted.exit_code == 0, lifted.output
    assert lifted.stdout == f"lifted {cid} (tenant#t0002, read-only, incident {rec.incident_id})\n"
    assert items() == []
    again = tw("contain", "--lift", cid, "--by", "bob", "--table", TABLE, "--lake", lake.root)
    assert again.exit_code == 0, again.output
    assert "was already lifted at" in again.stdout and "by bob: nothing to lift" in again.stdout
    by_subject = tw("contain", "--lift", "tenant#t0002", "--table", TABLE, "--lake", lake.root)
    assert by_subject.exit_code == 0 and "nothing to lift" in by_subject.stdout
    assert json.loads(tw("contain", "--list", "--table", TABLE, "--json").stdout)["entries"] == []
    # Only what was done is recorded: a contain and one lift (the no-ops change nothing).
    acts = containment.read_actions(lake, rec.incident_id)
    assert [(a.action, a.acted_by, a.reason) for a in acts] == [
        ("contain", "alice", "cross-tenant reads"),
        ("lift", "bob", "tenant confirmed safe"),
    ]


def test_a_subject_contained_again_for_the_incident_rewrites_its_entry_and_lifts_by_subject(
    lake: Lake, table: str
) -> None:
    a, b = incident_of(lake, vl.USR_A), incident_of(lake, vl.USR_B)
    assert tw(*contain_args(lake, a.incident_id, "--tenant", "t0002")).exit_code == 0
    out = tw(*contain_args(lake, a.incident_id, "--tenant", "t0002", mode="suspend"))
    assert out.exit_code == 0, out.output
    (item,) = items()
    assert item["mode"]["S"] == "suspend"
    # Another incident's containment of the same subject is an entry of its own.
    assert tw(*contain_args(lake, b.incident_id, "--tenant", "t0002")).exit_code == 0
    assert len(items()) == 2
    out = tw("contain", "--lift", "tenant#t0002", "--table", TABLE, "--lake", lake.root)
    assert out.exit_code == 0, out.output
    assert out.stdout.count("lifted c-") == 2 and items() == []


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        (("--principal", vl.USR_A), f"principal#{vl.USR_A}"),
        (("--token", fingerprint("secret")), "token#" + fingerprint("secret")[len("redacted:") :]),
        (("--token", "SHA256:0123456789ABCDEF"), "token#sha256:0123456789abcdef"),
        (("--address", "2001:DB8::0:1"), "address#2001:db8::1"),
    ],
)
def test_principals_tokens_and_addresses_are_kept_in_canonical_form(
    lake: Lake, table: str, subject: tuple[str, str], key: str
) -> None:
    rec = incident_of(lake, vl.USR_A)
    out = tw(*contain_args(lake, rec.incident_id, *subject, mode="suspend"))
    assert out.exit_code == 0, out.output
    (item,) = items()
    assert item["subject"]["S"] == key


def test_expires_takes_durations_and_times_in_the_future() -> None:
    now = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
    assert containment.expiry("30m", now) == now + timedelta(minutes=30)
    assert containment.expiry("4h", now) == now + timedelta(hours=4)
    assert containment.expiry("2d", now) == now + timedelta(days=2)
    assert containment.expiry("2026-11-16T15:00:00+01:00", now) == now + timedelta(hours=2)
    assert containment.expiry("2026-11-17", now) == datetime(2026, 11, 17, tzinfo=UTC)
    for text in ("2026-11-16T11:00:00Z", "2026-11-16T12:00:00Z"):
        with pytest.raises(InputError, match="is not in the future"):
            containment.expiry(text, now)
    for text in ("0h", "soon", "-4h", "4 hours"):
        with pytest.raises(InputError, match="expected a duration"):
            containment.expiry(text, now)


def test_expired_entries_are_listed_only_with_all(table: str) -> None:
    now = datetime.now(UTC)
    t = containment.Table(TABLE)
    live = containment.Entry(
        "c-live", containment.Subject("tenant", "t0002"), "suspend", now + timedelta(hours=1),
        "r", "i1", "alice", now,
    )  # fmt: skip
    gone = containment.Entry(
        "c-gone", containment.Subject("tenant", "t0004"), "read-only", now - timedelta(minutes=1),
        "r", "i2", "alice", now - timedelta(hours=1),
    )  # fmt: skip
    t.put(live)
    t.put(gone)  # past its expiry; DynamoDB's TTL has not deleted it yet
    doc = json.loads(tw("contain", "--list", "--table", TABLE, "--json").stdout)
    assert [e["containment_id"] for e in doc["entries"]] == ["c-live"]
    doc = json.loads(tw("contain", "--list", "--all", "--table", TABLE, "--json").stdout)
    assert {e["containment_id"]: e["expired"] for e in doc["entries"]} == {
        "c-gone": True,
        "c-live": False,
    }
    text = tw("contain", "--list", "--all", "--table", TABLE).stdout
    assert "(expired)" in text and text.count("(expired)") == 1


def test_the_table_comes_from_the_environment_when_not_given(
    lake: Lake, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTWATCH_CONTAINMENT_TABLE", TABLE)
    rec = incident_of(lake, vl.USR_A)
    args = contain_args(lake, rec.incident_id, "--tenant", "t0001")
    i = args.index("--table")
    out = tw(*args[:i], *args[i + 2 :])
    assert out.exit_code == 0, out.output
    assert len(items()) == 1
    monkeypatch.delenv("TENANTWATCH_CONTAINMENT_TABLE")
    out = tw("contain", "--list")
    assert out.exit_code == 2 and "no containment table" in out.output


# --- bad input and a table that cannot be written ------------------------------------------------


def test_an_unknown_incident_is_exit_code_2_and_writes_nothing(lake: Lake, table: str) -> None:
    out = tw(*contain_args(lake, "0000dead", "--tenant", "t0002"))
    assert out.exit_code == 2
    assert out.output == (
        "tenantwatch: error: no incident '0000dead' in this lake (tenantwatch incident list)\n"
    )
    assert items() == [] and containment.read_actions(lake) == []


def test_an_unknown_tenant_is_exit_code_2_saying_how_tenants_are_known(
    lake: Lake, table: str
) -> None:
    rec = incident_of(lake, vl.USR_A)
    out = tw(*contain_args(lake, rec.incident_id, "--tenant", "t0099"))
    assert out.exit_code == 2
    assert out.output.count("\n") == 1
    assert out.output.startswith("tenantwatch: error: --tenant: unknown tenant 't0099': ")
    for how in ("[[relationships]]", "[[tenancy.lookup]]", "incident's tenants", "actor or target"):
        assert how in out.output
    assert items() == [] and containment.read_actions(lake) == []


def test_a_tenant_is_known_from_the_lake_s_events_or_the_configuration(
    lake: Lake, table: str, tmp_path: Path
) -> None:
    cfg = parse_config(
        {
            "relationships": [{"kind": "reseller", "reseller": "t0100", "clients": ["t0101"]}],
            "tenancy": {
                "lookup": [{"name": "accounts", "values": {"111122223333": "t0200"}}],
            },
        },
        environ={},
    )
    a, b = incident_of(lake, vl.USR_A), incident_of(lake, vl.USR_B)
    assert containment.check_tenant(cfg, lake, "t0101", ()) == "named by the configuration"
    assert containment.check_tenant(cfg, lake, "t0200", ()) == "named by the configuration"
    assert containment.check_tenant(cfg, lake, "t0002", a.tenants) == "a tenant of the incident"
    # t0004 is not usr-a's incident's, but the lake's events name it.
    assert containment.check_tenant(cfg, lake, "t0004", a.tenants) == "seen in the lake's events"
    assert containment.check_tenant(cfg, lake, "t0004", b.tenants) == "a tenant of the incident"
    registry = tmp_path / "registry.csv"
    registry.write_text("account,tenant\n444455556666,t0300\n")
    with_file = parse_config(
        {"tenancy": {"lookup": [{"name": "reg", "file": str(registry), "key": "account"}]}},
        environ={},
    )
    assert containment.check_tenant(with_file, lake, "t0300", ()) == "a tenant of the lookup 'reg'"
    with pytest.raises(InputError, match="unknown tenant 't0301'"):
        containment.check_tenant(with_file, lake, "t0301", ())


def _deny_puts(**kwargs: Any) -> Any:
    from botocore.awsrequest import AWSResponse

    error = {"Code": "AccessDeniedException", "Message": "not authorized to perform PutItem"}
    return AWSResponse("https://dynamodb", 400, {}, None), {
        "Error": error,
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }


@pytest.mark.parametrize("fault", ["missing", "denied", "network"])
def test_a_table_that_cannot_be_written_is_exit_code_1_and_nothing_is_said_contained(
    lake: Lake, table: str, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = incident_of(lake, vl.USR_A)
    args = contain_args(lake, rec.incident_id, "--tenant", "t0002")
    name = "no-such-table" if fault == "missing" else TABLE
    args[args.index("--table") + 1] = name
    with monkeypatch.context() as mp:
        if fault == "denied":
            client = pipeline_aws.client("dynamodb")
            client.meta.events.register("before-call.dynamodb.PutItem", _deny_puts)
        elif fault == "network":
            mp.setattr(pipeline_aws, "MAX_ATTEMPTS", 1)  # no backoff against a closed port
            mp.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        out = tw(*args)
    pipeline_aws.reset()
    assert out.exit_code == 1, out.output
    assert out.stdout == ""
    assert "contained" not in out.output
    assert out.output.startswith(f"tenantwatch: error: containment table {name!r} cannot be ")
    assert out.output.count("\n") == 1
    said = {"missing": "ResourceNotFoundException", "denied": "AccessDeniedException"}
    assert said.get(fault, "Could not connect") in out.output
    assert containment.read_actions(lake) == [] and items() == []


# --- the record: the lake and the incident -------------------------------------------------------


def test_contain_and_lift_are_rows_in_the_lake_and_lines_of_incident_show(
    lake: Lake, table: str
) -> None:
    rec = incident_of(lake, vl.USR_B)
    assert tw(*contain_args(lake, rec.incident_id, "--address", "203.0.113.9")).exit_code == 0
    cid = containment.containment_id(rec.incident_id, containment.Subject("address", "203.0.113.9"))
    assert tw("contain", "--lift", cid, "--by", "carol", "--table", TABLE,
              "--lake", lake.root).exit_code == 0  # fmt: skip
    files = sorted((Path(lake.root) / "incidents" / "containment").rglob("*.parquet"))
    assert len(files) == 2 and all(f.parent.name.startswith("date=") for f in files)
    contain_row, lift_row = containment.read_actions(lake)
    assert (contain_row.action, contain_row.subject, contain_row.mode) == (
        "contain", "address#203.0.113.9", "read-only",
    )  # fmt: skip
    assert contain_row.expires is not None and contain_row.table_name == TABLE
    assert (lift_row.action, lift_row.containment_id, lift_row.acted_by, lift_row.mode) == (
        "lift", cid, "carol", None,
    )  # fmt: skip
    assert {contain_row.incident_id, lift_row.incident_id} == {rec.incident_id}

    shown = tw("incident", "show", rec.incident_id[:10], "--lake", lake.root)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.strip().startswith("containment"))
    assert lines[i].split(None, 1)[1] == "0 in force, 1 lifted or expired"
    assert "contain address#203.0.113.9 read-only until " in lines[i + 1]
    assert f"by alice (cli, {cid}): cross-tenant reads" in lines[i + 1]
    assert lines[i + 2].endswith(f"lift address#203.0.113.9 by carol (cli, {cid}): lifted")
    doc = json.loads(tw("incident", "show", rec.incident_id, "--lake", lake.root, "--json").stdout)
    assert [c["action"] for c in doc["containment"]] == ["contain", "lift"]
    other = tw("incident", "show", incident_of(lake, vl.USR_A).incident_id, "--lake", lake.root)
    assert other.exit_code == 0 and "containment" not in other.stdout


# --- automatic containment -----------------------------------------------------------------------


def auto_config(*rules: dict[str, str], table_name: str = TABLE) -> Config:
    return parse_config({"containment": {"table": table_name, "auto": list(rules)}}, environ={})


RULE = {"detector": "cross_tenant_access", "severity": "critical", "mode": "read-only",
        "expires": "4h"}  # fmt: skip


def test_automatic_containment_is_off_by_default(detected: Lake, table: str) -> None:
    assert Config().containment.auto == ()
    summary = _alert(detected)
    assert summary["incidents_new"] == 2
    assert "containment" not in summary
    assert items() == [] and containment.read_actions(detected) == []


def test_automatic_containment_writes_once_per_incident_and_subject(
    detected: Lake, table: str
) -> None:
    cfg = auto_config(RULE, {**RULE, "subject": "actor", "mode": "suspend"})
    before = datetime.now(UTC)
    summary = _alert(detected, cfg)
    assert summary["incidents_new"] == 2
    assert summary["containment"] == {"written": 4, "errors": [], "skipped": []}
    got = {i["subject"]["S"]: i for i in items()}
    assert set(got) == {"tenant#t0002", "tenant#t0004", f"principal#{vl.USR_A}",
                        f"principal#{vl.USR_B}"}  # fmt: skip
    a = incident_of(detected, vl.USR_A)
    item = got["tenant#t0002"]
    assert item["origin"]["S"] == "auto" and item["created_by"]["S"] == "tenantwatch"
    assert item["incident_id"]["S"] == a.incident_id and item["mode"]["S"] == "read-only"
    assert got[f"principal#{vl.USR_A}"]["mode"]["S"] == "suspend"
    expires = datetime.fromisoformat(item["expires"]["S"].replace("Z", "+00:00"))
    assert before + timedelta(hours=4) <= expires <= datetime.now(UTC) + timedelta(hours=4)
    assert item["containment_id"]["S"] == containment.containment_id(
        a.incident_id, containment.Subject("tenant", "t0002")
    )
    acts = containment.read_actions(detected)
    assert len(acts) == 4 and {x.origin for x in acts} == {"auto"}
    reasons = {x.subject: x.reason for x in containment.read_actions(detected, a.incident_id)}
    assert reasons["tenant#t0002"].startswith("automatic: containment.auto[0] ")
    assert reasons[f"principal#{vl.USR_A}"].startswith("automatic: containment.auto[1] ")

    # The stage again: nothing new opens, nothing is written.
    again = _alert(detected, cfg)
    assert again["incidents_new"] == 0 and again["containment"]["written"] == 0
    assert len(items()) == 4 and len(containment.read_actions(detected)) == 4

    # The same incidents handed over as just opened (a run that died before saving them):
    # every entry is recorded, nothing is written twice, and a lifted one stays lifted.
    opened = _stored(detected)
    cid = item["containment_id"]["S"]
    lifted = tw("contain", "--lift", cid, "--table", TABLE, "--lake", detected.root)
    assert lifted.exit_code == 0, lifted.output
    redo = containment_auto.auto_contain(detected, cfg, opened)
    assert (redo.written, redo.errors) == ([], [])
    assert len(items()) == 3 and len(containment.read_actions(detected)) == 5


def _stored(lake: Lake) -> list[Any]:
    from pipeline.alert import store

    return list(store.load_incidents(lake))


def test_an_entry_written_but_not_recorded_is_recorded_by_the_next_attempt(
    detected: Lake, table: str
) -> None:
    cfg = auto_config(RULE)
    _alert(detected)
    opened = _stored(detected)
    entries, _ = containment_auto.planned(cfg, opened, datetime.now(UTC))
    containment.Table(TABLE).put(entries[0])  # the table took it; the run died before the lake
    done = containment_auto.auto_contain(detected, cfg, opened)
    assert done.errors == [] and sorted(done.written) == sorted(e.containment_id for e in entries)
    assert len(items()) == len(entries) == 2
    assert items()[0]["origin"]["S"] == "auto"


def test_rules_match_by_detector_and_at_least_their_severity(detected: Lake, table: str) -> None:
    _alert(detected)
    opened = _stored(detected)
    now = datetime.now(UTC)
    high = {**RULE, "severity": "high"}  # critical incidents are high or worse
    assert len(containment_auto.planned(auto_config(high), opened, now)[0]) == 2
    other = {**RULE, "detector": "tenant_switching"}
    assert containment_auto.planned(auto_config(other), opened, now)[0] == []
    anyone = {**RULE, "detector": "any", "subject": "actor_tenant"}
    entries, _ = containment_auto.planned(auto_config(anyone), opened, now)
    assert sorted(e.subject.key for e in entries) == ["tenant#t0001", "tenant#t0003"]
    # The first rule naming a subject decides its mode.
    first = auto_config({**RULE, "mode": "suspend"}, RULE)
    assert {e.mode for e in containment_auto.planned(first, opened, now)[0]} == {"suspend"}


def test_a_failed_automatic_containment_is_reported_and_alerting_goes_on(
    detected: Lake, table: str, tmp_path: Path
) -> None:
    cfg = auto_config(RULE, table_name="no-such-table")
    result = run_alert(detected.root, cfg)
    errors = result.summary["containment"]["errors"]
    assert len(errors) == 2 and all("ResourceNotFoundException" in e for e in errors)
    assert result.summary["incidents_new"] == 2 and result.summary["notifications_queued"] == 2
    assert containment.read_actions(detected) == []
    from pipeline.alert import console
    from pipeline.runs.results import AlertResult

    assert console.failed(result.summary)
    assert AlertResult.of(result).containment_errors == errors
    warnings = console.warnings(result.summary)
    assert sum("automatic containment failed" in w for w in warnings) == 2


def test_alert_on_the_command_line_exits_1_when_automatic_containment_fails(
    alerted: Path, tmp_path: Path, table: str
) -> None:
    shutil.copytree(alerted, tmp_path / "lake")
    conf = tmp_path / "tenantwatch.toml"
    conf.write_text(
        '[containment]\ntable = "no-such-table"\n'
        'auto = [{detector = "cross_tenant_access", severity = "critical", mode = "read-only", '
        'expires = "4h", subject = "tenant"}]\n'
    )
    out = tw("--config", str(conf), "alert", "--lake", str(tmp_path / "lake"))
    assert out.exit_code == 1, out.output
    assert "tenantwatch: warning: automatic containment failed: " in out.stderr


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"auto": [RULE]}, "containment.auto: expected containment.table"),
        ({"table": "t", "auto": [{**RULE, "detector": "nope"}]},
         "containment.auto[0].detector: unknown detector 'nope'"),
        ({"table": "t", "auto": [{**RULE, "expires": "soon"}]},
         "containment.auto[0].expires: expected a duration such as 30m, 4h or 2d, got 'soon'"),
        ({"table": "t", "auto": [{**RULE, "mode": "lock"}]}, "containment.auto[0].mode: "),
        ({"table": "t", "auto": [{**RULE, "severity": "huge"}]}, "containment.auto[0].severity"),
        ({"table": "t", "auto": [{**RULE, "subject": "bucket"}]}, "containment.auto[0].subject"),
        ({"table": "t", "auto": [{k: v for k, v in RULE.items() if k != "mode"}]},
         "containment.auto[0].mode: required key is missing"),
        ({"table": "t", "tabel": "x"}, "containment.tabel: unknown key"),
        ({"table": 3}, "containment.table: expected a string, got an integer"),
    ],
)  # fmt: skip
def test_containment_configuration_errors_name_the_key(
    section: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"containment": section}, "tw.toml", environ={})
    assert str(err.value).startswith("tw.toml: ") and message in str(err.value)


def test_containment_configuration_is_read_with_its_environment_override(tmp_path: Path) -> None:
    cfg = parse_config({}, environ={"TENANTWATCH_CONTAINMENT_TABLE": "from-env"})
    assert cfg.containment.table == "from-env" and cfg.containment.auto == ()
    cfg = parse_config(
        {"containment": {"auto": [RULE]}}, environ={"TENANTWATCH_CONTAINMENT_TABLE": "t"}
    )
    (rule,) = cfg.containment.auto
    assert (rule.subject, rule.mode, rule.expires) == ("tenant", "read-only", "4h")
    bad = tmp_path / "tenantwatch.toml"
    bad.write_text('[containment]\ntable = "t"\nauto = [{detector = "x", severity = "low", '
                   'mode = "suspend", expires = "1h"}]\n')  # fmt: skip
    out = tw("--config", str(bad), "contain", "--list")
    assert out.exit_code == 2
    assert "containment.auto[0].detector: unknown detector 'x'" in out.output


def test_actions_taken_at_the_same_moment_read_back_in_the_order_they_were_taken() -> None:
    at = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
    e = containment.Entry(
        "c-1", containment.Subject("tenant", "t0002"), "suspend", at + timedelta(hours=1),
        "r", "i1", "alice", at,
    )  # fmt: skip
    taken = [
        containment.Action.of(k, e, "r", "me", at, "cli", TABLE) for k in ["contain", "lift"] * 25
    ]
    ordered = sorted(taken, key=lambda a: (a.acted_at, a.action_id))
    assert ordered == taken and len({a.action_id for a in taken}) == 50
