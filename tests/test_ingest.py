"""Ingestion: formats by content, tenant resolution, dedup, idempotence, bad input, secrets."""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.config import Config, IngestConfig
from pipeline.ingest import gz
from pipeline.ingest.reading import Reading
from pipeline.ingest.run import ingest
from pipeline.lake import read_events, read_quarantine
from tests import logfactory as lf
from tests.conftest import REPO
from tests.pooled import pooled_config, pooled_file


def run(lake: Path, *sources: Path | str, cfg: Config | None = None, **kw: Any) -> dict[str, Any]:
    summary = ingest([str(s) for s in sources], str(lake), cfg or pooled_config(), workers=1, **kw)
    total = summary["ingested"] + summary["duplicates"] + summary["quarantined_total"]
    assert summary["records_in"] == total, summary  # nothing lost, ever
    return summary


def rows(lake: Path) -> list[dict[str, Any]]:
    return sorted(
        read_events(str(lake)).to_pylist(), key=lambda r: (r["event_time"], r["event_id"])
    )


def lake_files(lake: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()
    }


# --- formats, recognised by content ----------------------------------------------------------


def test_cloudtrail_delivery_file_gzipped_and_plain(tmp_path: Path) -> None:
    lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct(), lf.ct("PutObject")])
    lf.delivery_file(tmp_path / "in" / "b.json", [lf.ct("ListObjects")], compress=False)
    s = run(tmp_path / "lake", tmp_path / "in")
    assert s["ingested"] == 3
    assert {r["action"] for r in rows(tmp_path / "lake")} == {
        "GetObject",
        "PutObject",
        "ListObjects",
    }


def test_bare_records_one_per_line_and_json_array_and_eventbridge(tmp_path: Path) -> None:
    lf.lines_file(tmp_path / "in" / "bare.log", [lf.ct("GetObject"), lf.ct("HeadObject")])
    (tmp_path / "in" / "array.json").write_text(json.dumps([lf.ct("DeleteObject")]))
    envelope = {
        "version": "0",
        "id": "x",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.s3",
        "detail": lf.ct("CopyObject"),
    }
    (tmp_path / "in" / "eb.json").write_text(json.dumps(envelope, indent=2))
    s = run(tmp_path / "lake", tmp_path / "in")
    assert s["ingested"] == 4
    actions = {r["action"] for r in rows(tmp_path / "lake")}
    assert actions == {"GetObject", "HeadObject", "DeleteObject", "CopyObject"}


def test_cloudwatch_subscription_payload_encoded_and_decoded(tmp_path: Path) -> None:
    encoded = lf.cwl_subscription([lf.authorizer_log(), lf.authorizer_log(decision="Allow")])
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cwl.json").write_text(json.dumps(encoded))
    decoded = {"messageType": "DATA_MESSAGE", "logEvents": [{"message": json.dumps(lf.ct())}]}
    (tmp_path / "in" / "decoded.json").write_text(json.dumps(decoded))
    s = run(tmp_path / "lake", tmp_path / "in")
    assert s["ingested"] == 3
    assert sorted(r["source"] for r in rows(tmp_path / "lake")) == [
        "authorizer",
        "authorizer",
        "cloudtrail",
    ]


def test_lookup_events_export(tmp_path: Path) -> None:
    export = {"Events": [{"EventId": "e", "CloudTrailEvent": json.dumps(lf.ct("GetBucketAcl"))}]}
    (tmp_path / "lookup.json").write_text(json.dumps(export))
    assert run(tmp_path / "lake", tmp_path / "lookup.json")["ingested"] == 1


def test_digest_files_are_recorded_not_counted(tmp_path: Path) -> None:
    digest = {
        "awsAccountId": lf.ACCOUNT,
        "digestStartTime": "2026-11-16T09:00:00Z",
        "digestEndTime": "2026-11-16T10:00:00Z",
        "logFiles": [
            {"s3Bucket": "b", "s3Object": "AWSLogs/x.json.gz", "hashValue": "ab"},
            {"s3Bucket": "b", "s3Object": "AWSLogs/y.json.gz"},  # a hash missing stays missing
        ],
    }
    (tmp_path / "digest.json.gz").write_bytes(gzip.compress(json.dumps(digest).encode()))
    s = run(tmp_path / "lake", tmp_path / "digest.json.gz")
    assert (s["records_in"], s["digest_files"]) == (0, 1)
    (state,) = (tmp_path / "lake" / "_state" / "digests").glob("*.parquet")
    listed = pq.read_table(state).select(["log_object", "hash_value"]).to_pylist()
    assert listed == [
        {"log_object": "AWSLogs/x.json.gz", "hash_value": "ab"},
        {"log_object": "AWSLogs/y.json.gz", "hash_value": None},
    ]


def test_a_digest_listing_no_files_is_recorded_all_the_same(tmp_path: Path) -> None:
    # CloudTrail delivers a digest every hour, with "logFiles": [] when no file came.
    digest: dict[str, Any] = {
        "awsAccountId": lf.ACCOUNT,
        "digestStartTime": "2026-11-16T09:00:00Z",
        "digestEndTime": "2026-11-16T10:00:00Z",
        "previousDigestHashValue": None,
        "logFiles": [],
    }
    path = tmp_path / "in" / "digest.json.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(json.dumps(digest).encode()))
    s = run(tmp_path / "lake", tmp_path / "in")
    assert (s["records_in"], s["digest_files"], s["quarantined_total"]) == (0, 1, 0)
    state = pq.read_table(tmp_path / "lake" / "_state" / "digests").to_pylist()
    assert state == [{"digest_uri": str(path), "log_object": None, "hash_value": None}]


