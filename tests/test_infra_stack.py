"""infra/: the SAM template deployed into a moto server, where the handlers run against the
stack's own buckets, topic and parameter.

moto's CloudFormation creates the buckets, topics, KMS key, queue, SSM parameter, IAM roles and
policy, log groups, the three functions, the EventBridge rule and the functions' permissions. It
has no implementation for the types in ``NOT_IN_MOTO`` (it skips them with a warning), and of an
S3 bucket's properties it applies only encryption and tags (no versioning, Object Lock, public
access block or lifecycle). Those are checked by cfn-lint and by reading the template
(``test_infra``), never faked here.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests import awsstack
from tests import logfactory as lf
from tests.awsstack import INSIGHT_RULES, drain, scheduler_event, subscribe
from tests.fakes import FakeContext, object_created
from tests.pooled import pooled_text

NOT_IN_MOTO = {
    "AWS::CloudWatch::Alarm",
    "AWS::Glue::Database",
    "AWS::Glue::Table",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Logs::SubscriptionFilter",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::Scheduler::Schedule",
    "AWS::CloudWatch::InsightRule",
    "AWS::Glue::Job",
}
# Types of resources that exist only with a parameter given (the access log group, the Glue
# job's artifacts).
CONDITIONAL = {"AWS::Logs::SubscriptionFilter", "AWS::CloudWatch::InsightRule", "AWS::Glue::Job"}
TRAIL = "org-trail"


# --- the stack in moto -------------------------------------------------------------------------


def _deploy(monkeypatch: pytest.MonkeyPatch, parameters: dict[str, str]) -> dict[str, Any]:
    """The expanded template created as a stack with ``parameters``, and the handler
    environment it configures, set."""
    from aws_lambda_powertools.utilities import parameters as ssm_parameters

    from pipeline import aws as alert_aws

    ssm_parameters.clear_caches()
    alert_aws.reset()
    # The first run starts 3 hours back (default: a day): fewer empty windows.
    st = awsstack.deploy(TRAIL, {"BackfillHours": "3", **parameters})
    assert st.status == "CREATE_COMPLETE"
    template = st.template
    wanted = {k: v["Type"] for k, v in template["Resources"].items() if "Condition" not in v}
    missing = {k for k, t in wanted.items() if k not in st.created}
    # Exactly the types moto cannot create are missing: everything else is real. (The
    # subscription filters and Contributor Insights rules are conditional, never among the
    # wanted.)
    assert {wanted[k] for k in missing} == NOT_IN_MOTO - CONDITIONAL
    outputs, env = st.outputs, st.env
    for key in [k for k in os.environ if k.startswith(("TENANTWATCH_", "POWERTOOLS_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {"outputs": outputs, "env": env, "template": template, "created": st.created}


@pytest.fixture
def stack(aws: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return _deploy(monkeypatch, {})


def test_a_stack_with_an_access_log_group_deploys_with_its_contributor_insights_rules(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = _deploy(monkeypatch, {"AccessLogGroupName": "/tw/api-access"})
    resources = stack["template"]["Resources"]
    deployed = {k for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::InsightRule"}
    assert deployed == set(INSIGHT_RULES)
    # The condition held: the log group's other resources were created beside them.
    assert "AccessLogsPermission" in stack["created"]
    assert all(resources[k]["Condition"] == "HasAccessLogGroup" for k in deployed)
    # moto's CloudFormation creates no Contributor Insights rule: what CloudWatch is given is
    # each rule's body, checked above with the same parameters.


def test_a_stack_with_security_hub_and_a_bus_configures_both_channels(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.alert.run import channel_names
    from pipeline.config import load_config

    st = _deploy(monkeypatch, {"SecurityHubFindings": "true", "EventBusName": "security"})
    assert {"SecurityHubPolicy", "EventBusPolicy"} <= st["created"]
    env = st["env"]
    assert env["TENANTWATCH_ALERTING_SECURITYHUB"] == "true"
    assert env["TENANTWATCH_ALERTING_EVENTBRIDGE_BUS"] == "security"
    assert env["TENANTWATCH_ALERTING_EVENTBRIDGE_SOURCE"] == "tenantwatch"
    cfg = load_config(None, environ=env)
    assert channel_names(cfg.alerting) == ["sns", "securityhub", "eventbridge"]


def test_a_stack_with_the_glue_job_gives_its_role_and_the_hand_off_to_the_function(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto creates the role and the grant, not the job (``create_glue_job`` makes it as
    CloudFormation would, tests/test_glue_job.py runs the hand-off against it); the scheduled
    function is told the bound and the attempts, and reads them."""
    from pipeline import handler

    st = _deploy(monkeypatch, {"GlueArtifactsBucket": "tw-artifacts", "SparkHandoffBytes": "512"})
    assert {"GlueJobRole", "HandoffPolicy"} <= st["created"]
    glue_only = {
        k for k, r in st["template"]["Resources"].items() if r.get("Condition") == "HasGlueJob"
    }
    assert glue_only - st["created"] == {"GlueJob", "WindowsFailedAlarm"}  # types moto lacks
    env = st["env"]
    assert (env["TENANTWATCH_RUN_SPARK_HANDOFF_BYTES"], env["TENANTWATCH_RUN_SPARK_ATTEMPTS"]) == (
        "512",
        "3",
    )
    (role_name,) = [
        r["PhysicalResourceId"]
        for r in boto3.client("cloudformation").list_stack_resources(StackName="tw")[
            "StackResourceSummaries"
        ]
        if r.get("LogicalResourceId") == "GlueJobRole"
    ]
    role = boto3.client("iam").get_role_policy(RoleName=role_name, PolicyName="tenantwatch-glue")
    assert "sns:Publish" in json.dumps(role["PolicyDocument"])
    # moto leaves out the Ref to the job it skipped: the name CloudFormation gives it.
    monkeypatch.setenv("TENANTWATCH_RUN_SPARK_JOB", "tw-detect")
    _, settings = handler.load(os.environ)
    assert (settings.spark_handoff_bytes, settings.spark_job, settings.spark_attempts) == (
        512,
        "tw-detect",
        3,
    )


