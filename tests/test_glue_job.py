"""The Glue job (pipeline/glue_job.py, infra/glue/tenantwatch_job.py): its arguments, its
settings, and a backfill over a local lake on a local Spark (``local[2]``), the session the job
finds active as it finds Glue's. The hand-off to it: tests/test_glue_handoff.py.
"""

from __future__ import annotations

import json
import runpy
import sys
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import glue_job
from pipeline.errors import ConfigError
from pipeline.lake import Lake
from pipeline.runs import handoff
from pipeline.runs.unattended import Budget, RunSettings, run_scheduled
from tests.conftest import REPO
from tests.gluework import (
    HOUR,
    JOB,
    T0,
    clean_environment,
    incident_rows,
    local_notes,
    trail_hour,
    z,
)
from tests.pooled import pooled_config, pooled_file


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


# --- arguments ---------------------------------------------------------------------------------

ARGV = [
    "--lake-root", "s3://lake-bucket/lake",
    "--config", "ssm:/tw/config",
    "--window-start", "2026-11-16T10:00:00+00:00",
    "--window-end", "2026-11-16T11:00:00Z",
    "--engine", "local",
    "--run-id", "handoff-20261116T1000-1-abcd",
    "--TENANTWATCH_ALERTING_SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:tw",
    "--TENANTWATCH_CONTAINMENT_TABLE=tw-containment",
    # What Glue adds to every run.
    "--JOB_ID", "j_1", "--JOB_RUN_ID", "jr_abc", "--JOB_NAME", JOB,
    "--job-bookmark-option", "job-bookmark-disable", "--TempDir", "s3://tmp/",
    "--enable-metrics", "true",
]  # fmt: skip


def _glue_utils() -> types.ModuleType:
    """``awsglue.utils`` as Glue has it: ``getResolvedOptions`` requires every option it is
    asked for, adds Glue's own as optional, skips ``args[0]`` and ignores the rest."""
    import argparse

    def get_resolved_options(args: list[str], options: list[str]) -> dict[str, Any]:
        parser = argparse.ArgumentParser()
        for own in ("--JOB_NAME", "--JOB_ID", "--JOB_RUN_ID", "--TempDir", "--job-bookmark-option"):
            parser.add_argument(own, required=False)
        for option in options:
            parser.add_argument("--" + option, required=True)
        parsed, _ = parser.parse_known_args(args[1:])
        return vars(parsed)

    utils = types.ModuleType("awsglue.utils")
    utils.getResolvedOptions = get_resolved_options  # type: ignore[attr-defined]
    return utils


def test_the_job_reads_the_same_arguments_in_glue_and_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "awsglue", None)  # not importable: argparse
    plain = glue_job.parse_args(ARGV)
    assert plain.lake_root == "s3://lake-bucket/lake" and plain.config == "ssm:/tw/config"
    assert (plain.window_start, plain.window_end) == (T0, T0 + HOUR)
    assert plain.engine == "local" and plain.run_id == "handoff-20261116T1000-1-abcd"
    assert plain.job_run_id == "jr_abc" and plain.window_minutes == 60
    assert plain.environment == {
        "TENANTWATCH_ALERTING_SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:tw",
        "TENANTWATCH_CONTAINMENT_TABLE": "tw-containment",
    }
    monkeypatch.setitem(sys.modules, "awsglue", types.ModuleType("awsglue"))
    monkeypatch.setitem(sys.modules, "awsglue.utils", _glue_utils())
    assert glue_job.parse_args(ARGV) == plain
    # Only the options given are asked for (Glue's reader requires each one it is asked for).
    short = glue_job.parse_args(ARGV[:8])
    assert short.engine == "spark" and short.job_run_id == "" and short.run_id.startswith("glue-")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (["--config", ""], "job arguments missing: --config"),
        (["--engine", "dask"], "--engine: expected spark or local"),
        (["--window-start", "2026-11-16T10:30:00Z"], "not whole windows of 60 minutes"),
        (["--window-end", "2026-11-16T09:00:00Z"], "is not after --window-start"),
        (["--window-minutes", "7"], "--window-minutes: 7 does not divide a day"),
        (["--window-start", "yesterday"], "--window-start: expected an ISO 8601 time"),
    ],
)
def test_wrong_job_arguments_are_refused_naming_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, change: list[str], says: str
) -> None:
    monkeypatch.setitem(sys.modules, "awsglue", None)
    name, value = change
    argv = list(ARGV)
    if name in argv:
        argv[argv.index(name) + 1] = value
    else:
        argv += change
    with pytest.raises(ConfigError, match=says):
        glue_job.parse_args(argv)


def test_the_script_glue_runs_hands_its_arguments_to_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[str]] = []

    def main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 0

    monkeypatch.setattr(glue_job, "main", main)
    monkeypatch.setattr(sys, "argv", ["tenantwatch_job.py", *ARGV])
    runpy.run_path(str(REPO / "infra" / "glue" / "tenantwatch_job.py"), run_name="__main__")
    assert seen == [ARGV]
    # A failure the package reports as a code fails the run with it.
    monkeypatch.setattr(glue_job, "main", lambda argv: 3)
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO / "infra" / "glue" / "tenantwatch_job.py"), run_name="__main__")
    assert stop.value.code == 3


# --- settings and sizes --------------------------------------------------------------------------


