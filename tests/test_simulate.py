"""The simulator: deterministic bytes, AWS-shaped files, and labels that the logs bear out.

Everything is checked by reading the written files, never by trusting ``labels.json``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.config import (
    ApiPath,
    AuthorizerContext,
    BreakGlass,
    Consultant,
    DynamoDBKey,
    Organisation,
    RoleSessionName,
    S3Key,
    ServiceRole,
    SessionTag,
    Ticket,
    load_config,
    parse_config,
)
from pipeline.errors import TenantwatchError
from pipeline.simulate import ALL_SCENARIOS, TRUTH_FILE, SimulationSpec, simulate
from pipeline.simulate.world import build
from tests.conftest import SAMPLE_LOGS

# Small, but with a full week of baseline before a Monday attack day.
# Scenarios that only write a look-alike of an attack (a labelled negative).
LOOK_ALIKES = {"cache_flush_deploy"}
SMALL = SimulationSpec(seed=11, tenants=12, days=8, events_per_day=700, start=date(2026, 11, 9))
TINY = SimulationSpec(seed=3, tenants=10, days=2, events_per_day=150)

CT_NAME = re.compile(
    r"^AWSLogs/(\d{12})/CloudTrail/([a-z0-9-]+)/(\d{4})/(\d{2})/(\d{2})/"
    r"\1_CloudTrail_\2_(\d{4})(\d{2})(\d{2})T\d{4}Z_[A-Za-z0-9]{16}\.json\.gz$"
)
DIGEST_NAME = re.compile(
    r"^AWSLogs/\d{12}/CloudTrail-Digest/[a-z0-9-]+/\d{4}/\d{2}/\d{2}/"
    r"\d{12}_CloudTrail-Digest_[a-z0-9-]+_[\w-]+_[a-z0-9-]+_\d{8}T\d{6}Z\.json\.gz$"
)
EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


class Logs:
    """The written output, parsed back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ct_files = sorted(
            p.relative_to(root).as_posix()
            for p in (root / "AWSLogs").rglob("*.json.gz")
            if "/CloudTrail/" in p.as_posix()
        )
        self.ct: list[dict[str, Any]] = []
        self.ct_by_file: dict[str, list[dict[str, Any]]] = {}
        for rel in self.ct_files:
            recs = json.loads(gzip.decompress((root / rel).read_bytes()))["Records"]
            self.ct_by_file[rel] = recs
            self.ct += recs
        self.ct_by_id = {r["eventID"]: r for r in self.ct}
        self.api = [
            json.loads(line.split(" ", 1)[1])
            for p in sorted((root / "apigateway").rglob("*.gz"))
            for line in gzip.decompress(p.read_bytes()).decode().splitlines()
        ]
        self.api_by_id = {m["requestId"]: m for m in self.api}
        self.auth = [
            json.loads(line.split(" ", 1)[1])
            for p in sorted((root / "authorizer").rglob("*.gz"))
            for line in gzip.decompress(p.read_bytes()).decode().splitlines()
            if line.split(" ", 1)[1].startswith("{")
        ]
        self.labels = {lab["id"]: lab for lab in json.loads((root / "labels.json").read_text())}

    def assume_for(self, akid: str) -> dict[str, Any]:
        return next(
            r
            for r in self.ct
            if r["eventName"] == "AssumeRole"
            and (r.get("responseElements") or {}).get("credentials", {}).get("accessKeyId") == akid
        )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Logs:
    out = tmp_path_factory.mktemp("small")
    simulate(out, SMALL)
    return Logs(out)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _tenant(path_or_key: str) -> str:
    m = re.search(r"tenants/(t\d{4})", path_or_key)
    assert m, path_or_key
    return m.group(1)


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    s1 = simulate(tmp_path / "a", TINY)
    simulate(tmp_path / "b", TINY)
    simulate(tmp_path / "c", replace(TINY, seed=4))
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert s1["bytes_written"] == sum(len(v) for v in a.values())
    assert a["labels.json"] != c["labels.json"]
    assert set(a) != set(c)  # random file-name suffixes and export task ids change too


