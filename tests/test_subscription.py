"""API logs through a CloudWatch Logs subscription (``pipeline.handler.on_log_events``): the
payload is stored in the S3 inbox as received, ingested, and a cross-tenant access in it pages
once, however often CloudWatch Logs delivers it; a control message or a malformed event stores
nothing; and the scheduled run ingests what the fast path stored but never ingested.

AWS is a moto server on 127.0.0.1 (the inbox, the configuration parameter, the incident topic);
the lake is a local folder."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest

from pipeline import handler
from pipeline.errors import ConfigError
from pipeline.lake import Lake, read_events
from pipeline.runs import subscription
from pipeline.runs.subscription import Delivery, LogsInbox
from pipeline.runs.unattended import Budget, RunSettings, run_scheduled
from tests import logfactory as lf
from tests.awsstack import drain, subscribe
from tests.fakes import FakeContext
from tests.pooled import pooled_text

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 16, 10, tzinfo=UTC)
BUCKET = "security-inbox"
INBOX = f"s3://{BUCKET}/api-logs/"
ACCESS_GROUP = "/tw-test/api-access"
AUTHORIZER_GROUP = "/aws/lambda/tw-test-authorizer"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlMTIzNDU2"


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _apache(ts: datetime) -> str:
    return ts.strftime("%d/%b/%Y:%H:%M:%S +0000")


def access_payload() -> tuple[dict[str, Any], list[str]]:
    """The access-log group's payload: a token of tenant t0001 read tenant t0002's invoices
    (200), among its own requests; one line logged the request's Authorization header."""
    lines = [
        lf.access_log(when=_apache(T0 + timedelta(minutes=4))),
        lf.access_log(tenant_path="t0002", claim="t0001", when=_apache(T0 + timedelta(minutes=5))),
        {**lf.access_log(when=_apache(T0 + timedelta(minutes=6))), "authorization": BEARER},
    ]
    event = lf.cwl_subscription(
        lines, log_group=ACCESS_GROUP, timestamp_ms=_ms(T0 + timedelta(minutes=4))
    )
    return event, [line["requestId"] for line in lines]


def authorizer_payload() -> tuple[dict[str, Any], list[str]]:
    """The authorizer's group: it allowed tenant t0001's own requests."""
    lines = [lf.authorizer_log(decision="Allow", requested="t0001") for _ in range(2)]
    event = lf.cwl_subscription(
        lines, log_group=AUTHORIZER_GROUP, timestamp_ms=_ms(T0 + timedelta(minutes=3))
    )
    return event, [line["function_request_id"] for line in lines]