def test_insights_events_are_kept_and_marked(tmp_path: Path) -> None:
    insight = {
        "eventVersion": "1.07",
        "eventTime": "2026-11-16T10:00:00Z",
        "awsRegion": "us-east-1",
        "eventID": "insight-1",
        "eventType": "AwsCloudTrailInsight",
        "recipientAccountId": lf.ACCOUNT,
        "insightDetails": {
            "state": "Start",
            "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject",
            "insightType": "ApiCallRateInsight",
        },
        "eventCategory": "Insight",
    }
    lf.delivery_file(tmp_path / "i.json.gz", [insight, lf.ct()])
    run(tmp_path / "lake", tmp_path / "i.json.gz")
    kinds = {r["event_kind"]: r for r in rows(tmp_path / "lake")}
    assert set(kinds) == {"insight", "api_call"}
    assert kinds["insight"]["action"] == "GetObject (Start)"


def test_api_gateway_access_logs_exported_from_cloudwatch(tmp_path: Path) -> None:
    logs = [
        lf.access_log(tenant_path="t0002", claim="t0001", status=200),
        lf.access_log(status=403),
    ]
    lf.lines_file(tmp_path / "000000", logs, cwl_export=True)
    run(tmp_path / "lake", tmp_path / "000000")
    got = rows(tmp_path / "lake")
    assert [(r["actor_tenant"], r["target_tenant"], r["outcome"]) for r in got] in (
        [("t0001", "t0002", "success"), ("t0001", "t0001", "denied")],
        [("t0001", "t0001", "denied"), ("t0001", "t0002", "success")],
    )
    assert all(r["source"] == "apigateway" and r["status_code"] in (200, 403) for r in got)
    assert got[0]["action"] == "GET /tenants/{tenantId}/invoices"
    assert got[0]["target_tenant_source"] == "api_path"


def test_authorizer_decision_carries_claim_and_requested_tenant(tmp_path: Path) -> None:
    lf.lines_file(tmp_path / "auth.log", [lf.authorizer_log(claim="t0001", requested="t0002")])
    run(tmp_path / "lake", tmp_path / "auth.log")
    (r,) = rows(tmp_path / "lake")
    assert (r["actor_tenant"], r["target_tenant"], r["outcome"]) == ("t0001", "t0002", "denied")
    assert r["actor_session"] == "sha256:0123456789abcdef"
    assert r["actor_tenant_source"] == "authorizer_context"


# --- tenant resolution -----------------------------------------------------------------------


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


# --- re-runs, duplicates, crashes ------------------------------------------------------------


def test_rerun_changes_nothing_and_skips_ingested_objects(tmp_path: Path) -> None:
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.assume_role(), lf.ct(), lf.ct()])
    first = run(tmp_path / "lake", tmp_path / "in")
    before = lake_files(tmp_path / "lake")
    again = run(tmp_path / "lake", tmp_path / "in")
    assert (again["files_skipped"], again["records_in"]) == (1, 0)
    assert lake_files(tmp_path / "lake") == before
    assert first["ingested"] == 3


def test_duplicate_event_ids_dropped_within_and_across_runs(tmp_path: Path) -> None:
    rec = lf.ct(event_id="dup-1")
    lf.delivery_file(tmp_path / "a" / "1.json.gz", [rec, rec])
    lf.delivery_file(tmp_path / "b" / "2.json.gz", [rec, lf.ct()])  # re-delivered elsewhere
    s1 = run(tmp_path / "lake", tmp_path / "a")
    s2 = run(tmp_path / "lake", tmp_path / "b")
    assert (s1["ingested"], s1["duplicates"]) == (1, 1)
    assert (s2["ingested"], s2["duplicates"]) == (1, 1)
    assert [r["event_id"] for r in rows(tmp_path / "lake")].count("dup-1") == 1


def test_same_placeholder_id_with_other_content_is_not_a_duplicate(tmp_path: Path) -> None:
    # Test corpora reuse ids like "1" for different events: dropping them would lose records.
    a = lf.ct(event_id="1", time="2026-11-16T10:00:00Z")
    b = lf.ct("PutObject", event_id="1", time="2026-11-16T10:00:00Z")
    lf.delivery_file(tmp_path / "x.json.gz", [a, b])
    assert run(tmp_path / "lake", tmp_path / "x.json.gz")["ingested"] == 2


