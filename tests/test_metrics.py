"""CloudWatch data points: dimensions, health, the Lambda EMF path (pipeline/alert/metrics.py)."""

from __future__ import annotations

import json

import pytest

from pipeline.alert import metrics


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


def test_health_metrics() -> None:
    data = metrics.health(
        {
            "records_in": 10,
            "quarantined_total": 2,
            "lag_s": 60.0,
            "duration_s": 1.5,
            "detectors_failed": ["x"],
        }
    )
    names = {d.name: d for d in data}
    assert set(names) == {
        "RecordsRead",
        "RecordsQuarantined",
        "EventLagSeconds",
        "RunDurationSeconds",
        "DetectorFailures",
    }
    assert names["EventLagSeconds"].unit == "Seconds"


def test_emf_in_lambda(capsys: pytest.CaptureFixture[str]) -> None:
    data = [metrics.Datum("IncidentsNew", 2, "Count", (("detector", "a"), ("severity", "high")))]
    out = metrics.emit_emf("Tenantwatch/Test", data)
    assert out["sent"] == 1
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    aws = line["_aws"]["CloudWatchMetrics"][0]
    assert aws["Namespace"] == "Tenantwatch/Test"
    assert line["IncidentsNew"] == [2.0] or line["IncidentsNew"] == 2.0
    assert line["detector"] == "a" and line["severity"] == "high"
