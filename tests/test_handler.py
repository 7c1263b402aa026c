"""The Lambda handlers off AWS: event parsing, a malformed event, import weight, the time budget
(a run that stops at a checkpoint and one that continues it) and the lease against overlap."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import handler
from pipeline.errors import ConfigError
from pipeline.lease import Lease
from pipeline.runs import unattended as runs
from pipeline.runs.results import AlertResult, DetectResult, IngestResult
from pipeline.runs.stages import PipelineStages
from pipeline.runs.unattended import Budget, RunSettings, run_scheduled
from pipeline.runs.watermark import read_watermark
from tests import logfactory as lf
from tests.conftest import REPO
from tests.fakes import FakeContext, object_created, scheduler_event
from tests.pooled import pooled_config

DAY = "2026/11/16"
T0 = datetime(2026, 11, 16, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)


def trail_file(root: Path, name: str, records: list[dict[str, Any]]) -> Path:
    path = root / f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1/{DAY}/{name}.json.gz"
    return lf.delivery_file(path, records)


def cross_tenant_hours(root: Path, hours: int) -> None:
    """One trail file per hour, each with a cross-tenant read by a different session."""
    for h in range(hours):
        at = T0 + timedelta(hours=h)
        key = f"ASIAEXAMPLE{h:07d}"
        trail_file(
            root,
            f"{lf.ACCOUNT}_CloudTrail_us-east-1_{at:%Y%m%dT%H%M}Z_{h}",
            [
                lf.assume_role(tenant="t0001", session=f"u{h}", new_key_id=key, time=_z(at)),
                lf.ct(
                    time=_z(at + timedelta(minutes=5)),
                    session=f"u{h}",
                    key_id=key,
                    key=f"tenants/t000{h + 2}/invoices/9.pdf",
                ),
            ],
        )


def _z(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- import weight -----------------------------------------------------------------------------


def test_importing_the_handler_loads_neither_pandas_nor_sklearn_nor_pyarrow() -> None:
    code = (
        "import sys, json, pipeline.handler; "
        "print(json.dumps([m for m in ('pandas', 'sklearn', 'pyarrow') if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


# --- events ------------------------------------------------------------------------------------


def test_scheduler_event_parses_with_its_time_and_attempt() -> None:
    ev = handler.parse_scheduled(scheduler_event(T0))
    assert ev.time == T0 and ev.detail.attempt == 1 and ev.detail_type == "Scheduled Event"


def test_s3_notification_keys_are_url_decoded_and_removals_ignored() -> None:
    def rec(name: str, key: str) -> dict[str, Any]:
        return {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2026-11-16T10:07:00.000Z",
            "eventName": name,
            "userIdentity": {"principalId": "AWS:AROAEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "203.0.113.9"},
            "responseElements": {"x-amz-request-id": "R1", "x-amz-id-2": "I2"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "tw",
                "bucket": {
                    "name": "org-trail",
                    "ownerIdentity": {"principalId": "A1"},
                    "arn": "arn:aws:s3:::org-trail",
                },
                "object": {"key": key, "size": 10, "eTag": "abc", "sequencer": "0A"},
            },
        }

    event = {
        "Records": [
            rec("ObjectCreated:Put", "AWSLogs/a+b%3Dc.json.gz"),
            rec("ObjectRemoved:Delete", "AWSLogs/gone.json.gz"),
        ]
    }
    objs = handler.parse_objects(event)
    assert [(o.bucket, o.key) for o in objs] == [("org-trail", "AWSLogs/a b=c.json.gz")]


def test_eventbridge_object_created_event_parses() -> None:
    objs = handler.parse_objects(object_created("org-trail", "AWSLogs/x.json.gz", T0))
    assert [(o.bucket, o.key, o.created) for o in objs] == [("org-trail", "AWSLogs/x.json.gz", T0)]


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(__import__("os").environ):
        if key.startswith("TENANTWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "tenantwatch")
    monkeypatch.setenv("TENANTWATCH_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("TENANTWATCH_RUN_SOURCES", str(tmp_path / "trail"))
    return tmp_path


@pytest.mark.parametrize(
    ("entry", "event", "says"),
    [
        ("scheduled", {"hello": "world"}, "version: Field required"),
        ("scheduled", {**scheduler_event(T0), "time": "yesterday"}, "time"),
        ("on_s3_object", {"Records": [{"eventName": "ObjectCreated:Put"}]}, "expected shape"),
        ("on_s3_object", {"Records": "none"}, "Records: Input should be a valid list"),
        ("on_s3_object", "not even an object", "malformed event"),
    ],
)
def test_a_malformed_event_is_logged_counted_and_rejected_clearly(
    lambda_env: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    entry: str,
    event: Any,
    says: str,
) -> None:
    with pytest.raises(handler.MalformedEventError, match="malformed event") as err:
        getattr(handler, entry)(event, FakeContext())
    assert says in str(err.value)
    assert any(r.levelname == "ERROR" and "malformed event" in r.message for r in caplog.records)
    assert '"MalformedEvents"' in capsys.readouterr().out  # the EMF line of the metric
    assert not (lambda_env / "lake").exists()  # nothing was run


# --- settings ----------------------------------------------------------------------------------


def test_run_settings_from_the_environment() -> None:
    s = RunSettings.from_environ(
        {
            "TENANTWATCH_RUN_SOURCES": "s3://a/AWSLogs/, s3://b/x/",
            "TENANTWATCH_RUN_WINDOW_MINUTES": "30",
        }
    )
    assert s.sources == ("s3://a/AWSLogs/", "s3://b/x/") and s.window_minutes == 30
    with pytest.raises(ConfigError, match="TENANTWATCH_RUN_WINDOW_MINUTES: 7 does not divide"):
        RunSettings.from_environ({"TENANTWATCH_RUN_WINDOW_MINUTES": "7"})
    with pytest.raises(ConfigError, match="TENANTWATCH_RUN_BACKFILL_HOURS: expected a number"):
        RunSettings.from_environ({"TENANTWATCH_RUN_BACKFILL_HOURS": "a day"})


def test_windows_are_aligned_to_the_clock() -> None:
    assert runs.floor_to(datetime(2026, 11, 16, 10, 44, 5, tzinfo=UTC), 15) == datetime(
        2026, 11, 16, 10, 30, tzinfo=UTC
    )
    ws = runs.windows(T0, T0 + timedelta(minutes=150), 60)
    assert [w[0].hour for w in ws] == [10, 11]


# --- the time budget ---------------------------------------------------------------------------


@dataclass
class SlowStages:
    """The real stages, each detect "taking" ``cost_s`` of a simulated clock (our seam's fake)."""

    clock: list[float]
    cost_s: float
    real: PipelineStages = field(default_factory=PipelineStages)
    detected: list[datetime] = field(default_factory=list)

    def ingest(self, *args: Any) -> IngestResult:
        return self.real.ingest(*args)

    def detect(self, *args: Any) -> DetectResult:
        self.clock[0] += self.cost_s
        self.detected.append(args[2])
        return self.real.detect(*args)

    def slide(self, *args: Any) -> DetectResult:
        return self.real.slide(*args)

    def alert(self, *args: Any) -> AlertResult:
        return self.real.alert(*args)


def _run(tmp: Path, lake: str, budget_s: float, now: datetime, stages: Any = None) -> runs.Report:
    clock = [0.0]
    if stages is not None:
        stages.clock = clock
    settings = RunSettings(sources=(str(tmp / "trail"),), backfill_hours=4, reserve_seconds=30)
    budget = Budget(lambda: int((budget_s - clock[0]) * 1000), settings.reserve_seconds)
    return run_scheduled(now, lake, pooled_config(), settings, budget, f"run-{budget_s}", stages)


@pytest.mark.slow
def test_a_short_budget_stops_at_a_checkpoint_and_the_next_run_continues(tmp_path: Path) -> None:
    cross_tenant_hours(tmp_path / "trail", 3)  # 10:00, 11:00 and 12:00
    now = T0 + timedelta(hours=3, minutes=20)  # windows 09:00 (backfill) .. 12:00 are due
    lake = str(tmp_path / "lake")
    stages = SlowStages([0.0], cost_s=40)
    first = _run(tmp_path, lake, 100, now, stages)  # 100 s: two 40 s windows, then stop
    assert first.status == "checkpoint"
    # 09:00 (backfill, empty) and 10:00 done: the watermark is at 11:00.
    assert len(first.windows) == 2 and first.watermark_after == (T0 + HOUR).isoformat()
    assert read_watermark(lake) == T0 + HOUR
    second = _run(tmp_path, lake, 900, now, SlowStages([0.0], cost_s=40))
    assert second.status == "done" and second.run.ingest is not None
    assert second.run.ingest.files_skipped == 3 == second.as_dict()["ingest"]["files_skipped"]
    assert second.windows[0].startswith((T0 + HOUR).isoformat())  # where the first stopped
    assert read_watermark(lake) == T0 + timedelta(hours=3)
    # Together they did what one uninterrupted run does.
    whole = _run(tmp_path, str(tmp_path / "whole"), 900, now)
    done = [r.as_dict() for r in (first, second, whole)]
    # Three cross-tenant reads; the one of t0003 (pinned to two EU regions in the pooled world)
    # in us-east-1 is also a residency finding, of the same story.
    assert done[0]["findings"] + done[1]["findings"] == done[2]["findings"] == 4
    assert (
        done[0]["alert"]["notifications_sent"] + done[1]["alert"]["notifications_sent"]
        == done[2]["alert"]["notifications_sent"]
        == 3
    )
    again = _run(tmp_path, lake, 900, now)
    assert again.status == "nothing_to_do" and again.as_dict()["alert"] == {}


def test_ingest_stops_between_objects_when_time_runs_out(tmp_path: Path) -> None:
    cross_tenant_hours(tmp_path / "trail", 3)
    lake = str(tmp_path / "lake")
    report = _run(tmp_path, lake, 10, T0 + timedelta(hours=3, minutes=20))  # under the reserve
    assert report.status == "checkpoint" and report.windows == []
    assert read_watermark(lake) is None
    from pipeline.lake import Lake

    # Exactly one object was ingested (and recorded as done) before the run stopped.
    assert len(Lake(lake).files("_state/ingested")) == 1


def test_a_backfill_shorter_than_the_lag_still_detects_from_the_first_run(tmp_path: Path) -> None:
    # A lag of 90 minutes and a backfill of one hour: the first run starts an hour before the
    # newest window it can detect, not an hour before the clock (beyond every window's reach).
    import msgspec

    cross_tenant_hours(tmp_path / "trail", 3)  # 10:00, 11:00 and 12:00
    cfg = pooled_config()
    cfg = msgspec.structs.replace(
        cfg, ingest=msgspec.structs.replace(cfg.ingest, cloudtrail_lag_minutes=90)
    )
    settings = RunSettings(sources=(str(tmp_path / "trail"),), backfill_hours=1)
    lake = str(tmp_path / "lake")
    budget = Budget(lambda: 900_000, settings.reserve_seconds)
    now = T0 + timedelta(hours=3, minutes=40)  # 13:40 less 90 minutes: up to 12:00 detectable
    report = run_scheduled(now, lake, cfg, settings, budget, "first")
    assert report.windows == [f"{(T0 + HOUR).isoformat()}/{(T0 + 2 * HOUR).isoformat()}"]
    assert read_watermark(lake) == T0 + 2 * HOUR
    later = run_scheduled(now + HOUR, lake, cfg, settings, budget, "second")
    assert later.windows == [f"{(T0 + 2 * HOUR).isoformat()}/{(T0 + 3 * HOUR).isoformat()}"]


def test_upkeep_runs_with_each_window_detected_not_on_every_tick(tmp_path: Path) -> None:
    cross_tenant_hours(tmp_path / "trail", 3)  # 10:00, 11:00 and 12:00
    lake = str(tmp_path / "lake")
    now = T0 + timedelta(hours=3, minutes=20)
    first = _run(tmp_path, lake, 900, now)
    assert first.windows and "complete" in first.compaction and first.retention
    idle = _run(tmp_path, lake, 900, now + timedelta(minutes=5))  # no window closed since
    assert idle.status == "nothing_to_do" and idle.compaction == {} and idle.retention == {}
    nxt = _run(tmp_path, lake, 900, now + HOUR)
    assert nxt.windows and "complete" in nxt.compaction


@pytest.mark.e2e
def test_an_object_delivered_late_is_detected_in_the_window_of_its_events(
    tmp_path: Path, aws: str
) -> None:
    """The object function detects the windows its new events fall in, not those of when the
    object arrived: a file delivered 80 minutes after its events is detected in their hour."""
    import boto3

    from pipeline import aws as clients

    clients.reset()
    cross_tenant_hours(tmp_path / "trail", 1)  # a cross-tenant read at 10:05
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    (path,) = (tmp_path / "trail").rglob("*.json.gz")
    key = path.relative_to(tmp_path / "trail").as_posix()
    s3.put_object(Bucket="trail", Key=key, Body=path.read_bytes())
    settings = RunSettings(sources=("s3://trail/",))
    budget = Budget(lambda: 900_000, settings.reserve_seconds)
    late = runs.ObjectRef("trail", key, T0 + timedelta(minutes=80))
    lake = str(tmp_path / "lake")
    report = runs.run_objects([late], lake, pooled_config(), settings, budget, "obj-1")
    assert report.windows == [f"{T0.isoformat()}/{(T0 + HOUR).isoformat()}"]
    assert report.as_dict()["alert"]["notifications_sent"] == 1
    # Delivered again: nothing new, no window to detect (and nothing paged twice).
    again = runs.run_objects([late], lake, pooled_config(), settings, budget, "obj-2")
    assert again.windows == [] and again.run.ingest is not None
    assert again.run.ingest.files_skipped == 1
    clients.reset()


# --- overlap -----------------------------------------------------------------------------------


def test_an_overlapping_run_finds_the_lease_held_and_does_nothing(tmp_path: Path) -> None:
    cross_tenant_hours(tmp_path / "trail", 1)
    lake = str(tmp_path / "lake")
    other = Lease(lake)
    assert other.acquire("someone-else", 600)
    report = _run(tmp_path, lake, 900, T0 + timedelta(hours=2))
    assert report.status == "busy" and report.run.ingest is None
    assert report.as_dict()["ingest"] == {} and report.as_dict()["health"] == {}
    assert read_watermark(lake) is None
    other.release()
    assert Lease(lake).acquire("me", 600)


def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    assert Lease(lake).acquire("crashed", 60, now=T0)
    assert not Lease(lake).acquire("early", 60, now=T0 + timedelta(seconds=30))
    assert Lease(lake).acquire("later", 60, now=T0 + timedelta(seconds=61))