@pytest.fixture
def env(aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The logs function's environment as the stack sets it (the inbox among the scheduled
    run's sources), its configuration in SSM, and an on-call queue on the incident topic."""
    from aws_lambda_powertools.utilities import parameters

    from pipeline import aws as clients

    clients.reset()
    parameters.clear_caches()
    for bucket in (BUCKET, "org-trail"):
        boto3.client("s3").create_bucket(Bucket=bucket)
    boto3.client("ssm").put_parameter(Name="/tw/config", Value=pooled_text(), Type="String")
    topic = boto3.client("sns").create_topic(Name="incidents")["TopicArn"]
    for key in [k for k in __import__("os").environ if k.startswith("TENANTWATCH_")]:
        monkeypatch.delenv(key)
    values = {
        "TENANTWATCH_CONFIG_PARAMETER": "/tw/config",
        "TENANTWATCH_LAKE_ROOT": str(tmp_path / "lake"),
        "TENANTWATCH_RUN_SOURCES": f"s3://org-trail/AWSLogs/,{INBOX}",
        "TENANTWATCH_RUN_LOGS_INBOX": INBOX,
        "TENANTWATCH_ALERTING_SNS_TOPIC_ARN": topic,
        "POWERTOOLS_METRICS_NAMESPACE": "tenantwatch",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    yield {**values, "queue": subscribe(topic)}
    clients.reset()
    parameters.clear_caches()


def _inbox() -> dict[str, bytes]:
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    return {k: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def _event_ids(lake: str) -> list[str]:
    if not Path(lake, "events").exists():
        return []
    return sorted(read_events(lake).column("event_id").to_pylist())


def _outbox(lake: str) -> list[dict[str, Any]]:
    from pipeline.alert import store

    return list(store.load_outbox(Lake(lake)).values())


def _gzip_of(event: dict[str, Any]) -> bytes:
    return base64.b64decode(event["awslogs"]["data"])


# --- the fast path -----------------------------------------------------------------------------


def test_a_payload_is_stored_as_received_ingested_and_its_cross_tenant_access_pages_once(
    env: dict[str, str],
) -> None:
    lake = env["TENANTWATCH_LAKE_ROOT"]
    authz, authz_ids = authorizer_payload()
    api, api_ids = access_payload()

    first = handler.on_log_events(authz, FakeContext())
    assert first["ingest"]["ingested"] == 2 and first["alert"].get("notifications_sent", 0) == 0
    report = handler.on_log_events(api, FakeContext())
    assert report["status"] == "done" and report["ingest"]["ingested"] == 3
    assert report["windows"] == [f"{T0.isoformat()}/{(T0 + timedelta(hours=1)).isoformat()}"]

    # Stored first, as received, under the day of the payload's first event.
    stored = _inbox()
    assert len(stored) == 2 and all(k.startswith("api-logs/group=") for k in stored)
    api_key = f"api-logs/group=tw-test_api-access/2026/11/16/{_digest(api)}.json.gz"
    authz_key = f"api-logs/group=aws_lambda_tw-test-authorizer/2026/11/16/{_digest(authz)}.json.gz"
    assert stored == {api_key: _gzip_of(api), authz_key: _gzip_of(authz)}
    # The lake holds exactly those lines, each as its own source.
    assert _event_ids(lake) == sorted(api_ids + authz_ids)
    sources = {r["event_id"]: r["source"] for r in read_events(lake).to_pylist()}
    assert {sources[i] for i in api_ids} == {"apigateway"}
    assert {sources[i] for i in authz_ids} == {"authorizer"}
    # One page, on the topic and in the outbox.
    messages = drain(env["queue"])
    assert len(messages) == 1 and "cross" in messages[0]["Subject"].lower()
    assert messages[0]["MessageAttributes"]["severity"]["Value"] == "critical"
    assert [r["state"] for r in _outbox(lake)] == ["sent"]


def _digest(event: dict[str, Any]) -> str:
    return subscription.decode(event["awslogs"]["data"], 1 << 20)[2]


def test_the_same_payload_delivered_twice_is_stored_ingested_and_paged_once(
    env: dict[str, str],
) -> None:
    lake = env["TENANTWATCH_LAKE_ROOT"]
    api, api_ids = access_payload()
    first = handler.on_log_events(api, FakeContext())
    assert first["alert"]["notifications_sent"] == 1 and len(drain(env["queue"])) == 1
    stored = _inbox()

    again = handler.on_log_events(api, FakeContext())  # CloudWatch Logs delivers at least once
    assert again["ingest"]["files_skipped"] == 1 and again["ingest"].get("ingested", 0) == 0
    assert again["windows"] == [] and drain(env["queue"]) == []
    assert _inbox() == stored and _event_ids(lake) == sorted(api_ids)
    assert len(_outbox(lake)) == 1


def test_a_log_line_with_a_bearer_token_never_reaches_the_lake(env: dict[str, str]) -> None:
    lake = env["TENANTWATCH_LAKE_ROOT"]
    api, _ = access_payload()
    handler.on_log_events(api, FakeContext())
    secret = BEARER.split()[1]
    # The inbox holds the lines as logged (which is why it is not in the lake) ...
    assert any(secret.encode() in gzip.decompress(b) for b in _inbox().values())
    # ... and nothing the run wrote holds the token: events, state, findings, incidents.
    files = list(Path(lake).rglob("*.parquet"))
    assert any("events" in p.parts for p in files)
    for path in files:
        text = json.dumps(pq.read_table(path).to_pylist(), default=str)
        assert secret not in text and "eyJhbGciOiJIUzI1NiJ9" not in text, path
    for path in Path(lake).rglob("*.json*"):
        assert secret not in path.read_text(), path
    assert "eyJhbGciOiJIUzI1NiJ9" not in json.dumps(drain(env["queue"]))


def test_a_control_message_stores_nothing(env: dict[str, str]) -> None:
    control = lf.cwl_encoded(
        {
            "messageType": "CONTROL_MESSAGE",
            "owner": "CloudwatchLogs",
            "logGroup": "",
            "logStream": "",
            "subscriptionFilters": [],
            "logEvents": [
                {
                    "id": "",
                    "timestamp": _ms(T0),
                    "message": "CWL CONTROL MESSAGE: Checking health of destination Lambda.",
                }
            ],
        }
    )
    report = handler.on_log_events(control, FakeContext())
    assert report["status"] == "nothing_to_do" and report["ingest"] == {}
    assert _inbox() == {} and not Path(env["TENANTWATCH_LAKE_ROOT"]).exists()


def _data(raw: bytes) -> dict[str, Any]:
    return {"awslogs": {"data": base64.b64encode(raw).decode()}}


def _payload_without(key: str) -> dict[str, Any]:
    event, _ = access_payload()
    payload = json.loads(gzip.decompress(_gzip_of(event)))
    del payload[key]
    return lf.cwl_encoded(payload)


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ({"awslogs": {"data": "not base64 at all!"}}, "awslogs.data: not base64"),
        (_data(b'{"messageType": "DATA_MESSAGE"}'), "awslogs.data: not gzip"),
        (_data(gzip.compress(b"{'messageType': DATA")), "awslogs.data: not JSON"),
        (_data(gzip.compress(b'["DATA_MESSAGE"]')), "awslogs.data: a JSON list, not an object"),
        (_payload_without("logEvents"), "logEvents: Field required"),
        (_payload_without("logGroup"), "logGroup: Field required"),
        ({"awslogs": "H4sI"}, "awslogs: Input should be a valid dictionary"),
        ({"Records": []}, "awslogs: Field required"),
    ],
)
def test_a_malformed_event_is_rejected_counted_and_stores_nothing(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    event: dict[str, Any],
    says: str,
) -> None:
    with pytest.raises(handler.MalformedEventError, match="malformed event") as err:
        handler.on_log_events(event, FakeContext())
    assert says in str(err.value) and str(err.value).startswith("cloudwatch logs:")
    assert '"MalformedEvents"' in capsys.readouterr().out
    assert _inbox() == {} and not Path(env["TENANTWATCH_LAKE_ROOT"]).exists()


# --- the scheduled run reads the inbox ---------------------------------------------------------


class FailingIngest:
    """Stages whose ingest fails: the fast path dies after the payload was stored."""

    def ingest(self, *args: Any) -> Any:
        raise ConnectionError("the lake is unreachable")

    def detect(self, *args: Any) -> Any:
        raise AssertionError("not reached")

    def alert(self, *args: Any) -> Any:
        raise AssertionError("not reached")


def test_the_scheduled_run_ingests_what_the_fast_path_stored_but_never_ingested(
    env: dict[str, str],
) -> None:
    import os

    lake = env["TENANTWATCH_LAKE_ROOT"]
    api, api_ids = access_payload()
    delivery = handler.parse_log_events(api)
    assert isinstance(delivery, Delivery)
    cfg, settings = handler.load(os.environ)
    inbox = LogsInbox.required(os.environ, settings, cfg.lake.root)
    budget = Budget(lambda: 900_000, settings.reserve_seconds)
    with pytest.raises(ConnectionError):
        subscription.run_delivery(delivery, inbox, lake, cfg, settings, budget, FailingIngest())
    assert len(_inbox()) == 1 and _event_ids(lake) == []

    # The next tick lists its sources by delivery day: the inbox's day folder among them.
    now = T0 + timedelta(hours=1, minutes=20)
    report = run_scheduled(now, lake, cfg, settings, budget, "sched-1")
    assert report.status == "done" and report.run.ingest is not None
    assert report.run.ingest.ingested == 3 and _event_ids(lake) == sorted(api_ids)
    assert report.as_dict()["alert"]["notifications_sent"] == 1
    assert len(drain(env["queue"])) == 1
    # CloudWatch Logs' retry of the failed invocation: stored already, ingested already.
    retry = handler.on_log_events(api, FakeContext())
    assert retry["ingest"]["files_skipped"] == 1 and drain(env["queue"]) == []


# --- configuration and keys --------------------------------------------------------------------


def test_the_inbox_must_be_among_the_sources_and_outside_the_lake() -> None:
    settings = RunSettings(sources=("s3://org-trail/AWSLogs/", "s3://inbox/"))
    lake = "s3://lake-bucket/lake"

    def inbox(uri: str, s: RunSettings = settings, lake_root: str = lake) -> LogsInbox | None:
        return LogsInbox.from_environ({"TENANTWATCH_RUN_LOGS_INBOX": uri}, s, lake_root)

    assert inbox("") is None
    assert inbox("s3://inbox/api-logs") == LogsInbox("inbox", "api-logs/")
    assert inbox("s3://inbox/api-logs/").uri == "s3://inbox/api-logs/"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="under none of TENANTWATCH_RUN_SOURCES"):
        inbox("s3://elsewhere/api-logs/")
    with pytest.raises(ConfigError, match="overlaps the lake"):
        inbox("s3://lake-bucket/lake/inbox/", RunSettings(sources=("s3://lake-bucket/",)))
    with pytest.raises(ConfigError, match="expected s3://bucket/prefix/"):
        inbox("/tmp/inbox")
    with pytest.raises(ConfigError, match="TENANTWATCH_RUN_LOGS_INBOX: not set"):
        LogsInbox.required({}, settings, lake)


