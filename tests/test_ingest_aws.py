"""Ingestion against AWS APIs served by moto over real HTTP on 127.0.0.1: S3 in, S3 lake, and
CloudWatch Logs with its position kept between runs and throttling retried by botocore."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from pipeline.config import Config, parse_config
from pipeline.ingest import sources
from pipeline.ingest.run import ingest
from pipeline.lake import read_events, read_quarantine
from tests import logfactory as lf
from tests.pooled import pooled_file

pytestmark = pytest.mark.e2e
PREFIX = f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1"
DAY = timedelta(days=1)


def _put_trail_file(s3: Any, day: str, n: int, name: str) -> None:
    records = [lf.ct(time=f"{day.replace('/', '-')}T10:00:00Z") for _ in range(n)]
    body = gzip.compress(json.dumps({"Records": records}).encode())
    key = f"{PREFIX}/{day}/{lf.ACCOUNT}_CloudTrail_us-east-1_{name}.json.gz"
    s3.put_object(Bucket="trail", Key=key, Body=body)


def _run(*src: str, **kw: Any) -> dict[str, Any]:
    s = ingest(list(src), "s3://lake/tw", Config(), workers=1, **kw)
    assert s["records_in"] == s["ingested"] + s["duplicates"] + s["quarantined_total"]
    return s


def test_s3_source_into_s3_lake_and_rerun_skips(aws: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    s3.create_bucket(Bucket="lake")
    for i in range(3):
        _put_trail_file(s3, "2026/11/16", 4, f"20261116T10{i}0Z_{i}")
    first = _run("s3://trail/AWSLogs/")
    assert (first["files"], first["ingested"]) == (3, 12)
    events = read_events("s3://lake/tw")
    assert events.num_rows == 12
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake")["Contents"]]
    assert any(k.startswith("tw/events/source=cloudtrail/date=2026-11-16/hour=10/") for k in keys)
    again = _run("s3://trail/AWSLogs/")
    assert (again["files_skipped"], again["records_in"]) == (3, 0)
    # A changed object (new ETag) is read again; its duplicate records are dropped, not re-added.
    _put_trail_file(s3, "2026/11/16", 5, "20261116T1000Z_0")
    third = _run("s3://trail/AWSLogs/")
    assert third["files_skipped"] == 2 and third["ingested"] == 5
    assert read_events("s3://lake/tw").num_rows == 17


def test_since_until_prunes_the_listing_by_day(aws: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    s3.create_bucket(Bucket="lake")
    for day in ("2026/11/14", "2026/11/15", "2026/11/16"):
        _put_trail_file(s3, day, 2, day.replace("/", "") + "T1000Z_a")
    # An object outside any dated layout (a log export) is found too.
    loose = f"exports/task-1/stream/{lf.ACCOUNT}.json.gz"
    body = gzip.compress(json.dumps({"Records": [lf.ct(time="2026-11-15T11:00:00Z")]}).encode())
    s3.put_object(Bucket="trail", Key=loose, Body=body)
    listed: list[str] = []
    recursive: list[str] = []
    client = sources._client("s3")

    def spy(params: dict[str, Any], **_: Any) -> None:
        listed.append(params.get("Prefix", ""))
        if not params.get("Delimiter"):
            recursive.append(f"{params.get('Prefix', '')} {params.get('MaxKeys', 1000)}")

    client.meta.events.register("before-parameter-build.s3.ListObjectsV2", spy)
    try:
        s = _run(
            "s3://trail/",
            since=datetime(2026, 11, 15, tzinfo=UTC),
            until=datetime(2026, 11, 15, 23, tzinfo=UTC),
        )
    finally:
        client.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", spy)
    assert (s["files"], s["ingested"]) == (2, 3)
    assert f"{PREFIX}/2026/11/15/" in listed
    assert f"{PREFIX}/2026/11/14/" not in listed
    # A dated tree's keys are listed only in the window's day folders, beyond one small probe
    # page that finds a dated key (and so every folder down to it dated); above its dated roots
    # it is walked folder by folder, so a run's
    # listing does not grow with the days the bucket holds. The undated exports are listed flat.
    assert sorted(set(recursive)) == [
        "AWSLogs/ 100",
        f"{PREFIX}/2026/11/15/ 1000",
        "exports/ 100",
    ]
    sources._DATED_BELOW.clear()


def test_an_object_outside_dated_folders_is_an_input_once_written_since(aws: str) -> None:
    """A log export's key has no date: its last write tells whether a run listing since a time
    must look it up (an object written before was listed by the run that read up to then)."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    s3.put_object(Bucket="trail", Key="exports/task-1/stream/000000.gz", Body=b"x")
    now = datetime.now(UTC)
    later, _ = sources.list_inputs(["s3://trail/"], now + timedelta(minutes=5), now + DAY)
    assert later == []
    earlier, _ = sources.list_inputs(["s3://trail/"], now - timedelta(minutes=5), now + DAY)
    assert [r.uri for r in earlier] == ["s3://trail/exports/task-1/stream/000000.gz"]


