"""After the page, end to end: one incident from detection to its fix, through the commands an
analyst runs (``tenantwatch`` on click's CliRunner) and the reference authorizer the stack
deploys, on moto over HTTP on 127.0.0.1.

The story: an actor of tenant A (t0001) reads and writes the data of tenants B (t0002) and C
(t0003). ``detect`` and ``alert`` open one incident. ``contain`` suspends B in the containment
table that infra/template.yaml creates, and the stack's authorizer, run in this process with its
function's environment, then denies B's requests and allows C's and A's; contained again
read-only, B may only read. ``impact`` counts what the lake holds of B and C, and ``--notice``
drafts one notice each that names nothing of the other tenants or the actor. Time then moves past
the expiry (the clocks of ``pipeline.containment`` and of the authorizer, never a sleep): B is
allowed again while DynamoDB still holds the item, ``--list`` no longer shows it in force,
``--lift`` removes it and says so again harmlessly, and ``incident show`` lists every contain and
lift. Last, ``verify-fix`` finds no recurrence in the quiet afternoon and closes the incident as
``remediated``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from pipeline import aws as pipeline_aws
from pipeline import containment
from pipeline.cli import cli
from pipeline.lake import Lake, event_partition
from tests import awsstack
from tests import factories as f
from tests.fakes import FakeContext, authorizer_request, load_authorizer

pytestmark = [
    pytest.mark.e2e,
    # moto's CloudFormation skips the types it lacks (alarms, Glue, the schedule) with a warning.
    pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning"),
]

A, B, C = "t0001", "t0002", "t0003"
ROLE = f.role("tenant-scoped-access", "mallory-t0001")
SESSION = "ASIAMALLORYT0001"
API_USER = "usr-mallory-t0001"
IP = "203.0.113.66"
S3 = "s3://acme-data/tenants"


def _ct(
    at: float | timedelta, target: str | None, resource: str, action: str, **kw: Any
) -> dict[str, Any]:
    row = {
        "actor_principal": ROLE,
        "actor_session": SESSION,
        "actor_tenant": A,
        "target_tenant": target,
        "resource": resource,
        "action": action,
        "source_ip": IP,
    }
    if resource.startswith("dynamodb:"):
        row["service"] = "dynamodb.amazonaws.com"
    return f.event(at, **{**row, **kw})


DENIED = {"outcome": "denied", "error_code": "AccessDenied"}
# (event, access) in time order: the cross-tenant part of the attack, 10:05 to 10:12.
ATTACK = [
    (_ct(300, B, f"{S3}/{B}/invoices/2026-10.pdf", "GetObject"), "read"),
    (_ct(360, B, f"{S3}/{B}/invoices/2026-11.pdf", "GetObject"), "read"),
    (_ct(420, C, f"dynamodb:orders-{C}/{C}#order-17", "GetItem"), "read"),
    (_ct(480, C, f"dynamodb:orders-{C}/{C}#order-18", "DeleteItem", **DENIED), "denied"),
    (_ct(540, B, f"{S3}/{B}/exports/dump-{B}.csv", "PutObject"), "write"),
    # B's own object, but its name names C: a notice to B never says it.
    (_ct(600, B, f"{S3}/{B}/shared-with-{C}/contract.pdf", "GetObject"), "read"),
    (_ct(660, C, f"{S3}/{C}/payroll/{C}-salaries.xlsx", "GetObject", **DENIED), "denied"),
    (
        f.api(
            720,
            actor_principal=API_USER,
            actor_tenant=A,
            target_tenant=B,
            source_ip=IP,
            action="GET /tenants/{tenantId}/profile",
            resource=f"/prod/tenants/{B}/profile",
        ),
        "read",
    ),
]
# The actor on its own tenant: evidence, nobody's impact.
OWN = _ct(780, A, f"{S3}/{A}/notes/mallory-{A}.txt", "GetObject")
# Each tenant's own users on their own data: not the incident's.
USERS = {A: "usr-alice-t0001", B: "usr-bob-t0002", C: "usr-carol-t0003"}
NOISE = [
    f.api(200 + 10 * i, actor_principal=user, actor_tenant=t, target_tenant=t)
    for i, (t, user) in enumerate(USERS.items())
]
FIX = "2026-11-16T12:00:00Z"  # when the role and the API were given their tenant checks


def _quiet_afternoon() -> list[dict[str, Any]]:
    """After the fix: the actor in its own tenant, B's and C's users in theirs."""
    own = _ct(timedelta(hours=4, minutes=10), A, f"{S3}/{A}/notes/x.txt", "GetObject")
    users = [
        f.api(
            timedelta(hours=4, minutes=20 + i), actor_principal=u, actor_tenant=t, target_tenant=t
        )
        for i, (t, u) in enumerate(USERS.items())
    ]
    return [own, *users]


def _write(root: Path, name: str, hour: str, rows: list[dict[str, Any]]) -> None:
    lake = Lake(str(root))
    for source in ("cloudtrail", "apigateway"):
        mine = [r for r in rows if r["source"] == source]
        if mine:
            path = f"{event_partition(source, '2026-11-16', hour)}/{name}.parquet"
            lake.write_table(path, f.events(mine, f"{name}-{source}"))


# --- the stage: the stack, the clock, the analyst's commands, the SaaS's authorizer -------------


@dataclass
class Clock:
    """The one time every reader of containment goes by in this test; it only moves forward."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def move(self, by: timedelta) -> None:
        self.now += by

    def epoch(self) -> float:
        return self.now.timestamp()


