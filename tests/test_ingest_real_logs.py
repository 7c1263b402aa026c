"""The public third-party corpus (../shared/real_logs): real shapes nobody on this team wrote."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.ingest.run import ingest
from pipeline.lake import read_events, read_quarantine
from pipeline.timeparse import parse_one


def _usable(rec: object) -> bool:
    """An independent statement of what a usable CloudTrail record is: a time we can read and
    something that names the action."""
    if not isinstance(rec, dict):
        return False
    t = rec.get("eventTime") or rec.get("@timestamp")
    named = rec.get("eventName") or rec.get("eventSource") or rec.get("insightDetails")
    return isinstance(t, str) and parse_one(t) is not None and bool(named)


@pytest.mark.slow
def test_whole_corpus_ingests_without_loss(tmp_path: Path, real_logs: Path) -> None:
    summary = ingest([str(real_logs)], str(tmp_path / "lake"), Config(), workers=2)
    assert summary["records_in"] == (
        summary["ingested"] + summary["duplicates"] + summary["quarantined_total"]
    )
    assert summary["digest_files"] >= 3  # awsdocs x2 + elastic, wherever they sit
    quarantine = read_quarantine(str(tmp_path / "lake"))
    assert all(r for r in quarantine["reason"].to_pylist())


def test_every_usable_normalized_record_lands(tmp_path: Path, real_logs: Path) -> None:
    files = sorted(real_logs.glob("*/normalized_records.json.gz"))
    assert files
    records = [r for f in files for r in json.loads(gzip.decompress(f.read_bytes()))["Records"]]
    usable = sum(_usable(r) for r in records)
    summary = ingest([str(f) for f in files], str(tmp_path / "lake"), Config(), workers=1)
    assert summary["records_in"] == len(records)
    assert summary["ingested"] + summary["duplicates"] == usable
    assert summary["quarantined_total"] == len(records) - usable
    reasons = Counter(read_quarantine(str(tmp_path / "lake"))["reason"].to_pylist())
    assert set(reasons) <= {"missing_event_time", "bad_event_time", "unrecognised_record"}


def test_vendor_reshaped_records_keep_ip_agent_and_time(tmp_path: Path, real_logs: Path) -> None:
    # Datadog moved sourceIPAddress/userAgent under network/http; Logstash renamed eventTime.
    zm = real_logs / "zmallen__cloudtrail2sightings" / "normalized_records.json.gz"
    otrf = real_logs / "OTRF__Security-Datasets" / "normalized_records.json.gz"
    ingest([str(zm), str(otrf)], str(tmp_path / "lake"), Config(), workers=1)
    events = read_events(str(tmp_path / "lake")).to_pylist()
    from_zm = [e for e in events if "zmallen" in e["input_uri"]]
    from_otrf = [e for e in events if "OTRF" in e["input_uri"]]
    assert from_zm and all(e["source_ip"] and e["user_agent"] for e in from_zm)
    assert len(from_otrf) == 103
    assert all(e["event_time"].year == 2020 for e in from_otrf)


def test_secrets_in_real_assume_role_records_are_redacted(tmp_path: Path, real_logs: Path) -> None:
    stratus = real_logs / "DataDog__stratus-red-team" / "normalized_records.json.gz"
    records = json.loads(gzip.decompress(stratus.read_bytes()))["Records"]
    tokens = [
        r["responseElements"]["credentials"]["sessionToken"]
        for r in records
        if isinstance(r.get("responseElements"), dict)
        and isinstance(r["responseElements"].get("credentials"), dict)
    ]
    assert tokens, "the corpus should hold AssumeRole responses with session tokens"
    ingest([str(stratus)], str(tmp_path / "lake"), Config(), workers=1)
    raw = "\n".join(read_events(str(tmp_path / "lake"), columns=["raw"])["raw"].to_pylist())
    assert not any(t in raw for t in tokens)
    assert "redacted:sha256:" in raw


def test_api_gateway_and_cloudwatch_shapes_from_other_projects(
    tmp_path: Path, real_logs: Path
) -> None:
    access = real_logs / "elastic__integrations" / "apigateway_access_logs.jsonl.gz"
    cwl = real_logs / "aws__aws-lambda-go" / "original" / "cloudwatch-logs-event.json"
    summary = ingest([str(access), str(cwl)], str(tmp_path / "lake"), Config(), workers=1)
    n_access = len(gzip.decompress(access.read_bytes()).splitlines())
    events = read_events(str(tmp_path / "lake")).to_pylist()
    assert sum(e["source"] == "apigateway" for e in events) + summary["duplicates"] >= 1
    assert summary["records_in"] >= n_access
    assert summary["records_in"] == (
        summary["ingested"] + summary["duplicates"] + summary["quarantined_total"]
    )
