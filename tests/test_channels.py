"""The Security Hub and EventBridge channels, and several channels at once, on moto in process.

Security Hub: what ``get_findings`` holds after the alert stage (one finding per incident, its
fields, the same finding updated by a later notification). EventBridge: a rule on source and
detail-type with an SQS target, and what the queue got. Several channels: one broken through
botocore hooks on the very client the channel uses, the others delivering, and nothing sent twice
by the next run. Size limits on the channels' own batching and cutting.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline import aws
from pipeline.alert import eventbridge, securityhub, store
from pipeline.alert.run import run_alert
from pipeline.config import AlertingConfig, Config
from pipeline.lake import Lake
from tests.alertfactory import CTX, incident
from tests.alertsinks import write_findings_lake
from tests.conftest import MOTO_ENV

ACCOUNT = "123456789012"  # moto's
BUS = "security"


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in this process: no endpoint, no network."""
    from moto import mock_aws

    from pipeline.alert import calls

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in MOTO_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(calls, "BACKOFF_S", 0.001)
    aws.reset()
    with mock_aws():
        yield
    aws.reset()


@pytest.fixture
def lake(tmp_path: Path) -> str:
    """Findings of three incidents (critical, high, high): three notifications."""
    root = str(tmp_path / "lake")
    write_findings_lake(root, findings=3)
    return root