def _claims(token: str) -> dict[str, str] | None:
    """The SaaS's token check, for this test: tok-<user>-<tenant> is usr-<user> of <tenant>."""
    if not token.startswith("tok-"):
        return None
    user, _, tenant = token[4:].partition("-")
    return {"sub": f"usr-{user}", "tenant_id": tenant}


@dataclass
class Authorizer:
    """The stack's reference authorizer as Lambda runs it: its function's environment while it
    runs (only then: it is not the CLI's), one warm module between requests."""

    env: dict[str, str]
    clock: Clock
    mp: pytest.MonkeyPatch
    module: ModuleType = field(init=False)

    def __post_init__(self) -> None:
        with self._environment():
            self.module = load_authorizer()
            self.module.set_verifier(_claims)
            self.module.set_clock(self.clock.epoch)
            self.module.containments().clock = self.clock.epoch  # its cache's age, too

    @contextmanager
    def _environment(self) -> Iterator[None]:
        with self.mp.context() as mp:
            for key, value in self.env.items():
                mp.setenv(key, value)
            yield

    def __call__(self, token: str, tenant: str, method: str = "GET") -> tuple[str, dict[str, Any]]:
        """The policy's effect on this request (GET /tenants/<tenant>/invoices by default) and
        its context."""
        event = authorizer_request(method=method, path=f"/tenants/{tenant}/invoices", token=token)
        with self._environment():
            out = self.module.handler(event, FakeContext())
        (statement,) = out["policyDocument"]["Statement"]
        assert statement["Resource"] == [event["methodArn"]]
        return statement["Effect"], out.get("context") or {}


@dataclass
class Story:
    lake: Path
    config: Path
    table: str
    clock: Clock
    authorize: Authorizer

    def tw(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(self.config), *args])

    def ok(self, *args: str) -> Result:
        out = self.tw(*args)
        assert out.exit_code == 0, (args, out.output)
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args).stdout)

    def items(self) -> list[dict[str, Any]]:
        return list(boto3.client("dynamodb").scan(TableName=self.table)["Items"])


