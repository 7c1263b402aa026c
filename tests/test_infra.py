"""infra/: the SAM template lints, matches the lake, and deploys into a moto server, where the
handlers run against the stack's own buckets, topic and parameter.

moto's CloudFormation creates the buckets, topics, KMS key, queue, SSM parameter, IAM roles and
policy, log groups, the three functions, the EventBridge rule and the functions' permissions. It
has no implementation for the types in ``NOT_IN_MOTO`` (it skips them with a warning), and of an
S3 bucket's properties it applies only encryption and tags (no versioning, Object Lock, public
access block or lifecycle). Those are checked by cfn-lint and by reading the template, never
faked here.
"""

from __future__ import annotations

import gzip
import json
import os
import posixpath
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline import athena, lake, schema
from pipeline.lake import event_day
from tests import awsstack
from tests import logfactory as lf
from tests.awsstack import drain, scheduler_event, subscribe
from tests.conftest import REPO
from tests.fakes import FakeContext, object_created
from tests.pooled import pooled_text

TEMPLATE = REPO / "infra" / "template.yaml"
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
INSIGHT_RULES = {
    "AuthorizationFailuresByTenantRule": ("tenant", "failures"),
    "AuthorizationFailuresByUserRule": ("principal", "failures"),
    "CacheMissesByTenantRule": ("tenant", "misses"),
    "CacheMissesByUserRule": ("principal", "misses"),
}
TRAIL = "org-trail"


def test_cfn_lint_passes() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    out = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_glue_table_is_the_events_schema_over_the_lake_layout() -> None:
    table = awsstack.template()["Resources"]["EventsTable"]["Properties"]["TableInput"]
    keys = [k["Name"] for k in table["PartitionKeys"]]
    assert keys == ["source", "date"]
    expected = [
        {"Name": f.name, "Type": athena.hive_type(f.type)}
        for f in schema.EVENTS
        if f.name not in keys
    ]
    assert table["StorageDescriptor"]["Columns"] == expected
    assert expected == athena.glue_columns(athena.TABLES["events"])
    params = table["Parameters"]
    assert params["projection.source.values"].split(",") == list(schema.SOURCES)
    assert not [k for k in params if k.startswith("projection.hour")]
    # A day's folder: its hours' folders and a compacted day's files are below it.
    location = params["storage.location.template"]["Fn::Sub"]
    assert location == "s3://${LakeBucket}/lake/" + event_day("${!source}", "${!date}") + "/"
    assert table["StorageDescriptor"]["Location"]["Fn::Sub"] == "s3://${LakeBucket}/lake/events/"