def test_without_digests_only_the_digest_files_are_missing(tmp_path: Path) -> None:
    simulate(tmp_path / "a", TINY)
    simulate(tmp_path / "b", replace(TINY, digests=False))
    full, lean = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert any("/CloudTrail-Digest/" in k for k in full)
    assert lean == {k: v for k, v in full.items() if "/CloudTrail-Digest/" not in k}


@pytest.mark.slow
def test_sample_logs_are_the_default_spec_byte_for_byte(tmp_path: Path) -> None:
    if not (SAMPLE_LOGS / "labels.json").is_file():
        pytest.skip("sample_logs/ has not been generated")
    simulate(tmp_path, SimulationSpec())
    made, kept = _files(tmp_path), _files(SAMPLE_LOGS)
    # The ground truth is compared as data: Parquet names its writer's version in the file.
    assert pq.read_table(tmp_path / TRUTH_FILE).equals(pq.read_table(SAMPLE_LOGS / TRUTH_FILE))
    assert {k: v for k, v in made.items() if k != TRUTH_FILE} == {
        k: v for k, v in kept.items() if not k.endswith(".md") and k != TRUTH_FILE
    }


# --- CloudTrail shape ----------------------------------------------------------------------------

REQUIRED = (
    "eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
    "sourceIPAddress", "userAgent", "requestParameters", "eventID", "eventType",
    "recipientAccountId", "requestID", "readOnly", "managementEvent", "eventCategory",
)  # fmt: skip


def test_cloudtrail_records_have_the_fields_real_records_have(small: Logs) -> None:
    assert len(small.ct) > 1000
    for r in small.ct:
        missing = [k for k in REQUIRED if k not in r]
        assert not missing, (missing, r)
        assert "1.08" <= r["eventVersion"] <= "1.11"
        assert EVENT_TIME.match(r["eventTime"])
        ident = r["userIdentity"]
        assert "type" in ident
        if ident["type"] in ("AssumedRole", "IAMUser"):
            assert {"principalId", "arn", "accountId", "accessKeyId", "sessionContext"} <= set(
                ident
            )
            assert {"creationDate", "mfaAuthenticated"} <= set(
                ident["sessionContext"]["attributes"]
            )
        assert r["recipientAccountId"] == SMALL.account
        assert r["eventCategory"] in ("Management", "Data")
        assert r["managementEvent"] is (r["eventCategory"] == "Management")
        if r["eventCategory"] == "Data":
            assert r["resources"] and "tlsDetails" in r
    assert len(small.ct_by_id) == len(small.ct), "eventIDs must be unique across files"
    assert len({r["eventSource"] for r in small.ct}) >= 10
    assert len({r["eventName"] for r in small.ct}) >= 25


def test_cloudtrail_files_follow_the_aws_layout_and_hold_their_own_date(small: Logs) -> None:
    for rel, recs in small.ct_by_file.items():
        m = CT_NAME.match(rel)
        assert m, rel
        assert m.group(3, 4, 5) == m.group(6, 7, 8)
        day = "-".join(m.group(3, 4, 5))
        assert recs and all(r["eventTime"].startswith(day) for r in recs), rel
        assert (small.root / rel).read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0


def test_assume_role_carries_tenant_tag_and_secret_session_token(small: Logs) -> None:
    vended = [
        r
        for r in small.ct
        if r["eventName"] == "AssumeRole"
        and r["requestParameters"]["roleArn"].endswith("role/tenant-scoped-access")
    ]
    assert vended
    for r in vended:
        tags = r["requestParameters"]["tags"]
        assert tags[0]["key"] == "tenant_id" and re.fullmatch(r"t\d{4}", tags[0]["value"])
        creds = r["responseElements"]["credentials"]
        assert creds["accessKeyId"].startswith("ASIA") and len(creds["sessionToken"]) > 300
        assert r["userIdentity"]["arn"].endswith(
            "assumed-role/tenant-token-vendor/tenant-token-vendor"
        )
    # Later calls by the session carry the key but no tag; the user id is not the tenant id.
    keys = {r["responseElements"]["credentials"]["accessKeyId"] for r in vended}
    used = [r for r in small.ct if r["userIdentity"].get("accessKeyId") in keys]
    assert used and all("tags" not in (r["requestParameters"] or {}) for r in used)
    assert all(not re.search(r"t\d{4}", r["userIdentity"]["arn"].rsplit("/", 1)[1]) for r in used)