def test_the_stack_s_containment_table_takes_entries_its_authorizer_obeys(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table moto created from the template has the key pipeline.containment writes; the
    functions are told its name; the reference authorizer, run with the environment the stack
    gave it, denies what an entry suspends."""
    from pipeline.containment import Entry, Subject, Table
    from tests.fakes import authorizer_request, load_authorizer

    name = stack["outputs"]["ContainmentTableName"]
    assert stack["env"]["TENANTWATCH_CONTAINMENT_TABLE"] == name
    desc = boto3.client("dynamodb").describe_table(TableName=name)["Table"]
    assert {k["KeyType"]: k["AttributeName"] for k in desc["KeySchema"]} == {
        "HASH": "subject",
        "RANGE": "containment_id",
    }
    fn = boto3.client("lambda").get_function(
        FunctionName=stack["outputs"]["ReferenceAuthorizerArn"]
    )["Configuration"]
    assert (fn["Handler"], fn["Runtime"], fn["PackageType"]) == ("app.handler", "python3.12", "Zip")
    env = fn["Environment"]["Variables"]
    assert (env["TENANTWATCH_CONTAINMENT_TABLE"], env["TENANTWATCH_AUTHORIZER_FAIL_MODE"]) == (
        name,
        "allow",
    )
    now = datetime.now(UTC)
    Table(name).put(
        Entry("c-1", Subject("tenant", "t0001"), "suspend", now + timedelta(hours=1), "r", "i",
              "me", now)
    )  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    app = load_authorizer()
    app.set_verifier(lambda token: {"sub": "usr-alice", "tenant_id": "t0002"})
    out = app.handler(authorizer_request(path="/tenants/t0001/invoices"), FakeContext())
    assert out["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    out = app.handler(authorizer_request(path="/tenants/t0002/invoices"), FakeContext())
    assert out["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def _configure(stack: dict[str, Any]) -> None:
    """What a deployer does after the first deploy: put the SaaS's tenancy into the stack's
    configuration parameter (the one the stack creates is neutral). The trail files of these
    tests are pooled-shaped."""
    from aws_lambda_powertools.utilities import parameters

    name = stack["outputs"]["ConfigParameterName"]
    boto3.client("ssm").put_parameter(Name=name, Value=pooled_text(), Type="String", Overwrite=True)
    parameters.clear_caches()


def _put_trail(base: datetime, n: int) -> list[str]:
    """``n`` CloudTrail files: in each, a session of tenant t0001 reads another tenant's data
    from an address of its own."""
    s3 = boto3.client("s3")
    keys = []
    for i in range(n):
        at = base + timedelta(minutes=5 * i)
        key_id = f"ASIAEXAMPLE{i:07d}"
        records = [
            lf.assume_role(tenant="t0001", session=f"u{i}", new_key_id=key_id, time=_z(at)),
            lf.ct(
                time=_z(at + timedelta(minutes=1)),
                session=f"u{i}",
                key_id=key_id,
                key=f"tenants/t000{i + 2}/invoices/9.pdf",
                sourceIPAddress=f"198.51.100.{10 + i}",  # two actors, two stories
            ),
        ]
        key = (
            f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1/{at:%Y/%m/%d}/"
            f"{lf.ACCOUNT}_CloudTrail_us-east-1_{at:%Y%m%dT%H%M}Z_{i:04d}.json.gz"
        )
        body = gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)
        s3.put_object(Bucket=TRAIL, Key=key, Body=body)
        keys.append(key)
    return keys


def _z(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _recent_hour() -> datetime:
    # Recent enough for the default backfill (a day), whenever the test runs.
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


pytestmark = pytest.mark.e2e


@pytest.mark.slow
def test_scheduled_handler_against_the_stack_publishes_once(stack: dict[str, Any]) -> None:
    from pipeline import handler

    out = stack["outputs"]
    _configure(stack)
    queue = subscribe(out["IncidentTopicArn"])
    base = _recent_hour()
    _put_trail(base + timedelta(minutes=5), 2)
    tick = base + timedelta(hours=1, minutes=20)
    event = scheduler_event(stack["template"], tick, "exec-1")

    first = handler.scheduled(event, FakeContext())
    assert first["status"] == "done" and first["ingest"]["ingested"] == 4
    messages = drain(queue)
    assert len(messages) == 2  # one incident per session reading another tenant's data
    assert all("cross" in m["Subject"].lower() for m in messages)
    assert {m["MessageAttributes"]["severity"]["Value"] for m in messages} == {"critical"}
    # The lake, the snapshots and the watermark are in the stack's buckets.
    lake_keys = _keys(out["LakeBucketName"])
    assert any(k.startswith("lake/events/source=cloudtrail/") for k in lake_keys)
    assert "lake/_state/watermark/scheduled.parquet" in lake_keys
    assert "lake/_state/lease.json" not in lake_keys  # released
    assert any(k.startswith("snapshots/") for k in _keys(out["SnapshotBucketName"]))

    again = handler.scheduled(event, FakeContext())  # the same tick, delivered twice
    assert again["status"] == "nothing_to_do" and drain(queue) == []
    later = handler.scheduled(
        scheduler_event(stack["template"], tick + timedelta(minutes=15), "exec-2"),
        FakeContext(),
    )
    assert later["ingest"]["files_skipped"] == 2 and drain(queue) == []


@pytest.mark.slow
def test_s3_object_handler_against_the_stack_publishes_once(stack: dict[str, Any]) -> None:
    from pipeline import handler

    out = stack["outputs"]
    _configure(stack)
    queue = subscribe(out["IncidentTopicArn"])
    base = _recent_hour()
    keys = _put_trail(base + timedelta(minutes=5), 2)
    events = [object_created(TRAIL, k, base + timedelta(minutes=12)) for k in keys]

    reports = [handler.on_s3_object(e, FakeContext()) for e in events]
    assert [r["ingest"]["ingested"] for r in reports] == [2, 2]
    assert sum(r["alert"]["notifications_sent"] for r in reports) == 2
    messages = drain(queue)
    assert len(messages) == 2 and all("cross" in m["Subject"].lower() for m in messages)

    again = [handler.on_s3_object(e, FakeContext()) for e in events]  # S3 delivers twice
    assert [r["ingest"]["files_skipped"] for r in again] == [1, 1] and drain(queue) == []
    # The scheduled run skips what the object runs ingested and sends nothing new.
    tick = base + timedelta(hours=1, minutes=20)
    sched = handler.scheduled(scheduler_event(stack["template"], tick, "e-3"), FakeContext())
    assert sched["ingest"]["files_skipped"] == 2 and sched["ingest"]["records_in"] == 0
    assert drain(queue) == []


def _reads(base: datetime, part: int, reads: int) -> str:
    """One CloudTrail file of session ``sneak`` (tenant t0001) reading ``reads`` of tenant
    t0002's invoices, a minute apart from ``base``."""
    records = [
        lf.assume_role(tenant="t0001", session="sneak", new_key_id="ASIASNEAK", time=_z(base))
    ]
    records += [
        lf.ct(
            time=_z(base + timedelta(minutes=i + 1)),
            session="sneak",
            key_id="ASIASNEAK",
            key=f"tenants/t0002/invoices/{part}-{i}.pdf",
        )
        for i in range(reads)
    ]
    key = (
        f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1/{base:%Y/%m/%d}/"
        f"{lf.ACCOUNT}_CloudTrail_us-east-1_{base:%Y%m%dT%H%M}Z_sneak{part}.json.gz"
    )
    body = gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)
    boto3.client("s3").put_object(Bucket=TRAIL, Key=key, Body=body)
    return key