@pytest.fixture
def story(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Story]:
    """The stack deployed into moto, a lake holding the attack, a configuration naming both, and
    the clocks of containment and of the authorizer set to now."""
    for key in [k for k in os.environ if k.startswith(("TENANTWATCH_", "POWERTOOLS_"))]:
        monkeypatch.delenv(key)
    pipeline_aws.reset()
    stack = awsstack.deploy("org-trail", {"BackfillHours": "3"})
    assert stack.status == "CREATE_COMPLETE"
    table = stack.outputs["ContainmentTableName"]
    fn = boto3.client("lambda").get_function(FunctionName=stack.outputs["ReferenceAuthorizerArn"])
    env = {k: str(v) for k, v in fn["Configuration"]["Environment"]["Variables"].items()}
    assert env["TENANTWATCH_CONTAINMENT_TABLE"] == table  # the authorizer reads the stack's table
    root = tmp_path / "lake"
    _write(root, "attack", "10", [*(e for e, _ in ATTACK), OWN, *NOISE])
    config = tmp_path / "tenantwatch.toml"
    config.write_text(
        f'[lake]\nroot = "{root}"\n\n[containment]\ntable = "{table}"\n\n'
        '[[classification]]\npattern = "invoices"\nclass = "financial"\n\n'
        '[[classification]]\npattern = "payroll|salar"\nclass = "personal"\n'
    )
    clock = Clock()
    monkeypatch.setattr(containment, "utcnow", lambda: clock.now)
    yield Story(root, config, table, clock, Authorizer(env, clock, monkeypatch))
    pipeline_aws.reset()


# --- the story ------------------------------------------------------------------------------------


def test_after_the_page(story: Story, tmp_path: Path) -> None:
    incident = detected(story)
    cid = contained(story, incident)
    assessed(story, incident)
    drafted(story, incident, tmp_path / "notices")
    lifted_at_expiry(story, incident, cid)
    verified(story, incident)


def detected(s: Story) -> str:
    """``detect`` finds the actor on B's and C's data; ``alert`` opens one incident."""
    found = s.json("detect", "--since", "2026-11-16", "--json")
    mine = [r for r in found["findings"] if r["detector"] == "cross_tenant_access"]
    assert mine and {B, C} <= {t for r in mine for t in r["tenants"]}
    paged = s.ok("alert")
    (inc,) = s.json("incident", "list", "--json")["incidents"]
    assert {A, B, C} <= set(inc["tenants"]) and ROLE in inc["actors"]
    assert inc["severity"] == "critical" and inc["verdict"] is None
    assert f"Incident {inc['incident_id']} (new)" in paged.stdout
    return str(inc["incident_id"])


def contained(s: Story, incident: str) -> str:
    """B suspended for 4 hours: the stack's authorizer denies B's requests (its own users' and
    the attacker's), allows C's and A's; contained again read-only, B may only read, once the
    authorizer's cache has let go of the suspension."""
    short = incident[:8]  # as an analyst types it
    out = s.ok("contain", short, "--tenant", B, "--mode", "suspend", "--expires", "4h",
               "--reason", "cross-tenant reads of B's invoices", "--by", "alice")  # fmt: skip
    m = re.fullmatch(
        rf"contained tenant#{B} suspend until (\S+): containment (c-[0-9a-f]{{20}}) for incident "
        rf"{incident}, table {re.escape(s.table)}\n",
        out.stdout,
    )
    assert m, out.stdout
    until, cid = m.groups()
    assert cid == containment.containment_id(incident, containment.Subject("tenant", B))
    assert until == f"{s.clock.now + timedelta(hours=4):%Y-%m-%dT%H:%M:%SZ}"
    (item,) = s.items()
    assert (item["subject"]["S"], item["mode"]["S"]) == (f"tenant#{B}", "suspend")
    assert int(item["expires_at"]["N"]) == int((s.clock.now + timedelta(hours=4)).timestamp())

    effect, ctx = s.authorize("tok-bob-t0002", B)
    assert (effect, ctx["containmentId"], ctx["containmentMode"]) == ("Deny", cid, "suspend")
    assert s.authorize("tok-mallory-t0001", B)[0] == "Deny"  # the attack's path, closed
    assert s.authorize("tok-bob-t0002", B, "OPTIONS")[0] == "Deny"
    carol, ctx = s.authorize("tok-carol-t0003", C, "POST")
    assert carol == "Allow" and "containmentId" not in ctx
    assert s.authorize("tok-alice-t0001", A, "DELETE")[0] == "Allow"

    shown = s.ok("incident", "show", short).stdout
    assert "containment  1 in force, 0 lifted or expired" in shown

    # B's users may read again, not write: the same containment, rewritten.
    s.clock.move(timedelta(seconds=5))
    out = s.ok("contain", short, "--tenant", B, "--mode", "read-only", "--expires", "4h",
               "--reason", "B may read its own data again", "--by", "alice")  # fmt: skip
    assert f"contained tenant#{B} read-only until " in out.stdout and cid in out.stdout
    (item,) = s.items()
    assert (item["containment_id"]["S"], item["mode"]["S"]) == (cid, "read-only")
    # The authorizer read B's entries 15 s ago: its cache holds the suspension for 30 s.
    s.clock.move(timedelta(seconds=10))
    assert s.authorize("tok-bob-t0002", B, "GET")[0] == "Deny"
    s.clock.move(timedelta(seconds=20))
    effect, ctx = s.authorize("tok-bob-t0002", B, "GET")
    assert (effect, ctx.get("containmentMode")) == ("Allow", "read-only")
    assert s.authorize("tok-bob-t0002", B, "HEAD")[0] == "Allow"
    for method in ("POST", "PUT", "DELETE"):
        assert s.authorize("tok-bob-t0002", B, method)[0] == "Deny", method
    assert s.authorize("tok-carol-t0003", C, "POST")[0] == "Allow"
    return cid


