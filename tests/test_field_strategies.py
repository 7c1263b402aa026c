"""`field` strategies over CloudTrail: any path of a record, its pattern, lookup and `when`
filters, several values per path, and the targets AWS names only inside requestParameters
(snapshot, image and database snapshot sharing, policies opened to an account, paginated keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config, parse_config
from pipeline.ingest.run import ingest
from pipeline.lake import read_events
from tests import logfactory as lf

ACCOUNTS = {"111122223333": "acme", "444455556666": "globex", "777788889999": "initech"}


def cfg(actor: list[Any] | None = None, target: list[Any] | None = None) -> Config:
    return parse_config(
        {
            "tenancy": {
                "lookup": [{"name": "accounts", "values": ACCOUNTS}],
                "actor": actor or [],
                "target": target or [],
            }
        },
        environ={},
    )


def field(path: str, **kw: Any) -> dict[str, Any]:
    return {"kind": "field", "source": "cloudtrail", "path": path, **kw}


def resolve(tmp_path: Path, records: list[dict[str, Any]], config: Config) -> list[dict[str, Any]]:
    lf.delivery_file(tmp_path / "in" / "a.json.gz", records)
    s = ingest([str(tmp_path / "in")], str(tmp_path / "lake"), config, workers=1)
    assert s["records_in"] == s["ingested"] == len(records), s
    by_id = {r["event_id"]: r for r in read_events(str(tmp_path / "lake")).to_pylist()}
    return [by_id[r["eventID"]] for r in records]


def test_a_field_with_a_lookup_resolves_known_keys_and_leaves_others_unresolved(
    tmp_path: Path,
) -> None:
    known, unknown = lf.ct(), lf.ct(recipientAccountId="999999999999")
    got = resolve(
        tmp_path, [known, unknown], cfg(target=[field("recipientAccountId", lookup="accounts")])
    )
    assert [(r["target_tenant"], r["target_tenant_source"]) for r in got] == [
        ("acme", "field"),
        (None, None),
    ]


def test_a_field_without_a_lookup_is_the_value_itself_or_its_pattern_group(tmp_path: Path) -> None:
    rec = lf.ct(requestParameters={"bucketName": "b", "key": "org=acme/x.csv"})
    whole = cfg(target=[field("requestParameters.bucketName")])
    grouped = cfg(target=[field("requestParameters.key", pattern="org=(?P<tenant>[a-z]+)/")])
    assert resolve(tmp_path / "1", [rec], whole)[0]["target_tenant"] == "b"
    assert resolve(tmp_path / "2", [rec], grouped)[0]["target_tenant"] == "acme"
    miss = cfg(target=[field("requestParameters.key", pattern="tenant=(?P<tenant>[a-z]+)/")])
    assert resolve(tmp_path / "3", [rec], miss)[0]["target_tenant"] is None


def test_when_keeps_a_strategy_to_the_records_it_is_for(tmp_path: Path) -> None:
    app = lf.ct(role="app-user")
    other = lf.ct(role="platform-admin")
    rule = field(
        "userIdentity.accountId",
        lookup="accounts",
        when={"userIdentity.sessionContext.sessionIssuer.userName": ["app-user", "app-reports"]},
    )
    got = resolve(tmp_path, [app, other], cfg(actor=[rule]))
    assert [r["actor_tenant"] for r in got] == ["acme", None]


def test_a_when_over_several_values_holds_when_one_of_them_is_allowed(tmp_path: Path) -> None:
    rule = field(
        "recipientAccountId",
        lookup="accounts",
        when={"resources[*].type": ["AWS::S3::Bucket"]},
    )
    s3 = lf.ct(resources=[{"type": "AWS::S3::Object"}, {"type": "AWS::S3::Bucket"}])
    iam = lf.ct(resources=[{"type": "AWS::IAM::Role"}])
    got = resolve(tmp_path, [s3, iam], cfg(target=[rule]))
    assert [r["target_tenant"] for r in got] == ["acme", None]


def test_a_field_applies_only_to_records_of_its_source(tmp_path: Path) -> None:
    rule = {
        "kind": "field",
        "source": "apigateway",
        "path": "recipientAccountId",
        "lookup": "accounts",
    }
    assert resolve(tmp_path, [lf.ct()], cfg(target=[rule]))[0]["target_tenant"] is None


def _resources(*accounts: str) -> list[dict[str, Any]]:
    return [
        {"ARN": f"arn:aws:s3:::bucket-{a}", "accountId": a, "type": "AWS::S3::Bucket"}
        for a in accounts
    ]


def test_several_values_the_first_that_resolves_wins(tmp_path: Path) -> None:
    rec = lf.ct(resources=_resources("999999999999", "444455556666"))
    got = resolve(tmp_path, [rec], cfg(target=[field("resources[*].accountId", lookup="accounts")]))
    assert (got[0]["target_tenant"], got[0]["tenant_conflict"]) == ("globex", None)


def test_several_values_of_different_tenants_are_a_conflict(tmp_path: Path) -> None:
    rec = lf.ct(resources=_resources("111122223333", "999999999999", "444455556666"))
    same = lf.ct(resources=_resources("111122223333", "111122223333"))
    rule = field("resources[*].accountId", lookup="accounts")
    got = resolve(tmp_path, [rec, same], cfg(target=[rule]))
    assert got[0]["target_tenant"] == "acme"
    assert got[0]["tenant_conflict"] == "target:field=acme,field=globex"
    assert got[1]["tenant_conflict"] is None


def test_an_actor_field_of_several_values_records_its_conflict_too(tmp_path: Path) -> None:
    rec = lf.ct(
        userIdentity={**lf.ct()["userIdentity"], "accounts": ["111122223333", "777788889999"]}
    )
    got = resolve(
        tmp_path, [rec], cfg(actor=[field("userIdentity.accounts[*]", lookup="accounts")])
    )
    assert got[0]["actor_tenant"] == "acme"
    assert got[0]["tenant_conflict"] == "actor:field=acme,field=initech"


# --- targets named only inside requestParameters, in the shapes CloudTrail logs them ----------

SHARING = [
    field(
        "requestParameters.createVolumePermission.add.items[*].userId",
        lookup="accounts",
        when={"eventName": ["ModifySnapshotAttribute"]},
    ),
    field(
        "requestParameters.launchPermission.add.items[*].userId",
        lookup="accounts",
        when={"eventName": ["ModifyImageAttribute"]},
    ),
    field(
        "requestParameters.valuesToAdd[*]",
        lookup="accounts",
        when={"requestParameters.attributeName": ["restore"]},
    ),
    field(
        "requestParameters.bucketPolicy.Statement[*].Principal.AWS",
        pattern=r"arn:aws:iam::(?P<tenant>\d{12}):",
        lookup="accounts",
    ),
    field(
        "requestParameters.policyDocument",
        pattern=r"arn:aws:iam::(?P<tenant>\d{12}):",
        lookup="accounts",
    ),
    field("requestParameters.exclusiveStartKey.*.S", pattern="^TENANT#(?P<tenant>[^#]+)"),
    field("requestParameters.exclusiveStartKey.*", pattern="^TENANT#(?P<tenant>[^#]+)"),
]


def _api(name: str, source: str, params: dict[str, Any]) -> dict[str, Any]:
    rec = lf.ct(name, key=None, requestParameters=params, resources=None)
    rec["eventSource"] = source
    return rec


POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetBucketAcl"},
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
            "Action": "s3:GetObject",
        },
    ],
}
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::777788889999:role/ci"},
            "Action": "sts:AssumeRole",
        }
    ],
}
CASES = {
    "EBS snapshot shared": (
        _api(
            "ModifySnapshotAttribute",
            "ec2.amazonaws.com",
            {
                "attributeType": "CREATE_VOLUME_PERMISSION",
                "createVolumePermission": {"add": {"items": [{"userId": "444455556666"}]}},
                "snapshotId": "snap-041993b54a9b3af6f",
            },
        ),
        "globex",
    ),
    "AMI shared": (
        _api(
            "ModifyImageAttribute",
            "ec2.amazonaws.com",
            {
                "attributeType": "launchPermission",
                "imageId": "ami-0de1fbcab6ccb03e6",
                "launchPermission": {"add": {"items": [{"userId": "777788889999"}]}},
            },
        ),
        "initech",
    ),
    "RDS snapshot shared": (
        _api(
            "ModifyDBSnapshotAttribute",
            "rds.amazonaws.com",
            {
                "attributeName": "restore",
                "dBSnapshotIdentifier": "exfiltration",
                "valuesToAdd": ["999999999999", "444455556666"],
            },
        ),
        "globex",
    ),
    "RDS snapshot, another attribute": (
        _api(
            "ModifyDBSnapshotAttribute",
            "rds.amazonaws.com",
            {"attributeName": "other", "valuesToAdd": ["444455556666"]},
        ),
        None,
    ),
    "bucket policy opened to an account": (
        _api("PutBucketPolicy", "s3.amazonaws.com", {"bucketName": "data", "bucketPolicy": POLICY}),
        "globex",
    ),
    "trust policy opened to an account (text)": (
        _api(
            "UpdateAssumeRolePolicy",
            "iam.amazonaws.com",
            {"roleName": "deploy", "policyDocument": json.dumps(TRUST)},
        ),
        "initech",
    ),
    "scan resumed at another tenant's key (typed)": (
        _api(
            "Scan",
            "dynamodb.amazonaws.com",
            {"tableName": "orders", "exclusiveStartKey": {"pk": {"S": "TENANT#globex"}}},
        ),
        "globex",
    ),
    "scan resumed at another tenant's key (plain)": (
        _api(
            "Scan",
            "dynamodb.amazonaws.com",
            {"tableName": "orders", "exclusiveStartKey": {"pk": "TENANT#initech", "sk": "ORDER#1"}},
        ),
        "initech",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_target_named_only_in_request_parameters(tmp_path: Path, case: str) -> None:
    rec, tenant = CASES[case]
    actor = field("userIdentity.accountId", lookup="accounts")
    (row,) = resolve(tmp_path, [rec], cfg(actor=[actor], target=SHARING))
    assert (row["actor_tenant"], row["target_tenant"]) == ("acme", tenant)


def test_stratus_red_team_sharing_captures_become_cross_account_rows(
    tmp_path: Path, real_logs: Path
) -> None:
    folder = real_logs / "DataDog__stratus-red-team" / "original" / "detonation-logs"
    names = ("ec2-share-ebs-snapshot", "ec2-share-ami", "rds-share-snapshot")
    files = [folder / f"aws.exfiltration.{n}.json" for n in names]
    # The accounts that shared and the accounts shared with, as two tenants each.
    accounts = {
        "756680937392": "owner-ebs",
        "098797384747": "outsider-ebs",
        "118238665043": "owner-ami",
        "846424999548": "outsider-ami",
        "171471557522": "owner-rds",
        "503161813013": "outsider-rds",
    }
    config = parse_config(
        {
            "tenancy": {
                "lookup": [{"name": "accounts", "values": accounts}],
                "actor": [field("userIdentity.accountId", lookup="accounts")],
                "target": SHARING,
            }
        },
        environ={},
    )
    ingest([str(f) for f in files], str(tmp_path / "lake"), config, workers=1)
    events = read_events(str(tmp_path / "lake")).to_pylist()
    shared = {
        e["action"]: (e["actor_tenant"], e["target_tenant"])
        for e in events
        if e["action"]
        in ("ModifySnapshotAttribute", "ModifyImageAttribute", "ModifyDBSnapshotAttribute")
    }
    assert shared == {
        "ModifySnapshotAttribute": ("owner-ebs", "outsider-ebs"),
        "ModifyImageAttribute": ("owner-ami", "outsider-ami"),
        "ModifyDBSnapshotAttribute": ("owner-rds", "outsider-rds"),
    }
