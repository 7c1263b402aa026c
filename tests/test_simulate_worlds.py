"""Every simulated world: its logs have the shapes AWS writes, its labels are borne out by them,
its ground truth covers every event, and its own ``tenantwatch.toml`` resolves every event to
exactly the true tenants (read by ``tests.worldcheck``, independently of the ingestion engine).

World-specific shapes: silo's organisation trail and cross-account deliveries, bridge's opaque
names and registry, each world's API and authorizer field names.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline import config as c
from pipeline.simulate import ALL_SCENARIOS, WORLDS, SimulationSpec, simulate
from tests.worldcheck import World, read_world, reference_tenants

pytestmark = pytest.mark.slow  # each world is simulated once, a few seconds each

# Scenarios that only write a look-alike of an attack (a labelled negative).
LOOK_ALIKES = {"cache_flush_deploy"}
SMALL = SimulationSpec(seed=11, tenants=12, days=8, events_per_day=700, start=date(2026, 11, 9))
TINY = SimulationSpec(seed=3, tenants=10, days=2, events_per_day=150)
ACCOUNT = re.compile(r"^\d{12}$")


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], World]:
    """Each world simulated once for the whole module, on first use."""
    made: dict[str, World] = {}

    def get(name: str) -> World:
        if name not in made:
            out = tmp_path_factory.mktemp(name)
            simulate(out, replace(SMALL, world=name))
            made[name] = read_world(out)
        return made[name]

    return get


@pytest.fixture(params=WORLDS)
def world(request: pytest.FixtureRequest, worlds: Callable[[str], World]) -> World:
    return worlds(request.param)


@pytest.fixture
def silo(worlds: Callable[[str], World]) -> World:
    return worlds("silo")


@pytest.fixture
def bridge(worlds: Callable[[str], World]) -> World:
    return worlds("bridge")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _labels(w: World) -> dict[str, dict[str, Any]]:
    return {lab["id"]: lab for lab in json.loads((w.root / "labels.json").read_text())}


# --- every world ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WORLDS)
def test_same_spec_gives_the_same_bytes_and_another_seed_does_not(
    name: str, tmp_path: Path
) -> None:
    spec = replace(TINY, world=name)
    simulate(tmp_path / "a", spec)
    simulate(tmp_path / "b", spec)
    simulate(tmp_path / "c", replace(spec, seed=4))
    a, b, other = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert a["labels.json"] != other["labels.json"]
    assert a["truth.parquet"] != other["truth.parquet"]


def test_the_world_configuration_loads_and_names_files_beside_it(world: World) -> None:
    cfg = c.load_config(world.root / "tenantwatch.toml", environ={})
    assert cfg.tenancy.actor and cfg.tenancy.target and cfg.relationships
    for lk in cfg.tenancy.lookup:
        assert Path(lk.file).is_file() and Path(lk.file).is_relative_to(world.root)
    for rel in cfg.relationships:
        if isinstance(rel, c.BreakGlass) and rel.tickets_file:
            assert Path(rel.tickets_file).is_file()


def test_truth_names_every_event_once(world: World) -> None:
    truth = pq.read_table(world.root / "truth.parquet")
    keys = list(zip(truth["source"].to_pylist(), truth["event_id"].to_pylist(), strict=True))
    assert len(set(keys)) == len(keys)
    records = world.by_id()
    assert len(records) == len(world.cloudtrail) + len(world.apigateway) + len(world.authorizer)
    assert set(keys) == set(records)
    scoped = truth["tenant_scoped"].to_pylist()
    actors, targets = truth["actor_tenant"].to_pylist(), truth["target_tenant"].to_pylist()
    assert scoped == [a is not None or t is not None for a, t in zip(actors, targets, strict=True)]
    tenants = {f"t{i:04d}" for i in range(1, SMALL.tenants + 1)}
    assert {x for x in actors + targets if x is not None} <= tenants
    assert sum(scoped) > len(scoped) / 2


def test_the_configuration_resolves_every_event_to_its_true_tenants(world: World) -> None:
    truth = world.truth()
    resolved = reference_tenants(world)
    wrong = {k: (truth[k], resolved.get(k)) for k in truth if resolved.get(k) != truth[k]}
    assert not wrong, list(wrong.items())[:5]
    # Not vacuous: cross-tenant events are there, and in every source.
    crossing = {k[0] for k, (a, t) in truth.items() if a and t and a != t}
    assert crossing == {"cloudtrail", "apigateway", "authorizer"}


def test_every_scenario_is_labelled_and_its_events_exist(world: World) -> None:
    labels = _labels(world)
    attacks = {lab["scenario"] for lab in labels.values() if lab["kind"] == "attack"}
    # Every scenario is labelled; those without an attack are look-alikes (labelled negatives).
    assert set(ALL_SCENARIOS) <= {lab["scenario"] for lab in labels.values()}
    assert attacks <= set(ALL_SCENARIOS)
    assert set(ALL_SCENARIOS) - attacks == LOOK_ALIKES
    ids = {eid for _, eid in world.by_id()}
    for lab in labels.values():
        assert lab["event_ids"], lab["id"]
        missing = [e for e in lab["event_ids"] if e not in ids]
        assert not missing, (lab["id"], missing[:3])
        assert lab["start"].startswith("2026-11-16") and lab["start"] <= lab["end"]


def test_labelled_actors_are_the_principals_their_events_name(world: World) -> None:
    labels = _labels(world)
    by_id = {eid: rec for (src, eid), rec in world.by_id().items() if src == "cloudtrail"}
    for name in ("attack-s3-prefix-cross-tenant", "attack-break-glass-no-ticket"):
        lab = labels[name]
        arns = {by_id[e]["userIdentity"].get("arn") for e in lab["event_ids"] if e in by_id}
        # A resource owner's copy of a cross-account call names only the caller's account.
        assert arns - {None} == {lab["actor"]}, name
    truth = world.truth()
    for lab in labels.values():
        if lab["kind"] != "attack" or lab["actor_tenant"] is None:
            continue
        mine = set(lab["event_ids"])
        hits = [truth[k] for k in truth if k[1] in mine]
        assert any(a == lab["actor_tenant"] and t in lab["tenants"] for a, t in hits), lab["id"]


# --- silo ----------------------------------------------------------------------------------------

ORG_KEY = re.compile(
    r"^AWSLogs/(o-[a-z0-9]{10})/(\d{12})/CloudTrail/([a-z0-9-]+)/(\d{4})/(\d{2})/(\d{2})/"
    r"\2_CloudTrail_\3_\4\5\6T\d{4}Z_[A-Za-z0-9]{16}\.json\.gz$"
)


def _accounts(w: World) -> dict[str, str]:
    rows = csv.DictReader((w.root / "registry" / "accounts.csv").read_text().splitlines())
    return {r["account_id"]: r["tenant_id"] for r in rows}


def test_silo_is_an_organisation_trail_with_each_accounts_events_in_its_folder(
    silo: World,
) -> None:
    accounts = _accounts(silo)
    orgs, seen = set(), set()
    for rel in silo.ct_files:
        m = ORG_KEY.match(rel)
        assert m, rel
        orgs.add(m.group(1))
        recs = json.loads(gzip.decompress((silo.root / rel).read_bytes()))["Records"]
        assert {r["recipientAccountId"] for r in recs} == {m.group(2)}
        seen.add(m.group(2))
    assert len(orgs) == 1
    assert seen == set(accounts) | {SMALL.account}
    digests = {p.parts[-7] for p in silo.root.glob("AWSLogs/*/*/CloudTrail-Digest/*/*/*/*/*.gz")}
    assert digests == seen  # a digest chain per account


def test_silo_tenant_data_names_carry_no_tenant(silo: World) -> None:
    accounts = _accounts(silo)
    tables, keys = set(), []
    for r in silo.cloudtrail:
        p = r.get("requestParameters") or {}
        if r["eventSource"] == "dynamodb.amazonaws.com" and r["eventCategory"] == "Data":
            tables.add(p["tableName"].rsplit("/", 1)[-1])
            keys.append(json.dumps(p["key"]))
        if r["eventSource"] == "s3.amazonaws.com" and r["eventCategory"] == "Data":
            keys += [p["bucketName"], p.get("key") or p.get("prefix") or ""]
    assert tables == {"items"}  # the same table in every account: only the account says whose
    assert keys and not any(re.search(r"t\d{4}|\d{12}", k) for k in keys)
    assert set(accounts.values()) == {f"t{i:04d}" for i in range(1, SMALL.tenants + 1)}


def test_silo_cross_account_calls_reach_both_accounts_as_aws_logs_them(silo: World) -> None:
    accounts = _accounts(silo)
    shared: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in silo.cloudtrail:
        if "sharedEventID" in r:
            shared[r["sharedEventID"]].append(r)
    assert shared
    kinds = set()
    for copies in shared.values():
        assert len(copies) == 2
        mine, theirs = sorted(copies, key=lambda x: x["userIdentity"]["type"] == "AWSAccount")
        assert mine["eventID"] != theirs["eventID"] and mine["requestID"] == theirs["requestID"]
        assert theirs["userIdentity"] == {
            "type": "AWSAccount",
            "principalId": mine["userIdentity"]["principalId"],
            "accountId": mine["userIdentity"]["accountId"],
        }
        assert mine["recipientAccountId"] == mine["userIdentity"]["accountId"]
        owners = {x["accountId"] for x in mine["resources"] if "accountId" in x}
        assert owners == {theirs["recipientAccountId"]} and owners.isdisjoint(
            {mine["recipientAccountId"]}
        )
        kinds.add(mine["eventName"])
    assert {"AssumeRole", "GetObject", "ListObjects", "Query"} <= kinds
    # The s3 attack: a user's session in its own tenant's account reads another's bucket.
    lab = _labels(silo)["attack-s3-prefix-cross-tenant"]
    recs = [r for r in silo.cloudtrail if r["eventID"] in set(lab["event_ids"])]
    a, b = lab["actor_tenant"], lab["tenants"][0]
    for r in recs:
        assert accounts[r["userIdentity"]["accountId"]] == a
        bucket = next(x for x in r["resources"] if x["type"] == "AWS::S3::Bucket")
        assert accounts[bucket["accountId"]] == b


def test_silo_platform_reaches_tenants_through_roles_in_their_accounts(silo: World) -> None:
    accounts = _accounts(silo)
    into = [
        r
        for r in silo.cloudtrail
        if r["eventName"] == "AssumeRole" and r["recipientAccountId"] in accounts
    ]
    callers = {(r["userIdentity"]["type"], r["userIdentity"]["accountId"]) for r in into}
    assert ("AWSAccount", SMALL.account) in callers  # the platform, as the tenant's copy shows it
    roles = {r["requestParameters"]["roleArn"].rsplit("/", 1)[1] for r in into}
    assert {"app-user", "platform-export", "platform-billing", "support-break-glass"} <= roles
    assert "partner-access" in roles  # consultants, from their own tenant's account
    labels = _labels(silo)
    ticket = {"key": "change_request", "value": "CHG-4821"}
    for name, tags in (
        ("negative-break-glass-ticketed", [ticket]),
        ("attack-break-glass-no-ticket", None),
    ):
        arn = labels[name]["actor"]
        assert arn.startswith("arn:aws:sts::") and arn.split(":")[4] in accounts
        assume = [
            r
            for r in into
            if r["requestParameters"]["roleArn"].endswith("role/support-break-glass")
            and arn.endswith("/" + r["requestParameters"]["roleSessionName"])
        ]
        assert assume and all(r["requestParameters"].get("tags") == tags for r in assume)


def test_silo_api_names_accounts_with_its_own_field_names(silo: World) -> None:
    accounts = _accounts(silo)
    for m in silo.apigateway:
        assert {"rid", "uri", "code", "principal", "account", "host"} <= set(m)
        assert "requestId" not in m and "authorizerTenantId" not in m
        assert re.match(r"^/prod/v1/accounts/\d{12}/", m["uri"]), m["uri"]
        assert m["account"] == "-" or m["account"] in accounts
    for a in silo.authorizer:
        assert {"invocation_id", "apigw_request_id", "token_sha", "path_account"} <= set(a)
        assert a["claims"] is None or a["claims"]["account"] in accounts
        assert a["verdict"] in ("ALLOW", "DENY")
        assert not re.search(r"\bt\d{4}\b", a["why"])


# --- bridge -------------------------------------------------------------------------------------


def test_bridge_names_are_opaque_and_only_the_registry_resolves_them(bridge: World) -> None:
    registry = json.loads((bridge.root / "registry" / "tenants.json").read_text())
    by = {k: {r[k]: r["tenant_id"] for r in registry} for k in ("bucket", "table", "role", "slug")}
    assert len(registry) == SMALL.tenants and all(len(v) == SMALL.tenants for v in by.values())
    buckets, tables, roles = set(), set(), set()
    for r in bridge.cloudtrail:
        p = r.get("requestParameters") or {}
        if r["eventCategory"] == "Data" and r["eventSource"] == "s3.amazonaws.com":
            buckets.add(p["bucketName"])
            assert not re.search(r"t\d{4}", p.get("key") or p.get("prefix") or "")
        if r["eventCategory"] == "Data" and r["eventSource"] == "dynamodb.amazonaws.com":
            tables.add(p["tableName"])
        issuer = (r["userIdentity"].get("sessionContext") or {}).get("sessionIssuer") or {}
        if ":role/tenants/" in issuer.get("arn", ""):
            roles.add(issuer["userName"])
        assert r["recipientAccountId"] == SMALL.account  # one shared account
    assert buckets == set(by["bucket"]) and all(
        re.fullmatch(r"bkt-[0-9a-f]{8}", b) for b in buckets
    )
    assert tables == set(by["table"]) and all(re.fullmatch(r"tbl-[0-9a-f]{8}", t) for t in tables)
    assert roles == set(by["role"])
    hosts = {m["host"] for m in bridge.apigateway}
    assert hosts == {f"{s}.app.acme-saas.example" for s in by["slug"]}
    assert all(m["p"].startswith("/api/v2/") and "auth.org" in m for m in bridge.apigateway)


def test_bridge_break_glass_names_tickets_of_the_ticket_export(bridge: World) -> None:
    rows = list(csv.DictReader((bridge.root / "tickets.csv").read_text().splitlines()))
    assert set(rows[0]) == {"id", "tenants", "expires", "approvers"}
    tickets = {r["id"]: r for r in rows}
    labels = _labels(bridge)
    ticketed = labels["negative-break-glass-ticketed"]
    session = ticketed["actor"].rsplit("/", 1)[1]
    ticket = session.split(".", 1)[0]
    assert re.fullmatch(r"INC\d{7}", ticket) and ticket in tickets
    assert ticketed["tenants"][0] in tickets[ticket]["tenants"].split(";")
    assert "." not in labels["attack-break-glass-no-ticket"]["actor"].rsplit("/", 1)[1]
    cfg = c.load_config(bridge.root / "tenantwatch.toml", environ={})
    bg = next(r for r in cfg.relationships if isinstance(r, c.BreakGlass))
    assert re.search(bg.ticket_pattern, session).group("ticket") == ticket  # type: ignore[union-attr]
    assert Path(bg.tickets_file) == bridge.root / "tickets.csv"


# --- regions (residency) -------------------------------------------------------------------------


def test_tenant_data_stays_in_its_regions_but_for_the_residency_attack(world: World) -> None:
    """Every S3 and DynamoDB event on a configured tenant's data is in one of its regions, and
    every API request on its regional API, except the attack's copies in us-east-1; the
    look-alike tenant uses both of its regions."""
    from pipeline import fieldpath

    regions = {t.id: set(t.regions) for t in world.cfg.tenants}
    apis = world.cfg.detectors["residency"]["api_regions"]
    api_field = fieldpath.parse_many(world.cfg.sources.apigateway.api_id)
    truth, labels = world.truth(), _labels(world)
    outside, data_events = set(), 0
    for (src, eid), rec in world.by_id().items():
        target = truth[(src, eid)][1]
        if target not in regions:
            continue
        if src == "apigateway":
            assert apis[str(fieldpath.first_of(api_field, rec))] in regions[target], eid
        elif src == "cloudtrail" and rec["eventSource"] in (
            "s3.amazonaws.com",
            "dynamodb.amazonaws.com",
        ):
            data_events += 1
            if rec["awsRegion"] not in regions[target]:
                outside.add(eid)
    assert data_events > 1000
    assert outside == set(labels["attack-residency-copied-outside"]["event_ids"])
    by_id = world.by_id()
    negative = labels["negative-residency-two-regions"]["event_ids"]
    assert {by_id[("cloudtrail", e)]["awsRegion"] for e in negative} == {
        "eu-west-1",
        "eu-central-1",
    }
    assert len(regions) < len({t for _, t in truth.values() if t})  # some tenants not given any