def test_the_hand_off_settings_from_the_environment() -> None:
    assert RunSettings.from_environ({}).spark_handoff_bytes == 0  # never, by default
    s = RunSettings.from_environ(
        {
            "TENANTWATCH_RUN_SPARK_HANDOFF_BYTES": "1048576",
            "TENANTWATCH_RUN_SPARK_JOB": JOB,
            "TENANTWATCH_RUN_SPARK_ATTEMPTS": "2",
        }
    )
    assert (s.spark_handoff_bytes, s.spark_job, s.spark_attempts) == (1 << 20, JOB, 2)
    assert RunSettings.from_environ({"TENANTWATCH_RUN_SPARK_HANDOFF_BYTES": "0"}).spark_job == ""
    with pytest.raises(ConfigError, match="HANDOFF_BYTES: no TENANTWATCH_RUN_SPARK_JOB"):
        RunSettings.from_environ({"TENANTWATCH_RUN_SPARK_HANDOFF_BYTES": "10"})
    with pytest.raises(ConfigError, match="HANDOFF_BYTES: expected a number, 0 or more"):
        RunSettings.from_environ({"TENANTWATCH_RUN_SPARK_HANDOFF_BYTES": "-1"})
    with pytest.raises(ConfigError, match="SPARK_ATTEMPTS: expected a positive number"):
        RunSettings.from_environ({"TENANTWATCH_RUN_SPARK_ATTEMPTS": "0"})


def test_a_window_s_bytes_are_its_share_of_the_listed_event_files(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    lake = Lake(str(tmp_path / "lake"))

    def put(rel: str, rows: int) -> int:
        path = Path(lake.base, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"x": list(range(rows))}), path)
        return path.stat().st_size

    day = "events/source=cloudtrail/date=2026-11-16"
    h10 = put(f"{day}/hour=10/part-a.parquet", 10)
    h11 = put(f"{day}/hour=11/part-b.parquet", 100)
    api = put("events/source=apigateway/date=2026-11-16/hour=10/part-c.parquet", 1000)
    # A compacted day (the day before): its file counts for the window's share of its day.
    whole = put("events/source=cloudtrail/date=2026-11-15/compacted-d.parquet", 5000)
    assert handoff.window_bytes(lake, T0, T0 + HOUR) == h10 + api
    assert handoff.window_bytes(lake, T0 + HOUR / 2, T0 + HOUR) == round((h10 + api) / 2)
    assert handoff.window_bytes(lake, T0, T0 + 2 * HOUR) == h10 + h11 + api
    day_before = T0 - timedelta(hours=10)  # 2026-11-16T00:00
    assert handoff.window_bytes(lake, day_before - HOUR, day_before) == round(whole / 24)
    assert handoff.window_bytes(lake, T0 + 5 * HOUR, T0 + 6 * HOUR) == 0


# --- the job over a local lake ----------------------------------------------------------------


@pytest.mark.slow
def test_a_backfill_on_spark_finds_and_pages_what_the_scheduled_run_does(
    tmp_path: Path, clean_env: None, spark: Any
) -> None:
    """Four windows of a local lake detected and alerted by the scheduled run; then the same
    lake again from scratch, ingested, and its windows detected and alerted by the job: the
    same incidents and notifications. The job takes the windows one by one, as the schedule
    did, and records each."""
    import shutil

    from pipeline.runs.stages import ingest

    trail = tmp_path / "trail"
    trail_hour(trail, T0 + timedelta(minutes=5), 2, "a")
    trail_hour(trail, T0 + timedelta(hours=2, minutes=5), 1, "b")
    cfg = pooled_config()
    settings = RunSettings(sources=(str(trail),), backfill_hours=4)
    lake = str(tmp_path / "lake")
    report = run_scheduled(
        T0 + timedelta(hours=3, minutes=20), lake, cfg, settings, Budget(lambda: 900_000, 30), "s"
    )
    assert len(report.windows) == 4 and report.as_dict()["alert"]["notifications_sent"] == 3
    stories, notes = incident_rows(lake), local_notes(lake)
    assert len(stories) == 3 and len(notes) == 3
    shutil.rmtree(lake)

    ingest([str(trail)], lake, cfg)
    config = pooled_file(tmp_path / "config")
    argv = ["--lake-root", lake, "--config", config, "--run-id", "backfill-1",
            "--window-start", z(T0 - HOUR), "--window-end", z(T0 + 3 * HOUR)]  # fmt: skip
    out = glue_job.run(glue_job.parse_args(argv))
    assert out["health"] == {}  # past windows: no health sent as if of now
    assert out["alert"]["notifications_sent"] == 3 and len(out["completed"]) == 4
    assert incident_rows(lake) == stories and local_notes(lake) == notes
    records = sorted(Path(lake, "_state/jobs").glob("*.json"))
    assert [r.name for r in records] == [
        f"{T0 + (h - 1) * HOUR:%Y%m%dT%H%M}-{T0 + h * HOUR:%Y%m%dT%H%M}.json" for h in range(4)
    ]
    first = json.loads(records[1].read_text())
    # Two cross-tenant reads, one of them also a residency finding (t0003: EU only), in two stories.
    assert (first["run_id"], first["engine"], first["findings"]) == ("backfill-1", "spark", 3)
    assert first["incidents_new"] == 2 and first["window_start"] == T0.isoformat()
    assert not Path(lake, "_state/lease.json").exists()  # released after each window
    # Killed and run again: the same lake, nothing paged twice.
    assert glue_job.main([*argv, "--engine", "local"]) == 0
    assert incident_rows(lake) == stories and local_notes(lake) == notes
