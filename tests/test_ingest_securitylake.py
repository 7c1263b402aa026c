"""Amazon Security Lake's CloudTrail (OCSF Parquet) ingests to the rows its CloudTrail records do.

Each test writes CloudTrail records, ingests them once as a delivery file and once as the OCSF
rows Security Lake writes for them (``logfactory.ocsf_row``, with and without ``raw_data``), and
compares what the lake holds.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.ingest import sources
from pipeline.lake import read_events, read_quarantine
from tests import logfactory as lf
from tests.ingestlake import quarantine_reasons, rows, run
from tests.pooled import pooled_config

TOKEN = "IQoJb3JpZ2luX2VjSECRETSESSIONTOKENVALUE0123456789"
# The columns a row gets from its record; ``raw`` is its text and ``input_uri`` its file.
NORMALIZED = [
    "event_id",
    "event_time",
    "source",
    "event_kind",
    "service",
    "action",
    "actor_principal",
    "actor_type",
    "actor_session",
    "actor_tenant",
    "actor_tenant_source",
    "target_tenant",
    "target_tenant_source",
    "tenant_conflict",
    "resource",
    "outcome",
    "error_code",
    "source_ip",
    "user_agent",
    "account_id",
    "region",
    "request_id",
    "record_hash",
]


def _records() -> list[dict[str, Any]]:
    """An AssumeRole with a tenant tag (and a session token), the session reading its own
    tenant's object and writing another tenant's (refused), an IAM user's failed console
    sign-in, and a service acting for a caller."""
    login = lf.ct("ConsoleLogin", key=None, time="2026-11-16T10:05:00Z", requestParameters=None)
    login.update(
        eventSource="signin.amazonaws.com",
        userIdentity={
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLE",
            "accountId": lf.ACCOUNT,
            "userName": "alice",
        },
        responseElements={"ConsoleLogin": "Failure"},
        eventType="AwsConsoleSignIn",
        additionalEventData={"MFAUsed": "No", "LoginTo": "https://console.aws.amazon.com/"},
    )
    login.pop("requestID")
    service = lf.ct("Decrypt", key=None, time="2026-11-16T10:07:00.250Z", requestParameters=None)
    service.update(
        eventSource="kms.amazonaws.com",
        sourceIPAddress="s3.amazonaws.com",
        userIdentity={"type": "AWSService", "invokedBy": "s3.amazonaws.com"},
        resources=[
            {
                "accountId": lf.ACCOUNT,
                "type": "AWS::KMS::Key",
                "ARN": f"arn:aws:kms:us-east-1:{lf.ACCOUNT}:key/1234",
            }
        ],
    )
    return [
        lf.assume_role(),
        lf.ct(),
        lf.ct("PutObject", error="AccessDenied", key="tenants/t0002/invoices/9.pdf"),
        login,
        service,
    ]


def _lake_rows(lake: Path) -> list[dict[str, Any]]:
    return [{k: r[k] for k in [*NORMALIZED, "raw"]} for r in rows(lake)]


def _texts(lake: Path) -> str:
    """Everything the lake holds as text: events and quarantine, every column."""
    events = read_events(str(lake)).to_pylist()
    quarantined = read_quarantine(str(lake)).to_pylist()
    return json.dumps([events, quarantined], default=str)


@pytest.mark.parametrize("keep_raw", [False, True], ids=["rebuilt", "raw_data"])
def test_security_lake_rows_are_the_rows_of_their_cloudtrail_records(
    tmp_path: Path, keep_raw: bool
) -> None:
    records = _records()
    trail = tmp_path / "trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/16/f.json.gz"
    lf.delivery_file(trail, records)
    lf.security_lake_file(tmp_path / "sl", [lf.ocsf_row(r, keep_raw=keep_raw) for r in records])
    from_trail = run(tmp_path / "a", tmp_path / "trail")
    from_lake = run(tmp_path / "b", tmp_path / "sl")
    assert from_lake["ingested"] == from_trail["ingested"] == len(records)
    assert from_lake["quarantined_total"] == 0
    expected, got = _lake_rows(tmp_path / "a"), _lake_rows(tmp_path / "b")
    for want, have in zip(expected, got, strict=True):
        assert {k: have[k] for k in NORMALIZED} == {k: want[k] for k in NORMALIZED}
        if keep_raw:
            assert have["raw"] == want["raw"]  # the record kept is the record read
        else:
            rebuilt, original = json.loads(have["raw"]), json.loads(want["raw"])
            assert {k: v for k, v in original.items() if v is not None} == rebuilt
    by_action = {r["action"]: r for r in got}
    # The session tag its AssumeRole gave, and the key it read: tenants resolve as for CloudTrail.
    assert by_action["GetObject"]["actor_tenant"] == "t0001"
    assert by_action["PutObject"]["target_tenant"] == "t0002"
    assert by_action["PutObject"]["outcome"] == "denied"
    assert by_action["ConsoleLogin"]["outcome"] == "denied"
    assert by_action["ConsoleLogin"]["actor_principal"] == f"arn:aws:iam::{lf.ACCOUNT}:user/alice"
    assert by_action["Decrypt"]["event_time"] == datetime(2026, 11, 16, 10, 7, 0, 250000, UTC)
    # The AssumeRole's session token is a fingerprint in the lake, whichever way it came.
    assert TOKEN not in _texts(tmp_path / "b")
    assert "redacted:sha256:" in by_action["AssumeRole"]["raw"]


def test_a_security_lake_copy_of_ingested_records_is_duplicates(tmp_path: Path) -> None:
    records = _records()
    trail = tmp_path / "trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/16/f.json.gz"
    lf.delivery_file(trail, records)
    path = lf.security_lake_file(tmp_path / "sl", [lf.ocsf_row(r) for r in records])
    lake = tmp_path / "lake"
    run(lake, tmp_path / "trail")
    again = run(lake, path)
    assert (again["ingested"], again["duplicates"]) == (0, len(records))
    # The same file under another name: a new input, its records duplicates.
    copy = path.with_name("part-0001.zstd.parquet")
    shutil.copy(path, copy)
    third = run(lake, copy)
    assert (third["files"], third["ingested"], third["duplicates"]) == (1, 0, len(records))
    assert read_events(str(lake)).num_rows == len(records)


def test_only_the_event_days_in_the_window_are_read(tmp_path: Path) -> None:
    root = tmp_path / "aws-security-data-lake-us-east-1-abc123"
    for day in ("14", "15", "16"):
        recs = [lf.ct(time=f"2026-11-{day}T10:00:00Z") for _ in range(2)]
        lf.security_lake_file(root, [lf.ocsf_row(r) for r in recs], day=f"202611{day}")
    s = run(
        tmp_path / "lake",
        root,
        since=datetime(2026, 11, 15, tzinfo=UTC),
        until=datetime(2026, 11, 15, 23, tzinfo=UTC),
    )
    assert (s["files"], s["ingested"]) == (1, 2)
    days = {r["event_time"].day for r in rows(tmp_path / "lake")}
    assert days == {15}
    listed, _ = sources.list_inputs([str(root)], since=datetime(2026, 11, 16, tzinfo=UTC))
    assert [Path(r.uri).parent.name for r in listed] == ["eventDay=20261116"]


def test_rows_that_cannot_be_mapped_and_corrupt_files_are_quarantined(tmp_path: Path) -> None:
    good = lf.ct()
    flow = lf.ocsf_row(lf.ct(event_id="not-cloudtrail"))
    flow["class_uid"] = 4001  # Network Activity: not a CloudTrail class
    other = lf.ocsf_row(lf.ct(event_id="eks"))
    other["metadata"]["product"]["name"] = "Amazon EKS"  # API Activity, not CloudTrail's
    nameless = lf.ocsf_row(lf.ct(event_id="nameless"))
    nameless["api"]["operation"] = None
    nameless["api"]["service"]["name"] = None
    timeless = lf.ocsf_row(lf.assume_role())  # its session token must not reach the quarantine
    timeless["time"] = None
    root = tmp_path / "sl"
    rows_in = [lf.ocsf_row(good), flow, other, nameless, timeless]
    mixed = lf.security_lake_file(root, rows_in)
    corrupt = mixed.with_name("corrupt.parquet")
    whole = mixed.read_bytes()
    corrupt.write_bytes(whole[:4] + bytes(200) + whole[-8:])  # Parquet's magic, no valid footer
    cut = mixed.with_name("cut.parquet")
    cut.write_bytes(whole[: len(whole) // 2])
    foreign = mixed.with_name("foreign.parquet")
    pq.write_table(pa.table({"a": [1, 2]}), foreign)
    s = run(tmp_path / "lake", root)
    assert s["ingested"] == 1
    assert s["quarantined"] == {
        "corrupt_parquet": 2,
        "ocsf_missing_field": 2,
        "ocsf_unmapped_class": 2,
        "parquet_not_ocsf": 1,
    }
    assert quarantine_reasons(tmp_path / "lake")["foreign.parquet"] == "parquet_not_ocsf"
    entries = read_quarantine(str(tmp_path / "lake")).to_pylist()
    by_position = {
        (Path(e["input_uri"]).name, e["position"]): e for e in entries if e["position"] >= 0
    }
    assert by_position[(mixed.name, 1)]["reason"] == "ocsf_unmapped_class"
    assert "4001" in by_position[(mixed.name, 1)]["detail"]
    assert "Amazon EKS" in by_position[(mixed.name, 2)]["detail"]
    assert "api.operation" in by_position[(mixed.name, 3)]["detail"]
    # A row's entry keeps the row, as JSON, for people to read.
    assert json.loads(by_position[(mixed.name, 3)]["raw"])["metadata"]["uid"] == "nameless"
    # A file that does not read keeps no bytes: compressed pages can hide a secret.
    whole_file = [e for e in entries if e["reason"] == "corrupt_parquet"]
    assert all(e["position"] == -1 and e["raw"] == b"" for e in whole_file)
    assert TOKEN not in _texts(tmp_path / "lake")
    # Run again: every input is done, nothing is counted twice.
    again = run(tmp_path / "lake", root)
    assert (again["files_skipped"], again["records_in"]) == (4, 0)


def test_field_strategies_read_cloudtrail_paths_and_ocsf_paths(tmp_path: Path) -> None:
    cfg = pooled_config(
        tenancy={
            "actor": [
                {
                    "kind": "field",
                    "source": "cloudtrail",
                    "path": "ocsf.actor.user.account.uid",
                    "lookup": "accounts",
                }
            ],
            "target": [
                {
                    "kind": "field",
                    "source": "cloudtrail",
                    "path": "recipientAccountId",
                    "lookup": "accounts",
                }
            ],
            "lookup": [{"name": "accounts", "values": {lf.ACCOUNT: "acme"}}],
        }
    )
    records = [lf.ct(), lf.ct("ListObjects", key=None)]
    trail = tmp_path / "trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/16/f.json.gz"
    lf.delivery_file(trail, records)
    lf.security_lake_file(tmp_path / "sl", [lf.ocsf_row(r) for r in records])
    run(tmp_path / "a", tmp_path / "trail", cfg=cfg)
    run(tmp_path / "b", tmp_path / "sl", cfg=cfg)
    from_trail, from_lake = rows(tmp_path / "a"), rows(tmp_path / "b")
    # A CloudTrail path reads the rebuilt record as it reads the delivered one.
    assert [r["target_tenant"] for r in from_lake] == [r["target_tenant"] for r in from_trail]
    assert {r["target_tenant"] for r in from_lake} == {"acme"}
    # An ocsf. path reads the OCSF row: records that came another way have none.
    assert {(r["actor_tenant"], r["actor_tenant_source"]) for r in from_lake} == {("acme", "field")}
    assert {r["actor_tenant"] for r in from_trail} == {None}


@pytest.mark.e2e
def test_an_s3_security_lake_bucket_is_read_by_its_event_days(aws: str, tmp_path: Path) -> None:
    bucket = "aws-security-data-lake-us-east-1-abc123"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket="lake")
    prefix = f"aws/CLOUD_TRAIL_MGMT/2.0/region=us-east-1/accountId={lf.ACCOUNT}/"
    for day in ("14", "15", "16"):
        recs = [lf.ct(time=f"2026-11-{day}T10:00:00Z") for _ in range(3)]
        path = lf.security_lake_file(tmp_path, [lf.ocsf_row(r) for r in recs], day=f"202611{day}")
        s3.put_object(
            Bucket=bucket, Key=f"{prefix}eventDay=202611{day}/{path.name}", Body=path.read_bytes()
        )
    listed: list[str] = []
    client = sources._client("s3")

    def spy(params: dict[str, Any], **_: Any) -> None:
        if not params.get("Delimiter"):
            listed.append(f"{params.get('Prefix', '')} {params.get('MaxKeys', 1000)}")

    client.meta.events.register("before-parameter-build.s3.ListObjectsV2", spy)
    sources._DATED_BELOW.clear()
    try:
        s = run(
            "s3://lake/tw",
            f"s3://{bucket}/aws/CLOUD_TRAIL_MGMT/2.0/",
            since=datetime(2026, 11, 15, tzinfo=UTC),
            until=datetime(2026, 11, 16, 23, tzinfo=UTC),
        )
    finally:
        client.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", spy)
    assert (s["files"], s["ingested"], s["quarantined_total"]) == (2, 6, 0)
    # Keys are listed only in the window's eventDay folders, beyond one probe page that finds
    # the region's folder dated (and so every folder down to its day folders).
    assert sorted(listed) == [
        "aws/CLOUD_TRAIL_MGMT/2.0/region=us-east-1/ 100",
        f"{prefix}eventDay=20261115/ 1000",
        f"{prefix}eventDay=20261116/ 1000",
    ]
    days = {r["event_time"].day for r in read_events("s3://lake/tw").to_pylist()}
    assert days == {15, 16}
    again = run("s3://lake/tw", f"s3://{bucket}/")
    assert (again["files_skipped"], again["ingested"]) == (2, 3)
