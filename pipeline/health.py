"""The pipeline's own health, measured once per run, the same way for the CLI and for Lambda.

``RunHealth.measure`` is the one place a run's results (``pipeline.runs.RunResult``: what
ingest and each detect handed back) and the lake (the newest event in it) become the health, and
``RunHealth.data`` the one place it becomes CloudWatch data points, so the metrics the stack's
alarms read exist under the same names and dimensions whichever way a run was started; ``send``
sends them: ``PutMetricData`` from the CLI, the embedded metric format in Lambda
(``pipeline.alert.metrics``). A run sends them once, however many windows it detected.

| metric | from | alarm |
|---|---|---|
| ``RecordsRead``, ``RecordsQuarantined`` | ingest | ``QuarantineRatioAlarm`` |
| ``EventLagSeconds`` | now minus the newest event in the lake | ``EventLagAlarm`` |
| ``RunDurationSeconds`` | the whole run | |
| ``DetectorFailures`` (``detector``) | detect | |
| ``DetectorFailures`` (none) | detect: how many failed, 0 too | ``DetectorFailuresAlarm`` |
| ``ServicePrincipalDenials`` (``principal``) | detect windows: AWS services denied | |
| ``ServicePrincipalDenials`` (none) | all services, 0 too | ``ServicePrincipalDenialsAlarm`` |
| ``AuthorizationFailures`` (none) | detect windows: API requests refused (401, 403), 0 too | |
| ``AuthorizerCacheMissRate`` (none) | detect windows: % of guarded requests decided | |
| ``CrossTenantAttempts`` (none) | detect windows: requests on another tenant, 0 too | |

Records are sent only by a run that ingested (a count of 0 is a run that found nothing new, and
is sent); the lag whenever the lake has events. ``ServicePrincipalDenials`` is sent per service
that was denied in the windows the run detected (``pipeline.principals``): the detectors leave
those services out of their actors, so a log delivery that lost its bucket permission shows
here, as the pipeline's health, rather than as an attack. A run that detected also sends both
totals without a dimension, 0 included, for the alarms to read (an alarm needs the exact
dimensions, and a service or detector cannot be known in advance).

The three API metrics are what a tenant-aware authorizer is watched by, over the API access log
of the windows the run detected (each window once), never per tenant (a dimension per tenant is a
billed metric per tenant; which tenants is a question for the lake and the detectors):
``AuthorizationFailures``, requests refused with 401 or 403 (an authorizer Deny, cached or
not, an expired token, the backend's own refusal); ``AuthorizerCacheMissRate``, of the requests
the authorizer guards, the per cent it decided itself rather than API Gateway's cache
(``detectors.evidence.cache_answers``, the rule the ``authorizer_cache`` detector uses; not sent
when the authorizer's log is not in the lake, as the rate cannot be told); and
``CrossTenantAttempts``, requests whose token's tenant (the authorizer's context) differs from
the path's with no relationship (``[[relationships]]``, ``detectors.rules``) allowing it,
refused or not. A run that detected sends the two counts, 0 included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline.alert import metrics
from pipeline.alert.metrics import Datum
from pipeline.lake import Lake, file_hour, read_events

if TYPE_CHECKING:
    from pipeline.config import Config, Relationship
    from pipeline.runs.results import DetectResult, RunResult


@dataclass(frozen=True)
class ApiAuthorization:
    """The API's authorization in the windows a run detected (no tenant anywhere)."""

    failures: int = 0  # requests refused: 401, 403
    guarded: int = 0  # requests the authorizer guards (a decision, or a cached one)
    misses: int = 0  # ... that the authorizer decided itself
    cross_tenant: int = 0  # requests on a tenant not their token's, no relationship allowing it
    told: bool = True  # False: no authorizer decision in the lake, so hits are not told

    @property
    def miss_rate(self) -> float | None:
        """Per cent of the guarded requests that missed the cache (None: not told, or none)."""
        if not self.told or not self.guarded:
            return None
        return round(100.0 * self.misses / self.guarded, 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "authorization_failures": self.failures,
            "guarded_requests": self.guarded,
            "cache_misses": self.misses if self.told else None,
            "cache_miss_rate": self.miss_rate,
            "cross_tenant_attempts": self.cross_tenant,
        }