def test_a_glue_table_per_area_an_analyst_queries_each_its_schema_over_its_folder() -> None:
    """Every table of pipeline/athena.py is in the template, once, with its schema's columns
    and types (a column added to a schema fails here until the template has it), over its
    folder of the lake, its date partitions projected."""
    from pipeline.ingest.run import INGESTED
    from pipeline.ingest.sessions import STATE as SESSIONS

    resources = awsstack.template()["Resources"]
    tables = {
        r["Properties"]["TableInput"]["Name"]: r["Properties"]["TableInput"]
        for r in resources.values()
        if r["Type"] == "AWS::Glue::Table"
    }
    assert sorted(tables) == sorted(athena.TABLES)
    # The areas and their schemas, named here apart from pipeline/athena.py.
    pinned = {
        "events": schema.EVENTS,
        "findings": schema.FINDINGS,
        "incidents": schema.INCIDENTS,
        "outbox": schema.OUTBOX,
        "verdicts": schema.VERDICTS,
        "containment": schema.CONTAINMENT,
        "quarantine": schema.QUARANTINE,
        "ingested": INGESTED,
        "sessions": SESSIONS,
    }
    folders = {
        "events": lake.EVENTS,
        "findings": lake.FINDINGS,
        "incidents": lake.INCIDENT_STATE,
        "outbox": lake.OUTBOX,
        "verdicts": lake.VERDICTS,
        "containment": lake.CONTAINMENT,
        "quarantine": lake.QUARANTINE,
        "ingested": lake.STATE_INGESTED,
        "sessions": lake.STATE_SESSIONS,
    }
    assert sorted(pinned) == sorted(tables)
    hive = {
        "string": "string",
        "large_binary": "binary",
        "bool": "boolean",
        "int32": "int",
        "int64": "bigint",
        "double": "double",
        "timestamp[us, tz=UTC]": "timestamp",
        "list<item: string>": "array<string>",
        "list<item: int64>": "array<bigint>",
    }
    for name, table in tables.items():
        keys = [k["Name"] for k in table.get("PartitionKeys", [])]
        assert all(k["Type"] == "string" for k in table.get("PartitionKeys", []))
        expected = [
            {"Name": f.name, "Type": hive[str(f.type)]} for f in pinned[name] if f.name not in keys
        ]
        assert table["StorageDescriptor"]["Columns"] == expected, name
        assert athena.glue_columns(athena.TABLES[name]) == expected, name
        assert keys == list(athena.TABLES[name].partitions), name
        base = f"s3://${{LakeBucket}}/lake/{folders[name]}/"
        assert table["StorageDescriptor"]["Location"]["Fn::Sub"] == base, name
        params = table["Parameters"]
        assert params["classification"] == "parquet"
        if not keys:  # the quarantine's files lie in its folder
            assert name == "quarantine" and not [k for k in params if k.startswith("projection")]
            continue
        assert params["projection.enabled"] == "true", name
        assert (params["projection.date.type"], params["projection.date.format"]) == (
            "date",
            "yyyy-MM-dd",
        )
        template = params["storage.location.template"]["Fn::Sub"]
        parts = "/".join(f"{k}=${{!{k}}}" for k in keys)
        assert template == f"{base}{parts}/", name
    # The layout those templates project is the one the lake writes.
    assert lake.findings_file("D", "x").startswith(f"{folders['findings']}/date=D/")
    assert lake.incident_file("D", "x").startswith(f"{folders['incidents']}/date=D/")
    assert lake.outbox_file("D", "x").startswith(f"{folders['outbox']}/date=D/")
    assert lake.verdict_file("D", "x").startswith(f"{folders['verdicts']}/date=D/")
    assert lake.containment_file("D", "x").startswith(f"{folders['containment']}/date=D/")
    assert lake.ingested_file("date=D", "x").startswith(f"{folders['ingested']}/date=D/")
    assert lake.sessions_file("D", "x").startswith(f"{folders['sessions']}/date=D/")
    assert posixpath.dirname(lake.quarantine_file("x")) == folders["quarantine"]