def test_digests_list_every_cloudtrail_file_with_its_sha256(small: Logs) -> None:
    digests = sorted((small.root / "AWSLogs").rglob("*CloudTrail-Digest_*.json.gz"))
    listed: Counter[str] = Counter()
    previous = None
    for p in digests:
        rel = p.relative_to(small.root).as_posix()
        assert DIGEST_NAME.match(rel), rel
        raw = gzip.decompress(p.read_bytes())
        doc = json.loads(raw)
        assert doc["digestS3Object"] == rel
        if previous is not None:
            assert doc["previousDigestS3Object"] == previous[0]
            assert doc["previousDigestHashValue"] == previous[1]
        previous = (rel, hashlib.sha256(raw).hexdigest())
        for f in doc["logFiles"]:
            content = gzip.decompress((small.root / f["s3Object"]).read_bytes())
            assert f["hashValue"] == hashlib.sha256(content).hexdigest()
            listed[f["s3Object"]] += 1
    assert set(listed) == set(small.ct_files)
    assert max(listed.values()) == 1


# --- API Gateway and authorizer -----------------------------------------------------------------


def test_api_access_logs_use_the_rest_access_log_format(small: Logs) -> None:
    keys = {
        "requestId", "extendedRequestId", "ip", "caller", "user", "requestTime",
        "requestTimeEpoch", "httpMethod", "resourcePath", "path", "status", "protocol",
        "responseLength", "userAgent", "apiId", "stage", "domainName", "authorizerPrincipalId",
        "authorizerError", "authorizerLatency", "authorizerStatus", "authorizerTenantId",
    }  # fmt: skip
    for m in small.api:
        assert keys <= set(m)
        assert all(isinstance(v, str) for v in m.values())
        assert m["path"].startswith("/prod/tenants/")
    hits = [
        m for m in small.api if m["authorizerLatency"] == "-" and m["authorizerPrincipalId"] != "-"
    ]
    assert hits, "cached authorizer results must show up"
    # The authorizer logs only what it decided (cache misses), with the same request id.
    ran = {a["request_id"] for a in small.auth}
    assert not ran & {m["requestId"] for m in hits}
    assert all(a["token_fingerprint"].startswith("sha256:") for a in small.auth)


# --- labelled scenarios, checked against the logs ------------------------------------------------


def test_every_scenario_is_labelled_and_its_events_exist(small: Logs) -> None:
    attacks = {lab["scenario"] for lab in small.labels.values() if lab["kind"] == "attack"}
    # Every scenario is labelled; those without an attack are look-alikes (labelled negatives).
    assert set(ALL_SCENARIOS) <= {lab["scenario"] for lab in small.labels.values()}
    assert attacks <= set(ALL_SCENARIOS)
    assert set(ALL_SCENARIOS) - attacks == LOOK_ALIKES
    for lab in small.labels.values():
        assert lab["event_ids"], lab["id"]
        for eid in lab["event_ids"]:
            assert eid in small.ct_by_id or eid in small.api_by_id, (lab["id"], eid)
        assert lab["start"].startswith("2026-11-16") and lab["start"] <= lab["end"]