def test_run_that_dies_half_way_is_rerun_to_the_same_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        lf.delivery_file(
            tmp_path / "in" / f"{i}.json.gz",
            [lf.assume_role(new_key_id=f"ASIAKEY{i:011d}"), lf.ct(key_id=f"ASIAKEY{i:011d}")],
        )
    cfg = pooled_config(ingest={"batch_input_bytes": 1})
    run(tmp_path / "clean", tmp_path / "in", cfg=cfg)

    from pipeline.lake import Lake

    real_write = Lake.write_table
    calls = {"n": 0}

    def dying_write(self: Lake, rel: str, table: Any, sort_by: Any = None) -> None:
        if rel.startswith("_state/ingested/"):
            calls["n"] += 1
            if calls["n"] == 3:  # dies after the third batch's data files, before its state
                raise KeyboardInterrupt
        real_write(self, rel, table, sort_by)

    monkeypatch.setattr(Lake, "write_table", dying_write)
    with pytest.raises(KeyboardInterrupt):
        ingest([str(tmp_path / "in")], str(tmp_path / "crashy"), cfg, workers=1)
    monkeypatch.setattr(Lake, "write_table", real_write)
    resumed = run(tmp_path / "crashy", tmp_path / "in", cfg=cfg)
    assert resumed["files_skipped"] == 2
    assert lake_files(tmp_path / "crashy") == lake_files(tmp_path / "clean")


def test_workers_give_the_same_lake_as_one_process(tmp_path: Path) -> None:
    for i in range(6):
        lf.delivery_file(
            tmp_path / "in" / f"{i}.json.gz",
            [lf.assume_role(tenant=f"t000{i}", new_key_id=f"ASIAKEY{i:011d}")]
            + [lf.ct(key_id=f"ASIAKEY{(i + 5) % 6:011d}") for _ in range(3)],
        )
    cfg = pooled_config(ingest={"batch_input_bytes": 1})
    ingest([str(tmp_path / "in")], str(tmp_path / "one"), cfg, workers=1)
    ingest([str(tmp_path / "in")], str(tmp_path / "two"), cfg, workers=2)
    assert lake_files(tmp_path / "one") == lake_files(tmp_path / "two")


# --- nothing lost, nothing unsafe ------------------------------------------------------------


def _reasons(lake: Path) -> dict[str, str]:
    return {
        os.path.basename(r["input_uri"]): r["reason"]
        for r in read_quarantine(str(lake)).to_pylist()
    }


