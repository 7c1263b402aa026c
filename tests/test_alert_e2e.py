"""Alerting against SNS, SQS, S3 and CloudWatch served by moto over real HTTP on 127.0.0.1.

The main test runs ``tenantwatch run`` on simulated logs with the lake and the snapshots on S3,
and reads what subscribers got from SQS queues. The fault tests run the alert stage over a lake
that already holds findings, and break SNS or CloudWatch through botocore hooks on the very
clients the code uses, so that the real retry paths run (their backoff is shortened). Faults on
the wire, through a proxy, are in test_delivery_faults.py.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from pipeline import aws
from pipeline.alert import store
from pipeline.alert.run import run_alert
from pipeline.cli import cli
from pipeline.config import AlertingConfig, Config
from pipeline.lake import Lake
from tests.alertsinks import write_findings_lake

pytestmark = pytest.mark.e2e
NAMESPACE = "Tenantwatch/Test"
PAGED = ("critical",)  # the pager queue's filter policy
EXPECTED = ("critical", "high")  # labelled attacks that must be notified


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.simulate import SimulationSpec, simulate

    out = tmp_path_factory.mktemp("logs")
    simulate(out, SimulationSpec(events_per_day=400))
    return out


@pytest.fixture(scope="module")
def findings_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small local lake with events and findings and no incidents yet (copied per test):
    14 findings, 12 of them medium or worse: 12 notifications, two PublishBatch calls (10 + 2)."""
    root = tmp_path_factory.mktemp("template") / "lake"
    write_findings_lake(str(root))
    return Path(Lake(str(root)).base)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's standard retries and the SNS channel's own, minus the waiting."""
    from botocore.retries import standard

    from pipeline.alert import calls

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0.01)
    monkeypatch.setattr(calls, "BACKOFF_S", 0.01)


@dataclass
class Sinks:
    topic_arn: str
    pager: str  # queue URL, filter policy: severity in PAGED
    everything: str  # queue URL, no filter


@pytest.fixture
def sinks(aws: str) -> Iterator[Sinks]:
    from pipeline import aws as alert_aws

    alert_aws.reset()
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="tenantwatch-incidents")["TopicArn"]
    urls = {}
    for name, policy in (("pager", {"severity": list(PAGED)}), ("everything", None)):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        attrs = {"FilterPolicy": json.dumps(policy)} if policy else {}
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attrs)
        urls[name] = url
    yield Sinks(topic, urls["pager"], urls["everything"])
    alert_aws.reset()


def _cfg(s: Sinks, **kw: Any) -> Config:
    return Config(
        alerting=AlertingConfig(sns_topic_arn=s.topic_arn, cloudwatch_namespace=NAMESPACE, **kw)
    )


def _drain(url: str) -> list[dict[str, Any]]:
    """Every message on the queue, as SNS delivered it (the envelope, Message parsed)."""
    sqs = boto3.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        msgs = got.get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            env = json.loads(m["Body"])
            env["Body"] = json.loads(env["Message"])
            env["Size"] = len(m["Body"].encode())
            out.append(env)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _nid(m: dict[str, Any]) -> str:
    return str(m["MessageAttributes"]["notification_id"]["Value"])


def _metric_sum(name: str, dims: dict[str, str] | None = None) -> float:
    cw = boto3.client("cloudwatch")
    now = datetime.now(UTC)
    stat = {
        "Metric": {
            "Namespace": NAMESPACE,
            "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in (dims or {}).items()],
        },
        "Period": 3600,
        "Stat": "Sum",
    }
    r = cw.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": stat}],
        StartTime=now - timedelta(hours=2),
        EndTime=now + timedelta(hours=1),
    )
    return float(sum(r["MetricDataResults"][0]["Values"]))


def _by_detector_total(name: str) -> float:
    """The sum over every (detector, severity) series of ``name``. (moto, unlike CloudWatch,
    answers a query without dimensions with every series of the name, so the dimensionless total
    cannot be read on its own here.)"""
    cw = boto3.client("cloudwatch")
    series = cw.list_metrics(Namespace=NAMESPACE, MetricName=name)["Metrics"]
    return sum(
        _metric_sum(name, {d["Name"]: d["Value"] for d in m["Dimensions"]})
        for m in series
        if m.get("Dimensions")
    )


def _copy(template: Path, tmp_path: Path) -> str:
    dest = tmp_path / "lake"
    shutil.copytree(template, dest)
    return str(dest)


def _outbox(lake: str) -> dict[str, dict[str, Any]]:
    return store.load_outbox(Lake(lake))


# --- the whole pipeline --------------------------------------------------------------------------


@pytest.mark.slow
def test_run_end_to_end(logs: Path, sinks: Sinks, tmp_path: Path) -> None:
    # The lake is local (ingesting ~1,800 small files into moto's S3 takes a minute; the S3 lake
    # has its own tests); the forensic snapshots go to an S3 bucket with Object Lock.
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="evidence", ObjectLockEnabledForBucket=True)
    lake = str(tmp_path / "lake")
    # The simulated world's own configuration, with alerting added.
    config = tmp_path / "tenantwatch.toml"
    config.write_text(
        (logs / "tenantwatch.toml").read_text()
        + f'\n[alerting]\nsns_topic_arn = "{sinks.topic_arn}"\n'
        f'cloudwatch_namespace = "{NAMESPACE}"\nsnapshot_uri = "s3://evidence/snapshots"\n'
    )
    sources = [str(logs / f) for f in ("AWSLogs", "apigateway", "authorizer")]
    args = ["--config", str(config), "run", *sources, "--lake", lake, "--json"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)["alert"]
    assert summary["notifications"]["sent"] == summary["notifications_queued"] > 0

    everything, pager = _drain(sinks.everything), _drain(sinks.pager)
    # Once each: every notification sent arrived exactly once on the unfiltered queue.
    counts = Counter(_nid(m) for m in everything)
    assert set(counts.values()) == {1} and len(counts) == summary["notifications"]["sent"]
    # The filter policy: the pager queue has exactly the critical ones.
    sev = {_nid(m): m["MessageAttributes"]["severity"]["Value"] for m in everything}
    assert sorted(_nid(m) for m in pager) == sorted(n for n, s in sev.items() if s in PAGED)
    assert pager and set(sev.values()) - set(PAGED)  # ... and there were others to filter out
    for m in everything:
        assert len(m["Subject"]) < 100 and m["Subject"].isascii() and "\n" not in m["Subject"]
        assert m["Size"] < 256 * 1024
        assert m["Body"]["class_uid"] == 2004  # the sqs protocol gets the OCSF body

    # The expected incidents: every labelled attack of high or critical severity arrived, once:
    # whichever detectors saw it, they are signals of one incident.
    labels = json.loads((logs / "labels.json").read_text())
    for label in labels:
        if label["kind"] != "attack" or label["expected_severity"] not in EXPECTED:
            continue
        ids = set(label["event_ids"])
        hits = [
            m
            for m in everything
            if label["expected_detector"] in m["Body"]["finding_info"]["types"]
            and ids & {e["uid"] for e in m["Body"]["finding_info"]["related_events"]}
        ]
        assert len(hits) == 1, f"{len(hits)} notifications for {label['id']}"
    # The break-glass access under an open ticket is low: recorded, not sent.
    assert all("SUP-4821" not in m["Message"] for m in everything)

    # Snapshots: on S3 under Object Lock, and `snapshot verify` passes for each.
    incidents = store.load_incidents(Lake(lake))
    assert incidents and all(i.snapshot_uri for i in incidents)
    for inc in incidents:
        assert inc.snapshot_uri and inc.snapshot_uri.startswith("s3://evidence/snapshots/")
        ok = CliRunner().invoke(
            cli, ["snapshot", "verify", inc.snapshot_uri, "--sha256", str(inc.snapshot_sha256)]
        )
        assert ok.exit_code == 0, ok.output
    key = incidents[0].snapshot_uri.removeprefix("s3://evidence/")
    assert s3.head_object(Bucket="evidence", Key=key)["ObjectLockMode"] == "GOVERNANCE"

    # Metrics, readable with GetMetricData; never a tenant dimension.
    assert _by_detector_total("Findings") == json.loads(first.output)["detect"]["findings"]
    assert _metric_sum("IncidentsNew", {"detector": "cross_tenant_access", "severity": "critical"})
    assert _metric_sum("RecordsRead") > 0
    names = boto3.client("cloudwatch").list_metrics(Namespace=NAMESPACE)["Metrics"]
    dims = {(d["Name"], d["Value"]) for m in names for d in m.get("Dimensions", [])}
    assert {n for n, _ in dims} <= {"detector", "severity", "principal"}
    # The failing log delivery is the pipeline's health, under the service's own name.
    assert {v for n, v in dims if n == "principal"} == {"delivery.logs.amazonaws.com"}
    assert (
        _metric_sum("ServicePrincipalDenials", {"principal": "delivery.logs.amazonaws.com"}) > 1000
    )

    # A second run publishes nothing new.
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["alert"]["notifications"]["sent"] == 0
    assert _drain(sinks.everything) == []


# --- faults --------------------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def _hook(service: str, event: str, handler: Any) -> Any:
    # SNS publishes through the client that never retries by itself (aws.publisher).
    client = aws.publisher(service) if service == "sns" else aws.client(service)
    client.meta.events.register(event, handler)
    return lambda: client.meta.events.unregister(event, handler)


def test_sns_throttling_is_retried_within_the_run(
    findings_lake: Path, sinks: Sinks, tmp_path: Path, fast_retries: None
) -> None:
    from botocore.awsrequest import AWSResponse

    hits = {"n": 0}

    def throttle(request: Any, **_: Any) -> AWSResponse | None:
        if hits["n"] < 3:
            hits["n"] += 1
            body = (
                b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                b"<Message>Rate exceeded</Message></Error><RequestId>x</RequestId></ErrorResponse>"
            )
            return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, _Raw(body))
        return None

    undo = _hook("sns", "before-send.sns", throttle)
    try:
        result = run_alert(_copy(findings_lake, tmp_path), _cfg(sinks))
    finally:
        undo()
    assert hits["n"] == 3
    n = result.summary["notifications"]
    assert n["sent"] == result.summary["notifications_queued"] > 0 and n["failed"] == 0
    assert len(_drain(sinks.everything)) == n["sent"]


def test_sns_down_for_a_whole_run_then_recovered(
    findings_lake: Path, sinks: Sinks, tmp_path: Path, fast_retries: None
) -> None:
    from botocore.exceptions import EndpointConnectionError

    def down(request: Any, **_: Any) -> None:
        raise EndpointConnectionError(endpoint_url=request.url)

    lake = _copy(findings_lake, tmp_path)
    undo = _hook("sns", "before-send.sns", down)
    try:
        first = run_alert(lake, _cfg(sinks))
    finally:
        undo()
    queued = first.summary["notifications_queued"]
    assert queued > 0 and first.summary["notifications"]["failed"] == queued
    assert first.summary["notifications"]["sent"] == 0
    assert {r["state"] for r in _outbox(lake).values()} == {"failed"}
    assert _drain(sinks.everything) == []

    second = run_alert(lake, _cfg(sinks))  # SNS is back: the failed ones go out, once
    assert second.summary["notifications"]["sent"] == queued
    assert second.summary["incidents_new"] == 0  # nothing regrouped, nothing re-rendered
    got = Counter(_nid(m) for m in _drain(sinks.everything))
    assert len(got) == queued and set(got.values()) == {1}
    assert run_alert(lake, _cfg(sinks)).summary["notifications"]["sent"] == 0


class Killed(BaseException):
    """Stands for the process dying (SIGKILL, Lambda timeout): nothing catches it."""


@pytest.mark.parametrize("when", ["after-call", "before-send"])
def test_killed_half_way_never_sends_twice(
    findings_lake: Path, sinks: Sinks, tmp_path: Path, when: str
) -> None:
    calls = {"n": 0}

    def die(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # the first publish call: SNS got it ("after-call") or not
            raise Killed

    lake = _copy(findings_lake, tmp_path)
    undo = _hook("sns", f"{when}.sns", die)
    try:
        with pytest.raises(Killed):
            run_alert(lake, _cfg(sinks))
    finally:
        undo()
    publishing = [n for n, r in _outbox(lake).items() if r["state"] == "publishing"]
    assert publishing  # the intent was recorded before the call

    rerun = run_alert(lake, _cfg(sinks))
    assert sorted(rerun.summary["in_doubt_ids"]) == sorted(publishing)
    states = {n: r["state"] for n, r in _outbox(lake).items()}
    assert all(states[n] == "in_doubt" for n in publishing)
    assert all(s in ("sent", "in_doubt") for s in states.values())
    got = Counter(_nid(m) for m in _drain(sinks.everything))
    assert set(got.values()) == {1}  # never twice
    in_doubt_arrived = set(publishing) & set(got)
    assert in_doubt_arrived == (set(publishing) if when == "after-call" else set())

    # Nothing is sent again by later runs; an engineer can resend what they checked is missing.
    assert run_alert(lake, _cfg(sinks)).summary["notifications"]["sent"] == 0
    if when == "before-send":
        resent = run_alert(lake, _cfg(sinks), resend=publishing)
        assert resent.summary["notifications"]["sent"] == len(publishing)
        assert Counter(_nid(m) for m in _drain(sinks.everything)) == dict.fromkeys(publishing, 1)
    assert _drain(sinks.everything) == []


def test_cloudwatch_failing_loses_nothing_and_sends_nothing_twice(
    findings_lake: Path, sinks: Sinks, tmp_path: Path, fast_retries: None
) -> None:
    from botocore.exceptions import EndpointConnectionError

    def down(request: Any, **_: Any) -> None:
        raise EndpointConnectionError(endpoint_url=request.url)

    lake = _copy(findings_lake, tmp_path)
    undo = _hook("cloudwatch", "before-send.cloudwatch", down)
    try:
        first = run_alert(lake, _cfg(sinks))
    finally:
        undo()
    assert first.summary["metrics"]["error"] and first.summary["metrics"]["spooled"] > 0
    assert first.summary["notifications"]["sent"] > 0  # notifications do not depend on metrics
    findings = first.summary["findings_new"]
    assert _by_detector_total("Findings") == 0

    second = run_alert(lake, _cfg(sinks))
    assert second.summary["metrics"]["error"] is None
    assert _by_detector_total("Findings") == findings  # the spooled points arrived, once
    run_alert(lake, _cfg(sinks))
    assert _by_detector_total("Findings") == findings
    assert _metric_sum("NotificationsSent") == first.summary["notifications"]["sent"]
