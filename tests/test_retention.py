"""Retention: whole partitions older than their area's ``retention_days`` are deleted, findings
are kept unless configured, snapshots never; on local lakes and on S3 (moto), where the lake
also compacts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import compact, retention
from pipeline.config import ConfigError, parse_config
from pipeline.ingest.run import ingest
from pipeline.lake import COMPACTED, REPLACES, Lake
from tests.compactlake import END, SMALL, make_inputs, rows


def _dated_lake(lake: Lake) -> None:
    t = pa.table({"x": [1]})
    for day in ("2026-10-01", "2026-11-15"):
        lake.write_table(f"events/source=cloudtrail/date={day}/hour=10/part-a.parquet", t)
        lake.write_table(f"findings/date={day}/part-b.parquet", t)
        lake.write_table(f"incidents/state/date={day}/i.parquet", t)
        lake.write_table(f"incidents/outbox/date={day}/o.parquet", t)
    lake.write_table("snapshots/i/abc/events.parquet", t)


def _kept(lake: Lake) -> list[str]:
    return sorted(
        f for top in ("events", "findings", "incidents", "snapshots") for f in lake.files(top)
    )


def _check_retention(lake: Lake) -> None:
    _dated_lake(lake)
    now = datetime(2026, 11, 16, 12, tzinfo=UTC)
    days = parse_config({"lake": {"retention_days": {"events": 30, "incidents": 30}}})
    done = retention.apply(lake, days.lake.retention_days, now)
    assert done.partitions == {"events": 1, "incidents": 2}
    assert _kept(lake) == [
        "events/source=cloudtrail/date=2026-11-15/hour=10/part-a.parquet",
        "findings/date=2026-10-01/part-b.parquet",  # findings: kept forever
        "findings/date=2026-11-15/part-b.parquet",
        "incidents/outbox/date=2026-11-15/o.parquet",
        "incidents/state/date=2026-11-15/i.parquet",
        "snapshots/i/abc/events.parquet",
    ]
    everything = parse_config(
        {"lake": {"retention_days": {a: 1 for a in ("events", "findings", "incidents")}}}
    )
    retention.apply(lake, everything.lake.retention_days, datetime(2027, 1, 1, tzinfo=UTC))
    assert _kept(lake) == ["snapshots/i/abc/events.parquet"]


def test_retention_deletes_old_partitions_never_snapshots(tmp_path: Path) -> None:
    _check_retention(Lake(str(tmp_path / "lake")))


def test_retention_and_compaction_on_s3(aws: str, tmp_path: Path) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket="lake")
    _check_retention(Lake("s3://lake/r"))
    inputs = make_inputs(tmp_path / "in", files=6)
    ingest([str(inputs)], "s3://lake/c", SMALL, workers=1)
    lake = Lake("s3://lake/c")
    written = boto3.client("s3").list_objects_v2(Bucket="lake", Prefix="c/")["Contents"]
    # No folder markers on S3 below the lake's root (whose one is its writable check).
    assert [o["Key"] for o in written if o["Key"].endswith("/")] == ["c/"]
    before_rows, before = rows(lake), len(lake.files("events"))
    done = compact.compact(lake, END)
    assert done.complete and len(lake.files("events")) < before
    keys = [
        o["Key"]
        for o in boto3.client("s3").list_objects_v2(Bucket="lake", Prefix="c/events/")["Contents"]
    ]
    assert (
        all(COMPACTED in k for k in keys if k.endswith(".parquet"))
        and rows(Lake("s3://lake/c")) == before_rows
    )
    # The hours compacted into their day leave nothing behind: no folder marker per emptied
    # hour, which every later listing of the day would return.
    assert [k for k in keys if k.endswith("/")] == []
    meta = pq.read_metadata(lake.path(lake.files("events")[0]), filesystem=lake.fs).metadata
    assert json.loads(meta[REPLACES])


def test_retention_configuration_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"retention_days\.events"):
        parse_config({"lake": {"retention_days": {"events": 0}}})
    with pytest.raises(ConfigError, match="snapshots"):
        parse_config({"lake": {"retention_days": {"snapshots": 10}}})
    env = {"TENANTWATCH_LAKE_RETENTION_DAYS_FINDINGS": "90"}
    cfg = parse_config({}, environ=env)
    assert cfg.lake.retention_days.findings == 90 and cfg.lake.retention_days.events is None
