"""Impact assessment and customer notices (pipeline/impact.py, pipeline/notice.py,
``tenantwatch impact``) over a lake where one actor of t0001 reads, writes and is denied on the
data of t0002 and t0003, detected and alerted end to end (incident and snapshot)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline import impact, notice
from pipeline import notebook as tw
from pipeline.alert.run import run_alert
from pipeline.alert.store import load_incidents
from pipeline.cli import cli
from pipeline.config import Config, parse_config
from pipeline.detect import run_detect
from pipeline.errors import ConfigError, InputError
from pipeline.lake import Lake, event_partition
from tests import factories as f

CLASSES = [
    {"pattern": "invoices", "class": "financial"},
    {"pattern": "payroll|salar", "class": "personal"},
]
CFG = parse_config({"classification": CLASSES}, environ={})
SMALL = parse_config(
    {"classification": CLASSES, "alerting": {"snapshot_max_events": 3}}, environ={}
)
ATTACKER = "t0001"
VICTIMS = ("t0002", "t0003")
ROLE = f.role("tenant-scoped-access", "mallory-t0001")
SESSION = "ASIAMALLORYT0001"
API_USER = "usr-mallory-t0001"
IP = "203.0.113.66"
S3 = "s3://acme-data/tenants"


def _ct(at: float, target: str, resource: str, action: str, **kw: Any) -> dict[str, Any]:
    row = {
        "actor_principal": ROLE,
        "actor_session": SESSION,
        "actor_tenant": ATTACKER,
        "target_tenant": target,
        "resource": resource,
        "action": action,
        "source_ip": IP,
    }
    if resource.startswith("dynamodb:"):
        row["service"] = "dynamodb.amazonaws.com"
    return f.event(at, **{**row, **kw})


DENIED = {"outcome": "denied", "error_code": "AccessDenied"}
# (event, target tenant, resource, access, failed) in time order; what every test checks against.
ATTACK = [
    (_ct(300, "t0002", f"{S3}/t0002/invoices/2026-10.pdf", "GetObject"), "read"),
    (_ct(360, "t0002", f"{S3}/t0002/invoices/2026-11.pdf", "GetObject"), "read"),
    (_ct(420, "t0003", "dynamodb:orders-t0003/t0003#order-17", "GetItem"), "read"),
    (_ct(480, "t0003", "dynamodb:orders-t0003/t0003#order-18", "DeleteItem", **DENIED), "denied"),
    (_ct(540, "t0002", f"{S3}/t0002/exports/dump-t0002.csv", "PutObject"), "write"),
    (_ct(600, "t0003", f"{S3}/t0003/payroll/t0003-salaries.xlsx", "GetObject", **DENIED), "denied"),
    (_ct(660, "t0002", f"{S3}/t0002/shared-with-t0003/contract.pdf", "GetObject"), "read"),
    (_ct(720, "t0003", "dynamodb:orders-t0003", "ExecuteStatement"), "other"),
    (
        _ct(780, "t0002", f"{S3}/t0002/invoices/missing.pdf", "GetObject", outcome="error"),
        "read",
    ),
    (
        f.api(
            840,
            actor_principal=API_USER,
            actor_tenant=ATTACKER,
            target_tenant="t0002",
            source_ip=IP,
            action="GET /tenants/{tenantId}/profile",
            resource="/prod/tenants/t0002/profile",
        ),
        "read",
    ),
]
# The actor on its own tenant: part of the evidence, nobody's impact.
OWN = _ct(900, ATTACKER, f"{S3}/t0001/notes/mallory-t0001.txt", "GetObject")
# The actor on the shared bucket itself: no tenant's data (no target tenant).
BUCKET = _ct(930, None, "s3://acme-data", "ListObjectsV2")
EVIDENCE = len(ATTACK) + 2  # the events of the actor that the snapshot holds
# Each victim's own users, elsewhere: not the incident's.
NOISE = [
    f.api(200, actor_principal="usr-bob-t0002", actor_tenant="t0002", target_tenant="t0002"),
    f.api(250, actor_principal="usr-eve-t0003", actor_tenant="t0003", target_tenant="t0003"),
]


def _build(root: Path, cfg: Config) -> str:
    lake = Lake(str(root))
    ct = [e for e, _ in ATTACK if e["source"] == "cloudtrail"] + [OWN, BUCKET]
    api = [e for e, _ in ATTACK if e["source"] == "apigateway"] + NOISE
    hour = ("2026-11-16", "10")
    lake.write_table(f"{event_partition('cloudtrail', *hour)}/p.parquet", f.events(ct, "ct"))
    lake.write_table(f"{event_partition('apigateway', *hour)}/p.parquet", f.events(api, "api"))
    run_detect(str(root), cfg, f.T0, f.T0 + timedelta(days=1))
    run_alert(str(root), cfg)
    return str(root)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _build(tmp_path_factory.mktemp("impact") / "lake", CFG)


@pytest.fixture
def cut_lake(tmp_path: Path) -> str:
    """The same events, alerted with snapshots of at most 3 events."""
    return _build(tmp_path / "lake", SMALL)


def _incident_id(lake: str) -> str:
    incs = [i for i in load_incidents(Lake(lake)) if set(VICTIMS) <= set(i.tenants)]
    assert len(incs) == 1, [(i.incident_id, i.tenants) for i in load_incidents(Lake(lake))]
    return incs[0].incident_id


def _expected(tenant: str) -> dict[str, Any]:
    mine = [(e, a) for e, a in ATTACK if e["target_tenant"] == tenant]
    return {
        "events": len(mine),
        "objects": len({e["resource"] for e, _ in mine}),
        **{k: sum(a == k for _, a in mine) for k in impact.ACCESS},
        "failed": sum(e["outcome"] == "error" for e, _ in mine),
        "actors": tuple(sorted({e["actor_principal"] for e, _ in mine})),
        "first": min(e["event_time"] for e, _ in mine),
        "last": max(e["event_time"] for e, _ in mine),
    }


def _got(t: impact.TenantImpact) -> dict[str, Any]:
    keys = ("events", "objects", *impact.ACCESS, "failed", "actors", "first", "last")
    return {k: getattr(t, k) for k in keys}


# --- the assessment ----------------------------------------------------------------------------


def test_assessment_counts_what_was_written(lake: str) -> None:
    imp = impact.assess(lake, _incident_id(lake), CFG)
    assert [t.tenant for t in imp.tenants] == list(VICTIMS)  # t0002 has more events
    for t in imp.tenants:
        assert t.flagged and _got(t) == _expected(t.tenant), t.tenant
        assert t.actor_tenants == (ATTACKER,) and t.unknown_actor_events == 0
    assert imp.cross_tenant_events == len(ATTACK)
    assert (imp.own_tenant_events, imp.unattributed_events) == (1, 1)
    assert imp.events == EVIDENCE  # the victims' own users are not the incident's
    assert imp.first == ATTACK[0][0]["event_time"] and imp.last == BUCKET["event_time"]
    assert imp.provenance.used == "snapshot" and imp.provenance.snapshot_complete
    assert imp.provenance.complete and imp.provenance.lake_rows == 0


def test_each_object_with_its_access_and_kind_of_data(lake: str) -> None:
    imp = impact.assess(lake, _incident_id(lake), CFG)
    by = {r.resource: r for r in imp.resources}
    assert set(by) == {e["resource"] for e, _ in ATTACK}
    for e, access in ATTACK:
        r = by[e["resource"]]
        assert (r.tenant, r.events, getattr(r, access)) == (e["target_tenant"], 1, 1)
        assert r.first == r.last == e["event_time"]
    assert by[f"{S3}/t0002/invoices/2026-10.pdf"].data_class == "financial"
    assert by[f"{S3}/t0003/payroll/t0003-salaries.xlsx"].data_class == "personal"
    assert by[f"{S3}/t0002/invoices/missing.pdf"].failed == 1
    ddb = by["dynamodb:orders-t0003/t0003#order-17"]
    assert (ddb.data_class, ddb.kind, ddb.actions) == (None, "DynamoDB item", ("GetItem",))
    assert by["/prod/tenants/t0002/profile"].actors == (API_USER,)
    assert by["/prod/tenants/t0002/profile"].kind == "API path"
    t2 = imp.tenant("t0002")
    assert t2 is not None and t2.data == ("API path", "S3 object", "financial")


def test_a_cut_off_snapshot_is_completed_from_the_lake(cut_lake: str) -> None:
    inc = _incident_id(cut_lake)
    imp = impact.assess(cut_lake, inc, SMALL)
    p = imp.provenance
    assert (p.used, p.snapshot_rows, p.snapshot_complete) == ("snapshot+lake", 3, False)
    assert p.snapshot_matched == EVIDENCE and p.lake_rows == EVIDENCE - 3
    assert p.complete and any("snapshot_max_events" in n for n in p.notes)
    for t in imp.tenants:
        assert _got(t) == _expected(t.tenant), t.tenant
    # The lake no longer has the CloudTrail hour: what the snapshot held is all there is.
    shutil.rmtree(Path(cut_lake) / "events" / "source=cloudtrail")
    gone = impact.assess(cut_lake, inc, SMALL)
    assert not gone.provenance.complete and gone.events < EVIDENCE
    assert any("lower bound" in n for n in gone.provenance.notes)
    out = CliRunner().invoke(cli, ["impact", inc[:10], "--lake", cut_lake])
    assert out.exit_code == 0, out.output
    assert "cut off at 3" in out.output and "INCOMPLETE" in out.output


def test_a_snapshot_that_changed_is_not_used(cut_lake: str) -> None:
    inc = load_incidents(Lake(cut_lake))[0]
    events = Path(str(inc.snapshot_uri)).parent / "events.parquet"
    os.chmod(events, 0o644)
    events.write_bytes(events.read_bytes() + b"x")
    imp = impact.assess(cut_lake, _incident_id(cut_lake), SMALL)
    assert imp.provenance.used == "lake" and imp.provenance.snapshot_complete is None
    assert any("not the file its manifest names" in n for n in imp.provenance.notes)
    for t in imp.tenants:
        assert _got(t) == _expected(t.tenant), t.tenant


def test_a_story_grown_since_its_snapshot_and_one_without_are_read_from_the_lake(
    lake: str,
) -> None:
    inc = next(i for i in load_incidents(Lake(lake)) if i.incident_id == _incident_id(lake))
    grown = dataclasses.replace(inc, revision=inc.revision + 1)
    imp = impact.assess(lake, grown, CFG)
    p = imp.provenance
    assert (p.used, p.snapshot_complete, p.lake_rows) == ("snapshot+lake", True, 0)
    assert any(f"covers revision {inc.revision} of {inc.revision + 1}" in n for n in p.notes)
    bare = impact.assess(lake, dataclasses.replace(inc, snapshot_uri=None), CFG)
    assert bare.provenance.used == "lake" and bare.provenance.lake_rows == EVIDENCE
    assert bare.provenance.notes == ("the incident has no snapshot",)
    for t in (*imp.tenants, *bare.tenants):
        assert _got(t) == _expected(t.tenant), t.tenant


def test_unknown_incident() -> None:
    with pytest.raises(InputError, match="no incident"):
        impact.find_incident(Lake("does-not-exist"), "ffff")


# --- read, write, denied ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "action", "outcome", "access"),
    [
        ("cloudtrail", "GetObject", "success", "read"),
        ("cloudtrail", "Query", "success", "read"),
        ("cloudtrail", "BatchGetItem", "error", "read"),
        ("cloudtrail", "PutObject", "success", "write"),
        ("cloudtrail", "DeleteItem", "denied", "denied"),
        ("cloudtrail", "ExecuteStatement", "success", "other"),  # PartiQL: read or write
        ("cloudtrail", "Getaway", "success", "other"),  # not a verb and a name
        ("cloudtrail", None, "success", "other"),
        ("apigateway", "GET /tenants/{tenantId}/invoices", "success", "read"),
        ("apigateway", "POST /tenants/{tenantId}/invoices", "success", "write"),
        ("apigateway", "OPTIONS /tenants/{tenantId}", "success", "other"),
        ("apigateway", "GetObject", "success", "other"),  # CloudTrail's names, not the API's
        ("authorizer", "authorize GET /tenants/t0002/invoices", "success", "other"),
        ("authorizer", "authorize GET /tenants/t0002/invoices", "denied", "denied"),
    ],
)
def test_builtin_action_rules(source: str, action: str | None, outcome: str, access: str) -> None:
    assert impact.access_of(CFG, source, action, outcome) == access


def test_configured_action_rules_come_first_and_builtins_can_be_left_out() -> None:
    rules = [{"pattern": "POST /search.*", "access": "read", "sources": ["apigateway"]}]
    cfg = parse_config({"impact": {"actions": rules}}, environ={})
    assert impact.access_of(cfg, "apigateway", "POST /search/invoices", "success") == "read"
    assert impact.access_of(cfg, "apigateway", "POST /invoices", "success") == "write"
    bare = parse_config({"impact": {"actions": rules, "builtin_actions": False}}, environ={})
    assert impact.access_of(bare, "apigateway", "POST /invoices", "success") == "other"
    assert impact.access_of(bare, "cloudtrail", "GetObject", "success") == "other"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"impact": {"actions": [{"pattern": "(", "access": "read"}]}}, "impact.actions[0]"),
        ({"impact": {"actions": [{"pattern": "x", "access": "steal"}]}}, "access"),
        ({"classification": [{"pattern": "x"}]}, "classification[0].class: required"),
        ({"classification": [{"pattern": "[", "class": "x"}]}, "classification[0].pattern"),
    ],
)
def test_bad_impact_configuration(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(doc, environ={})


# --- the command -------------------------------------------------------------------------------


def _config_file(tmp_path: Path) -> str:
    path = tmp_path / "tenantwatch.toml"
    path.write_text(
        '[[classification]]\npattern = "invoices"\nclass = "financial"\n\n'
        '[[classification]]\npattern = "payroll|salar"\nclass = "personal"\n'
    )
    return str(path)


def test_cli_formats(lake: str, tmp_path: Path) -> None:
    inc = _incident_id(lake)
    run = CliRunner()
    base = ["--config", _config_file(tmp_path), "impact", inc[:8], "--lake", lake]
    table = run.invoke(cli, base)
    assert table.exit_code == 0, table.output
    assert f"evidence   the snapshot ({EVIDENCE} events, complete)" in table.output
    row = [r"t0002", "yes", "6", "6", "5", "1", "0", "0"]  # events, objects, read ... other
    assert re.search(r"\s+│\s+".join(row), table.output)
    md = run.invoke(cli, [*base, "--format", "markdown"])
    assert md.exit_code == 0, md.output
    assert md.output.startswith(f"# Impact of incident {inc}\n")
    assert "| t0003 | yes | 4 | 4 | 1 | 0 | 2 | 1 | 0 |" in md.output
    assert "| t0002 | s3://acme-data/tenants/t0002/invoices/2026-10.pdf | financial |" in md.output
    js = run.invoke(cli, [*base, "--format", "json"])
    assert js.exit_code == 0, js.output
    doc = json.loads(js.stdout)
    assert doc["incident_id"] == inc and doc["provenance"]["used"] == "snapshot"
    t2 = doc["tenants"][0]
    assert (t2["tenant"], t2["events"], t2["write"], t2["first"]) == (
        "t0002",
        6,
        1,
        "2026-11-16T10:05:00Z",
    )
    assert "rows" not in doc and "named" not in doc


def test_cli_unknown_incident_is_exit_2(lake: str) -> None:
    out = CliRunner().invoke(cli, ["impact", "ffffffff", "--lake", lake])
    assert out.exit_code == 2
    assert out.output.strip().count("\n") == 0 and "no incident 'ffffffff'" in out.output


def test_cli_notice_options(lake: str, tmp_path: Path) -> None:
    inc = _incident_id(lake)
    run = CliRunner()
    out = tmp_path / "notices"
    wrote = run.invoke(cli, ["impact", inc, "--lake", lake, "--notice", "--out", str(out)])
    assert wrote.exit_code == 0, wrote.output
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"notice-{inc[:12]}-{t}.md" for t in VICTIMS]
    one = run.invoke(cli, ["impact", inc, "--lake", lake, "--notice", "--tenant", "t0003"])
    assert one.exit_code == 0 and one.stdout.startswith("# Notice of access")
    assert "`t0003`" in one.stdout and "t0002" not in one.stdout and not one.stderr
    none = run.invoke(cli, ["impact", inc, "--lake", lake, "--notice", "--tenant", ATTACKER])
    assert none.exit_code == 2 and "acted on its data" in none.output
    bad = run.invoke(cli, ["impact", inc, "--lake", lake, "--tenant", "t0003"])
    assert bad.exit_code == 2 and "--notice" in bad.output
    js = run.invoke(cli, ["impact", inc, "--lake", lake, "--notice", "--format", "json"])
    notices = json.loads(js.stdout)["notices"]
    assert [n["tenant"] for n in notices] == list(VICTIMS) and notices[0]["withheld"] == 1
    assert "not named" in js.stderr


def test_file_names_of_notices_are_safe() -> None:
    span = impact.Provenance(
        used="lake",
        snapshot_uri=None,
        snapshot_rows=0,
        snapshot_complete=None,
        snapshot_matched=None,
        lake_rows=0,
        complete=True,
        since=f.T0,
        until=f.T0,
    )
    imp = impact.Impact("ab" * 16, 1, "high", (), None, None, 0, 0, 0, 0, (), (), span)
    assert notice.file_name(imp, "t0002") == "notice-abababababab-t0002.md"
    odd = notice.file_name(imp, "../../etc/passwd")
    assert "/" not in odd and not odd.startswith(".") and odd.endswith(".md")
    assert odd != notice.file_name(imp, "..\\..\\etc\\passwd")


# --- the notebook API ----------------------------------------------------------------------------


def test_notebook_impact(lake: str) -> None:
    inc = _incident_id(lake)
    rep = tw.impact(lake, inc[:10], CFG)
    assert list(rep.tenants["tenant"]) == list(VICTIMS)
    assert rep.tenants.set_index("tenant").loc["t0003", "denied"] == 2
    assert len(rep.resources) == len(ATTACK)
    scopes = sorted(rep.events["scope"].value_counts().items())
    assert scopes == [("cross", len(ATTACK)), ("own", 1), ("unattributed", 1)]
    assert set(rep.events["access"]) == {"read", "write", "denied", "other"}
    assert rep.assessment.provenance.used == "snapshot"
    assert rep.notice("t0002").startswith("# Notice of access")
    assert sorted(rep.notices()) == list(VICTIMS)


# --- customer notices: nothing of another tenant -------------------------------------------------


def _others(tenant: str) -> set[str]:
    """Every other tenant's id and resource names, and every actor's identities."""
    names = {ATTACKER, *VICTIMS} - {tenant}
    names |= {e["resource"] for e, _ in ATTACK if e["target_tenant"] != tenant}
    names |= {OWN["resource"], ROLE, SESSION, API_USER, IP, "mallory"}
    # (BUCKET's resource, the bucket every tenant's objects are in, is in their own names.)
    names |= {r["resource"] for r in NOISE}
    # The parts of resource names that name their tenant: a table, a file.
    parts = {"orders-t0003": "t0003", "t0003-salaries": "t0003", "dump-t0002": "t0002"}
    return names | {part for part, owner in parts.items() if owner != tenant}


def test_notices_name_nothing_of_another_tenant(lake: str) -> None:
    imp = impact.assess(lake, _incident_id(lake), CFG)
    drafts = notice.drafts(imp)
    assert [d.tenant for d in drafts] == list(VICTIMS)
    for d in drafts:
        text = d.text.lower()
        for name in _others(d.tenant):
            assert name.lower() not in text, (d.tenant, name)
        assert "of another customer's account made" in d.text
        assert d.text.count("**[TO COMPLETE: ") == 3
    t2, t3 = drafts
    assert t2.warnings == (
        "1 object of t0002 not named: the name contains another tenant's or an actor's",
    )
    assert t3.warnings == () and t3.withheld == 0
    # Its own objects by name, except the one whose name names t0003.
    assert f"`{S3}/t0002/invoices/2026-10.pdf`" in t2.text and t2.withheld == 1
    assert "(name withheld)" in t2.text and "shared-with" not in t2.text
    assert "2 user identities of another customer's account made **6 requests**" in t2.text
    assert "a user of another customer's account made **4 requests**" in t3.text
    assert "concerning **6 objects**" in t2.text and "| read | 5 | 5 |" in t2.text
    assert "| write (created, changed or deleted) | 1 | 1 |" in t2.text
    assert "1 request failed with an error" in t2.text
    kinds = "data served by our API (1 object); files (2 objects); financial (3 objects)"
    assert f"Kinds of data: {kinds}." in t2.text
    assert "| denied (refused by our access controls) | 2 | 2 |" in t3.text
    assert "| other | 1 | 1 |" in t3.text and "personal (1 object)" in t3.text
    assert "Between **2026-11-16 10:07:00 UTC** and **2026-11-16 10:12:00 UTC**" in t3.text
    # The shared bucket holds t0002's objects too: not another tenant's; t0003's objects are.
    deny = notice.forbidden(imp, "t0002")
    assert BUCKET["resource"] not in deny and "t0002" not in deny
    assert {e["resource"] for e, _ in ATTACK if e["target_tenant"] == "t0003"} <= deny
    with pytest.raises(InputError, match="acted on its data"):
        notice.draft(imp, ATTACKER)  # the actor's own tenant: not an affected one


def test_a_name_that_reaches_the_text_is_a_warning_not_silence(lake: str) -> None:
    """A tenant id that is also a word of the template (here: the tenant "data") is found in the
    text and reported to the analyst, outside the text."""
    imp = impact.assess(lake, _incident_id(lake), CFG)
    odd = impact.Impact(**{**imp.__dict__, "named": (*imp.named, "data")})
    d = notice.draft(odd, "t0003")
    assert any("'data'" in w for w in d.warnings)
    assert "'data'" not in d.text