def test_s3_prefix_cross_tenant_reads_another_tenants_prefix(small: Logs) -> None:
    lab = small.labels["attack-s3-prefix-cross-tenant"]
    recs = [small.ct_by_id[e] for e in lab["event_ids"]]
    assert {r["eventName"] for r in recs} == {"ListObjects", "GetObject"}
    for r in recs:
        assert r["userIdentity"]["arn"] == lab["actor"] and "errorCode" not in r
        target = r["requestParameters"].get("key") or r["requestParameters"]["prefix"]
        assert _tenant(target) == lab["tenants"][0] != lab["actor_tenant"]
    tags = small.assume_for(recs[0]["userIdentity"]["accessKeyId"])["requestParameters"]["tags"]
    assert tags == [{"key": "tenant_id", "value": lab["actor_tenant"]}]


def test_cache_busting_runs_the_authorizer_for_every_request_with_a_fresh_token(
    small: Logs,
) -> None:
    lab = small.labels["attack-authorizer-cache-busting"]
    reqs = [small.api_by_id[e] for e in lab["event_ids"]]
    assert len(reqs) >= 200 and {m["status"] for m in reqs} == {"200"}
    assert all(m["authorizerLatency"] != "-" for m in reqs)  # no request served from the cache
    assert {_tenant(m["path"]) for m in reqs} == set(lab["tenants"])
    decisions = {a["request_id"]: a for a in small.auth if a["request_id"] in set(lab["event_ids"])}
    assert len(decisions) == len(reqs)
    assert len({a["token_fingerprint"] for a in decisions.values()}) == len(reqs)


def test_a_deploy_flushes_the_cache_for_tokens_already_in_use(small: Logs) -> None:
    lab = small.labels["negative-authorizer-cache-flush-deploy"]
    assert (lab["kind"], lab["expected_detector"], lab["expected_severity"]) == (
        "negative",
        "authorizer_cache",
        "none",
    )
    assert {"CreateDeployment", "FlushStageAuthorizersCache"} <= {r["eventName"] for r in small.ct}
    ids = set(lab["event_ids"])
    after = [a for a in small.auth if a["request_id"] in ids]
    assert after  # the flush made the authorizer decide again ...
    start_ms = int(datetime.fromisoformat(lab["start"].replace("Z", "+00:00")).timestamp()) * 1000

    def sent_ms(decision: dict[str, Any]) -> int:
        return int(small.api_by_id[decision["request_id"]]["requestTimeEpoch"])

    before = {a["token_fingerprint"] for a in small.auth if sent_ms(a) < start_ms}
    assert all(sent_ms(a) >= start_ms for a in after)
    # ... for tokens it had decided before the deploy: none of them fresh.
    assert all(a["token_fingerprint"] in before for a in after)
    assert len({_tenant(small.api_by_id[e]["path"]) for e in ids}) == len(lab["tenants"])


def test_authorizer_cache_reuse_serves_tenant_b_under_tenant_as_cached_allow(small: Logs) -> None:
    lab = small.labels["attack-authorizer-cache-reuse"]
    reqs = [small.api_by_id[e] for e in lab["event_ids"] if e in small.api_by_id]
    assert len(reqs) >= 3
    for m in reqs:
        assert m["status"] == "200" and m["authorizerLatency"] == "-"
        assert m["authorizerPrincipalId"] == lab["actor"]
        assert m["authorizerTenantId"] == lab["actor_tenant"]
        assert _tenant(m["path"]) == lab["tenants"][0] != lab["actor_tenant"]
    # The Allow it reused came from the principal's own request, from another address.
    allow = [
        a for a in small.auth if a["principal_id"] == lab["actor"] and a["decision"] == "Allow"
    ]
    origin = [
        small.api_by_id[a["request_id"]] for a in allow if a["cache_key"] != a["token_fingerprint"]
    ]
    assert origin and {o["ip"] for o in origin}.isdisjoint({m["ip"] for m in reqs})


