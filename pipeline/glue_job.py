"""The AWS Glue job: detect and alert the windows the scheduled function hands off
(``pipeline.runs.handoff``), or a backfill's, on Spark.

``infra/glue/tenantwatch_job.py`` is the script Glue runs; it calls ``main`` with the job run's
arguments, and everything it does is here, tested and shipped in the package's wheel (which the
job installs, ``--additional-python-modules``). The arguments, ``--name value`` as Glue passes
them (``awsglue.utils.getResolvedOptions`` reads them when ``awsglue`` is importable, as in Glue;
argparse the same names elsewhere):

- ``--lake-root``: the lake (``s3://bucket/prefix`` or a folder);
- ``--config``: the configuration, as the functions read it: ``ssm:<parameter name>`` (what the
  stack passes: the functions' own document), ``s3://bucket/key`` or a local file;
- ``--window-start``, ``--window-end``: ISO 8601, aligned to ``--window-minutes`` (60 by
  default, the scheduled run's ``TENANTWATCH_RUN_WINDOW_MINUTES``). A span of several windows (a
  backfill) is detected window by window, as the schedule would have, so its findings and
  incidents have the ids the function's would;
- ``--engine``: ``spark`` (the default: ``pipeline.spark_detect.run_detect_spark``) or ``local``
  (``pipeline.detect.run_detect``, for tests and small backfills);
- ``--run-id``: written in each window's completion record (the hand-off gives one per attempt);
- ``--sigma-pack``: where the project's Sigma rule pack is (an ``s3://`` prefix, copied to a
  temporary folder, or a folder), as the function image has it beside the code;
- ``--region``: the AWS region, for a process started without ``AWS_REGION``;
- ``--lease-wait-seconds``: how long to wait for the lake's lease (default 1200: longer than a
  scheduled run may hold it);
- ``--TENANTWATCH_<SECTION>_<KEY> value``: the environment the functions run with (the topic,
  the snapshot location, the containment table, ...), which ``pipeline.config`` applies over the
  configuration document as it does for them. The stack passes the same values as the functions'.

For each window, under the lake's lease (``pipeline.lease.hold``: waited for, and renewed while
held, as the CLI does; taken per window, so the schedule's ticks run between the windows of a
long backfill), the job does what the scheduled function does for one window
(``unattended.detect_and_alert``), through ``JobStages``: the ``Stages`` seam with the detect
stage on the chosen engine and the alert stage as is, sending its metrics by ``PutMetricData``
(the embedded metric format is Lambda's). The incidents it opens and the notifications it sends
are the ones the function would have. Then it writes the window's completion record,
``_state/jobs/<start>-<end>.json``: the window, the run id, the engine, the counts; the scheduled
run moves its watermark on only when it finds it. The run's health is sent once at its end, for
a run of one window (a handed-off one); a backfill sends none, as its windows' counts are not
counts of now.

A run killed anywhere and run again converges: the detectors give the same finding ids for the
same window, the alert stage is idempotent (``pipeline.alert.run``: an incident's outbox row
exists before its state, delivery is at most once per row), and the record is written last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline import aws
from pipeline.config import Config, load_config, parse_config
from pipeline.errors import ConfigError
from pipeline.runs import stages as stage_calls
from pipeline.runs.results import AlertResult, DetectResult
from pipeline.runs.stages import PipelineStages

if TYPE_CHECKING:
    from pipeline.runs.unattended import Report

Engine = Literal["spark", "local"]
OPTIONS = (
    "lake-root",
    "config",
    "window-start",
    "window-end",
    "window-minutes",
    "engine",
    "run-id",
    "sigma-pack",
    "region",
    "lease-wait-seconds",
)
REQUIRED = ("lake-root", "config", "window-start", "window-end")
_ENV_NAME = re.compile(r"TENANTWATCH_[A-Z0-9_]+")
NAME = "%Y%m%dT%H%M"  # a window's start and end in its completion record's name


@dataclass(frozen=True)
class JobArgs:
    """The job run's arguments, checked."""

    lake_root: str
    config: str
    window_start: datetime
    window_end: datetime
    window_minutes: int = 60
    engine: Engine = "spark"
    run_id: str = ""
    sigma_pack: str = ""
    region: str = ""
    lease_wait_s: float = 1200.0
    job_run_id: str = ""  # Glue's (--JOB_RUN_ID), when Glue started the run
    environment: Mapping[str, str] = field(default_factory=dict)  # --TENANTWATCH_* values

    def windows(self) -> list[tuple[datetime, datetime]]:
        from pipeline.runs.unattended import windows

        return windows(self.window_start, self.window_end, self.window_minutes)


# --- arguments ----------------------------------------------------------------------------------