@dataclass(frozen=True)
class RunHealth:
    duration_s: float
    records_read: int | None = None  # None: this run ingested nothing (alert alone)
    records_quarantined: int | None = None
    event_lag_s: float | None = None  # None: the lake has no events
    detectors_failed: tuple[str, ...] = ()
    # (service principal, denials) in the windows detected, most first
    service_denials: tuple[tuple[str, int], ...] = ()
    detected: bool = False  # the run detected at least one window
    api: ApiAuthorization | None = None  # the API metrics (None: no window detected)

    @classmethod
    def measure(
        cls,
        lake_root: str,
        run: RunResult,
        now: datetime | None = None,
        relationships: tuple[Relationship, ...] = (),
    ) -> RunHealth:
        """The health of ``run`` (from its start to ``now``, default the clock), which wrote
        into the lake at ``lake_root``; ``relationships`` (the configuration's) are what make a
        request on another tenant no cross-tenant attempt."""
        now = now or datetime.now(UTC)
        newest = newest_event(Lake(lake_root))
        detected = run.detect
        failed = sorted({d for s in detected for d in s.failed})
        ing = run.ingest
        return cls(
            duration_s=max(0.0, (now - run.started_at).total_seconds()),
            records_read=None if ing is None else ing.records_in,
            records_quarantined=None if ing is None else ing.quarantined_total,
            # Simulated or replayed logs can lie in the future: a negative lag is reported as 0.
            event_lag_s=None if newest is None else max(0.0, (now - newest).total_seconds()),
            detectors_failed=tuple(failed),
            service_denials=service_denials(Lake(lake_root), detected),
            detected=bool(detected),
            api=api_authorization(Lake(lake_root), detected, relationships) if detected else None,
        )

    def data(self) -> list[Datum]:
        out = [Datum("RunDurationSeconds", self.duration_s, "Seconds")]
        if self.records_read is not None:
            out.append(Datum("RecordsRead", self.records_read, "Count"))
        if self.records_quarantined is not None:
            out.append(Datum("RecordsQuarantined", self.records_quarantined, "Count"))
        if self.event_lag_s is not None:
            out.append(Datum("EventLagSeconds", self.event_lag_s, "Seconds"))
        out += [
            Datum("DetectorFailures", 1, "Count", (("detector", d),)) for d in self.detectors_failed
        ]
        out += [
            Datum("ServicePrincipalDenials", n, "Count", (("principal", p),))
            for p, n in self.service_denials
        ]
        if self.detected:
            out.append(Datum("DetectorFailures", len(self.detectors_failed), "Count"))
            total = sum(n for _, n in self.service_denials)
            out.append(Datum("ServicePrincipalDenials", total, "Count"))
        if self.api is not None:
            out.append(Datum("AuthorizationFailures", self.api.failures, "Count"))
            out.append(Datum("CrossTenantAttempts", self.api.cross_tenant, "Count"))
            rate = self.api.miss_rate
            if rate is not None:
                out.append(Datum("AuthorizerCacheMissRate", rate, "Percent"))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration_s, 3),
            "records_read": self.records_read,
            "records_quarantined": self.records_quarantined,
            "event_lag_s": None if self.event_lag_s is None else round(self.event_lag_s, 1),
            "detectors_failed": list(self.detectors_failed),
            "service_denials": dict(self.service_denials),
            "api": None if self.api is None else self.api.as_dict(),
        }


def send(lake_root: str, cfg: Config, health: RunHealth, in_lambda: bool) -> dict[str, Any] | None:
    """The run's health to CloudWatch, when a namespace is configured: the embedded metric format
    in Lambda, else ``PutMetricData``; what was sent (None: no namespace)."""
    a = cfg.alerting
    if not a.cloudwatch_namespace:
        return None
    return metrics.send(Lake(lake_root), a.cloudwatch_namespace, health.data(), a.region, in_lambda)


