"""The scheduled run's hand-off of large windows to the Glue job (pipeline/runs/handoff.py).

Glue is moto's: its job runs never run anything, so a test runs the job's entry point itself with
the run's arguments (``--engine local``), and moves the run's state by hand (moto's state manager
holds it at STARTING; the test sets SUCCEEDED, FAILED, TIMEOUT as Glue would).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import glue_job, handler
from pipeline.lake import Lake
from pipeline.runs import handoff
from pipeline.runs.unattended import Budget, RunSettings, run_scheduled
from pipeline.runs.watermark import read_watermark
from tests import logfactory as lf
from tests.conftest import REPO
from tests.gluework import HOUR, JOB, T0, clean_environment, incident_rows, trail_hour, z
from tests.pooled import pooled_config, pooled_file


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


# --- the hand-off, on moto's Glue ---------------------------------------------------------------


@pytest.fixture
def glue(aws: str) -> Iterator[Any]:
    """moto's Glue with the job, its runs held at STARTING until a test says otherwise."""
    import boto3
    from moto.moto_api import state_manager

    from pipeline import aws as clients

    clients.reset()
    state_manager.set_transition("glue::job_run", {"progression": "manual", "times": 10**9})
    client = boto3.client("glue")
    client.create_job(
        Name=JOB,
        Role="arn:aws:iam::123456789012:role/tw-glue",
        Command={"Name": "glueetl", "ScriptLocation": "s3://a/tenantwatch_job.py"},
        GlueVersion="5.0",
        ExecutionProperty={"MaxConcurrentRuns": 2},
    )
    yield client
    state_manager.unset_transition("glue::job_run")
    clients.reset()


def _runs(client: Any) -> list[dict[str, Any]]:
    """The job's runs, oldest first."""
    runs: list[dict[str, Any]] = client.get_job_runs(JobName=JOB)["JobRuns"]
    return sorted(runs, key=lambda r: r["StartedOn"])


def _set_state(run_id: str, state: str, job: str = JOB) -> None:
    """What Glue does to a run (moto's state manager has no failures: set as Glue would)."""
    from moto.glue.models import glue_backends

    (run,) = [
        r for r in glue_backends["123456789012"]["us-east-1"].jobs[job].job_runs
        if r.job_run_id == run_id
    ]  # fmt: skip
    run.status = state


def _handoff_settings(trail: Path, attempts: int = 3) -> RunSettings:
    return RunSettings(
        sources=(str(trail),), backfill_hours=3, slide=False,
        spark_handoff_bytes=1, spark_job=JOB, spark_attempts=attempts,
    )  # fmt: skip