@pytest.mark.slow
def test_the_fast_path_and_the_schedule_interleaved_page_one_story_once(
    stack: dict[str, Any],
) -> None:
    """Three objects of one actor's cross-tenant reads in one hour, each through the S3-object
    function (the fast path), with schedule ticks between them and after the hour: one page,
    from the first object; the incident it opened grows with every later object and the
    schedule's view of the complete hour, and nothing pages it again."""
    from pipeline import handler
    from pipeline.alert import store
    from pipeline.alert.run import PAGES
    from pipeline.lake import Lake

    out = stack["outputs"]
    _configure(stack)
    queue = subscribe(out["IncidentTopicArn"])
    base = _recent_hour()

    def pages() -> list[dict[str, Any]]:
        got = drain(queue)
        return [m for m in got if m["MessageAttributes"]["kind"]["Value"] in PAGES]

    def sched(minutes: int) -> dict[str, Any]:
        at = base + timedelta(minutes=minutes)
        event = scheduler_event(stack["template"], at, f"tick-{minutes}")
        return handler.scheduled(event, FakeContext())

    def deliver(part: int, minute: int, reads: int) -> dict[str, Any]:
        key = _reads(base + timedelta(minutes=minute), part, reads)
        at = base + timedelta(minutes=minute + 6)
        return handler.on_s3_object(object_created(TRAIL, key, at), FakeContext())

    first = deliver(0, 5, 2)
    assert first["alert"]["notifications_sent"] >= 1
    (page,) = pages()
    assert "cross" in page["Subject"].lower()
    assert sched(20)["status"] in ("done", "nothing_to_do") and pages() == []
    deliver(1, 22, 3)
    assert pages() == []
    assert sched(35)["status"] in ("done", "nothing_to_do") and pages() == []
    deliver(2, 40, 4)
    assert pages() == []
    final = sched(80)  # the hour's own window, complete, a lag after its end
    assert final["windows"] and pages() == []
    (inc,) = [
        i
        for i in store.load_incidents(Lake(out["LakeRoot"]))
        if i.detector == "cross_tenant_access"
    ]
    assert inc.event_count == 2 + 3 + 4 and inc.finding_count == 1
    assert inc.last_seen == base + timedelta(minutes=44)


