"""Ingestion of every input format, recognised by its content (``formats``): CloudTrail delivery
files, bare records, EventBridge, CloudWatch Logs payloads, LookupEvents exports, digests, API
Gateway and authorizer logs; and the splitting of arrays and lines."""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.lake import read_quarantine
from tests import logfactory as lf
from tests.ingestlake import rows, run, with_nesting


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
    # Delivered as CloudTrail does: the digest's key names its day, and so does its state folder
    # (a run compacts today's digests seen, never all of them).
    key = f"AWSLogs/{lf.ACCOUNT}/CloudTrail-Digest/us-east-1/2026/11/16/digest.json.gz"
    (tmp_path / key).parent.mkdir(parents=True)
    (tmp_path / key).write_bytes(gzip.compress(json.dumps(digest).encode()))
    s = run(tmp_path / "lake", tmp_path / key)
    assert (s["records_in"], s["digest_files"]) == (0, 1)
    (state,) = (tmp_path / "lake" / "_state" / "digests").rglob("*.parquet")
    assert state.parent.name == "date=2026-11-16"
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
    (file,) = (tmp_path / "lake" / "_state" / "digests").rglob("*.parquet")
    state = pq.read_table(file).to_pylist()
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


def test_json_nested_too_deeply_is_too_deep_wherever_it_is(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    good = json.dumps(lf.ct())
    deep = with_nesting(good, 3000)  # past what orjson reads (1,024 levels)
    mid = with_nesting(good, 300)  # past what orjson writes (254), as a record out of an envelope
    head = '{"version": "0", "detail-type": "AWS API Call via CloudTrail", "detail": '
    payload = with_nesting('{"messageType": "DATA_MESSAGE", "logEvents": []}', 3000)
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
