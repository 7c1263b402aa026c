"""CloudWatch data points: dimensions, the run's health, the Lambda EMF path
(pipeline/alert/metrics.py, pipeline/health.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.alert import metrics
from pipeline.health import RunHealth
from pipeline.lake import Lake, event_partition
from pipeline.runs.results import DetectResult, IngestResult, RunResult
from tests import factories as f


def test_counts_by_detector_and_severity_plus_a_total_never_by_tenant() -> None:
    rows = [
        {"detector": "a", "severity": "high", "tenants": ["t1"], "actor_tenant": "t2"},
        {"detector": "a", "severity": "high", "tenants": ["t3"], "actor_tenant": "t4"},
        {"detector": "b", "severity": "low", "tenants": ["t1"], "actor_tenant": "t2"},
    ]
    data = metrics.by_detector("Findings", rows)
    dims = {d.dimensions: d.value for d in data}
    assert dims == {
        (("detector", "a"), ("severity", "high")): 2,
        (("detector", "b"), ("severity", "low")): 1,
        (): 3,
    }
    assert metrics.by_detector("Findings", []) == [metrics.Datum("Findings", 0, "Count")]


def test_run_health_as_data_points() -> None:
    health = RunHealth(
        duration_s=1.5,
        records_read=10,
        records_quarantined=2,
        event_lag_s=60.0,
        detectors_failed=("x",),
    )
    names = {d.name: d for d in health.data()}
    assert set(names) == {
        "RecordsRead",
        "RecordsQuarantined",
        "EventLagSeconds",
        "RunDurationSeconds",
        "DetectorFailures",
    }
    assert names["EventLagSeconds"].unit == "Seconds" and names["RecordsRead"].value == 10
    assert names["DetectorFailures"].dimensions == (("detector", "x"),)
    assert all(d.dimensions == () for n, d in names.items() if n != "DetectorFailures")
    # A run that ingested nothing (alert alone) sends no record counts, not zeros.
    assert {d.name for d in RunHealth(duration_s=1.0).data()} == {"RunDurationSeconds"}
    # A run that detected sends the totals without a dimension, for the alarms.
    detected = RunHealth(duration_s=1.0, detectors_failed=("x", "y"), detected=True).data()
    assert [(d.name, d.value) for d in detected if not d.dimensions] == [
        ("RunDurationSeconds", 1.0),
        ("DetectorFailures", 2),
        ("ServicePrincipalDenials", 0),
    ]


def test_run_health_measures_the_lag_of_the_newest_event(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    rows = [f.event(0), f.event(1800), f.event(600)]  # the newest at 10:30
    lake.write_table(
        f"{event_partition('cloudtrail', '2026-11-16', '10')}/p.parquet", f.events(rows)
    )
    older = [f.event(-7200)]  # 08:00, in an older hour
    lake.write_table(
        f"{event_partition('cloudtrail', '2026-11-16', '08')}/p.parquet", f.events(older)
    )
    started = f.T0 + timedelta(hours=1)
    # Now on the newest event's day, and a month after it (the source went quiet).
    for now in (f.T0 + timedelta(hours=2), f.T0 + timedelta(days=30)):
        run = RunResult(started, ingest=IngestResult.of({"records_in": 3}))
        health = RunHealth.measure(str(tmp_path / "lake"), run, now)
        assert health.event_lag_s == (now - f.T0 - timedelta(minutes=30)).total_seconds()
        assert health.duration_s == (now - started).total_seconds() and health.records_read == 3
    failed = RunResult(started, detect=[DetectResult.of_summary({"failed": {"d": "x"}})])
    empty = RunHealth.measure(str(tmp_path / "none"), failed)
    assert empty.event_lag_s is None and empty.detectors_failed == ("d",)
    assert empty.records_read is None  # nothing ingested: no record counts, not zeros


def test_run_health_counts_denials_of_aws_services_per_service(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    delivery = {
        "actor_principal": "delivery.logs.amazonaws.com",
        "actor_type": "AWSService",
        "outcome": "denied",
        "error_code": "AccessDenied",
    }
    rows = [f.event(10 * i, **delivery) for i in range(30)]
    rows += [f.event(5, actor_principal="config.amazonaws.com", outcome="denied")]
    rows += [f.event(6, outcome="denied"), f.event(7, **{**delivery, "outcome": "success"})]
    lake.write_table(
        f"{event_partition('cloudtrail', '2026-11-16', '10')}/p.parquet", f.events(rows)
    )
    window = DetectResult(
        window_start="2026-11-16T00:00:00+00:00", window_end="2026-11-17T00:00:00+00:00"
    )
    # The same window detected twice in one run counts once; a user's denial is no service's.
    health = RunHealth.measure(lake.root, RunResult(f.T0, detect=[window, window]), f.T0)
    assert health.service_denials == (
        ("delivery.logs.amazonaws.com", 30),
        ("config.amazonaws.com", 1),
    )
    sent = [d for d in health.data() if d.name == "ServicePrincipalDenials"]
    assert [(d.value, d.dimensions) for d in sent] == [
        (30, (("principal", "delivery.logs.amazonaws.com"),)),
        (1, (("principal", "config.amazonaws.com"),)),
        (31, ()),  # the total, which the alarm reads
    ]
    totals = {d.name: d.value for d in health.data() if not d.dimensions}
    assert totals["DetectorFailures"] == 0  # sent as 0, so the alarm tells "fine" from "silent"
    assert health.as_dict()["service_denials"] == {
        "delivery.logs.amazonaws.com": 30,
        "config.amazonaws.com": 1,
    }
    assert RunHealth.measure(lake.root, RunResult(f.T0), f.T0).service_denials == ()


def test_emf_in_lambda_has_the_dimensions_put_metric_data_has(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set in the stack: Powertools would make it a dimension of every metric, which the CLI's
    # PutMetricData does not send, and the stack's alarms would read another metric.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tenantwatch")
    data = [
        metrics.Datum("IncidentsNew", 2, "Count", (("detector", "a"), ("severity", "high"))),
        metrics.Datum("IncidentsNew", 2, "Count"),
        metrics.Datum("RecordsRead", 7, "Count"),
    ]
    out = metrics.emit_emf("Tenantwatch/Test", data)
    assert out["sent"] == 3
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    seen = set()
    for line in lines:
        for block in line["_aws"]["CloudWatchMetrics"]:
            assert block["Namespace"] == "Tenantwatch/Test"
            for dims in block["Dimensions"]:
                for m in block["Metrics"]:
                    seen.add((m["Name"], tuple((d, line[d]) for d in dims)))
        assert "service" not in line
    assert seen == {(d.name, d.dimensions) for d in data}
    by_dims = {tuple(x["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]): x for x in lines}
    assert by_dims[()]["RecordsRead"] in (7.0, [7.0])


# --- the API's authorization (tenant-aware authorizer) --------------------------------------------


def _api_lake(root: Path) -> Lake:
    """One hour of an API: usr-a (t0001) decided twice and served twice from the cache, a
    refused request on t0002 (a cross-tenant attempt), a parent company's user on its child
    (allowed by the relationship), and a login nobody authorizes."""
    lake = Lake(str(root))
    who = {"actor_principal": "usr-a", "actor_tenant": "t0001", "target_tenant": "t0001"}
    rows = []
    for i, cached in enumerate((False, True, True, False)):
        rows.append(f.api(10 * i, request_id=f"r{i}", **who))
        if not cached:
            rows.append(f.api(10 * i, source="authorizer", request_id=f"r{i}", **who))
    refused = {**who, "target_tenant": "t0002", "outcome": "denied", "status_code": 403}
    rows += [f.api(50, request_id="x", **refused)]
    rows += [f.api(50, source="authorizer", request_id="x", **refused)]
    parent = {"actor_principal": "usr-p", "actor_tenant": "t0010", "target_tenant": "t0011"}
    rows += [f.api(60, request_id="p", **parent), f.api(60, source="authorizer", request_id="p")]
    rows += [f.api(70, request_id="login", actor_principal=None, actor_tenant=None)]
    for source in ("apigateway", "authorizer"):
        mine = [r for r in rows if r["source"] == source]
        lake.write_table(
            f"{event_partition(source, '2026-11-16', '10')}/p.parquet", f.events(mine, source)
        )
    return lake


WINDOW = DetectResult(
    window_start="2026-11-16T10:00:00+00:00", window_end="2026-11-16T11:00:00+00:00"
)


def test_run_health_measures_the_apis_failures_cache_misses_and_cross_tenant_attempts(
    tmp_path: Path,
) -> None:
    from pipeline.config import Organisation

    lake = _api_lake(tmp_path / "lake")
    org = (Organisation(parent="t0010", children=("t0011",)),)
    run = RunResult(f.T0, detect=[WINDOW, WINDOW])  # one window detected twice counts once
    health = RunHealth.measure(lake.root, run, f.T0, relationships=org)
    assert health.api is not None
    # 6 guarded requests (the login is none), 4 decided by the authorizer, 2 from its cache.
    assert (health.api.guarded, health.api.misses, health.api.miss_rate) == (6, 4, 66.667)
    assert (health.api.failures, health.api.cross_tenant) == (1, 1)
    # Without the relationship the parent's request on its child is an attempt too.
    assert RunHealth.measure(lake.root, run, f.T0).api.cross_tenant == 2  # type: ignore[union-attr]
    sent = {d.name: d for d in health.data()}
    assert (sent["AuthorizationFailures"].value, sent["CrossTenantAttempts"].value) == (1, 1)
    assert (sent["AuthorizerCacheMissRate"].value, sent["AuthorizerCacheMissRate"].unit) == (
        66.667,
        "Percent",
    )
    assert all(not sent[n].dimensions for n in ("AuthorizationFailures", "CrossTenantAttempts"))
    assert health.as_dict()["api"]["cache_miss_rate"] == 66.667
    # A run that detected nothing measures none of them.
    assert RunHealth.measure(lake.root, RunResult(f.T0), f.T0).api is None


def test_without_the_authorizers_log_the_miss_rate_is_not_sent(tmp_path: Path) -> None:
    lake = _api_lake(tmp_path / "lake")
    lake.fs.delete_dir(lake.path(event_partition("authorizer", "2026-11-16", "10")))
    health = RunHealth.measure(lake.root, RunResult(f.T0, detect=[WINDOW]), f.T0)
    assert health.api is not None and not health.api.told and health.api.miss_rate is None
    names = {d.name for d in health.data()}
    assert {"AuthorizationFailures", "CrossTenantAttempts"} <= names
    assert "AuthorizerCacheMissRate" not in names
    assert health.api.as_dict()["cache_misses"] is None


def test_the_api_metrics_reach_cloudwatch_without_a_tenant_dimension(
    aws: str, tmp_path: Path
) -> None:
    import boto3

    from pipeline import aws as clients
    from pipeline import health as run_health
    from pipeline.config import AlertingConfig, Config

    clients.reset()
    lake = _api_lake(tmp_path / "lake")
    health = RunHealth.measure(lake.root, RunResult(f.T0, detect=[WINDOW]), f.T0)
    cfg = Config(alerting=AlertingConfig(cloudwatch_namespace="Tenantwatch/Api"))
    out = run_health.send(lake.root, cfg, health, in_lambda=False)
    assert out is not None and out["spooled"] == 0
    cw = boto3.client("cloudwatch")
    listed = cw.list_metrics(Namespace="Tenantwatch/Api")["Metrics"]
    api = {"AuthorizationFailures", "AuthorizerCacheMissRate", "CrossTenantAttempts"}
    assert api <= {m["MetricName"] for m in listed}
    assert all(not m.get("Dimensions") for m in listed if m["MetricName"] in api)
    now = datetime.now(UTC)  # PutMetricData stamps the points with the clock

    def value(name: str) -> float:
        stat = {"Metric": {"Namespace": "Tenantwatch/Api", "MetricName": name}}
        r = cw.get_metric_data(
            MetricDataQueries=[
                {"Id": "m", "MetricStat": {**stat, "Period": 3600, "Stat": "Maximum"}}
            ],
            StartTime=now - timedelta(hours=2),
            EndTime=now + timedelta(hours=1),
        )
        return float(max(r["MetricDataResults"][0]["Values"]))

    assert value("AuthorizationFailures") == 1
    assert value("CrossTenantAttempts") == 2
    assert value("AuthorizerCacheMissRate") == 66.667
    clients.reset()