def test_log_exports_cost_the_same_listings_however_many_tasks_were_exported(aws: str) -> None:
    """CloudWatch Logs exports add a task folder a day, each with a folder per stream: a
    scheduled run's listing must not grow with them, and must still find an object written
    late into an old task's folder."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    _put_trail_file(s3, "2026/11/15", 1, "20261115T1000Z_a")
    client = sources._client("s3")
    calls: list[str] = []

    def spy(params: dict[str, Any], **_: Any) -> None:
        calls.append(params.get("Delimiter", ""))

    def export(task: int) -> None:
        for stream in range(3):
            key = f"exports/task-{task:03d}/stream-{stream}/000000.gz"
            s3.put_object(Bucket="trail", Key=key, Body=b"x")

    def listings() -> tuple[tuple[int, int], list[str]]:
        calls.clear()
        sources._DATED_BELOW.clear()
        since = datetime.now(UTC) - timedelta(minutes=5)
        client.meta.events.register("before-parameter-build.s3.ListObjectsV2", spy)
        try:
            refs, _ = sources.list_inputs(["s3://trail/"], since, since + DAY)
        finally:
            client.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", spy)
        walked = calls.count("/")
        return (walked, len(calls) - walked), [r.uri for r in refs if "/exports/" in r.uri]

    for task in range(5):
        export(task)
    few, found = listings()
    assert len(found) == 15
    for task in range(5, 60):
        export(task)
    many, found = listings()
    # The same folders walked; the exports' flat listing takes one more page past 100 keys
    # (then a page per 1,000), where a walk would have listed 165 more folders.
    assert many == (few[0], few[1] + 1)
    assert len(found) == 180
    # A late object in the oldest task's folder, written after the others: still an input.
    late = "exports/task-000/stream-9/000000.gz"
    s3.put_object(Bucket="trail", Key=late, Body=b"y")
    _, found = listings()
    assert f"s3://trail/{late}" in found
    sources._DATED_BELOW.clear()


def test_a_lambda_log_export_is_an_input_when_delivered_whatever_its_streams_dates(
    aws: str,
) -> None:
    """A Lambda function's log streams are named YYYY/MM/DD/[$LATEST]<id>, so its exported objects'
    keys hold the day each stream began. The export is delivered when its task runs, days later
    perhaps: its objects are inputs once written since the run's start, and the task folders,
    one per export, are not walked one by one."""
    import uuid

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    _put_trail_file(s3, "2026/11/15", 1, "20261115T1000Z_a")
    client = sources._client("s3")
    walked: list[str] = []

    def spy(params: dict[str, Any], **_: Any) -> None:
        if params.get("Delimiter"):
            walked.append(params.get("Prefix", ""))

    def export(task: int) -> str:
        key = (
            f"authorizer/exportedlogs/{uuid.UUID(int=task)}/2026/11/{1 + task % 28:02d}/"
            f"[$LATEST]{task:032x}/000000.gz"
        )
        s3.put_object(Bucket="trail", Key=key, Body=b"x")
        return key

    def run() -> tuple[int, list[str]]:
        walked.clear()
        sources._DATED_BELOW.clear()
        since = datetime.now(UTC) - timedelta(minutes=5)
        client.meta.events.register("before-parameter-build.s3.ListObjectsV2", spy)
        try:
            refs, _ = sources.list_inputs(["s3://trail/"], since, since + DAY)
        finally:
            client.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", spy)
        return len(walked), [r.uri.removeprefix("s3://trail/") for r in refs]

    keys = [export(t) for t in range(3)]
    few, found = run()
    assert set(keys) <= set(found)  # streams of November 1-3, delivered now
    keys += [export(t) for t in range(3, 40)]
    many, found = run()
    assert many == few and set(keys) <= set(found)
    sources._DATED_BELOW.clear()


@pytest.mark.slow
def test_s3_listing_paginates(aws: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    s3.create_bucket(Bucket="lake")
    from concurrent.futures import ThreadPoolExecutor

    def put(i: int) -> None:
        s3.put_object(Bucket="trail", Key=f"misc/{i:05d}.json", Body=b"{}")

    with ThreadPoolExecutor(8) as pool:  # list_objects_v2 returns at most 1,000 keys a page
        list(pool.map(put, range(1005)))
    refs, _ = sources.list_inputs(["s3://trail/misc/"])
    assert len(refs) == 1005
    assert len({r.etag for r in refs}) == 1  # same body, same ETag: the listing carries it


def _recent_ms() -> int:
    # CloudWatch (and moto) reject events older than 14 days: stay recent whenever this runs.
    return int(datetime.now(UTC).timestamp() * 1000) - 3_600_000


def _put_logs(logs: Any, group: str, stream: str, objs: list[dict[str, Any]], t0: int) -> None:
    events = [{"timestamp": t0 + i, "message": json.dumps(o)} for i, o in enumerate(objs)]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def test_cloudwatch_logs_source_continues_where_it_stopped(aws: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="lake")
    logs = boto3.client("logs")
    group, stream = "/aws/lambda/tenant-authorizer", "2026/11/16/[$LATEST]abc"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    t0 = _recent_ms()
    _put_logs(logs, group, stream, [lf.authorizer_log() for _ in range(5)], t0)
    first = _run(f"logs://{group}")
    assert first["ingested"] == 5
    again = _run(f"logs://{group}")
    assert again["records_in"] == 0
    _put_logs(logs, group, stream, [lf.authorizer_log(decision="Allow") for _ in range(3)], t0 + 10)
    third = _run(f"logs://{group}/2026/11/16")  # a stream prefix after the group name
    assert third["ingested"] == 3
    assert read_events("s3://lake/tw", sources=("authorizer",)).num_rows == 8


def test_unknown_log_group_is_a_clear_error(aws: str) -> None:
    from pipeline.errors import InputError

    boto3.client("s3").create_bucket(Bucket="lake")
    with pytest.raises(InputError, match="no such log group"):
        _run("logs:///aws/lambda/absent")


def test_cloudwatch_throttling_is_retried_by_botocore(aws: str) -> None:
    boto3.client("s3").create_bucket(Bucket="lake")
    logs = boto3.client("logs")
    group, stream = "/tw/throttled", "s"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    _put_logs(logs, group, stream, [lf.authorizer_log() for _ in range(4)], _recent_ms())

    from botocore.awsrequest import AWSResponse

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

    throttled = {"n": 0}

    def throttle(request: Any, **_: Any) -> AWSResponse | None:
        if throttled["n"] < 2:
            throttled["n"] += 1
            body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
            headers = {"Content-Type": "application/x-amz-json-1.1"}
            return AWSResponse(request.url, 400, headers, _Raw(body))
        return None

    client = sources._client("logs")
    client.meta.events.register("before-send.cloudwatch-logs.FilterLogEvents", throttle)
    try:
        s = _run(f"logs://{group}")
    finally:
        client.meta.events.unregister("before-send.cloudwatch-logs.FilterLogEvents", throttle)
    assert throttled["n"] == 2
    assert s["ingested"] == 4


def _slowed_down(
    aws: str, monkeypatch: pytest.MonkeyPatch, files: int, share: float, seed: int
) -> None:
    from tests.httpfaults import Rule, RuleProxy

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    s3.create_bucket(Bucket="lake")
    for i in range(files):
        _put_trail_file(s3, "2026/11/16", 3, f"20261116T10{i:02d}Z_{i}")
    with RuleProxy(aws) as proxy:
        throttle = proxy.add(Rule.throttled_s3(share, burst=3, seed=seed))
        # And the lake's first writes, whichever requests the share picks (pyarrow's retries).
        lake_writes = proxy.add(
            Rule("error-before", method="PUT", path="^/lake/", status=503, code="SlowDown",
                 s3=True, times=2)
        )  # fmt: skip
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        cfg = parse_config({"ingest": {"batch_input_bytes": 1}}, environ={})
        s = ingest(["s3://trail/AWSLogs/"], "s3://lake/tw", cfg, workers=1)
    assert (s["files"], s["ingested"]) == (files, 3 * files)
    refused = {k.split("?")[0] for k in throttle.refused}
    assert any(" /trail" in k for k in refused), refused  # a source request, through boto3
    assert lake_writes.applied == 2  # lake requests, through pyarrow, refused and retried
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws)
    assert read_events("s3://lake/tw").num_rows == 3 * files


@pytest.mark.slow
def test_s3_slowing_down_a_tenth_of_requests_is_retried_on_reads_and_writes(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Throttled S3 answers 503 SlowDown, often several times in a row for one request: the
    sources (boto3) and the lake (pyarrow) retry with backoff, and the run ingests everything."""
    _slowed_down(aws, monkeypatch, files=6, share=0.1, seed=4)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(3))
