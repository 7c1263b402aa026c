"""CloudWatch metrics: what was found and how the pipeline itself is doing.

Dimensions are ``detector`` and ``severity`` and nothing else. Never a tenant: each distinct
dimension value is a separately billed custom metric, and thousands of tenants would be
thousands of them (tenant-level questions are for Athena over the lake). Totals are also sent
without dimensions, including zeros, so that an alarm can tell "nothing found" from "not running".
The alert stage sends its counts here; the pipeline's health is ``pipeline.health``.

From the CLI: ``PutMetricData``, batched within its limits. In Lambda: the embedded metric format
through Powertools (JSON log lines, one per set of dimensions, turned into metrics by CloudWatch
Logs, no API call in the hot path), with exactly the dimensions ``PutMetricData`` would give: an
alarm reads one metric whichever way it was sent.

A failing ``PutMetricData`` must not fail the run or touch notifications: the data points are
spooled to ``_state/metrics/`` and sent with their original timestamps by the next run
(CloudWatch accepts points up to two weeks old). A crash after a PUT but before the spool file is
deleted re-sends that batch: for metrics we accept that (a doubled count on a graph) over losing
a health signal.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import aws, lake_io
from pipeline.alert import calls, store
from pipeline.lake import STATE_METRICS, Lake, metrics_spool_file

SPOOL = STATE_METRICS
PUT_LIMIT = 1000  # data points per PutMetricData call
PUT_BYTES = 900_000  # request size stays under the 1 MB limit with room for encoding
MAX_AGE = timedelta(days=13)  # CloudWatch rejects points older than two weeks


@dataclass(frozen=True)
class Datum:
    name: str
    value: float
    unit: str  # Count | Seconds | Percent
    dimensions: tuple[tuple[str, str], ...] = ()

    def as_api(self, when: datetime) -> dict[str, Any]:
        d: dict[str, Any] = {
            "MetricName": self.name,
            "Value": float(self.value),
            "Unit": self.unit,
            "Timestamp": when,
        }
        if self.dimensions:
            d["Dimensions"] = [{"Name": k, "Value": v} for k, v in self.dimensions]
        return d


def by_detector(name: str, rows: Iterable[Mapping[str, Any]]) -> list[Datum]:
    """A count per (detector, severity) present, plus the total without dimensions."""
    counts = Counter((str(r["detector"]), str(r["severity"])) for r in rows)
    out = [
        Datum(name, n, "Count", (("detector", det), ("severity", sev)))
        for (det, sev), n in sorted(counts.items())
    ]
    return [*out, Datum(name, sum(counts.values()), "Count")]


# --- sinks -------------------------------------------------------------------------------------


def send(
    lake: Lake, namespace: str, data: list[Datum], region: str = "", in_lambda: bool = False
) -> dict[str, Any]:
    """``data`` to CloudWatch the way this process can: EMF in Lambda, else ``PutMetricData``."""
    if in_lambda:
        return emit_emf(namespace, data)
    return put(lake, namespace, data, region)


def emit_emf(namespace: str, data: list[Datum]) -> dict[str, Any]:
    """Lambda: EMF lines on stdout (Powertools), one per set of dimensions."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    groups: dict[tuple[tuple[str, str], ...], list[Datum]] = {}
    for d in data:
        groups.setdefault(d.dimensions, []).append(d)
    for dims, points in groups.items():
        # service="": Powertools would add POWERTOOLS_SERVICE_NAME as a ``service`` dimension,
        # which these metrics do not have when the CLI sends them.
        emf = EphemeralMetrics(namespace=namespace, service="")
        for k, v in dims:
            emf.add_dimension(name=k, value=v)
        for d in points:
            emf.add_metric(name=d.name, unit=MetricUnit(d.unit), value=d.value)
        emf.flush_metrics()
    return {"sent": len(data), "spooled": 0, "format": "emf"}


def _chunks(points: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """``PutMetricData`` calls: at most ``PUT_LIMIT`` points and about ``PUT_BYTES`` each."""
    return calls.batched(
        points, lambda p: len(json.dumps(p, default=str)) + 64, PUT_BYTES, PUT_LIMIT
    )


def _spool(lake: Lake, points: list[dict[str, Any]]) -> str:
    body = json.dumps(points, default=lambda t: t.isoformat(), sort_keys=True).encode()
    rel = metrics_spool_file(hashlib.sha256(body).hexdigest()[:24])
    store.write_bytes(lake, rel, body)
    return rel


def _load_spool(lake: Lake, now: datetime) -> tuple[list[str], list[dict[str, Any]], int]:
    files = lake.files(SPOOL, suffix=".json")
    points, dropped = [], 0
    for rel in files:
        for p in json.loads(store.read_bytes(lake, rel)):
            p["Timestamp"] = datetime.fromisoformat(p["Timestamp"])
            if now - p["Timestamp"] > MAX_AGE:
                dropped += 1
            else:
                points.append(p)
    return files, points, dropped


def put(
    lake: Lake, namespace: str, data: list[Datum], region: str = "", now: datetime | None = None
) -> dict[str, Any]:
    """PutMetricData for ``data`` and anything spooled by earlier runs; spool on failure."""
    now = now or datetime.now(UTC)
    # This run's points go to the spool first: if the process dies, the next run sends them.
    fresh = [d.as_api(now) for d in data]
    if fresh:
        _spool(lake, fresh)
    files, points, dropped = _load_spool(lake, now)
    client = aws.client("cloudwatch", region)
    sent, error = 0, None
    try:
        for chunk in _chunks(points):
            client.put_metric_data(Namespace=namespace, MetricData=chunk)
            sent += len(chunk)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    if error is None:
        for rel in files:
            lake_io.delete(lake, rel)
    elif sent:
        # Part went out: keep only the rest, so a retry does not double what CloudWatch has.
        for rel in files:
            lake_io.delete(lake, rel)
        _spool(lake, points[sent:])
    return {
        "sent": sent,
        "spooled": len(points) - sent if error else 0,
        "dropped_too_old": dropped,
        "error": error,
        "format": "put_metric_data",
    }