def _expected(tenant: str) -> dict[str, Any]:
    mine = [(e, a) for e, a in ATTACK if e["target_tenant"] == tenant]
    return {
        "tenant": tenant,
        "flagged": True,
        "events": len(mine),
        "objects": len({e["resource"] for e, _ in mine}),
        **{k: sum(a == k for _, a in mine) for k in ("read", "write", "denied", "other")},
        "actor_tenants": [A],
        "first": f"{min(e['event_time'] for e, _ in mine):%Y-%m-%dT%H:%M:%SZ}",
        "last": f"{max(e['event_time'] for e, _ in mine):%Y-%m-%dT%H:%M:%SZ}",
    }


def assessed(s: Story, incident: str) -> None:
    """``impact`` reports B and C, with what the lake holds of each; A's own data is no one's
    impact."""
    doc = s.json("impact", incident[:8], "--format", "json")
    assert doc["incident_id"] == incident
    keys = list(_expected(B))
    got = [{k: t[k] for k in keys} for t in doc["tenants"]]
    assert got == [_expected(B), _expected(C)]  # B has more events
    assert doc["cross_tenant_events"] == len(ATTACK) and doc["own_tenant_events"] == 1
    by = {r["resource"]: r for r in doc["resources"]}
    assert set(by) == {e["resource"] for e, _ in ATTACK}
    assert by[f"{S3}/{B}/invoices/2026-10.pdf"]["data_class"] == "financial"
    assert by[f"{S3}/{C}/payroll/{C}-salaries.xlsx"]["data_class"] == "personal"
    assert doc["provenance"]["used"] == "snapshot" and doc["provenance"]["complete"]


def _theirs(tenant: str) -> set[str]:
    """What a notice to ``tenant`` must not say: the other tenants' ids and objects, the actor's
    every name and address."""
    names = {A, B, C} - {tenant}
    names |= {e["resource"] for e, _ in ATTACK if e["target_tenant"] != tenant}
    names |= {OWN["resource"], ROLE, SESSION, API_USER, IP, "mallory"}
    return names | {r["actor_principal"] for r in NOISE if r["actor_tenant"] != tenant}


def drafted(s: Story, incident: str, out: Path) -> None:
    """``impact --notice --out`` writes one draft per affected tenant, each naming its own data
    only."""
    wrote = s.ok("impact", incident[:8], "--notice", "--out", str(out))
    names = {t: f"notice-{incident[:12]}-{t}.md" for t in (B, C)}
    assert sorted(p.name for p in out.iterdir()) == sorted(names.values())
    assert wrote.stdout.splitlines() == [f"wrote {out / names[t]}" for t in (B, C)]
    # B's object whose name names C is not named, and the analyst is told.
    assert f"notice for {B}: 1 object of {B} not named" in wrote.stderr
    for tenant, mine in ((B, f"{B}/invoices/2026-10.pdf"), (C, f"orders-{C}/{C}#order-17")):
        text = (out / names[tenant]).read_text()
        assert text.startswith("# Notice of access") and f"`{tenant}`" in text
        assert mine in text, tenant
        low = text.lower()
        leaked = sorted(n for n in _theirs(tenant) if n.lower() in low)
        assert leaked == [], (tenant, leaked)