def service_denials(lake: Lake, detected: Iterable[DetectResult]) -> tuple[tuple[str, int], ...]:
    """Denials by AWS services acting for themselves in each distinct window detected, per
    service, most first (CloudTrail is the only log that names them)."""
    import pyarrow.compute as pc

    from pipeline.principals import is_service

    windows = {(d.window_start, d.window_end) for d in detected if d.window_start and d.window_end}
    counts: Counter[str] = Counter()
    for start, end in sorted(windows):
        t = read_events(
            lake,
            datetime.fromisoformat(start),
            datetime.fromisoformat(end),
            sources=("cloudtrail",),
            columns=["actor_type", "actor_principal"],
            where=pc.field("outcome") == "denied",
        )
        if not t.num_rows:
            continue
        grouped = t.group_by(["actor_type", "actor_principal"]).aggregate([([], "count_all")])
        for kind, who, n in zip(
            grouped["actor_type"].to_pylist(),
            grouped["actor_principal"].to_pylist(),
            grouped["count_all"].to_pylist(),
            strict=True,
        ):
            if is_service(kind, who):
                counts[who or kind] += n
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


API_COLUMNS = [
    "event_id",
    "source",
    "request_id",
    "actor_principal",
    "actor_tenant",
    "target_tenant",
    "outcome",
]


def api_authorization(
    lake: Lake, detected: Iterable[DetectResult], relationships: tuple[Relationship, ...] = ()
) -> ApiAuthorization:
    """The API metrics over each distinct window detected, from the access log and the
    authorizer's log (which tells cache hits from misses)."""
    import numpy as np

    from detectors.base import to_frame
    from detectors.evidence import cache_answers, text
    from detectors.rules import Rules

    windows = {(d.window_start, d.window_end) for d in detected if d.window_start and d.window_end}
    rules = Rules.of(relationships)
    failures = guarded = misses = cross = 0
    told = True
    for start, end in sorted(windows):
        t = read_events(
            lake,
            datetime.fromisoformat(start),
            datetime.fromisoformat(end),
            sources=("apigateway", "authorizer"),
            columns=API_COLUMNS,
        )
        if not t.num_rows:
            continue
        frame = to_frame(t)
        access = (text(frame["source"]) == "apigateway").to_numpy(dtype=bool)
        if not access.any():
            continue
        failures += int((access & (text(frame["outcome"]) == "denied").to_numpy(dtype=bool)).sum())
        answers = cache_answers(frame)
        if answers is None:
            told = False
        else:
            guarded += int((answers[0] | answers[1]).sum())
            misses += int(answers[1].sum())
        known = (frame["actor_tenant"].notna() & frame["target_tenant"].notna()).to_numpy()
        other = access & known & ~rules.explained(frame).to_numpy(dtype=bool)
        cross += int(np.count_nonzero(other))
    return ApiAuthorization(failures, guarded, misses, cross, told)


def newest_event(lake: Lake) -> datetime | None:
    """The time of the newest event in the lake, from the footers of the newest day's last
    hour's files (and its compacted files). Only the sources' day folders are listed, then the
    files of the newest day that has any: a run every few minutes does not list a year of
    partitions, and a source that went quiet days ago still has its newest event found (the
    lag then says how long ago)."""
    for day in reversed(lake.event_dates()):
        files = lake.event_day_files(day)
        # The day's last hour's files, and its compacted ones (no hour: any may hold it).
        last = max((h for f in files if (h := file_hour(f)) is not None), default=None)
        times = [_max_time(lake, f) for f in files if file_hour(f) in (None, last)]
        newest = [t for t in times if t is not None]
        if newest:
            return max(newest)
    return None


def _max_time(lake: Lake, rel: str) -> datetime | None:
    """The newest ``event_time`` of an event file, from its footer's statistics (the lake
    writes them for ``event_time``); from the column itself where they are missing."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    meta = pq.read_metadata(lake.path(rel), filesystem=lake.fs)
    if "event_time" in meta.schema.names and meta.num_row_groups:
        col = meta.schema.names.index("event_time")
        stats = [meta.row_group(i).column(col).statistics for i in range(meta.num_row_groups)]
        if all(st is not None and st.has_min_max for st in stats):
            newest = max(st.max for st in stats if st is not None)
            return newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    times = lake.read_file(rel, ["event_time"])["event_time"]
    value: datetime | None = pc.max(times).as_py() if len(times) else None
    return value