def test_s3_slowing_down_a_fifth_of_requests_over_many_files(
    aws: str, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    _slowed_down(aws, monkeypatch, files=30, share=0.2, seed=seed)


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """An environment that gives AWS nothing: no keys, no profile files, no instance metadata
    (so nothing is asked of the network), no region."""
    import boto3

    from pipeline import aws

    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    aws.reset()


@pytest.mark.parametrize(
    ("source", "lake"),
    [
        ("s3://trail/AWSLogs/", "LOCAL"),
        ("LOCAL", "s3://lake/tw"),
        ("logs:///aws/lambda/tenant-authorizer", "LOCAL"),
    ],
)
def test_no_aws_credentials_is_one_line_and_exit_code_2(
    no_aws: None, tmp_path: Any, source: str, lake: str
) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    local = tmp_path / "in"
    lf.delivery_file(local / "a.json.gz", [lf.ct()])
    args = [source.replace("LOCAL", str(local)), "--lake", lake.replace("LOCAL", str(tmp_path))]
    result = CliRunner().invoke(
        cli, ["--config", pooled_file(tmp_path / "cfg"), "ingest", *args, "--workers", "1"]
    )
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # not an exception let through
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no AWS credentials" in lines[0], result.output
    assert "Traceback" not in result.output


def test_no_aws_region_for_cloudwatch_logs_is_one_line_and_exit_code_2(
    no_aws: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    args = ["--config", pooled_file(tmp_path / "cfg"), "ingest", "logs:///aws/lambda/x"]
    args += ["--lake", str(tmp_path), "--workers", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no AWS region" in lines[0], result.output


def test_an_aws_error_during_a_run_is_one_line_and_exit_code_1(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials that expire half way, a bucket policy that says no: AWS's answer in one line,
    a run-time failure, not a traceback."""
    from botocore.exceptions import ClientError
    from click.testing import CliRunner

    from pipeline.cli import cli
    from pipeline.ingest import run

    def expired(*_: Any, **__: Any) -> Any:
        error = {"Code": "ExpiredToken", "Message": "The security token included is expired"}
        raise ClientError({"Error": error}, "ListObjectsV2")

    monkeypatch.setattr(run, "list_inputs", expired)
    cfg = pooled_file(tmp_path.parent / f"{tmp_path.name}-cfg")
    result = CliRunner().invoke(
        cli, ["--config", cfg, "ingest", str(tmp_path), "--lake", str(tmp_path / "l")]
    )
    assert result.exit_code == 1, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "ExpiredToken" in lines[0], result.output


def test_an_s3_object_that_cannot_be_read_is_quarantined_and_the_rest_ingested(aws: str) -> None:
    """A lifecycle rule archives old CloudTrail files to Glacier: reading one is refused until it
    is restored. It must not stop every run over the prefix; it is its own quarantine row."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    s3.create_bucket(Bucket="lake")
    _put_trail_file(s3, "2026/11/16", 2, "20261116T1000Z_a")
    archived = f"{PREFIX}/2026/11/15/{lf.ACCOUNT}_CloudTrail_us-east-1_20261115T1000Z_b.json.gz"
    body = gzip.compress(json.dumps({"Records": [lf.ct()]}).encode())
    s3.put_object(Bucket="trail", Key=archived, Body=body, StorageClass="GLACIER")
    s = _run("s3://trail/AWSLogs/")
    assert (s["files"], s["ingested"], s["quarantined"]) == (2, 2, {"unreadable_input": 1})
    (entry,) = read_quarantine("s3://lake/tw").to_pylist()
    assert entry["input_uri"] == f"s3://trail/{archived}"
    assert "InvalidObjectState" in entry["detail"]
