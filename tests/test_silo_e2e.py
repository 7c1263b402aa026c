"""An account per tenant, end to end: a registry maps accounts to tenants, the application's roles
act in their tenant's account, a partner works through a cross-account role, and one tenant's
role reads another tenant's bucket. `tenantwatch ingest` then `detect` must resolve every event
and report the cross-account read, and only it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.lake import read_events
from tests import logfactory as lf
from tests.logfactory import assume, identity

ACME, GLOBEX, INITECH = "111122223333", "444455556666", "777788889999"

CONFIG = """\
[[tenancy.lookup]]
name = "accounts"
file = "registry/accounts.csv"
key = "account_id"
tenant = "tenant_id"

[[tenancy.actor]]
kind = "field"
source = "cloudtrail"
path = "userIdentity.accountId"
lookup = "accounts"
when = { "userIdentity.sessionContext.sessionIssuer.userName" = ["app-user"] }

[[tenancy.actor]]
kind = "field"
source = "cloudtrail"
path = "userIdentity.accountId"
lookup = "accounts"
when = { "userIdentity.type" = ["AWSAccount"] }

[[tenancy.actor]]
kind = "session_origin"

[[tenancy.target]]
kind = "field"
source = "cloudtrail"
path = "resources[*].accountId"
lookup = "accounts"

[[tenancy.target]]
kind = "field"
source = "cloudtrail"
path = "recipientAccountId"
lookup = "accounts"

[[relationships]]
kind = "consultant"
principal = "partner-ana"
tenants = ["globex"]
"""


def s3_read(
    ident: dict[str, Any], bucket_account: str, receiver: str, time: str, event_id: str
) -> dict[str, Any]:
    """A GetObject on ``bucket_account``'s bucket as ``receiver``'s trail logs it."""
    bucket = f"data-{bucket_account}"
    return lf.ct(
        "GetObject",
        time=time,
        event_id=event_id,
        userIdentity=ident,
        recipientAccountId=receiver,
        requestParameters={"bucketName": bucket, "key": "reports/q3.csv"},
        resources=[
            {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/reports/q3.csv"},
            {
                "accountId": bucket_account,
                "type": "AWS::S3::Bucket",
                "ARN": f"arn:aws:s3:::{bucket}",
            },
        ],
    )


def as_owner_sees_it(ident: dict[str, Any]) -> dict[str, Any]:
    """The caller as the bucket owner's copy of a cross-account call names it: its account."""
    return {
        "type": "AWSAccount",
        "principalId": ident["principalId"],
        "accountId": ident["accountId"],
    }


def write_world(root: Path) -> Path:
    (root / "registry").mkdir(parents=True)
    (root / "registry" / "accounts.csv").write_text(
        f"account_id,tenant_id\n{ACME},acme\n{GLOBEX},globex\n{INITECH},initech\n"
    )
    (root / "tenantwatch.toml").write_text(CONFIG)
    acme_app = identity(ACME, "app-user", "ASIAACMEAPP000000001", "usr-1")
    globex_app = identity(GLOBEX, "app-user", "ASIAGLOBEXAPP0000001", "usr-2")
    initech_app = identity(INITECH, "app-user", "ASIAINITECHAPP000001", "partner-ana")
    partner = identity(GLOBEX, "partner-access", "ASIAPARTNER000000001", "partner-ana")
    trail = root / "AWSLogs" / "o-abc"
    files = {
        ACME: [
            s3_read(acme_app, ACME, ACME, "2026-11-16T10:00:00Z", "own-acme"),
            # acme's app role reads globex's bucket: acme's copy of the call ...
            s3_read(acme_app, GLOBEX, ACME, "2026-11-16T10:05:00Z", "leak-requester"),
        ],
        GLOBEX: [
            s3_read(globex_app, GLOBEX, GLOBEX, "2026-11-16T10:01:00Z", "own-globex"),
            # ... and globex's copy, which names the caller by its account only.
            s3_read(
                as_owner_sees_it(acme_app), GLOBEX, GLOBEX, "2026-11-16T10:05:00Z", "leak-owner"
            ),
            s3_read(partner, GLOBEX, GLOBEX, "2026-11-16T10:12:00Z", "partner-read"),
        ],
        INITECH: [
            assume(
                initech_app,
                GLOBEX,
                "partner-access",
                partner["accessKeyId"],
                "2026-11-16T10:10:00Z",
            ),
        ],
    }
    for account, records in files.items():
        lf.delivery_file(
            trail
            / account
            / "CloudTrail"
            / "us-east-1"
            / "2026"
            / "11"
            / "16"
            / f"{account}.json.gz",
            records,
        )
    return root


def test_a_silo_world_resolves_and_the_cross_account_read_is_reported(tmp_path: Path) -> None:
    world = write_world(tmp_path / "world")
    lake = str(tmp_path / "lake")
    base = ["--config", str(world / "tenantwatch.toml")]
    ingested = CliRunner().invoke(
        cli, [*base, "ingest", str(world / "AWSLogs"), "--lake", lake, "--workers", "1", "--json"]
    )
    assert ingested.exit_code == 0, ingested.output
    summary = json.loads(ingested.output)
    assert (summary["ingested"], summary["quarantined_total"]) == (6, 0)

    got = {
        r["event_id"]: (r["actor_principal"], r["actor_tenant"], r["target_tenant"])
        for r in read_events(lake).to_pylist()
    }
    acme_role = f"arn:aws:sts::{ACME}:assumed-role/app-user/usr-1"
    assert got["own-acme"] == (acme_role, "acme", "acme")
    assert got["own-globex"] == (
        f"arn:aws:sts::{GLOBEX}:assumed-role/app-user/usr-2",
        "globex",
        "globex",
    )
    assert got["leak-requester"] == (acme_role, "acme", "globex")
    assert got["leak-owner"] == (f"aws-account:{ACME}/usr-1", "acme", "globex")
    # The partner's session in globex acts for initech, which started it.
    assert got["partner-read"][1:] == ("initech", "globex")

    detected = CliRunner().invoke(
        cli,
        [
            *base,
            "detect",
            "--lake",
            lake,
            "--since",
            "2026-11-16",
            "--detector",
            "cross_tenant_access",
            "--json",
        ],
    )
    assert detected.exit_code == 0, detected.output
    findings = json.loads(detected.output)["findings"]
    cross = sorted(
        (f["actor"], f["actor_tenant"], tuple(f["tenants"]))
        for f in findings
        if f["evidence"]["kind"] == "cross_tenant"
    )
    owner_copy = f"aws-account:{ACME}/usr-1"
    assert cross == [(acme_role, "acme", ("globex",)), (owner_copy, "acme", ("globex",))]
    # The partner is a declared consultant of globex: its read is no finding.
    assert all("partner-ana" not in str(f["actor"]) for f in findings)