def test_every_function_refuses_an_inbox_the_scheduled_run_would_not_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TENANTWATCH_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.delenv("TENANTWATCH_CONFIG_PARAMETER", raising=False)
    environ = {
        "TENANTWATCH_RUN_SOURCES": "s3://org-trail/AWSLogs/",
        "TENANTWATCH_RUN_LOGS_INBOX": "s3://inbox/api-logs/",
    }
    with pytest.raises(ConfigError, match=r"s3://inbox/api-logs/ is under none of"):
        handler.load(environ)


def test_the_key_is_the_payloads_content_day_and_log_group() -> None:
    inbox = LogsInbox("b", "in/")
    late = datetime(2026, 11, 16, 23, 59, 59, tzinfo=UTC)
    d = Delivery(b"", "/aws/lambda/a#b", late, 3, "0" * 32)
    assert inbox.key(d) == f"in/group=aws_lambda_a_b/2026/11/16/{'0' * 32}.json.gz"
    assert LogsInbox("b", "").key(d).startswith("group=aws_lambda_a_b/2026/11/16/")
    # A payload delivered again (the same text, compressed anew) has the same key.
    api, _ = access_payload()
    text = gzip.decompress(_gzip_of(api))
    again = {"awslogs": {"data": base64.b64encode(gzip.compress(text, 1, mtime=0)).decode()}}
    one, two = handler.parse_log_events(api), handler.parse_log_events(again)
    assert one is not None and two is not None
    assert inbox.key(one) == inbox.key(two) and one.data != two.data
