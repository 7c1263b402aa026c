"""infra/: the SAM template lints and matches the lake, the functions' images and grants, the
Glue job and the Contributor Insights rules, read from the template (what moto's CloudFormation
does not apply; ``test_infra_stack`` deploys it)."""

from __future__ import annotations

import json
import posixpath
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import athena, lake, schema
from pipeline.lake import event_day
from tests import awsstack
from tests import logfactory as lf
from tests.awsstack import INSIGHT_RULES
from tests.conftest import REPO

TEMPLATE = REPO / "infra" / "template.yaml"


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


def test_the_lakes_deleted_files_leave_no_delete_markers_for_good() -> None:
    """Compaction and retention delete lake files daily: their old versions expire, and then the
    delete markers left of them (S3 refuses ExpiredObjectDeleteMarker in a rule that expires
    current versions, so it has a rule of its own, over the whole bucket)."""
    resources = awsstack.template()["Resources"]
    rules = resources["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (versions,) = [r for r in rules if r.get("ExpiredObjectDeleteMarker")]
    assert versions["Status"] == "Enabled" and "Prefix" not in versions
    assert versions["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert "ExpirationInDays" not in versions


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