def test_token_tenant_mismatch_is_denied_with_both_tenants_logged(small: Logs) -> None:
    lab = small.labels["attack-token-tenant-mismatch"]
    reqs = [small.api_by_id[e] for e in lab["event_ids"]]
    assert all(m["status"] == "403" and _tenant(m["path"]) == lab["tenants"][0] for m in reqs)
    denies = [a for a in small.auth if a["request_id"] in set(lab["event_ids"])]
    assert denies and all(
        a["decision"] == "Deny"
        and a["tenant_claim"] == lab["actor_tenant"]
        and a["requested_tenant"] == lab["tenants"][0]
        and a["principal_id"] == lab["actor"]
        for a in denies
    )


def test_tenant_enumeration_walks_ids_in_order_and_is_mostly_denied(small: Logs) -> None:
    lab = small.labels["attack-tenant-enumeration"]
    reqs = sorted(
        (small.api_by_id[e] for e in lab["event_ids"]), key=lambda m: int(m["requestTimeEpoch"])
    )
    walked = [_tenant(m["path"]) for m in reqs]
    assert walked == sorted(walked) and len(set(walked)) >= 10
    assert len({m["ip"] for m in reqs}) == 1
    assert sum(m["status"] == "403" for m in reqs) / len(reqs) > 0.8


def test_credential_stuffing_spikes_per_tenant_and_per_ip(small: Logs) -> None:
    lab = small.labels["attack-credential-stuffing-tenant"]
    reqs = [small.api_by_id[e] for e in lab["event_ids"]]
    assert all(m["status"] == "401" and m["httpMethod"] == "POST" for m in reqs)
    assert {_tenant(m["path"]) for m in reqs} == set(lab["tenants"])
    assert len({m["ip"] for m in reqs}) >= 20
    span = max(int(m["requestTimeEpoch"]) for m in reqs) - min(
        int(m["requestTimeEpoch"]) for m in reqs
    )
    assert span <= 25 * 60_000
    lab = small.labels["attack-credential-stuffing-ip"]
    reqs = [small.api_by_id[e] for e in lab["event_ids"]]
    assert {m["ip"] for m in reqs} == {lab["actor"]}
    assert all(m["status"] in ("401", "403") for m in reqs)
    assert {_tenant(m["path"]) for m in reqs} == set(lab["tenants"]) and len(lab["tenants"]) >= 10


def test_break_glass_with_and_without_ticket(small: Logs) -> None:
    ticketed = small.labels["negative-break-glass-ticketed"]
    rogue = small.labels["attack-break-glass-no-ticket"]
    assert ticketed["expected_severity"] == "low" and rogue["expected_severity"] == "high"
    for lab, session in ((ticketed, "SUP-4821.dana"), (rogue, "erik")):
        for e in lab["event_ids"]:
            r = small.ct_by_id[e]
            assert r["userIdentity"]["arn"].endswith(f"assumed-role/support-break-glass/{session}")
            p = r["requestParameters"]
            target = p.get("key") or p.get("prefix")
            tenant = _tenant(target) if isinstance(target, str) else p["key"]["pk"]["S"][7:]
            assert tenant == lab["tenants"][0]


def test_negatives_are_legitimate_relationships(small: Logs) -> None:
    cfg = load_config(small.root / "tenantwatch.toml", environ={})
    consultants = {r.principal: r.tenants for r in cfg.relationships if hasattr(r, "principal")}
    for name, tenants in consultants.items():
        lab = small.labels[f"negative-consultant-{name.rsplit('-', 1)[-1]}"]
        assert lab["kind"] == "negative" and lab["expected_severity"] == "none"
        api = [small.api_by_id[e] for e in lab["event_ids"] if e in small.api_by_id]
        cross = [m for m in api if m["resourcePath"] != "/tenants/{tenantId}/session"]
        assert cross and all(
            m["authorizerPrincipalId"] in (name, "-") and _tenant(m["path"]) in tenants
            for m in cross
        )
    bg = small.labels["negative-saas-billing-aggregator"]
    touched = {
        small.ct_by_id[e]["requestParameters"]["key"]["pk"]["S"][7:] for e in bg["event_ids"]
    }
    assert len(touched) == SMALL.tenants