def lifted_at_expiry(s: Story, incident: str, cid: str) -> None:
    """Past its expiry the containment no longer holds, though DynamoDB still has the item;
    lifting it removes the item and, done again, changes nothing; the lake and ``incident show``
    keep every action."""
    s.clock.move(timedelta(hours=4))  # 30 s past the read-only containment's expiry
    (item,) = s.items()  # DynamoDB's TTL deletes within days: moto, like it, has not yet
    assert int(item["expires_at"]["N"]) < s.clock.epoch()
    effect, ctx = s.authorize("tok-bob-t0002", B, "POST")
    assert effect == "Allow" and "containmentId" not in ctx
    # From now on the SaaS's own tenant checks (the fix) decide, not the containment.
    assert s.authorize("tok-mallory-t0001", B)[0] == "Allow"

    assert s.json("contain", "--list", "--json")["entries"] == []
    assert "0 entries in force" in s.ok("contain", "--list").stdout
    (entry,) = s.json("contain", "--list", "--all", "--json")["entries"]
    assert (entry["containment_id"], entry["mode"], entry["expired"]) == (cid, "read-only", True)
    assert "(expired)" in s.ok("contain", "--list", "--all").stdout
    shown = s.ok("incident", "show", incident[:8]).stdout
    assert "containment  0 in force, 1 lifted or expired" in shown

    lift = ["contain", "--lift", cid, "--reason", "expired; B's access restored", "--by", "bob"]
    out = s.ok(*lift)
    assert out.stdout.startswith(
        f"lifted {cid} (tenant#{B}, read-only, incident {incident}); it had expired at "
    )
    assert s.items() == []
    again = s.ok(*lift)
    assert again.stdout == (
        f"{cid} (tenant#{B}) was already lifted at {s.clock.now:%Y-%m-%dT%H:%M:%SZ} by bob: "
        "nothing to lift\n"
    )
    assert "nothing to lift" in s.ok("contain", "--lift", f"tenant#{B}").stdout

    doc = s.json("incident", "show", incident[:8], "--json")
    acts = [
        (a["action"], a["mode"], a["acted_by"], a["containment_id"]) for a in doc["containment"]
    ]
    assert acts == [
        ("contain", "suspend", "alice", cid),
        ("contain", "read-only", "alice", cid),
        ("lift", None, "bob", cid),
    ]
    lines = s.ok("incident", "show", incident[:8]).stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.strip().startswith("containment"))
    assert lines[i].split(None, 1)[1] == "0 in force, 1 lifted or expired"
    assert f"contain tenant#{B} suspend until " in lines[i + 1]
    assert f"contain tenant#{B} read-only until " in lines[i + 2]
    assert lines[i + 3].endswith(f"lift tenant#{B} by bob (cli, {cid}): {lift[4]}")


def verified(s: Story, incident: str) -> None:
    """The afternoon after the fix holds no cross-tenant access: ``verify-fix`` says so and
    closes the incident as ``remediated``."""
    _write(s.lake, "afternoon", "14", _quiet_afternoon())
    out = s.ok("verify-fix", incident[:8], "--since", FIX, "--close", "--by", "alice",
               "--note", "tenant condition on the role and the profile route")  # fmt: skip
    first, second = out.stdout.splitlines()
    assert first == (
        f"verified {incident}: no recurrence of cross_tenant_access for {ROLE}, {API_USER} on "
        f"{A}, {B}, {C} from 2026-11-16 12:00:00Z to 2026-11-16 14:22:01Z (3 windows of 60 minutes)"
    )
    assert second == f"closed {incident} as remediated by alice"
    (inc,) = s.json("incident", "list", "--json")["incidents"]
    assert inc["verdict"] == "remediated"
    assert inc["verdicts"][-1]["note"].startswith(
        "tenant condition on the role and the profile route. no recurrence from "
        "2026-11-16T12:00:00+00:00"
    )