def test_bad_inputs_are_quarantined_with_reasons(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    good = gzip.compress(json.dumps({"Records": [lf.ct() for _ in range(50)]}).encode())
    (d / "truncated.json.gz").write_bytes(good[: len(good) // 2])
    (d / "latin1.json").write_bytes(b'{"Records": [{"eventName": "Get\xe9"}]}')
    (d / "deep.json").write_bytes(b"[" * 5000 + b"]" * 5000)
    (d / "empty.json").write_bytes(b"")
    (d / "bomb.json.gz").write_bytes(gzip.compress(b" " * (64 << 20)))
    big = lf.ct()
    big["requestParameters"]["padding"] = "x" * (10 << 20)
    (d / "huge.json").write_text(json.dumps({"Records": [big, lf.ct()]}))
    (d / "notjson.txt").write_text("Traceback (most recent call last):\n")
    (d / "platform.log").write_text("START RequestId: 1 Version: $LATEST\n")
    cfg = pooled_config(ingest={"max_decompressed_bytes": 32 << 20})
    s = run(tmp_path / "lake", d, cfg=cfg)
    reasons = _reasons(tmp_path / "lake")
    assert reasons["truncated.json.gz"] == "truncated_gzip"
    assert reasons["latin1.json"] == "invalid_utf8"
    assert reasons["deep.json"] == "too_deep"
    assert reasons["empty.json"] == "empty_input"
    assert reasons["bomb.json.gz"] == "decompressed_too_large"
    assert reasons["huge.json"] == "record_too_large"
    assert reasons["notjson.txt"] == "not_json"
    assert reasons["platform.log"] == "lambda_platform_line"
    assert s["ingested"] == 1  # the normal record next to the huge one


def _entries(lake: Path) -> dict[str, dict[str, Any]]:
    return {os.path.basename(r["input_uri"]): r for r in read_quarantine(str(lake)).to_pylist()}


def _gzip_of_zeros(size: int) -> bytes:
    """A gzip bomb: ``size`` zero bytes in about a thousandth of that, made a MiB at a time."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [z.compress(block) for _ in range(size >> 20)]
    return b"".join([*parts, z.compress(bytes(size & ((1 << 20) - 1))), z.flush()])


def _peak_traced(fn: Callable[[], object]) -> tuple[object, int]:
    """``fn()``'s result (or the exception it raised) and the peak of Python's allocations."""
    tracemalloc.start()
    try:
        try:
            result = fn()
        except Exception as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_default_decompression_limit_stops_a_bomb_without_allocating_past_it() -> None:
    limit = IngestConfig().max_decompressed_bytes
    # Decoding a file holds several times its decompressed size, and ingestion stays under 1 GB.
    assert limit <= 128 << 20
    bomb = _gzip_of_zeros(limit + (16 << 20))
    err, peak = _peak_traced(lambda: gz.maybe_decompress(bomb, limit))
    assert isinstance(err, gz.GzipError)
    assert err.reason == "decompressed_too_large"
    assert "ingest.max_decompressed_bytes" in str(err)  # the setting to raise
    assert limit < len(err.partial) <= limit + (1 << 20)
    assert peak < limit * 1.15 + (4 << 20), f"{peak:,} bytes allocated for a {limit:,} limit"


def test_decompressing_holds_the_output_once() -> None:
    data = _gzip_of_zeros(40 << 20)
    out, peak = _peak_traced(lambda: gz.maybe_decompress(data, 64 << 20))
    assert out == bytes(40 << 20)
    assert peak < (40 << 20) * 1.15 + (4 << 20), f"{peak:,} bytes allocated for 40 MiB"


def test_a_flood_of_bad_lines_is_counted_line_by_line_and_kept_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """A few kilobytes of gzip that inflate to 100,000 lines of garbage, beside a good file: every
    line is counted under its reason; the first lines of the input are entries one by one, the
    rest one entry that says how many it stands for, and decoding stays within megabytes."""
    from pipeline.ingest import decode, quarantine
    from pipeline.ingest.sources import list_inputs

    lines = 100_000
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.log.gz").write_bytes(gzip.compress(b"x\n" * lines))
    lf.delivery_file(tmp_path / "in" / "good.json.gz", [lf.ct(), lf.ct("PutObject")])
    assert (tmp_path / "in" / "bad.log.gz").stat().st_size < 4096

    refs, _ = list_inputs([str(tmp_path / "in")])
    batch = decode.Batch(tuple(refs))
    decoded, peak = _peak_traced(
        lambda: decode.decode_batch(batch, IngestConfig(), Reading.of(Config()))
    )
    assert isinstance(decoded, decode.Decoded)
    # One by one, each entry of these would take ~250 bytes: ~25 MB for 100,000.
    assert peak < 8 << 20, f"{peak:,} bytes allocated to decode {lines:,} bad lines"

    s = run(tmp_path / "lake", tmp_path / "in")
    (reason,) = s["quarantined"]
    assert s["quarantined"] == {reason: lines} and s["ingested"] == 2
    entries = read_quarantine(str(tmp_path / "lake")).to_pylist()
    assert sum(e["records"] for e in entries) == lines
    assert len(entries) == quarantine.KEPT_PER_INPUT + 1
    assert [e["position"] for e in entries[:3]] == [1, 2, 3]
    gathered = entries[-1]
    assert gathered["records"] == lines - quarantine.KEPT_PER_INPUT
    assert gathered["position"] == quarantine.KEPT_PER_INPUT + 1
    assert f"{lines - quarantine.KEPT_PER_INPUT:,} more records" in gathered["detail"]
    assert gathered["raw"].startswith(b"x\nx\n")
    assert len(gathered["raw"]) <= IngestConfig().max_record_bytes


def test_a_quarantine_written_before_the_records_column_reads_as_one_record_an_entry(
    tmp_path: Path,
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.log").write_text("not json\nnor this\n")
    run(tmp_path / "lake", tmp_path / "in")
    (path,) = (tmp_path / "lake" / "quarantine").glob("*.parquet")
    pq.write_table(pq.read_table(path).drop_columns(["records"]), path)  # as an older lake's
    entries = read_quarantine(str(tmp_path / "lake"))
    assert entries.column("records").to_pylist() == [1, 1]
    assert entries.column("reason").to_pylist() == ["not_json", "not_json"]


def test_a_batch_keeps_a_bounded_number_of_entries_one_by_one() -> None:
    from pipeline.ingest.quarantine import KEPT_PER_BATCH, KEPT_PER_INPUT, QuarantineLog

    log = QuarantineLog(keep=100)
    inputs = KEPT_PER_BATCH // KEPT_PER_INPUT + 3
    for i in range(inputs):
        for n in range(KEPT_PER_INPUT + 5):
            log.append((f"in-{i}", n, "invalid_json", "bad", b"{" * 60))
    entries = log.finish()
    assert sum(e.records for e in entries) == inputs * (KEPT_PER_INPUT + 5)
    assert sum(e.records == 1 for e in entries) == KEPT_PER_BATCH
    gathered = [e for e in entries if e.records > 1]
    assert {e.input_uri for e in gathered} == {f"in-{i}" for i in range(inputs)}
    assert all(len(e.raw) <= 100 + 61 for e in gathered)  # keep, and the line that passed it


def test_array_elements_found_by_counting_are_the_parsers() -> None:
    from pipeline.ingest.formats import _elements

    rng = random.Random(2)

    def value(depth: int = 0) -> Any:
        r = rng.random()
        if depth > 4 or r < 0.3:
            return rng.choice([1, "a,b", 'q"]}{[,\\', None, True, "", 2.5])
        if r < 0.65:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i},]": value(depth + 1) for i in range(rng.randint(0, 3))}

    for _ in range(3000):
        arr = [value() for _ in range(rng.randint(0, 5))]
        text = json.dumps(arr, indent=rng.choice([None, 1])).encode()
        found = _elements(text, 0, b"")
        assert found is not None and [json.loads(x) for x in found] == arr, text
        doc = json.dumps({"Records": arr}).encode()
        found = _elements(doc, 12, b"}")
        assert found is not None and [json.loads(x) for x in found] == arr, doc
    assert _elements(b"[1, [2, 3]", 0, b"") is None  # never closes
    assert _elements(b'{"Records": [1]} x', 12, b"}") is None  # more after the document


def test_lines_are_split_as_splitlines_does() -> None:
    from pipeline.ingest.formats import _lines

    rng = random.Random(3)
    for _ in range(5000):
        data = bytes(rng.choice(b"ab\r\n") for _ in range(rng.randint(0, 12)))
        assert list(_lines(data)) == data.splitlines(), data


def test_bombs_stop_at_the_configured_limit_in_a_file_and_in_a_cloudwatch_payload(
    tmp_path: Path,
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "bomb.json.gz").write_bytes(_gzip_of_zeros(8 << 20))
    payload = base64.b64encode(_gzip_of_zeros(8 << 20)).decode()
    good = lf.cwl_subscription([lf.authorizer_log()])
    lines = [{"awslogs": {"data": payload}}, good]
    (d / "cwl.json").write_text("".join(json.dumps(o) + "\n" for o in lines))
    cfg = pooled_config(ingest={"max_decompressed_bytes": 1 << 20})
    s = run(tmp_path / "lake", d, cfg=cfg)
    assert (s["records_in"], s["ingested"], s["quarantined_total"]) == (3, 1, 2)
    q = _entries(tmp_path / "lake")
    assert q["bomb.json.gz"]["reason"] == "decompressed_too_large"
    assert q["cwl.json"]["reason"] == "bad_cloudwatch_payload"
    for entry in q.values():
        assert "inflates past 1,048,576 bytes" in entry["detail"]
        assert "ingest.max_decompressed_bytes" in entry["detail"]
    # The file's first bytes are kept, the rest of the bomb is not.
    assert q["bomb.json.gz"]["raw"] == bytes(1 << 20)
    assert q["bomb.json.gz"]["detail"].endswith("raw keeps the first 1,048,576 of 1,048,577 bytes")


@pytest.mark.parametrize("native_road", ["1", "0"])
def test_a_truncated_gzip_gives_its_whole_records_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native_road: str
) -> None:
    """What a cut stream decompressed to is read as far as its records are whole: a delivery
    file's records before the cut, a line file's lines; the rest is one entry, from the cut
    record on (its first ``max_record_bytes``), at the position of the first record not read."""
    monkeypatch.setenv("TENANTWATCH_NATIVE", native_road)
    d = tmp_path / "in"
    d.mkdir()
    records = [lf.ct(key=f"tenants/t0001/{i}") for i in range(100)]
    delivery = json.dumps({"Records": records}).encode()
    packed = gzip.compress(delivery)
    (d / "delivery.json.gz").write_bytes(packed[: len(packed) * 3 // 4])
    logs = [lf.access_log() for _ in range(100)]
    lines = b"".join(json.dumps(x).encode() + b"\n" for x in logs)
    packed = gzip.compress(lines)
    (d / "access.log.gz").write_bytes(packed[: len(packed) // 2])
    pretty = json.dumps(records[0], indent=2).encode()  # one record, pretty-printed
    (d / "pretty.json.gz").write_bytes(gzip.compress(pretty)[:-30])
    cfg = pooled_config(ingest={"max_record_bytes": 4096})
    s = run(tmp_path / "lake", d, cfg=cfg)
    assert s["quarantined"] == {"truncated_gzip": 3}

    ids = {r["event_id"] for r in rows(tmp_path / "lake")}
    q = _entries(tmp_path / "lake")
    for name, originals, text, key, first in (
        ("delivery.json.gz", records, delivery, "eventID", 0),  # positions: array indexes
        ("access.log.gz", logs, lines, "requestId", 1),  # line numbers
    ):
        before = q[name]["position"] - first
        assert 0 < before < len(originals), name
        assert ids >= {x[key] for x in originals[:before]}, name  # the whole records, read
        assert not ids & {x[key] for x in originals[before:]}, name
        assert f"the {before:,} records or lines before this rest were read" in q[name]["detail"]
        rest = q[name]["raw"]
        assert 0 < len(rest) <= 4096 and rest in text, name
        # The rest is the first record not read, as far as the cut (after the comma before it).
        assert json.dumps(originals[before]).encode().startswith(rest.lstrip(b", \n")), name
    assert s["ingested"] == q["delivery.json.gz"]["position"] + q["access.log.gz"]["position"] - 1
    # A record spread over lines cannot be read before its end: the file is one entry.
    assert q["pretty.json.gz"]["position"] == -1
    assert pretty.startswith(q["pretty.json.gz"]["raw"])
    assert q["pretty.json.gz"]["detail"].startswith("the gzip stream ends before its trailer")


@pytest.mark.parametrize("native", ["1", "0"])
def test_a_record_too_large_keeps_its_first_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    monkeypatch.setenv("TENANTWATCH_NATIVE", native)
    big = lf.ct(userAgent="x" * 10_000)
    text = json.dumps(big).encode()
    lf.delivery_file(tmp_path / "in" / "delivery.json.gz", [lf.ct(), big])
    lf.lines_file(tmp_path / "in" / "lines.log", [big, lf.ct()])
    cfg = pooled_config(ingest={"max_record_bytes": 4096})
    s = run(tmp_path / "lake", tmp_path / "in", cfg=cfg)
    assert (s["records_in"], s["ingested"], s["quarantined"]) == (4, 2, {"record_too_large": 2})
    entries = read_quarantine(str(tmp_path / "lake")).to_pylist()
    assert [(os.path.basename(e["input_uri"]), e["position"]) for e in entries] == [
        ("delivery.json.gz", 1),
        ("lines.log", 1),
    ]
    for e in entries:
        assert e["raw"] == text[:4096]
        assert e["detail"] == (
            "over ingest.max_record_bytes (4,096); "
            f"raw keeps the first 4,096 of {len(text):,} bytes"
        )


def _with_nesting(record: str, depth: int) -> str:
    """A record's JSON text with one more field holding ``depth`` nested objects."""
    return record[:-1] + ', "x": ' + '{"a": ' * depth + "1" + "}" * depth + "}"


def test_json_nested_too_deeply_is_too_deep_wherever_it_is(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    good = json.dumps(lf.ct())
    deep = _with_nesting(good, 3000)  # past what orjson reads (1,024 levels)
    mid = _with_nesting(good, 300)  # past what orjson writes (254), as a record out of an envelope
    head = '{"version": "0", "detail-type": "AWS API Call via CloudTrail", "detail": '
    payload = _with_nesting('{"messageType": "DATA_MESSAGE", "logEvents": []}', 3000)
    files = {
        "line.jsonl": deep,
        "array.json": f"[{deep}]",
        "pretty.json": deep.replace('{"a": ', '{\n"a": '),
        "eventbridge.jsonl": head + deep + "}",
        "eventbridge_300.jsonl": head + mid + "}",
        "lookup.json": json.dumps({"Events": [{"CloudTrailEvent": deep}]}),
        "cwl_message.json": json.dumps({"logEvents": [{"message": deep}]}),
        "cwl_payload.json": json.dumps(
            {"awslogs": {"data": base64.b64encode(gzip.compress(payload.encode())).decode()}}
        ),
    }
    for name, text in files.items():
        # Line files get a good record after the deep one: only the deep one is quarantined.
        (d / name).write_text(text + "\n" + good + "\n" if name.endswith(".jsonl") else text)
    s = run(tmp_path / "lake", d)
    entries = read_quarantine(str(tmp_path / "lake")).to_pylist()
    reasons = {os.path.basename(e["input_uri"]): e["reason"] for e in entries}
    assert reasons == dict.fromkeys(files, "too_deep")
    assert len(entries) == len(files) and all(e["raw"] for e in entries)
    assert (s["records_in"], s["ingested"], s["duplicates"]) == (len(files) + 3, 1, 2)


@pytest.mark.parametrize("native_road", ["1", "0"])
def test_a_record_nested_too_deeply_does_not_take_its_files_other_records_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native_road: str
) -> None:
    """Anyone whose API call CloudTrail records could nest its parameters past what a parser
    reads; if that quarantined the whole delivery file, the file's other events (another
    principal's cross-tenant access) would never reach the detectors."""
    monkeypatch.setenv("TENANTWATCH_NATIVE", native_road)
    first, last = lf.ct("GetObject"), lf.ct("PutObject", key="tenants/t0002/x")
    deep = _with_nesting(json.dumps(lf.ct("ListObjects")), 3000)
    records = f"[{json.dumps(first)}, {deep}, {json.dumps(last)}]"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ct.json.gz").write_bytes(
        gzip.compress(b'{"Records": %b}' % records.encode())
    )
    (tmp_path / "in" / "array.json").write_text(records)
    s = run(tmp_path / "lake", tmp_path / "in")
    assert (s["ingested"], s["duplicates"], s["quarantined"]) == (2, 2, {"too_deep": 2})
    assert {r["event_id"] for r in rows(tmp_path / "lake")} == {first["eventID"], last["eventID"]}
    entries = read_quarantine(str(tmp_path / "lake")).to_pylist()
    assert [(e["position"], e["raw"]) for e in entries] == [(1, deep.encode())] * 2
    # A document that is broken as well as deep is still one entry for the file.
    (tmp_path / "in2").mkdir()
    (tmp_path / "in2" / "broken.json").write_text('{"Records": ' + records[:-1] + ", ")
    s = run(tmp_path / "lake2", tmp_path / "in2")
    assert s["quarantined"] == {"too_deep": 1} and s["records_in"] == 1


def test_secrets_never_reach_the_lake(tmp_path: Path) -> None:
    secret = "IQoJb3JpZ2luX2VjSECRETSESSIONTOKENVALUE0123456789"
    bearer = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlMTIzNDU2"
    api = lf.access_log()
    api["authorization"] = bearer
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.assume_role()])
    lf.lines_file(tmp_path / "in" / "api.log", [api])
    (tmp_path / "in" / "broken.json").write_text('{"sessionToken": "' + secret + '", "broken": \n')
    run(tmp_path / "lake", tmp_path / "in")
    for path in (tmp_path / "lake").rglob("*.parquet"):
        table = pq.read_table(path)
        text = json.dumps(table.to_pylist(), default=str)
        assert secret not in text and "eyJhbGciOiJIUzI1NiJ9" not in text, path
    raw = json.loads(next(r for r in rows(tmp_path / "lake") if r["action"] == "AssumeRole")["raw"])
    token = raw["responseElements"]["credentials"]["sessionToken"]
    assert token.startswith("redacted:sha256:")
    # The access key id is an identifier, not a secret: the session join needs it.
    assert raw["responseElements"]["credentials"]["accessKeyId"] == "ASIAEXAMPLE0000001"