@pytest.mark.e2e
def test_a_failed_job_run_is_started_again_then_its_window_reported_failed(
    tmp_path: Path, glue: Any, clean_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    trail = tmp_path / "trail"
    trail_hour(trail, T0 + timedelta(minutes=5), 1)
    lake = str(tmp_path / "lake")
    settings = _handoff_settings(trail, attempts=2)
    now = T0 + timedelta(hours=2, minutes=20)  # windows 09:00 (empty), 10:00 and 11:00 are due

    def tick(minutes: int) -> Any:
        budget = Budget(lambda: 900_000, 30)
        at = now + timedelta(minutes=minutes)
        return run_scheduled(at, lake, pooled_config(), settings, budget, f"tick-{minutes}")

    first = tick(0)
    (run1,) = _runs(glue)
    assert run1["Arguments"]["--window-start"] == T0.isoformat()
    assert first.windows == [f"{(T0 - HOUR).isoformat()}/{T0.isoformat()}"]  # empty: stays here
    assert read_watermark(lake) == T0 and first.status == "done" and first.failed == []
    _set_state(run1["Id"], "FAILED")
    second = tick(5)
    run2 = _runs(glue)[1]
    assert [h["step"] for h in second.handoff] == ["waiting"] and len(_runs(glue)) == 2
    assert second.handoff[0]["attempt"] == 2 and second.handoff[0]["job_run_id"] == run2["Id"]
    assert run2["Arguments"]["--run-id"] != run1["Arguments"]["--run-id"]
    _set_state(run2["Id"], "TIMEOUT")
    caplog.clear()
    third = tick(10)
    assert third.failed == [f"{T0.isoformat()}/{(T0 + HOUR).isoformat()}"]
    assert third.as_dict()["failed_windows"] == third.failed and third.windows == []
    assert len(_runs(glue)) == 2  # the bound: no third run
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and run2["Id"] in errors[0] and "TIMEOUT" in errors[0]
    # Never skipped: the watermark stays, and the window after it (11:00) waits.
    assert read_watermark(lake) == T0
    assert tick(15).failed == third.failed and len(_runs(glue)) == 2
    # Resolved by a run of the job by hand for the window: the next tick moves on.
    config = pooled_file(tmp_path / "config")
    job = ["--lake-root", lake, "--config", config, "--engine", "local",
           "--window-start", z(T0), "--window-end", z(T0 + HOUR)]  # fmt: skip
    assert glue_job.main(job) == 0
    after = tick(20)
    assert after.failed == [] and read_watermark(lake) == T0 + 2 * HOUR
    assert after.windows[0] == f"{T0.isoformat()}/{(T0 + HOUR).isoformat()}"
    assert not Path(lake, "_state/handoff").exists() or not list(
        Path(lake, "_state/handoff").iterdir()
    )


@pytest.mark.e2e
def test_a_start_whose_answer_was_lost_is_found_by_its_run_id_not_started_twice(
    tmp_path: Path, glue: Any, clean_env: None
) -> None:
    from pipeline.alert import store
    from pipeline.lake import handoff_file

    trail = tmp_path / "trail"
    trail_hour(trail, T0 + timedelta(minutes=5), 1)
    lake = str(tmp_path / "lake")
    # A tick recorded its attempt, started the run, and died before recording Glue's answer.
    rec = handoff.Record(T0.isoformat(), (T0 + HOUR).isoformat(), JOB, 1, "handoff-lost-1",
                         datetime.now(UTC).isoformat(), 10)  # fmt: skip
    store.write_bytes(
        Lake(lake), handoff_file(f"{T0:%Y%m%dT%H%M}"), json.dumps(rec.__dict__).encode()
    )
    started = glue.start_job_run(JobName=JOB, Arguments={"--run-id": "handoff-lost-1"})["JobRunId"]
    settings = _handoff_settings(trail)
    report = run_scheduled(
        T0 + timedelta(hours=1, minutes=20), lake, pooled_config(), settings,
        Budget(lambda: 900_000, 30), "tick",
    )  # fmt: skip
    assert [r["Id"] for r in _runs(glue)] == [started]  # adopted, no second run
    assert report.handoff[0]["job_run_id"] == started and report.handoff[0]["step"] == "waiting"
    stored = json.loads(store.read_bytes(Lake(lake), handoff_file(f"{T0:%Y%m%dT%H%M}")))
    assert stored["job_run_id"] == started and read_watermark(lake) == T0


# --- the hand-off in the deployed stack --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.e2e
def test_a_large_window_goes_to_the_job_once_and_pages_as_the_function_would(
    aws: str, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    """The stack with its Glue job and a bound every window with events passes: the tick
    starts one job run for the window and keeps the watermark before it; the next tick starts
    none; the job run with its arguments (``--engine local``) detects and alerts the window,
    and once Glue says it succeeded the tick moves on. What on-call receives, and the incidents,
    are those of the same stack without the hand-off over the same trail and windows."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from moto.moto_api import state_manager

    from pipeline import aws as clients
    from tests import awsstack

    clients.reset()
    parameters.clear_caches()
    artifacts = "tw-glue-artifacts"
    given = {"BackfillHours": "3", "GlueArtifactsBucket": artifacts, "SparkHandoffBytes": "1"}
    st = awsstack.deploy("org-trail", given)
    assert st.status == "CREATE_COMPLETE"
    job = st.template["Resources"]["GlueJob"]["Properties"]
    assert job["Name"] == {"Fn::Sub": "${AWS::StackName}-detect"}
    for key, value in st.env.items():
        monkeypatch.setenv(key, value)
    # moto skips the job, and so the Ref to it: the name CloudFormation gives it.
    monkeypatch.setenv("TENANTWATCH_RUN_SPARK_JOB", f"{st.name}-detect")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=artifacts)  # the deployer's, with the rule pack uploaded to it
    for f in sorted((REPO / "rules").rglob("*")):
        if f.is_file():
            key = f"tenantwatch-glue/rules/{f.relative_to(REPO / 'rules').as_posix()}"
            s3.put_object(Bucket=artifacts, Key=key, Body=f.read_bytes())
    props = awsstack.create_glue_job(st)
    assert props["Name"] == f"{st.name}-detect" and props["GlueVersion"] == "5.0"
    for name, value in props["DefaultArguments"].items():
        if name.startswith("--TENANTWATCH_"):
            assert st.env[name[2:]] == value, name  # the functions' configuration
    state_manager.set_transition("glue::job_run", {"progression": "manual", "times": 10**9})
    try:
        _in_the_stack(st, monkeypatch)
    finally:
        state_manager.unset_transition("glue::job_run")
        clients.reset()


def _in_the_stack(st: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    import boto3
    from aws_lambda_powertools.utilities import parameters

    from pipeline.lake import job_file
    from tests.awsstack import drain, scheduler_event, subscribe
    from tests.fakes import FakeContext
    from tests.pooled import pooled_text

    out = st.outputs
    boto3.client("ssm").put_parameter(
        Name=out["ConfigParameterName"], Value=pooled_text(), Type="String", Overwrite=True
    )
    parameters.clear_caches()
    queue = subscribe(out["IncidentTopicArn"])
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR
    records = []
    for i in range(2):
        at = hour + timedelta(minutes=5 + i)
        key_id = f"ASIAEXAMPLE{i:07d}"
        records += [
            lf.assume_role(tenant="t0001", session=f"u{i}", new_key_id=key_id, time=z(at)),
            lf.ct(time=z(at + timedelta(minutes=1)), session=f"u{i}", key_id=key_id,
                  key=f"tenants/t000{i + 2}/invoices/9.pdf", sourceIPAddress=f"198.51.100.{i}"),
        ]  # fmt: skip
    key = (
        f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1/{hour:%Y/%m/%d}/"
        f"{lf.ACCOUNT}_CloudTrail_us-east-1_{hour:%Y%m%dT%H%M}Z_0.json.gz"
    )
    body = gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)
    boto3.client("s3").put_object(Bucket="org-trail", Key=key, Body=body)
    # Windows (hour - 1h) .. (hour + 1h) are due; the sliding window ends after the events.
    tick = hour + timedelta(hours=2, minutes=20)

    def scheduled(minutes: int, name: str) -> dict[str, Any]:
        at = tick + timedelta(minutes=minutes)
        return handler.scheduled(scheduler_event(st.template, at, name), FakeContext())

    # The same stack without the hand-off first; then its lake is emptied, for the same again.
    lake, bucket = out["LakeRoot"], out["LakeBucketName"]
    monkeypatch.setenv("TENANTWATCH_RUN_SPARK_HANDOFF_BYTES", "0")
    without = scheduled(0, "ref")
    assert len(without["windows"]) == 3 and without["handoff"] == []
    pages, stories = drain(queue), incident_rows(lake)
    assert len(pages) == 2 and len(stories) == 2
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="lake/"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    monkeypatch.setenv("TENANTWATCH_RUN_SPARK_HANDOFF_BYTES", "1")

    glue = boto3.client("glue")
    job = f"{st.name}-detect"
    first = scheduled(0, "e-1")
    runs = glue.get_job_runs(JobName=job)["JobRuns"]
    assert len(runs) == 1 and first["status"] == "done"
    (run,) = runs
    assert run["Arguments"]["--window-start"] == hour.isoformat()
    assert run["Arguments"]["--window-end"] == (hour + HOUR).isoformat()
    assert first["windows"] == [f"{(hour - HOUR).isoformat()}/{hour.isoformat()}"]  # no events
    assert first["watermark_after"] == hour.isoformat() and drain(queue) == []
    second = scheduled(5, "e-2")
    assert len(glue.get_job_runs(JobName=job)["JobRuns"]) == 1
    assert second["watermark_after"] == hour.isoformat() and second["windows"] == []
    assert [h["state"] for h in second["handoff"]] == ["STARTING"]

    # Glue runs the job with the run's arguments: the job's defaults and the window's.
    argv = [x for k, v in run["Arguments"].items() for x in (k, v)]
    argv += ["--engine", "local", "--JOB_RUN_ID", run["Id"]]
    assert glue_job.main(argv) == 0
    _set_state(run["Id"], "SUCCEEDED", job)
    third = scheduled(10, "e-3")
    assert third["windows"][0] == f"{hour.isoformat()}/{(hour + HOUR).isoformat()}"
    assert third["watermark_after"] == (hour + 2 * HOUR).isoformat()
    assert [h["step"] for h in third["handoff"]] == ["done"]
    assert len(glue.get_job_runs(JobName=job)["JobRuns"]) == 1
    name = job_file(f"{hour:%Y%m%dT%H%M}", f"{hour + HOUR:%Y%m%dT%H%M}")
    done = json.loads(s3.get_object(Bucket=bucket, Key=f"lake/{name}")["Body"].read())
    assert done["run_id"] == run["Arguments"]["--run-id"] and done["job_run_id"] == run["Id"]
    got = drain(queue)

    def seen(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (m["Subject"], m["Message"], json.dumps(m["MessageAttributes"], sort_keys=True))
            for m in messages
        )

    assert seen(got) == seen(pages)
    assert incident_rows(lake) == stories


@pytest.mark.e2e
def test_a_window_waits_while_the_job_runs_all_it_may_then_starts(
    tmp_path: Path, glue: Any, clean_env: None
) -> None:
    trail = tmp_path / "trail"
    trail_hour(trail, T0 + timedelta(minutes=5), 1)
    lake = str(tmp_path / "lake")
    busy = [glue.start_job_run(JobName=JOB)["JobRunId"] for _ in range(2)]  # two backfills

    def tick(name: str) -> Any:
        budget = Budget(lambda: 900_000, 30)
        at = T0 + timedelta(hours=1, minutes=20)
        return run_scheduled(at, lake, pooled_config(), _handoff_settings(trail), budget, name)

    first = tick("t-1")
    assert first.handoff[0]["state"].startswith("not started") and len(_runs(glue)) == 2
    assert read_watermark(lake) == T0
    _set_state(busy[0], "SUCCEEDED")
    second = tick("t-2")
    (started,) = [r for r in _runs(glue) if r["Id"] not in busy]
    assert second.handoff[0]["job_run_id"] == started["Id"]
    assert started["Arguments"]["--window-start"] == T0.isoformat()


@pytest.mark.parametrize(("owner", "completed"), [("glue:jr_1", True), ("cli:laptop:1:ab", False)])
def test_a_tick_that_finds_the_job_holding_the_lake_still_counts_as_a_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clean_env: None,
    owner: str,
    completed: bool,
) -> None:
    """The job holds the lease while it detects and alerts its window: the ticks meanwhile do
    nothing (busy) but are the schedule working, not missing (NoRunAlarm reads RunCompleted)."""
    from pipeline.lease import Lease
    from tests.fakes import FakeContext, scheduler_event

    lake = str(tmp_path / "lake")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "tenantwatch")
    monkeypatch.setenv("TENANTWATCH_LAKE_ROOT", lake)
    monkeypatch.setenv("TENANTWATCH_RUN_SOURCES", str(tmp_path / "trail"))
    assert Lease(lake).acquire(owner, 600)
    capsys.readouterr()
    report = handler.scheduled(scheduler_event(T0), FakeContext())
    assert report["status"] == "busy" and report["held_by"] == owner
    assert ('"RunCompleted"' in capsys.readouterr().out) is completed