def test_an_object_outside_the_configured_sources_is_not_read(stack: dict[str, Any]) -> None:
    from pipeline import handler

    event = object_created("someone-elses-bucket", "AWSLogs/x.json.gz", _recent_hour())
    report = handler.on_s3_object(event, FakeContext())
    assert report["status"] == "nothing_to_do" and report["ingest"] == {}


def test_the_config_parameter_is_read_through_powertools(stack: dict[str, Any]) -> None:
    from aws_lambda_powertools.utilities import parameters

    from pipeline import handler
    from pipeline.errors import ConfigError

    name = stack["outputs"]["ConfigParameterName"]
    cfg, settings = handler.load(os.environ)
    assert cfg.lake.root == stack["outputs"]["LakeRoot"]
    assert cfg.alerting.sns_topic_arn == stack["outputs"]["IncidentTopicArn"]
    inbox = f"s3://{stack['outputs']['LakeBucketName']}/logs-inbox/"
    assert settings.sources == (f"s3://{TRAIL}/AWSLogs/", inbox)
    assert stack["outputs"]["LogsInbox"] == inbox
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=name, Value="[lake]\nbogus = 1\n", Type="String", Overwrite=True)
    handler.load(os.environ)  # cached: an edit applies within CONFIG_MAX_AGE_S, not at once
    parameters.clear_caches()
    with pytest.raises(ConfigError, match=f"^ssm:{name}: lake.bogus: unknown key$"):
        handler.load(os.environ)