@pytest.mark.parametrize("native_road", ["1", "0"])
def test_tokens_where_no_secret_word_is_reach_neither_raw_nor_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native_road: str
) -> None:
    """A JWT in a path, a principalId or an authorizer's reason, a BEARER token in capitals in a
    User-Agent, a password under a key spelled with a \\u escape: none has a secret word in its
    bytes, and none reaches the lake, in the raw text or in a column; each column holds the
    fingerprint the raw text holds."""
    from pipeline.ingest import redact

    monkeypatch.setenv("TENANTWATCH_NATIVE", native_road)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3ItMSJ9.c2lnbmF0dXJlLTE"
    agent_token = "BEARER Zm9vYmFyYmF6cXV4MTIz"
    api = lf.access_log()
    api["path"] = f"/prod/verify/{jwt}"
    api["resourcePath"] = "/verify/{code}"
    probe = lf.access_log()
    probe["userAgent"] = f"probe/1.0 {agent_token}"
    authz = lf.authorizer_log(principal=jwt)
    authz["reason"] = f"expired: {jwt}"
    del authz["token_fingerprint"]
    authz["message"] = "decision"
    for needle in ("token", "secret", "password", "authorization", "bearer", "cookie"):
        assert needle not in json.dumps([api, authz]).lower()
    lf.lines_file(tmp_path / "in" / "api.log", [api, probe])
    lf.lines_file(tmp_path / "in" / "authz.log", [authz])
    escaped = json.dumps({"Records": [lf.ct(requestParameters={"password": "hunter2-LEAK"})]})
    escaped = escaped.replace('"password"', '"p\\u0061ssword"')
    assert "password" not in escaped.lower()
    (tmp_path / "in" / "ct.json").write_text(escaped)
    run(tmp_path / "lake", tmp_path / "in")

    for path in (tmp_path / "lake").rglob("*.parquet"):
        text = json.dumps(pq.read_table(path).to_pylist(), default=str)
        assert jwt not in text and "Zm9vYmFy" not in text and "hunter2" not in text, path
    by_id = {r["event_id"]: r for r in rows(tmp_path / "lake")}
    by_source = {r["source"]: r for r in by_id.values()}
    jwt_fp = redact.fingerprint(jwt)
    api_row, probe_row = by_id[api["requestId"]], by_id[probe["requestId"]]
    authz_row = by_source["authorizer"]
    assert api_row["resource"] == f"/prod/verify/{jwt_fp}" and jwt_fp in api_row["raw"]
    assert probe_row["user_agent"] == f"probe/1.0 BEARER {redact.fingerprint(agent_token)}"
    assert probe_row["user_agent"].split()[-1] in probe_row["raw"]
    assert (authz_row["actor_principal"], authz_row["error_code"]) == (jwt_fp, f"expired: {jwt_fp}")
    ct_raw = json.loads(by_source["cloudtrail"]["raw"])
    assert ct_raw["requestParameters"]["password"] == redact.fingerprint("hunter2-LEAK")