def test_every_function_runs_a_handler_of_the_image_from_the_lambda_python_base() -> None:
    """What the template asks of the image; what the image holds is tests/test_image.py's (which
    builds it where Docker runs)."""
    text = (REPO / "infra" / "Dockerfile").read_text()
    bases = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert set(bases) == {"public.ecr.aws/lambda/python:3.12"}
    commands = {
        name: r["Properties"]["ImageConfig"]["Command"]
        for name, r in awsstack.template()["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function" and r["Properties"]["PackageType"] == "Image"
    }
    assert commands == {
        "ScheduledFunction": ["pipeline.handler.scheduled"],
        "ObjectFunction": ["pipeline.handler.on_s3_object"],
        "LogsFunction": ["pipeline.handler.on_log_events"],
    }
    from pipeline import handler

    assert callable(handler.scheduled) and callable(handler.on_s3_object)
    assert callable(handler.on_log_events)


def test_the_reference_authorizer_is_a_zip_of_its_folder_reading_the_table_only() -> None:
    """The authorizer is not in the image: a small zip (infra/authorizer/) that starts quickly,
    allowed to Query the containment table and nothing else of it; the functions of the image
    may write entries (automatic containment) and not read them."""
    from pipeline.containment import Entry, Subject

    t = awsstack.template()
    res = t["Resources"]
    fn = res["ReferenceAuthorizerFunction"]["Properties"]
    assert (fn["PackageType"], fn["Handler"], fn["Runtime"]) == ("Zip", "app.handler", "python3.12")
    code = REPO / "infra" / fn["CodeUri"]
    assert (code / "app.py").is_file() and "aws-lambda-powertools" in (
        code / "requirements.txt"
    ).read_text()
    env = fn["Environment"]["Variables"]
    assert env["TENANTWATCH_AUTHORIZER_FAIL_MODE"] == {"Ref": "ContainmentFailMode"}
    assert t["Parameters"]["ContainmentFailMode"]["Default"] == "allow"
    assert env["TENANTWATCH_AUTHORIZER_CACHE_SECONDS"] == {"Ref": "ContainmentCacheSeconds"}
    glob = t["Globals"]["Function"]
    assert glob["Environment"]["Variables"]["TENANTWATCH_CONTAINMENT_TABLE"] == {
        "Ref": "ContainmentTable"
    }
    # Invoked synchronously by API Gateway: no dead-letter queue (the others keep theirs).
    assert "DeadLetterQueue" not in glob and "DeadLetterQueue" not in fn
    for name in ("ScheduledFunction", "ObjectFunction", "LogsFunction"):
        assert res[name]["Properties"]["DeadLetterQueue"]["Type"] == "SQS"

    table = {"Fn::GetAtt": ["ContainmentTable", "Arn"]}

    def grants(role: str) -> list[str]:
        statements = res[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        return [
            a
            for st in statements
            if st["Resource"] == table
            for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
        ]

    assert grants("AuthorizerRole") == ["dynamodb:Query"]
    assert grants("FunctionRole") == ["dynamodb:PutItem"]
    assert fn["Role"] == {"Fn::GetAtt": ["AuthorizerRole", "Arn"]}
    # The table's key and TTL are what pipeline.containment writes.
    props = res["ContainmentTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    keys = {k["KeyType"]: k["AttributeName"] for k in props["KeySchema"]}
    assert keys == {"HASH": "subject", "RANGE": "containment_id"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    entry = Entry(
        "c-1", Subject("tenant", "t1"), "suspend", datetime.now(UTC), "r", "i", "me",
        datetime.now(UTC),
    )  # fmt: skip
    item = entry.item()
    assert item["subject"] == {"S": "tenant#t1"} and "N" in item["expires_at"]
    assert t["Outputs"]["ContainmentTableName"]["Value"] == {"Ref": "ContainmentTable"}


def test_the_logs_inbox_is_a_source_written_only_under_its_prefix_and_expired() -> None:
    """What moto does not apply: the lifecycle rule and the IAM policy's scope (cfn-lint checks
    the syntax, not these)."""
    resources = awsstack.template()["Resources"]
    env = awsstack.template()["Globals"]["Function"]["Environment"]["Variables"]
    inbox = "s3://${LakeBucket}/${LogsInboxPrefix}"
    assert env["TENANTWATCH_RUN_LOGS_INBOX"] == {"Fn::Sub": inbox}
    assert env["TENANTWATCH_RUN_SOURCES"]["Fn::Sub"].split(",")[1:] == [inbox]
    statements = resources["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    puts = [
        s["Resource"]
        for s in statements["Statement"]
        if "s3:PutObject" in s["Action"] and s["Sid"] not in ("Lake", "WriteSnapshotsOnce")
    ]
    assert puts == [{"Fn::Sub": "${LakeBucket.Arn}/${LogsInboxPrefix}*"}]
    rules = resources["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [r for r in rules if r.get("Prefix") == {"Ref": "LogsInboxPrefix"}]
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == {"Ref": "LogsInboxRetentionDays"}
    # The inbox lies outside the lake: the default prefix is not under lake/.
    default = awsstack.template()["Parameters"]["LogsInboxPrefix"]["Default"]
    assert not default.startswith("lake/")


def test_a_subscription_filter_and_its_permission_per_log_group_given() -> None:
    resources = awsstack.template()["Resources"]
    filters = {k: r for k, r in resources.items() if r["Type"] == "AWS::Logs::SubscriptionFilter"}
    assert set(filters) == {"AccessLogsSubscription", "AuthorizerLogsSubscription"}
    for name, f in filters.items():
        permission = resources[f["DependsOn"]]
        assert permission["Type"] == "AWS::Lambda::Permission"
        assert f["Condition"] == permission["Condition"], name  # none when the name is empty
        group = f["Properties"]["LogGroupName"]["Ref"]
        condition = awsstack.template()["Conditions"][f["Condition"]]
        assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": group}, ""]}]}
        assert permission["Properties"]["Principal"] == "logs.amazonaws.com"
        assert permission["Properties"]["SourceArn"]["Fn::Sub"].endswith(
            f":log-group:${{{group}}}:*"
        )
        assert f["Properties"]["DestinationArn"] == {"Fn::GetAtt": ["LogsFunction", "Arn"]}
        assert permission["Properties"]["FunctionName"] == f["Properties"]["DestinationArn"]


def test_security_hub_and_the_event_bus_are_granted_and_configured_only_when_chosen() -> None:
    t = awsstack.template()
    env = t["Globals"]["Function"]["Environment"]["Variables"]
    none = {"Ref": "AWS::NoValue"}
    assert env["TENANTWATCH_ALERTING_SECURITYHUB"] == {"Fn::If": ["HasSecurityHub", "true", none]}
    assert env["TENANTWATCH_ALERTING_EVENTBRIDGE_BUS"] == {
        "Fn::If": ["HasEventBus", {"Ref": "EventBusName"}, none]
    }
    assert t["Parameters"]["SecurityHubFindings"]["Default"] == "false"
    assert t["Parameters"]["EventBusName"]["Default"] == ""
    res = t["Resources"]
    grants = {
        "SecurityHubPolicy": ("HasSecurityHub", "securityhub:BatchImportFindings"),
        "EventBusPolicy": ("HasEventBus", "events:PutEvents"),
    }
    for name, (condition, action) in grants.items():
        policy = res[name]
        assert policy["Condition"] == condition
        assert policy["Properties"]["Roles"] == [{"Ref": "FunctionRole"}]
        # The Glue job alerts too: the same grant, when there is a job.
        glue = res[f"Glue{name}"]
        assert glue["Properties"]["Roles"] == [{"Ref": "GlueJobRole"}]
        assert glue["Properties"]["PolicyDocument"] == policy["Properties"]["PolicyDocument"]
        assert t["Conditions"][glue["Condition"]] == {
            "Fn::And": [{"Condition": "HasGlueJob"}, {"Condition": condition}]
        }
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Action"] == action and "*" not in json.dumps(statement["Resource"])
    # A bus given by name is granted in this account and region; an ARN as given.
    bus = res["EventBusPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Resource"]
    assert bus["Fn::If"][0] == "EventBusIsArn" and bus["Fn::If"][1] == {"Ref": "EventBusName"}
    assert bus["Fn::If"][2]["Fn::Sub"].endswith(":event-bus/${EventBusName}")
    product = res["SecurityHubPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert product["Resource"]["Fn::Sub"].endswith(":product/${AWS::AccountId}/default")


def _rule_body(resource: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """A rule's body as CloudFormation would write it, its ``${...}`` given ``values``."""
    text = resource["Properties"]["RuleBody"]["Fn::Sub"]
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text, text
    body: dict[str, Any] = json.loads(text)
    return body


def test_contributor_insights_rank_tenants_and_users_by_failures_and_cache_misses() -> None:
    from pipeline.config import AccessLogFields, claim_spellings

    t = awsstack.template()
    rules = {k: r for k, r in t["Resources"].items() if r["Type"] == "AWS::CloudWatch::InsightRule"}
    assert set(rules) == set(INSIGHT_RULES)
    params = t["Parameters"]
    # The field names default to what [sources.apigateway] reads by default.
    fields = AccessLogFields()
    defaults = {
        "AccessLogTenantField": claim_spellings("tenantId")[0],
        "AccessLogPrincipalField": fields.principal[0],
        "AccessLogStatusField": fields.status,
        "AccessLogAuthorizerLatencyField": "authorizerLatency",
    }
    assert {k: params[k]["Default"] for k in defaults} == defaults
    # ... and name fields of an access-log line as the standard JSON format writes it.
    line = lf.access_log()
    assert set(defaults.values()) <= set(line)
    values = {**defaults, "AccessLogGroupName": "/tw/api-access"}
    for name, (key, count) in INSIGHT_RULES.items():
        rule = rules[name]
        assert rule["Condition"] == "HasAccessLogGroup"  # none without a log group
        assert rule["Properties"]["RuleState"] == "ENABLED"
        body = _rule_body(rule, values)
        assert body["Schema"] == {"Name": "CloudWatchLogRule", "Version": 1}
        assert (body["LogGroupNames"], body["LogFormat"]) == (["/tw/api-access"], "JSON")
        assert body["AggregateOn"] == "Count"
        field = defaults["AccessLogTenantField" if key == "tenant" else "AccessLogPrincipalField"]
        assert body["Contribution"]["Keys"] == [f"$.{field}"]  # one key, never more
        filters = body["Contribution"]["Filters"]
        if count == "failures":
            assert filters == [{"Match": "$.status", "In": ["401", "403"]}]
        else:
            assert filters == [
                {"Match": "$.authorizerLatency", "IsPresent": True},
                {"Match": "$.authorizerLatency", "NotIn": ["-"]},
            ]


def _statements(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A role's (its one inline policy) or a policy's statements, by Sid."""
    props = resource["Properties"]
    doc = props["Policies"][0]["PolicyDocument"] if "Policies" in props else props["PolicyDocument"]
    return {st.get("Sid", ""): st for st in doc["Statement"]}


def test_the_glue_job_runs_the_package_on_glue_5_configured_as_the_functions() -> None:
    """What moto's CloudFormation does not create, read from the template: the job (Glue 5,
    the script that calls pipeline.glue_job, the wheel), its arguments (the job reads each;
    the configuration is the functions': every TENANTWATCH_ value of their environment, as the
    same expression), and nothing of it without its artifacts."""
    import tomllib

    from pipeline import glue_job
    from pipeline.runs.unattended import RunSettings

    t = awsstack.template()
    res, params = t["Resources"], t["Parameters"]
    job = res["GlueJob"]
    assert job["Type"] == "AWS::Glue::Job" and job["Condition"] == "HasGlueJob"
    assert t["Conditions"]["HasGlueJob"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "GlueArtifactsBucket"}, ""]}]
    }
    assert params["GlueArtifactsBucket"]["Default"] == ""  # no job unless asked for
    p = job["Properties"]
    assert (p["GlueVersion"], p["Command"]["Name"], p["Command"]["PythonVersion"]) == (
        "5.0",
        "glueetl",
        "3",
    )
    prefix = "s3://${GlueArtifactsBucket}/${GlueArtifactsPrefix}"
    assert p["Command"]["ScriptLocation"] == {"Fn::Sub": f"{prefix}tenantwatch_job.py"}
    script = (REPO / "infra" / "glue" / "tenantwatch_job.py").read_text()
    assert "from pipeline.glue_job import main" in script
    assert (p["WorkerType"], p["NumberOfWorkers"], p["Timeout"]) == (
        {"Ref": "GlueWorkerType"},
        {"Ref": "GlueWorkers"},
        {"Ref": "GlueTimeoutMinutes"},
    )
    assert p["MaxRetries"] == 0  # the scheduled run starts a failed window's run again itself
    assert p["Role"] == {"Fn::GetAtt": ["GlueJobRole", "Arn"]}
    args = p["DefaultArguments"]
    assert args["--additional-python-modules"] == {"Fn::Sub": f"{prefix}${{GlueWheelName}}"}
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert (
        params["GlueWheelName"]["Default"] == f"tenantwatch-{version}-cp311-cp311-linux_x86_64.whl"
    )
    assert args["--python-modules-installer-option"] == {
        "Fn::If": ["HasGlueInstallerOptions", {"Ref": "GlueInstallerOptions"}, NO_VALUE]
    }
    assert args["--sigma-pack"] == {"Fn::Sub": f"{prefix}rules/"}
    assert (args["--engine"], args["--config"]) == ("spark", {"Fn::Sub": "ssm:${ConfigParameter}"})
    env = t["Globals"]["Function"]["Environment"]["Variables"]
    assert env["TENANTWATCH_CONFIG_PARAMETER"] == {"Ref": "ConfigParameter"}
    assert args["--lake-root"] == env["TENANTWATCH_LAKE_ROOT"]
    assert args["--window-minutes"] == env["TENANTWATCH_RUN_WINDOW_MINUTES"]
    assert args["--region"] == {"Ref": "AWS::Region"}
    # The functions' configuration from the environment, argument for variable.
    config = {
        k: v
        for k, v in env.items()
        if k.startswith("TENANTWATCH_")
        and not k.startswith("TENANTWATCH_RUN_")
        and k not in ("TENANTWATCH_CONFIG_PARAMETER", "TENANTWATCH_LAKE_ROOT")
    }
    assert {k[2:]: v for k, v in args.items() if k.startswith("--TENANTWATCH_")} == config
    glue_own = {
        "--additional-python-modules",
        "--python-modules-installer-option",
        "--enable-metrics",
        "--enable-continuous-cloudwatch-log",
    }
    read = {f"--{o}" for o in glue_job.OPTIONS}
    assert {a for a in args if not a.startswith("--TENANTWATCH_")} == read - {
        "--window-start",
        "--window-end",
        "--run-id",
        "--lease-wait-seconds",
    } | glue_own
    # The scheduled function alone is told of the job, and of the bound.
    fn = res["ScheduledFunction"]["Properties"]["Environment"]["Variables"]
    assert fn == {
        "TENANTWATCH_RUN_SPARK_JOB": {"Fn::If": ["HasGlueJob", {"Ref": "GlueJob"}, NO_VALUE]},
        "TENANTWATCH_RUN_SPARK_HANDOFF_BYTES": {
            "Fn::If": ["HasGlueJob", {"Ref": "SparkHandoffBytes"}, NO_VALUE]
        },
        "TENANTWATCH_RUN_SPARK_ATTEMPTS": {
            "Fn::If": ["HasGlueJob", {"Ref": "SparkHandoffAttempts"}, NO_VALUE]
        },
    }
    assert not [k for k in env if "SPARK" in k]
    assert params["SparkHandoffBytes"]["Default"] == 0  # never, until set
    settings = RunSettings.from_environ({k: "7" for k in fn})
    assert (settings.spark_job, settings.spark_handoff_bytes, settings.spark_attempts) == (
        "7",
        7,
        7,
    )
    assert t["Outputs"]["GlueJobName"] == {
        "Condition": "HasGlueJob",
        "Description": t["Outputs"]["GlueJobName"]["Description"],
        "Value": {"Ref": "GlueJob"},
    }


NO_VALUE = {"Ref": "AWS::NoValue"}


def test_the_glue_job_may_do_what_the_alert_stage_does_and_the_function_may_start_it() -> None:
    t = awsstack.template()
    res = t["Resources"]
    role = res["GlueJobRole"]
    assert role["Condition"] == "HasGlueJob"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "glue.amazonaws.com"}
    job, function = _statements(role), _statements(res["FunctionRole"])
    # The alert stage's grants, exactly the functions'.
    alerting = (
        "Lake",
        "ListLake",
        "WriteSnapshotsOnce",
        "ListSnapshots",
        "PublishIncidents",
        "EncryptForTheTopic",
        "ReadConfig",
        "WriteContainment",
    )
    for sid in alerting:
        assert job[sid] == function[sid], sid
    assert set(job) == {*alerting, "GlueLogs", "Metrics", "ReadArtifacts", "ListRulePack"}
    # Nothing of the trail or of the inbox (raw lines, secrets included).
    text = json.dumps(role)
    assert "TrailBucketName" not in text and "LogsInboxPrefix" not in text
    assert job["ReadArtifacts"]["Action"] == "s3:GetObject"
    assert job["ReadArtifacts"]["Resource"]["Fn::Sub"].endswith(
        ":s3:::${GlueArtifactsBucket}/${GlueArtifactsPrefix}*"
    )
    assert job["ListRulePack"]["Condition"] == {
        "StringLike": {"s3:prefix": [{"Fn::Sub": "${GlueArtifactsPrefix}rules/*"}]}
    }
    assert job["Metrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": ["Glue", "tenantwatch"]}
    }
    assert job["GlueLogs"]["Resource"]["Fn::Sub"].endswith(":log-group:/aws-glue/*")
    # The function role may start and follow the job's runs, of that job alone.
    handoff = res["HandoffPolicy"]
    assert handoff["Condition"] == "HasGlueJob"
    assert handoff["Properties"]["Roles"] == [{"Ref": "FunctionRole"}]
    (grant,) = _statements(handoff).values()
    assert grant["Action"] == ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns"]
    assert grant["Resource"]["Fn::Sub"].endswith(":job/${GlueJob}")
    assert not [st for st in function.values() if "glue:" in json.dumps(st)]
    # On-call hears of a window whose every job run failed.
    alarm = res["WindowsFailedAlarm"]
    assert alarm["Condition"] == "HasGlueJob"
    assert alarm["Properties"]["MetricName"] == "WindowsFailed"


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
