"""Tenant resolution during ingestion (``tenancy``, ``sessions``): session tags joined across files,
runs and days, expiry, strategies and their conflicts, DynamoDB keys."""

from __future__ import annotations

from pathlib import Path

from pipeline.ingest.run import ingest
from tests import logfactory as lf
from tests.ingestlake import rows, run
from tests.pooled import pooled_config


def test_session_tag_join_across_files(tmp_path: Path) -> None:
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.assume_role(tenant="t0007")])
    lf.delivery_file(tmp_path / "in" / "2.json.gz", [lf.ct(key="tenants/t0008/invoices/9.pdf")])
    # One file per batch, so the join has to cross batches (and the parent's ordering).
    cfg = pooled_config(ingest={"batch_input_bytes": 1})
    run(tmp_path / "lake", tmp_path / "in", cfg=cfg)
    call = next(r for r in rows(tmp_path / "lake") if r["action"] == "GetObject")
    assert (call["actor_tenant"], call["actor_tenant_source"]) == ("t0007", "session_tag")
    assert (call["target_tenant"], call["target_tenant_source"]) == ("t0008", "s3_key")


def test_session_tag_join_across_runs(tmp_path: Path) -> None:
    lf.delivery_file(tmp_path / "a" / "1.json.gz", [lf.assume_role(tenant="t0007")])
    lf.delivery_file(tmp_path / "b" / "2.json.gz", [lf.ct(time="2026-11-16T11:00:00Z")])
    run(tmp_path / "lake", tmp_path / "a")
    run(tmp_path / "lake", tmp_path / "b")
    call = next(r for r in rows(tmp_path / "lake") if r["action"] == "GetObject")
    assert call["actor_tenant"] == "t0007"


def test_session_mapping_expires(tmp_path: Path) -> None:
    lf.delivery_file(tmp_path / "a" / "1.json.gz", [lf.assume_role(tenant="t0007")])
    late = lf.ct(time="2026-11-17T10:00:00Z")  # 24 h later: past the 12 h session TTL
    lf.delivery_file(tmp_path / "b" / "2.json.gz", [late])
    run(tmp_path / "lake", tmp_path / "a")
    run(tmp_path / "lake", tmp_path / "b")
    call = next(r for r in rows(tmp_path / "lake") if r["action"] == "GetObject")
    assert call["actor_tenant"] is None


def test_role_session_name_strategy_and_conflict_is_kept(tmp_path: Path) -> None:
    # The session tag says t0007, the role session name says t0009: keep both, resolve nothing.
    records = [
        lf.assume_role(tenant="t0007", role="tenant-reports", session="tenant-t0009-usr-b"),
        lf.ct(role="tenant-reports", session="tenant-t0009-usr-b"),
        lf.ct(role="tenant-reports", session="tenant-t0003-usr-c", key_id="ASIAOTHER000000001"),
    ]
    lf.delivery_file(tmp_path / "x.json.gz", records)
    run(tmp_path / "lake", tmp_path / "x.json.gz")
    by_session = {r["actor_principal"].rsplit("/", 1)[1]: r for r in rows(tmp_path / "lake")}
    conflicted = by_session["tenant-t0009-usr-b"]
    assert conflicted["actor_tenant"] == "t0007"
    assert "session_tag=t0007" in conflicted["tenant_conflict"]
    assert "role_session_name=t0009" in conflicted["tenant_conflict"]
    plain = by_session["tenant-t0003-usr-c"]
    assert (plain["actor_tenant"], plain["actor_tenant_source"]) == ("t0003", "role_session_name")
    assert plain["tenant_conflict"] is None


def test_conflicts_on_both_sides_are_kept_alike_with_and_without_workers(tmp_path: Path) -> None:
    # Target strategies are resolved where a batch is decoded, the session tag where it is
    # planned: the row still records both sides' disagreements, whichever process did what.
    cfg = pooled_config(
        ingest={"batch_input_bytes": 1},
        tenancy={
            "target": [
                {"kind": "s3_key", "pattern": r"^tenants/(?P<tenant>[^/]+)/"},
                {"kind": "s3_bucket", "pattern": r"^tenant-(?P<tenant>t\d{4})-"},
            ]
        },
    )
    lf.delivery_file(
        tmp_path / "in" / "1.json.gz",
        [lf.assume_role(tenant="t0007", role="tenant-reports", session="tenant-t0009-usr-b")],
    )
    lf.delivery_file(
        tmp_path / "in" / "2.json.gz",
        [
            lf.ct(
                role="tenant-reports",
                session="tenant-t0009-usr-b",
                bucket="tenant-t0005-data",
                time="2026-11-16T10:05:00Z",
            )
        ],
    )
    found = {}
    for workers in (1, 2):
        lake = tmp_path / f"lake{workers}"
        ingest([str(tmp_path / "in")], str(lake), cfg, workers=workers)
        found[workers] = [r for r in rows(lake) if r["action"] == "GetObject"]
    (r,) = found[1]
    assert (r["actor_tenant"], r["target_tenant"]) == ("t0007", "t0001")
    assert r["tenant_conflict"] == (
        "actor:session_tag=t0007,role_session_name=t0009;target:s3_key=t0001,s3_bucket=t0005"
    )
    assert found[2] == found[1]


def test_dynamodb_partition_key_is_the_target(tmp_path: Path) -> None:
    rec = lf.ct("GetItem", key=None)
    rec["eventSource"] = "dynamodb.amazonaws.com"
    rec["requestParameters"] = {
        "tableName": "tenant-data",
        "key": {"pk": {"S": "TENANT#t0042"}, "sk": {"S": "INVOICE#1"}},
    }
    lf.delivery_file(tmp_path / "d.json.gz", [rec])
    run(tmp_path / "lake", tmp_path / "d.json.gz")
    (r,) = rows(tmp_path / "lake")
    assert (r["target_tenant"], r["target_tenant_source"]) == ("t0042", "dynamodb_key")
    assert r["resource"] == "dynamodb:tenant-data/TENANT#t0042"


def test_session_join_inside_a_batch_spanning_days(tmp_path: Path) -> None:
    # One batch holding two days: the first day's sessions must not be expired by the second's.
    day1 = [lf.assume_role(tenant="t0001", new_key_id="ASIADAY1"), lf.ct(key_id="ASIADAY1")]
    day2 = [
        lf.assume_role(tenant="t0002", new_key_id="ASIADAY2", time="2026-11-18T09:00:00Z"),
        lf.ct(key_id="ASIADAY2", time="2026-11-18T09:05:00Z"),
        lf.ct(key_id="ASIADAY1", time="2026-11-18T09:06:00Z"),  # a day-old key: session over
    ]
    lf.delivery_file(tmp_path / "in" / "1.json.gz", day1)
    lf.delivery_file(tmp_path / "in" / "2.json.gz", day2)
    run(tmp_path / "lake", tmp_path / "in")
    calls = [r for r in rows(tmp_path / "lake") if r["action"] == "GetObject"]
    assert [c["actor_tenant"] for c in calls] == ["t0001", "t0002", None]