def test_tenant_ids_from_logs_never_become_paths(tmp_path: Path) -> None:
    evil = lf.ct(key="tenants/../../../../etc/x/invoices/1.pdf")
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.assume_role(tenant="../../escape"), evil])
    run(tmp_path / "lake", tmp_path / "in")
    written = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(str(p).startswith(str(tmp_path.resolve())) for p in written)
    assert not (tmp_path / "escape").exists()
    r = next(r for r in rows(tmp_path / "lake") if r["action"] == "GetObject")
    assert r["actor_tenant"] == "../../escape"  # kept as data, exactly


def test_summary_keys_and_json_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.ct()])
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            pooled_file(tmp_path / "cfg"),
            "ingest",
            str(tmp_path / "in"),
            "--lake",
            str(tmp_path / "lake"),
            "--json",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    for key in (
        "files",
        "records_in",
        "ingested",
        "duplicates",
        "quarantined",
        "unresolved_tenants",
        "elapsed_s",
    ):
        assert key in summary
    assert summary["ingested"] == 1


def test_the_ingest_command_does_not_import_pandas_and_pandas_still_works_after(
    tmp_path: Path,
) -> None:
    """pyarrow would import pandas on its first conversion (``startup.pyarrow_without_pandas``).
    In a process of its own, as the command runs: ingest, then ask for pandas."""
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.ct(), lf.ct()])
    code = (
        "import sys, json\n"
        "from pipeline.cli import cli\n"
        "try:\n"
        f"    cli(['ingest', {str(tmp_path / 'in')!r}, '--lake', {str(tmp_path / 'lake')!r},"
        " '--workers', '1', '--json'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "during = 'pandas' in sys.modules\n"
        "import pyarrow as pa\n"
        "frame = pa.table({'a': [1, 2]}).to_pandas()\n"
        "print(json.dumps([during, type(frame).__name__, int(frame['a'].sum())]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    summary, checks = out.stdout.strip().splitlines()
    assert json.loads(summary)["ingested"] == 2
    assert json.loads(checks) == [False, "DataFrame", 3]


def test_links_in_a_source_folder_are_followed_each_input_once_and_a_loop_ends(
    tmp_path: Path,
) -> None:
    lf.delivery_file(
        tmp_path / "data" / "2026" / "a.json.gz", [lf.ct(event_id=f"a{i}") for i in range(2)]
    )
    lf.delivery_file(tmp_path / "other" / "b.json.gz", [lf.ct(event_id="b")])
    src = tmp_path / "in"
    src.mkdir()
    (src / "days").symlink_to(tmp_path / "data", target_is_directory=True)
    (src / "again").symlink_to(tmp_path / "data" / "2026", target_is_directory=True)
    (src / "b.json.gz").symlink_to(tmp_path / "other" / "b.json.gz")
    (src / "b-too.json.gz").symlink_to(tmp_path / "other" / "b.json.gz")
    (src / "loop").symlink_to(src, target_is_directory=True)
    summary = run(tmp_path / "lake", src)
    assert (summary["files"], summary["records_in"]) == (2, 3)
    assert (summary["ingested"], summary["duplicates"]) == (3, 0)
    uris = {r["input_uri"] for r in rows(tmp_path / "lake")}
    assert uris == {
        str((tmp_path / "data" / "2026" / "a.json.gz").resolve()),
        str((tmp_path / "other" / "b.json.gz").resolve()),
    }


def test_missing_source_is_an_error_with_exit_code_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "nope"), "--lake", str(tmp_path)])
    assert result.exit_code == 2
    assert "no such file or directory" in result.output