# --- rhythm and noise ---------------------------------------------------------------------------


def test_ordinary_error_rates_are_a_few_percent(small: Logs) -> None:
    # The injected cases are not ordinary noise: the attacks and the benign look-alikes.
    injected = ("cached_deny", "new_hire", "log_delivery")
    attack_ids = {
        e
        for lab in small.labels.values()
        if lab["kind"] == "attack" or lab["scenario"] in injected
        for e in lab["event_ids"]
    }
    ct = [r for r in small.ct if r["eventID"] not in attack_ids]
    api = [m for m in small.api if m["requestId"] not in attack_ids]
    ct_err = sum("errorCode" in r for r in ct) / len(ct)
    api_err = sum(m["status"] >= "400" for m in api) / len(api)
    assert 0.005 <= ct_err <= 0.04, ct_err
    assert 0.005 <= api_err <= 0.06, api_err
    assert {"ThrottlingException", "NoSuchKey", "AccessDenied"} <= {r.get("errorCode") for r in ct}
    assert {"401", "403", "404", "429", "500"} <= {m["status"] for m in api}


def test_traffic_follows_each_tenants_working_day(small: Logs) -> None:
    world = build(SMALL)
    tz = {t.id: t.tz_minutes for t in world.tenants}
    # Attackers and consultants keep their own hours, not the target tenant's.
    other = {
        e for lab in small.labels.values() if lab["kind"] == "attack" for e in lab["event_ids"]
    }
    other |= {m["requestId"] for m in small.api if m["authorizerPrincipalId"].startswith("ext-")}
    by_local_hour: Counter[int] = Counter()
    for m in small.api:
        if m["requestId"] in other:
            continue
        t = _tenant(m["path"])
        local_min = int(m["requestTimeEpoch"]) // 60_000 + tz[t]
        by_local_hour[local_min // 60 % 24] += 1
    assert by_local_hour[10] > 5 * max(1, by_local_hour[3])
    assert by_local_hour[12] < by_local_hour[10]  # lunch dip


def test_monday_surge_doubles_the_tenants_morning(small: Logs) -> None:
    lab = small.labels["negative-monday-surge"]
    surge = lab["actor_tenant"]
    tz = next(t.tz_minutes for t in build(SMALL).tenants if t.id == surge)

    def morning(day: str) -> int:
        n = 0
        for m in small.api:
            if _tenant(m["path"]) != surge:
                continue
            local_ms = int(m["requestTimeEpoch"]) + tz * 60_000
            from datetime import UTC, datetime

            local = datetime.fromtimestamp(local_ms / 1000, UTC)
            n += local.date().isoformat() == day and 7 <= local.hour < 13
        return n

    assert morning("2026-11-16") >= 1.5 * max(1, morning("2026-11-09"))


def test_cached_deny_is_three_decisions_of_two_users_repeated_from_the_cache(small: Logs) -> None:
    lab = small.labels["negative-cached-deny"]
    assert (lab["kind"], lab["actor"], lab["tenants"]) == ("negative", None, [lab["actor_tenant"]])
    msgs = [small.api_by_id[i] for i in lab["event_ids"]]
    assert {m["status"] for m in msgs} == {"403"}
    decided = {a["request_id"]: a for a in small.auth if a["request_id"] in set(lab["event_ids"])}
    assert len(decided) == 3
    assert {(a["decision"], a["reason"].split(":")[0]) for a in decided.values()} == {
        ("Deny", "insufficient_role")
    }
    repeats = [m for m in msgs if m["requestId"] not in decided]
    assert len(repeats) >= 20 and {m["authorizerLatency"] for m in repeats} == {"-"}
    per_user = Counter(m["authorizerPrincipalId"] for m in msgs)
    assert len(per_user) == 2 and max(per_user.values()) < 20  # each under the actor floor


def test_new_hire_is_first_seen_two_days_before_the_attack_day(small: Logs) -> None:
    lab = small.labels["negative-new-hire"]
    days = {
        datetime.fromtimestamp(int(m["requestTimeEpoch"]) / 1000, UTC).date()
        for m in small.api
        if m["authorizerPrincipalId"] == lab["actor"]
    }
    assert days == {SMALL.attack_day - timedelta(days=d) for d in range(3)}
    refused = [
        a for a in small.auth if a["principal_id"] == lab["actor"] and a["decision"] == "Deny"
    ]
    assert refused and all(a["reason"].startswith("insufficient_role") for a in refused)


def test_log_delivery_fails_thousands_of_times_as_an_aws_service(small: Logs) -> None:
    lab = small.labels["negative-log-delivery"]
    recs = [small.ct_by_id[i] for i in lab["event_ids"]]
    assert len(recs) >= 1000 and lab["actor"] == "delivery.logs.amazonaws.com"
    assert {r["userIdentity"]["type"] for r in recs} == {"AWSService"}
    assert {(r["eventName"], r["errorCode"]) for r in recs} == {("PutObject", "AccessDenied")}


# --- configuration and validation ---------------------------------------------------------------


def test_default_world_configuration_describes_its_layout_and_relationships(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tenantwatch.toml"
    path.write_text(build(SimulationSpec()).style.files()["tenantwatch.toml"])
    cfg = load_config(path, environ={})
    assert [type(s) for s in cfg.tenancy.actor] == [SessionTag, RoleSessionName, AuthorizerContext]
    assert [type(s) for s in cfg.tenancy.target] == [S3Key, DynamoDBKey, ApiPath]
    assert cfg.relationships == (
        Organisation(parent="t0010", children=("t0011", "t0012", "t0013")),
        Consultant(principal="ext-consultant-ana", tenants=("t0020", "t0021", "t0022")),
        Consultant(principal="ext-consultant-ben", tenants=("t0030", "t0031")),
        ServiceRole(
            principal_pattern=r"^arn:aws:sts::111122223333:assumed-role/"
            r"saas-(nightly-export|billing-aggregator)/"
        ),
        BreakGlass(
            principal_pattern=r"^arn:aws:sts::111122223333:assumed-role/support-break-glass/",
            tickets=(
                Ticket(
                    id="SUP-4821",
                    tenants=("t0031",),
                    expires=datetime(2026, 11, 17, tzinfo=UTC),
                    approvers=("ops-lead@acme-saas.example", "sec-oncall@acme-saas.example"),
                    justification="Customer asked support to restore deleted invoices",
                ),
            ),
        ),
    )


def test_small_world_relationships_load_and_name_its_own_tenants(small: Logs) -> None:
    cfg = load_config(small.root / "tenantwatch.toml", environ={})
    assert cfg != parse_config({}, environ={})
    named = json.dumps([str(r) for r in cfg.relationships])
    assert all(int(t[1:]) <= SMALL.tenants for t in re.findall(r"t\d{4}", named))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scenarios": ("nope",)}, "unknown scenario 'nope'; valid: s3_prefix_cross_tenant"),
        ({"tenants": 9}, "tenants: expected 10 to 9999"),
        ({"tenants": 10_000}, "tenants: expected 10 to 9999"),
        ({"days": 1}, "days: expected 2 or more"),
        ({"events_per_day": 99}, "events_per_day: expected 100 or more"),
        ({"account": "12345"}, "account: expected 12 digits"),
        ({"world": "mesh"}, "world: expected one of pooled, silo, bridge, got 'mesh'"),
    ],
)
def test_bad_spec_is_refused_with_a_clear_message(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(TenantwatchError, match=re.escape(message)):
        simulate(tmp_path, replace(SimulationSpec(), **change))
    assert not any(tmp_path.iterdir())


def test_no_scenarios_injects_no_attacks(tmp_path: Path) -> None:
    simulate(tmp_path, replace(TINY, scenarios=()))
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert labels and all(
        lab["kind"] == "negative" and lab["scenario"] != "break_glass" for lab in labels
    )
