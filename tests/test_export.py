"""``tenantwatch export --format ocsf``: the lake's events as OCSF API Activity Parquet in the
layout of a Security Lake custom source, every event once, the tenant context kept, the same
files when run again, on a folder and on S3."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.export import activity_ids, export_ocsf
from pipeline.lake import Lake
from tests.factories import ACCOUNT, api, event, events

DAY = datetime(2026, 11, 16, tzinfo=UTC)
LAYOUT = re.compile(
    r"/ext/tenantwatch/region=[\w.-]+/accountId=[\w.-]+/eventDay=\d{8}/[0-9a-f]{24}\.parquet$"
)


def lake_with(tmp_path: Path) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    rows = [
        event(60, action="GetObject", target_tenant="t0002", raw='{"eventName":"GetObject"}'),
        event(120, action="DeleteObject", outcome="denied", error_code="AccessDenied"),
        event(timedelta(days=1, seconds=5), action="PutObject", region="eu-west-1"),
        api(30, outcome="denied", status_code=403, region=None, account_id=None),
    ]
    from pipeline.lake import event_partition

    table = events(rows)
    for i, row in enumerate(table.to_pylist()):
        t = row["event_time"]
        rel = f"{event_partition(row['source'], f'{t:%Y-%m-%d}', f'{t:%H}')}/part-{i}.parquet"
        lake.write_table(rel, table.slice(i, 1))
    return lake


def read_all(files: list[str]) -> list[dict]:
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def test_every_event_once_as_api_activity_with_its_tenants(tmp_path: Path) -> None:
    lake = lake_with(tmp_path)
    out = tmp_path / "out"
    done = export_ocsf(lake.root, str(out), DAY, DAY + timedelta(days=2))
    assert (done.events, done.days) == (4, 2)
    assert all(LAYOUT.search(f) for f in done.files), done.files
    rows = read_all(done.files)
    assert sorted(r["metadata"]["uid"] for r in rows) == sorted(f"ev-{i:06d}" for i in range(1, 5))
    assert {r["class_uid"] for r in rows} == {6003} and {r["category_uid"] for r in rows} == {6}
    by = {r["api"]["operation"]: r for r in rows}
    read = by["GetObject"]
    assert (read["activity_id"], read["type_uid"], read["status"]) == (2, 600302, "Success")
    assert read["metadata"]["tenant_uid"] == "t0002"
    assert dict(read["unmapped"])["actor_tenant"] == "t0001"
    assert read["raw_data"] == '{"eventName":"GetObject"}'
    assert read["cloud"] == {
        "provider": "AWS",
        "region": "us-east-1",
        "account": {"uid": ACCOUNT},
    }
    denied = by["DeleteObject"]
    assert (denied["activity_id"], denied["status_id"], denied["status_code"]) == (
        4,
        2,
        "AccessDenied",
    )
    assert by["PutObject"]["time"].date() == (DAY + timedelta(days=1)).date()
    # An access log with no region or account: its own partition, never dropped.
    assert any("region=unknown/accountId=unknown" in f for f in done.files)


def test_running_it_again_rewrites_the_same_files(tmp_path: Path) -> None:
    lake = lake_with(tmp_path)
    first = export_ocsf(lake.root, str(tmp_path / "out"), DAY, DAY + timedelta(days=2))
    again = export_ocsf(lake.root, str(tmp_path / "out"), DAY, DAY + timedelta(days=2))
    assert sorted(first.files) == sorted(again.files)
    assert len(list((tmp_path / "out").rglob("*.parquet"))) == len(first.files)


def test_activities_follow_the_verb() -> None:
    import pyarrow as pa

    actions = [
        "ListBuckets",
        "CreateUser",
        "ModifySnapshotAttribute",
        "DeleteTrail",
        "GET /x",
        "POST /x",
        "AssumeRole",
        None,
    ]
    got = activity_ids(pa.array(actions)).to_pylist()
    assert got == [2, 1, 3, 4, 2, 1, 99, 99]


def test_the_command_writes_to_s3(tmp_path: Path, aws: str) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket="security-lake-custom")
    lake = lake_with(tmp_path)
    out = CliRunner().invoke(
        cli,
        [
            "export",
            "--lake",
            lake.root,
            "--out",
            "s3://security-lake-custom/prefix",
            "--since",
            "2026-11-16",
            "--until",
            "2026-11-18",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    keys = [
        o["Key"]
        for o in boto3.client("s3").list_objects_v2(Bucket="security-lake-custom")["Contents"]
    ]
    assert len(keys) == 3 and all(k.startswith("prefix/ext/tenantwatch/region=") for k in keys)


def test_a_bad_source_name_is_refused(tmp_path: Path) -> None:
    from pipeline.errors import InputError

    with pytest.raises(InputError, match="source-name"):
        export_ocsf(str(lake_with(tmp_path).root), str(tmp_path / "o"), DAY, DAY, "../x")