def test_a_lake_that_cannot_be_written_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct()])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(
        cli,
        [
            *("--config", pooled_file(tmp_path / "cfg"), "ingest", str(tmp_path / "in")),
            *("--lake", str(blocker / "lake"), "--workers", "1"),
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot be written" in lines[0], result.output
    assert "Traceback" not in result.output


def test_until_before_since_is_an_error_not_an_empty_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct()])
    args = ["ingest", str(tmp_path / "in"), "--lake", str(tmp_path / "lake"), "--workers", "1"]
    result = CliRunner().invoke(cli, [*args, "--since", "2026-03-02", "--until", "2026-03-01"])
    assert result.exit_code == 2, result.output
    assert "before --since" in result.output
    assert not (tmp_path / "lake" / "events").exists()


def test_notebook_api_filters_by_time_tenant_source_and_actor(tmp_path: Path) -> None:
    from pipeline import lake as api

    lf.delivery_file(
        tmp_path / "in" / "1.json.gz",
        [
            lf.ct(time="2026-11-16T09:00:00Z", key="tenants/t0001/a"),
            lf.ct(time="2026-11-16T11:30:00Z", key="tenants/t0002/b"),
            lf.ct(time="2026-11-17T11:30:00Z", key="tenants/t0002/c", session="usr-other"),
        ],
    )
    lf.lines_file(tmp_path / "in" / "api.log", [lf.access_log(tenant_path="t0002", claim="t0002")])
    lf.lines_file(tmp_path / "in" / "junk.log", [{"no": "idea"}])
    run(tmp_path / "lake", tmp_path / "in")
    lake = str(tmp_path / "lake")
    df = api.events(lake, "2026-11-16T10:00:00", "2026-11-17")
    assert list(df["resource"]) == [
        "/prod/tenants/t0002/invoices",  # 10:00
        "s3://acme-saas-tenant-data/tenants/t0002/b",  # 11:30
    ]
    assert len(api.events(lake, tenant="t0002")) == 3
    assert len(api.events(lake, source="apigateway")) == 1
    other = f"arn:aws:sts::{lf.ACCOUNT}:assumed-role/tenant-scoped-access/usr-other"
    assert list(api.events(lake, actor=other)["resource"]) == [
        "s3://acme-saas-tenant-data/tenants/t0002/c"
    ]
    narrow = api.events(lake, columns=["event_id", "event_time"])
    assert list(narrow.columns) == ["event_id", "event_time"]
    q = api.quarantine(lake)
    assert list(q["reason"]) == ["unrecognised_record"]
    assert api.events(str(tmp_path / "empty")).empty


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