def _queue(name: str) -> tuple[str, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def _drain(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not got.get("Messages"):
            return out
        for m in got["Messages"]:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _bus_to_queue(detail_types: list[str]) -> str:
    """A bus with a rule on tenantwatch's source and ``detail_types``, sending to a queue."""
    events = boto3.client("events")
    events.create_event_bus(Name=BUS)
    url, arn = _queue("from-eventbridge")
    pattern = {"source": ["tenantwatch"], "detail-type": detail_types}
    events.put_rule(Name="incidents", EventBusName=BUS, EventPattern=json.dumps(pattern))
    events.put_targets(Rule="incidents", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    return url


def _topic_to_queue() -> tuple[str, str]:
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="tenantwatch-incidents")["TopicArn"]
    url, arn = _queue("from-sns")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, url


def _findings() -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = boto3.client("securityhub").get_findings()["Findings"]
    return got


def _hook(service: str, event: str, handler: Any) -> Any:
    """A botocore hook on the client the channel publishes with (``aws.publisher``)."""
    client = aws.publisher(service)
    client.meta.events.register(event, handler)
    return lambda: client.meta.events.unregister(event, handler)


def _states(lake: str, channel: str) -> Counter[str]:
    return Counter(
        r["state"] for r in store.load_outbox(Lake(lake)).values() if r["channel"] == channel
    )


# --- Security Hub --------------------------------------------------------------------------------


def test_securityhub_holds_one_finding_per_incident_and_updates_it_in_place(
    moto: None, lake: str
) -> None:
    from pipeline import verdicts
    from tests.alertfactory import finding

    boto3.client("securityhub").enable_security_hub()
    cfg = Config(alerting=AlertingConfig(securityhub=True, updates="each"))
    result = run_alert(lake, cfg)
    assert result.summary["channels"]["securityhub"]["sent"] == 3
    assert result.summary["channels"]["local"]["sent"] == 3  # no topic: local as well
    assert len(result.sent) == 3  # what people read: the local channel's rows only
    found = {f["Id"]: f for f in _findings()}
    assert len(found) == 3
    incs = {i.incident_id: i for i in store.load_incidents(Lake(lake))}
    crit = next(i for i in incs.values() if i.severity == "critical")
    f = found[securityhub.finding_id(crit.incident_id)]
    assert f["AwsAccountId"] == ACCOUNT
    assert f["ProductArn"] == (f"arn:aws:securityhub:us-east-1:{ACCOUNT}:product/{ACCOUNT}/default")
    assert f["GeneratorId"] == "tenantwatch/cross_tenant_access"
    assert f["Types"] == ["Effects/Data Exposure/Cross-Tenant Access"]
    assert f["Severity"]["Label"] == "CRITICAL"
    assert f["FindingProviderFields"]["Severity"]["Label"] == "CRITICAL"
    assert (f["Workflow"]["Status"], f["RecordState"]) == ("NEW", "ACTIVE")
    fields = f["ProductFields"]
    assert fields["tenantwatch/tenant_id"] == "t0100"
    assert fields["tenantwatch/actor_tenant"] == "t0001"
    assert fields["tenantwatch/incident_id"] == crit.incident_id
    assert fields["tenantwatch/revision"] == "1"
    assert [r["Id"] for r in f["Resources"]] == [
        "tenantwatch/tenant/t0100",
        "tenantwatch/tenant/t0001",
    ]
    assert {r["Type"] for r in f["Resources"]} == {"Other"}
    assert f["Title"] == crit.title and len(f["Description"]) <= securityhub.DESCRIPTION_MAX
    assert f["FirstObservedAt"] <= f["LastObservedAt"] and f["CreatedAt"] <= f["UpdatedAt"]

    # A verdict, then a later finding of the same story: the same finding Id, updated.
    rec = verdicts.find(verdicts.read_incidents(Lake(lake)), crit.incident_id)
    verdicts.close(Lake(lake), rec, "false_positive", "a test tenant", "sec-oncall")
    later = finding(
        timedelta(hours=1),
        dedup_key="cross_tenant_access:cross_tenant|usr-00|t0001",
        severity="critical",
        actor="usr-00",
        tenants=["t0100"],
        title="Cross-tenant access: usr-00 on t0100",
        evidence=json.dumps({"event_ids": ["e00-9"]}),
    )
    _add_findings(lake, [later])
    again = run_alert(lake, cfg)
    assert again.summary["channels"]["securityhub"]["sent"] == 1
    found = {f["Id"]: f for f in _findings()}
    assert len(found) == 3  # updated in place, no second finding
    f = found[securityhub.finding_id(crit.incident_id)]
    assert f["ProductFields"]["tenantwatch/revision"] == "2"
    assert f["ProductFields"]["tenantwatch/verdict"] == "false_positive"
    assert f["RecordState"] == "ARCHIVED"


def _add_findings(root: str, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa

    from pipeline import schema

    Lake(root).write_table(
        "findings/date=2026-11-16/later.parquet", pa.Table.from_pylist(rows, schema.FINDINGS)
    )


def test_securityhub_failed_findings_fail_their_rows_only(moto: None, lake: str) -> None:
    from botocore.awsrequest import AWSResponse

    boto3.client("securityhub").enable_security_hub()
    refused: list[str] = []

    def refuse_first(request: Any, **_: Any) -> AWSResponse:
        ids = [f["Id"] for f in json.loads(request.body)["Findings"]]
        refused.append(ids[0])
        body = {
            "FailedCount": 1,
            "SuccessCount": len(ids) - 1,
            "FailedFindings": [
                {"Id": ids[0], "ErrorCode": "InvalidInput", "ErrorMessage": "Title too long"}
            ],
        }
        return AWSResponse(request.url, 200, {}, _Raw(json.dumps(body).encode()))

    cfg = Config(alerting=AlertingConfig(securityhub=True))
    undo = _hook("securityhub", "before-send.securityhub.BatchImportFindings", refuse_first)
    try:
        first = run_alert(lake, cfg)
    finally:
        undo()
    hub = first.summary["channels"]["securityhub"]
    assert (hub["sent"], hub["failed"]) == (2, 1)
    assert any("InvalidInput: Title too long" in e for e in hub["errors"])
    assert _states(lake, "securityhub") == Counter({"sent": 2, "failed": 1})
    assert first.summary["channels"]["local"]["sent"] == 3
    imported: list[list[str]] = []

    def record(request: Any, **_: Any) -> None:
        imported.append([f["Id"] for f in json.loads(request.body)["Findings"]])

    undo = _hook("securityhub", "before-send.securityhub.BatchImportFindings", record)
    try:
        second = run_alert(lake, cfg)  # the failed one goes again, the others do not
    finally:
        undo()
    assert second.summary["channels"]["securityhub"]["sent"] == 1
    assert imported == [refused]
    assert _states(lake, "securityhub") == Counter({"sent": 3})


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


# --- EventBridge ---------------------------------------------------------------------------------


def test_eventbridge_events_reach_a_rule_target_with_the_ocsf_detail(moto: None, lake: str) -> None:
    url = _bus_to_queue(["tenantwatch incident opened"])
    cfg = Config(alerting=AlertingConfig(eventbridge_bus=BUS))
    result = run_alert(lake, cfg)
    assert result.summary["channels"]["eventbridge"]["sent"] == 3
    got = _drain(url)
    assert len(got) == 3
    incs = {i.incident_id for i in store.load_incidents(Lake(lake))}
    for event in got:
        assert event["source"] == "tenantwatch"
        assert event["detail-type"] == "tenantwatch incident opened"
        detail = event["detail"]
        assert detail["class_uid"] == 2004 and detail["activity_name"] == "Create"
        assert detail["finding_info"]["uid"] in incs
        assert detail["unmapped"]["tenantwatch"]["actor_tenant"] == "t0001"
    assert {e["detail"]["finding_info"]["uid"] for e in got} == incs
    rows = [r for r in store.load_outbox(Lake(lake)).values() if r["channel"] == "eventbridge"]
    assert all(r["state"] == "sent" for r in rows) and len(rows) == 3
    assert run_alert(lake, cfg).summary["channels"]["eventbridge"]["sent"] == 0
    assert _drain(url) == []


def test_eventbridge_entry_errors_fail_their_rows_and_an_unanswered_call_is_in_doubt(
    moto: None, lake: str
) -> None:
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ReadTimeoutError

    _bus_to_queue(["tenantwatch incident opened"])
    cfg = Config(alerting=AlertingConfig(eventbridge_bus=BUS))

    def one_refused(request: Any, **_: Any) -> AWSResponse:
        n = len(json.loads(request.body)["Entries"])
        entries: list[dict[str, str]] = [{"EventId": f"ev-{i}"} for i in range(n - 1)]
        entries.append({"ErrorCode": "InternalFailure", "ErrorMessage": "try later"})
        body = {"FailedEntryCount": 1, "Entries": entries}
        return AWSResponse(request.url, 200, {}, _Raw(json.dumps(body).encode()))

    undo = _hook("events", "before-send.eventbridge.PutEvents", one_refused)
    try:
        first = run_alert(lake, cfg)
    finally:
        undo()
    assert _states(lake, "eventbridge") == Counter({"sent": 2, "failed": 1})
    assert any("InternalFailure: try later" in e for e in first.summary["notifications"]["errors"])

    def timeout(request: Any, **_: Any) -> None:
        raise ReadTimeoutError(endpoint_url=request.url)

    undo = _hook("events", "before-send.eventbridge.PutEvents", timeout)
    try:
        second = run_alert(lake, cfg)
    finally:
        undo()
    assert second.summary["channels"]["eventbridge"]["in_doubt"] == 1
    assert _states(lake, "eventbridge") == Counter({"sent": 2, "in_doubt": 1})
    puts: list[int] = []
    undo = _hook("events", "before-send.eventbridge.PutEvents", lambda **_: puts.append(1))
    try:
        third = run_alert(lake, cfg)  # in doubt: reported, never put again by itself
    finally:
        undo()
    assert puts == []
    assert third.summary["channels"]["eventbridge"] == {
        "sent": 0,
        "failed": 0,
        "in_doubt": 1,
        "marked_sent": 0,
        "errors": [],
    }


# --- several channels ----------------------------------------------------------------------------


def test_one_channel_down_holds_back_none_of_the_others_and_nothing_goes_twice(
    moto: None, lake: str
) -> None:
    from botocore.exceptions import EndpointConnectionError

    boto3.client("securityhub").enable_security_hub()
    topic, sns_queue = _topic_to_queue()
    bus_queue = _bus_to_queue(["tenantwatch incident opened"])
    cfg = Config(
        alerting=AlertingConfig(sns_topic_arn=topic, securityhub=True, eventbridge_bus=BUS)
    )

    def down(request: Any, **_: Any) -> None:
        raise EndpointConnectionError(endpoint_url=request.url)

    undo = _hook("securityhub", "before-send.securityhub", down)
    try:
        first = run_alert(lake, cfg)
    finally:
        undo()
    ch = first.summary["channels"]
    assert list(ch) == ["sns", "securityhub", "eventbridge"]
    assert (ch["sns"]["sent"], ch["eventbridge"]["sent"]) == (3, 3)
    assert (ch["securityhub"]["sent"], ch["securityhub"]["failed"]) == (0, 3)
    assert first.summary["notifications"]["sent"] == 6
    assert first.summary["notifications_queued"] == 9
    assert len(first.sent) == 3 and {r["channel"] for r in first.sent} == {"sns"}
    assert _findings() == []
    assert len(_drain(sns_queue)) == 3 and len(_drain(bus_queue)) == 3

    # Each channel's rows are its own: SNS keeps the ids it had before other channels.
    rows = store.load_outbox(Lake(lake))
    by_channel = Counter(r["channel"] for r in rows.values())
    assert by_channel == Counter({"sns": 3, "securityhub": 3, "eventbridge": 3})
    sns_ids = {n for n, r in rows.items() if r["channel"] == "sns"}
    assert all(len(n) == 32 for n in rows) and len(rows) == 9

    second = run_alert(lake, cfg)  # Security Hub is back: only its rows go
    ch = second.summary["channels"]
    assert (ch["sns"]["sent"], ch["securityhub"]["sent"], ch["eventbridge"]["sent"]) == (0, 3, 0)
    assert len(_findings()) == 3
    assert _drain(sns_queue) == [] and _drain(bus_queue) == []
    assert {n for n, r in store.load_outbox(Lake(lake)).items() if r["channel"] == "sns"} == (
        sns_ids
    )


def test_sns_only_keeps_the_outbox_it_always_had(moto: None, lake: str) -> None:
    from pipeline.alert.run import notification_id

    topic, _ = _topic_to_queue()
    run_alert(lake, Config(alerting=AlertingConfig(sns_topic_arn=topic)))
    rows = store.load_outbox(Lake(lake))
    incs = store.load_incidents(Lake(lake))
    assert set(rows) == {notification_id(i.incident_id, "new") for i in incs}
    assert {r["channel"] for r in rows.values()} == {"sns"}


def test_a_run_that_died_between_a_notifications_rows_makes_the_missing_ones(
    moto: None, lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first channel's row is written last: a run that dies before it finds the
    notification still to make, and adds only the rows that are missing."""
    from pipeline.alert import run as alert_run

    boto3.client("securityhub").enable_security_hub()
    cfg = Config(alerting=AlertingConfig(securityhub=True))
    real = store.write_row
    written: list[str] = []

    class Died(BaseException):
        pass

    def die_at_the_first_local_row(lk: Lake, row: dict[str, Any]) -> None:
        if row["channel"] == "local" and row["state"] == "pending":
            raise Died
        written.append(row["channel"])
        real(lk, row)

    monkeypatch.setattr(alert_run.store, "write_row", die_at_the_first_local_row)
    with pytest.raises(Died):
        run_alert(lake, cfg)
    monkeypatch.setattr(alert_run.store, "write_row", real)
    assert written == ["securityhub"]
    rerun = run_alert(lake, cfg)
    assert rerun.summary["channels"]["securityhub"]["sent"] == 3
    assert rerun.summary["channels"]["local"]["sent"] == 3
    assert Counter(r["channel"] for r in store.load_outbox(Lake(lake)).values()) == Counter(
        {"securityhub": 3, "local": 3}
    )


# --- sizes ---------------------------------------------------------------------------------------


def _row(kind: str = "new", **kw: Any) -> dict[str, Any]:
    from pipeline.alert import render

    inc = incident(**kw)
    m = render.message(inc, kind, CTX, f"n-{inc.incident_id}")
    return {"notification_id": m.notification_id, "kind": kind, "message": m.envelope}


def test_eventbridge_cuts_a_detail_over_its_limit_and_batches_within_both_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ch = object.__new__(eventbridge.EventBridgeChannel)
    ch.bus, ch.source = BUS, "tenantwatch"
    big = json.dumps({"event_ids": [f"id-{i:05d}-{'x' * 80}" for i in range(100)]})
    row = _row(evidence=big)
    whole = ch.entry(row)
    assert not json.loads(whole["Detail"])["unmapped"]["tenantwatch"]["evidence_truncated"]
    monkeypatch.setattr(eventbridge, "MAX_ENTRY_BYTES", eventbridge.entry_size(whole) - 1)
    cut = ch.entry(row)
    detail = json.loads(cut["Detail"])
    assert detail["unmapped"]["tenantwatch"]["evidence_truncated"] is True
    assert detail["finding_info"]["related_events"] == [] and detail["class_uid"] == 2004
    assert eventbridge.entry_size(cut) <= eventbridge.MAX_ENTRY_BYTES

    # Too large even when cut: failed with the reason, before any call.
    monkeypatch.setattr(eventbridge, "MAX_ENTRY_BYTES", 100)
    (out,) = ch.send([row])
    assert out.state == "failed" and "over EventBridge's 100 per event" in (out.error or "")

    monkeypatch.setattr(eventbridge, "MAX_ENTRY_BYTES", 256 * 1024)
    rows = [_row(actor=f"usr-{i}") for i in range(23)]
    sizes = [len(b) for b in ch.batches(rows)]
    assert sizes == [10, 10, 3]
    monkeypatch.setattr(eventbridge, "MAX_ENTRY_BYTES", 3 * eventbridge.entry_size(whole) // 2)
    assert [len(b) for b in ch.batches([row, row, row])] == [1, 1, 1]


def test_securityhub_batches_count_findings_and_asff_stays_within_its_limits() -> None:
    ch = object.__new__(securityhub.SecurityHubChannel)
    rows = [_row(actor=f"usr-{i}") for i in range(250)]
    assert [len(b) for b in ch.batches(rows)] == [100, 100, 50]
    tenants = [f"t{i:04d}" for i in range(40)]
    inc = incident(title="T" * 5000, tenants=tenants, actor="a" * 5000)
    f = securityhub.asff(inc, None, ACCOUNT, "us-east-1", "arn:p", "aws")
    assert len(f["Title"]) <= securityhub.TITLE_MAX
    assert len(f["Description"]) <= securityhub.DESCRIPTION_MAX
    assert len(f["Resources"]) == securityhub.MAX_RESOURCES
    assert all(len(v) <= securityhub.MAX_PRODUCT_FIELD for v in f["ProductFields"].values())
    assert len(json.dumps(f).encode()) <= securityhub.MAX_FINDING_BYTES
    assert f["ProductFields"]["tenantwatch/tenant_id"].startswith("t0000,t0001,")
    for verdict, expected in [
        ("true_positive", ("RESOLVED", "ACTIVE")),
        ("benign", ("SUPPRESSED", "ACTIVE")),
        ("false_positive", ("SUPPRESSED", "ARCHIVED")),
    ]:
        g = securityhub.asff(inc, verdict, ACCOUNT, "us-east-1", "arn:p", "aws")
        assert (g["Workflow"]["Status"], g["RecordState"]) == expected


def test_closing_an_incident_sets_its_findings_workflow_in_security_hub(
    moto: None, lake: str
) -> None:
    """Security Hub takes Workflow from a provider's first import only: ``incident close``
    sets it with BatchUpdateFindings (moto has no such call: the request is answered here)."""
    from botocore.awsrequest import AWSResponse
    from click.testing import CliRunner

    from pipeline.cli import cli

    boto3.client("securityhub").enable_security_hub()
    run_alert(lake, Config(alerting=AlertingConfig(securityhub=True)))
    inc = store.load_incidents(Lake(lake))[0]
    asked: list[dict[str, Any]] = []

    def answer(unprocessed: bool) -> Any:
        def handler(request: Any, **_: Any) -> AWSResponse:
            asked.append(json.loads(request.body))
            failed = [
                {
                    "FindingIdentifier": asked[-1]["FindingIdentifiers"][0],
                    "ErrorCode": "FindingNotFound",
                    "ErrorMessage": "no such finding",
                }
            ]
            body = {"ProcessedFindings": [], "UnprocessedFindings": failed if unprocessed else []}
            return AWSResponse(request.url, 200, {}, _Raw(json.dumps(body).encode()))

        return handler

    env = {"TENANTWATCH_ALERTING_SECURITYHUB": "true", "TENANTWATCH_LAKE_ROOT": lake}
    args = ["incident", "close", inc.incident_id, "--verdict", "true_positive", "--note", "fixed"]
    undo = _hook("securityhub", "before-send.securityhub.BatchUpdateFindings", answer(False))
    try:
        out = CliRunner().invoke(cli, [*args, "--by", "ana"], env=env)
    finally:
        undo()
    assert out.exit_code == 0, out.output
    (call,) = asked
    assert call["FindingIdentifiers"][0]["Id"] == securityhub.finding_id(inc.incident_id)
    assert call["FindingIdentifiers"][0]["ProductArn"].endswith(f":product/{ACCOUNT}/default")
    assert call["Workflow"] == {"Status": "RESOLVED"}
    assert call["Note"] == {"Text": "true_positive: fixed", "UpdatedBy": "ana"}

    undo = _hook("securityhub", "before-send.securityhub.BatchUpdateFindings", answer(True))
    try:
        out = CliRunner().invoke(cli, [*args, "--by", "ana"], env=env)
    finally:
        undo()
    assert out.exit_code == 1
    assert "verdict is recorded" in out.stderr and "FindingNotFound" in out.stderr


def test_a_digest_is_an_eventbridge_detail_object_holding_its_ocsf_findings() -> None:
    """EventBridge takes a JSON object as detail: a digest's list of findings goes under
    ``findings``."""
    import dataclasses

    from pipeline.alert import render

    ch = object.__new__(eventbridge.EventBridgeChannel)
    ch.bus, ch.source = BUS, "tenantwatch"
    a = dataclasses.replace(incident(), status="updated", revision=2)
    b = dataclasses.replace(incident(severity="critical", dedup_key="k2"), status="updated")
    m = render.digest([a, b], CTX, "d1")
    row = {"notification_id": "d1", "kind": "digest", "message": m.envelope}
    e = ch.entry(row)
    detail = json.loads(e["Detail"])
    assert e["DetailType"] == "tenantwatch incidents digest"
    assert [f["finding_info"]["uid"] for f in detail["findings"]] == [a.incident_id, b.incident_id]