def _keys(bucket: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


# --- alarms read metrics that exist ------------------------------------------------------------

# Metrics of the scheduled handler itself (a run of the schedule, its watermark), which a CLI
# run does not have; every other alarm reads a metric both paths send.
LAMBDA_ONLY = {"RunCompleted", "WatermarkLagMinutes", "WindowsFailed"}
Metric = tuple[str, str, frozenset[tuple[str, str]]]  # namespace, name, dimensions


def _alarm_metrics(template: dict[str, Any]) -> dict[str, list[Metric]]:
    """alarm -> the metrics it reads (its own, or each MetricStat of its math)."""

    def one(ns: str, name: str, dims: list[dict[str, Any]]) -> Metric:
        assert all(isinstance(d["Value"], str) for d in dims), f"{name}: not a literal dimension"
        return ns, name, frozenset((d["Name"], d["Value"]) for d in dims)

    out: dict[str, list[Metric]] = {}
    for name, r in template["Resources"].items():
        if r["Type"] != "AWS::CloudWatch::Alarm":
            continue
        p = r["Properties"]
        if p.get("Namespace", "").startswith("AWS/"):
            continue  # AWS's own metrics (Lambda errors, the queue's depth)
        if "MetricName" in p:
            out[name] = [one(p["Namespace"], p["MetricName"], p.get("Dimensions", []))]
        else:
            stats = [m["MetricStat"]["Metric"] for m in p["Metrics"] if "MetricStat" in m]
            out[name] = [
                one(m["Namespace"], m["MetricName"], m.get("Dimensions", [])) for m in stats
            ]
    return out


def _emf(stdout: str) -> set[Metric]:
    """The metrics in the EMF lines among a Lambda's log lines."""
    out = set()
    for line in stdout.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict) or "_aws" not in doc:
            continue
        for block in doc["_aws"]["CloudWatchMetrics"]:
            for dims in block["Dimensions"]:
                key = frozenset((d, str(doc[d])) for d in dims)
                out |= {(block["Namespace"], m["Name"], key) for m in block["Metrics"]}
    return out