def test_one_batch_mixing_sources_equals_one_batch_per_file(tmp_path: Path) -> None:
    lf.delivery_file(
        tmp_path / "in" / "ct.json.gz",
        [lf.assume_role(tenant="t0007"), lf.ct(key="tenants/t0008/x"), lf.ct("PutObject")],
    )
    lf.lines_file(
        tmp_path / "in" / "api.log",
        [lf.access_log(tenant_path="t0002", claim="t0001"), lf.access_log(status=403)],
        cwl_export=True,
    )
    lf.lines_file(tmp_path / "in" / "auth.log", [lf.authorizer_log(), lf.authorizer_log()])
    run(tmp_path / "mixed", tmp_path / "in")
    per_file = pooled_config(ingest={"batch_input_bytes": 1})
    run(tmp_path / "split", tmp_path / "in", cfg=per_file)

    def table(lake: Path) -> list[tuple[Any, ...]]:
        keep = ("source", "event_id", "action", "actor_tenant", "target_tenant", "outcome")
        return sorted(tuple(r[k] for k in keep) for r in rows(lake))

    mixed = table(tmp_path / "mixed")
    assert mixed == table(tmp_path / "split")
    assert sorted({r[0] for r in mixed}) == ["apigateway", "authorizer", "cloudtrail"]
    assert [r[3:5] for r in mixed if r[2] == "GetObject"] == [("t0007", "t0008")]