def _resolved(argv: list[str]) -> dict[str, str | None]:
    """The named options' values: through Glue's ``getResolvedOptions`` when it is there
    (which requires every option it is asked for: only those given are asked), else argparse."""
    got: dict[str, Any]
    try:
        from awsglue.utils import getResolvedOptions
    except ImportError:
        parser = argparse.ArgumentParser(prog="tenantwatch_job", allow_abbrev=False)
        for name in (*OPTIONS, "JOB_RUN_ID"):
            parser.add_argument(f"--{name}")
        known, _ = parser.parse_known_args(argv)
        got = vars(known)
    else:
        asked = [n for n in OPTIONS if f"--{n}" in argv]
        got = dict(getResolvedOptions(["tenantwatch_job", *argv], asked))
    out: dict[str, str | None] = {n: got.get(n.replace("-", "_")) for n in OPTIONS}
    out["JOB_RUN_ID"] = got.get("JOB_RUN_ID")
    return out


def _environment(argv: Sequence[str]) -> dict[str, str]:
    """The ``--TENANTWATCH_<SECTION>_<KEY> value`` pairs (or ``--NAME=value``) among ``argv``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--TENANTWATCH_"):
            name, eq, value = token[2:].partition("=")
            if not eq:
                value = argv[i + 1] if i + 1 < len(argv) else ""
                i += 1
            if not _ENV_NAME.fullmatch(name):
                raise ConfigError(f"--{name}: not a TENANTWATCH_<SECTION>_<KEY> name")
            out[name] = value
        i += 1
    return out


def _time(name: str, text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--{name}: expected an ISO 8601 time, got {text!r}") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_args(argv: Sequence[str]) -> JobArgs:
    """The job's arguments (``argv``: without the program's name); ``ConfigError`` naming what
    is missing or wrong."""
    from pipeline.runs.unattended import floor_to

    raw = _resolved(list(argv))
    missing = [f"--{n}" for n in REQUIRED if not raw.get(n)]
    if missing:
        raise ConfigError(f"job arguments missing: {', '.join(missing)}")
    engine = raw.get("engine") or "spark"
    if engine not in ("spark", "local"):
        raise ConfigError(f"--engine: expected spark or local, got {engine!r}")
    try:
        minutes = int(raw.get("window-minutes") or 60)
        wait = float(raw.get("lease-wait-seconds") or 1200)
    except ValueError as exc:
        raise ConfigError(f"job arguments: expected a number ({exc})") from None
    if minutes <= 0 or (24 * 60) % minutes:
        raise ConfigError(f"--window-minutes: {minutes} does not divide a day")
    start = _time("window-start", str(raw["window-start"]))
    end = _time("window-end", str(raw["window-end"]))
    if end <= start:
        raise ConfigError(f"--window-end ({end.isoformat()}) is not after --window-start")
    step = timedelta(minutes=minutes)
    if floor_to(start, minutes) != start or (end - start) % step:
        raise ConfigError(
            f"window {start.isoformat()}/{end.isoformat()}: not whole windows of {minutes} "
            "minutes aligned to the clock (the scheduled run's)"
        )
    return JobArgs(
        lake_root=str(raw["lake-root"]),
        config=str(raw["config"]),
        window_start=start,
        window_end=end,
        window_minutes=minutes,
        engine="local" if engine == "local" else "spark",
        run_id=raw.get("run-id") or f"glue-{datetime.now(UTC):%Y%m%dT%H%M%S}",
        sigma_pack=raw.get("sigma-pack") or "",
        region=raw.get("region") or "",
        lease_wait_s=wait,
        job_run_id=raw.get("JOB_RUN_ID") or "",
        environment=_environment(argv),
    )


# --- what the job reads -------------------------------------------------------------------------


def load(where: str, environ: Mapping[str, str]) -> Config:
    """The configuration at ``where`` (``ssm:<name>``, ``s3://bucket/key`` or a file), with
    ``environ``'s ``TENANTWATCH_<SECTION>_<KEY>`` over it, as the functions load theirs."""
    if where.startswith(("ssm:", "s3://")):
        try:
            if where.startswith("ssm:"):
                got = aws.client("ssm").get_parameter(Name=where.removeprefix("ssm:"))
                text = str(got["Parameter"]["Value"])
            else:
                bucket, _, key = where.removeprefix("s3://").partition("/")
                text = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except Exception as exc:
            if not aws.error_from_aws(exc):
                raise
            raise ConfigError(f"{where}: cannot be read ({aws.error_code(exc) or exc})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML ({exc})") from None
        return parse_config(data, where, environ)
    return load_config(where, environ)


def fetch_pack(where: str) -> str:
    """A local folder holding the rule pack at ``where`` (an ``s3://`` prefix is copied)."""
    if not where.startswith("s3://"):
        return where
    bucket, _, prefix = where.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    folder = Path(tempfile.mkdtemp(prefix="tenantwatch-rules-"))
    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if not rel or rel.endswith("/") or ".." in rel.split("/"):
                continue
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    return str(folder)


# --- the stages ---------------------------------------------------------------------------------


class JobStages(PipelineStages):
    """The stages as the job runs them: detect on ``engine``, alert as the function does but
    with its metrics sent by ``PutMetricData``, asking ``may_publish`` before each batch."""

    def __init__(self, engine: Engine, may_publish: Callable[[], bool] | None = None) -> None:
        self.engine = engine
        self.may_publish = may_publish

    def detect(
        self,
        lake_root: str,
        cfg: Config,
        since: datetime,
        until: datetime,
        only: tuple[str, ...] | None,
    ) -> DetectResult:
        if self.engine == "local":
            return super().detect(lake_root, cfg, since, until, only)
        # On first use: pyspark is in Glue, not in the functions or a laptop's install.
        from pipeline.spark_detect import run_detect_spark

        extra: dict[str, Any] = {} if only is None else {"only": only}
        return DetectResult.of(run_detect_spark(lake_root, cfg, since, until, **extra))

    def alert(self, lake_root: str, cfg: Config, since: datetime | None) -> AlertResult:
        return stage_calls.alert(lake_root, cfg, since=since, may_publish=self.may_publish)


# --- the run ------------------------------------------------------------------------------------


def completion(args: JobArgs, window: tuple[datetime, datetime], report: Report) -> dict[str, Any]:
    """The completion record of ``window``, just detected and alerted into ``report``."""
    detected, alerted = report.run.detect[-1], report.run.alert[-1]
    return {
        "window_start": window[0].isoformat(),
        "window_end": window[1].isoformat(),
        "run_id": args.run_id,
        "job_run_id": args.job_run_id,
        "engine": args.engine,
        "finished_at": datetime.now(UTC).isoformat(),
        "findings": detected.findings,
        "suppressed": detected.suppressed,
        "incidents_new": alerted.incidents_new,
        "incidents_updated": alerted.incidents_updated,
        "notifications_sent": alerted.notifications_sent,
        "notifications_failed": alerted.notifications_failed,
    }


def run(args: JobArgs) -> dict[str, Any]:
    """Detect and alert each window of ``args`` (see the module docstring); the run's report."""
    from pipeline import lease, tickets
    from pipeline.alert import store
    from pipeline.lake import Lake, job_file
    from pipeline.runs.unattended import Report, detect_and_alert, finish

    started = time.perf_counter()
    if args.region:  # pyarrow's S3 and boto3 read the region from here
        os.environ.setdefault("AWS_REGION", args.region)
        os.environ.setdefault("AWS_DEFAULT_REGION", args.region)
    environ = {**os.environ, **args.environment, "TENANTWATCH_LAKE_ROOT": args.lake_root}
    cfg = load(args.config, environ)
    if args.sigma_pack:
        from detectors.sigma.rules import PACK_ENV

        os.environ[PACK_ENV] = fetch_pack(args.sigma_pack)
    root = cfg.lake.root
    run_cfg = tickets.resolve(cfg)  # read once, for every window
    report = Report(args.run_id, "glue")
    records = []
    todo = args.windows()
    try:
        for window in todo:
            owner = f"glue:{args.job_run_id or args.run_id}"
            with lease.hold(root, owner, wait_s=args.lease_wait_s) as holding:
                stages = JobStages(args.engine, holding.ok)
                detect_and_alert(stages, root, run_cfg, window, None, report)
                record = completion(args, window, report)
                name = job_file(f"{window[0]:{NAME}}", f"{window[1]:{NAME}}")
                store.write_bytes(Lake(root), name, json.dumps(record, indent=1).encode())
                records.append(record)
    finally:
        # The health of a handed-off window, as the function would have sent it. A backfill's
        # windows are past: their API counts sent now would be counts of now, so none is sent.
        if len(todo) == 1:
            finish(root, cfg, report, in_lambda=False)
        report.seconds = time.perf_counter() - started
    return {**report.as_dict(), "engine": args.engine, "completed": records}


def main(argv: Sequence[str] | None = None) -> int:
    """The job: its arguments (default ``sys.argv``), its windows, its report on stdout."""
    import sys

    args = parse_args(sys.argv[1:] if argv is None else argv)
    print(json.dumps(run(args), default=str))
    return 0


if __name__ == "__main__":  # python -m pipeline.glue_job --lake-root ... (a backfill by hand)
    from pipeline.errors import TenantwatchError

    try:
        raise SystemExit(main())
    except TenantwatchError as exc:  # one line, not a traceback (Glue shows the exception)
        raise SystemExit(f"tenantwatch glue job: {exc}") from None