@pytest.mark.slow
def test_every_alarm_reads_a_metric_that_lambda_and_the_cli_emit(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import importlib

    from click.testing import CliRunner

    from pipeline import handler
    from pipeline.cli import cli

    # A cold start: Lambda imports the handler with the stack's environment already set
    # (Powertools reads the service name and namespace at import).
    importlib.reload(handler)
    alarms = _alarm_metrics(stack["template"])
    watched = {name for metrics in alarms.values() for _, name, _ in metrics}
    assert {
        "RecordsRead",
        "RecordsQuarantined",
        "EventLagSeconds",
        "NotificationsInDoubt",
        "NotificationsFailed",
        "DetectorFailures",
        "ServicePrincipalDenials",
    } <= watched
    base = _recent_hour()
    _put_trail(base + timedelta(minutes=5), 2)

    # Lambda: the scheduled function, as deployed; its EMF lines are its metrics.
    capsys.readouterr()
    tick = base + timedelta(hours=1, minutes=20)
    report = handler.scheduled(scheduler_event(stack["template"], tick, "e-1"), FakeContext())
    assert report["status"] == "done" and len(report["windows"]) >= 2  # a catch-up run
    lines = capsys.readouterr().out
    from_lambda = _emf(lines)
    # The health is sent once per run, not once per window.
    assert sum('"RecordsRead"' in x for x in lines.splitlines()) == 1

    # The CLI: `tenantwatch run` with the stack's configuration (its environment), into a lake
    # of its own; PutMetricData to moto's CloudWatch.
    cw = boto3.client("cloudwatch")
    assert not cw.list_metrics(Namespace="tenantwatch")["Metrics"]  # Lambda sent none by API
    lake = str(tmp_path / "lake")
    result = CliRunner().invoke(cli, ["run", f"s3://{TRAIL}/AWSLogs/", "--lake", lake, "--json"])
    assert result.exit_code == 0, result.output
    from_cli = {
        (
            m["Namespace"],
            m["MetricName"],
            frozenset((d["Name"], d["Value"]) for d in m["Dimensions"]),
        )
        for m in cw.get_paginator("list_metrics").paginate().build_full_result()["Metrics"]
    }
    for alarm, metrics in alarms.items():
        for metric in metrics:
            assert metric in from_lambda, f"{alarm}: {metric} is never sent from Lambda"
            if metric[1] not in LAMBDA_ONLY:
                assert metric in from_cli, f"{alarm}: {metric} is never sent from the CLI"


# --- API logs through CloudWatch Logs subscriptions ----------------------------------------------


@pytest.mark.slow
def test_log_events_handler_against_the_stack_stores_ingests_and_publishes_once(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack deployed with both log groups: the logs function may be invoked by CloudWatch
    Logs for exactly those groups (moto has no subscription filters), and a payload from the
    access-log group lands in the stack's inbox, is ingested, and pages once."""
    from pipeline import handler

    groups = {"AccessLogGroupName": "/tw/api-access", "AuthorizerLogGroupName": "/tw/authz"}
    stack = _deploy(monkeypatch, groups)
    out = stack["outputs"]
    assert {"AccessLogsPermission", "AuthorizerLogsPermission"} <= stack["created"]
    policy = json.loads(
        boto3.client("lambda").get_policy(FunctionName=out["LogsFunctionName"])["Policy"]
    )
    arns = sorted(
        s["Condition"]["ArnLike"]["AWS:SourceArn"]
        for s in policy["Statement"]
        if s["Principal"] == {"Service": "logs.amazonaws.com"}
    )
    assert arns == [
        f"arn:aws:logs:us-east-1:{awsstack.ACCOUNT}:log-group:/tw/api-access:*",
        f"arn:aws:logs:us-east-1:{awsstack.ACCOUNT}:log-group:/tw/authz:*",
    ]

    _configure(stack)
    queue = subscribe(out["IncidentTopicArn"])
    at = _recent_hour() + timedelta(minutes=5)
    when = at.strftime("%d/%b/%Y:%H:%M:%S +0000")
    lines = [lf.access_log(tenant_path="t0002", claim="t0001", when=when), lf.access_log(when=when)]
    event = lf.cwl_subscription(
        lines, log_group="/tw/api-access", timestamp_ms=int(at.timestamp() * 1000)
    )
    report = handler.on_log_events(event, FakeContext())
    assert report["ingest"]["ingested"] == 2 and report["alert"]["notifications_sent"] == 1
    (stored,) = [k for k in _keys(out["LakeBucketName"]) if k.startswith("logs-inbox/")]
    assert stored.startswith(f"logs-inbox/group=tw_api-access/{at:%Y/%m/%d}/")
    messages = drain(queue)
    assert len(messages) == 1 and "cross" in messages[0]["Subject"].lower()

    again = handler.on_log_events(event, FakeContext())  # delivered twice
    assert again["ingest"]["files_skipped"] == 1 and drain(queue) == []
    # The scheduled run lists the inbox and finds nothing new there.
    tick = at + timedelta(hours=1, minutes=15)
    sched = handler.scheduled(scheduler_event(stack["template"], tick, "e-1"), FakeContext())
    assert sched["ingest"]["files_skipped"] == 1 and sched["ingest"]["records_in"] == 0
    assert drain(queue) == []
