"""The analyst's API over the lake, for notebooks: every read is a pandas DataFrame.

    from pipeline import notebook as tw

    lake = tw.ensure_lake("lake", logs="sample_logs")  # an empty or missing lake: built from logs
    tw.events(lake, "2026-11-16", "2026-11-17", tenant="t0007", actor="usr-e373e71a")
    tw.findings(lake, detector="tenant_switching", min_severity="high")
    tw.incidents(lake)                                  # the latest revision of each, worst first
    snap = tw.snapshot(lake, "bc4ccf3c")                # an incident id, or its first characters
    snap.events(), snap.verify().ok
    imp = tw.impact(lake, "bc4ccf3c")                   # whose data, which objects, how
    imp.tenants, imp.resources, imp.notice("t0002")     # DataFrames; a customer's draft notice
    tw.compare_findings(lake, "authz_failure_spike", "2026-11-16", threshold=3.0)
    tw.verdict_precision(lake)                          # precision per detector from verdicts
    run = tw.run_detector(lake, "authz_failure_spike")  # the fitted detector, for pictures

A lake is a folder or ``s3://bucket/prefix`` (``pyarrow.fs`` underneath, as for the pipeline).
Times are ISO strings or datetimes, UTC when no zone is given. Reads open only the partitions
that can hold the window (events by source/date/hour, findings by date). Re-running a detector
here never writes to the lake: it is for asking "what would this setting have found?".
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.config import Config, load_config
from pipeline.errors import InputError
from pipeline.lake import EVENTS, FINDINGS, LakeLike, as_lake
from pipeline.lake import events as events  # re-exported: the notebooks' ``tw.events``
from pipeline.lake import quarantine as quarantine  # re-exported: ``tw.quarantine``
from pipeline.timeparse import as_time

if TYPE_CHECKING:
    import pandas as pd

    from detectors.base import Detector
    from pipeline.alert.incidents import Incident
    from pipeline.alert.snapshot import Verified
    from pipeline.impact import Impact

RANK = schema.SEVERITY_RANK
SOURCE_FOLDERS = ("AWSLogs", "apigateway", "authorizer")  # what `tenantwatch simulate` writes
DAY = timedelta(days=1)


# --- the lake and the configuration ----------------------------------------------------------


def config(path: str | Path | None = None, logs: str | Path | None = None) -> Config:
    """``path`` if given, else ``<logs>/tenantwatch.toml`` (the simulated world's configuration)
    if there is one, else ``./tenantwatch.toml`` or the built-in defaults."""
    if not path and logs is not None and (Path(logs) / "tenantwatch.toml").is_file():
        path = Path(logs) / "tenantwatch.toml"
    return load_config(path or None)


def has_events(lake: LakeLike) -> bool:
    lk = as_lake(lake)
    sel = pafs.FileSelector(lk.path(EVENTS), recursive=False, allow_not_found=True)
    return bool(lk.fs.get_file_info(sel))


def ensure_lake(
    lake: str | os.PathLike[str] | None,
    logs: str | Path = "sample_logs",
    cfg: Config | None = None,
    workdir: str | Path | None = None,
) -> str:
    """``lake`` if it holds events; else a new lake in ``workdir`` (default: a new temporary
    folder, left for the notebook's session), built from ``logs`` with ``tenantwatch run``
    (ingest, detect the latest day, alert). Returns the lake's root.

    An S3 lake is never built here: an empty one is an error (a wrong prefix, most likely).
    """
    lake = os.fspath(lake) if lake is not None else None
    if lake and has_events(lake):
        return lake
    if lake and lake.startswith("s3://"):
        raise InputError(f"lake {lake}: no events there")
    from pipeline.runs.on_demand import run_all

    folder = Path(logs)
    if not folder.is_dir():
        raise InputError(f"logs {folder}: not a folder, and lake {lake!r} has no events")
    sources = [str(folder / s) for s in SOURCE_FOLDERS if (folder / s).is_dir()] or [str(folder)]
    parent = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="tenantwatch-lake-"))
    root = str(parent / "lake")
    with contextlib.redirect_stdout(io.StringIO()):  # local notifications are not for notebooks
        run_all(sources, root, cfg or config(logs=folder), workers=1)
    return root


# --- reads -----------------------------------------------------------------------------------


def _keep(
    frame: pd.DataFrame,
    detector: str | None,
    min_severity: str | None,
    tenant: str | None,
    actor: str | None,
) -> pd.DataFrame:
    if frame.empty:
        return frame
    keep = frame["severity"].map(RANK) >= RANK[min_severity or "info"]
    if detector is not None and "detectors" in frame.columns:  # an incident: any of its signals
        keep &= frame["detectors"].map(lambda ds: detector in ds)
    elif detector is not None:
        keep &= frame["detector"] == detector
    if actor is not None:
        keep &= frame["actor"] == actor
    if tenant is not None:
        keep &= frame["actor_tenant"].eq(tenant) | frame["tenants"].map(lambda ts: tenant in ts)
    out = frame[keep].copy()
    out["_rank"] = out["severity"].map(RANK)
    order = ["_rank", "score", "first_seen"]
    return out.sort_values(order, ascending=[False, False, True]).drop(columns="_rank")


def findings(
    lake: LakeLike,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    *,
    detector: str | None = None,
    min_severity: str | None = None,
    tenant: str | None = None,
    actor: str | None = None,
) -> pd.DataFrame:
    """Findings of the detection windows that start in [since, until), worst first. Only the
    ``findings/date=...`` folders of those days are opened. ``evidence`` is a JSON string:
    ``evidence(row)`` decodes it."""
    lk = as_lake(lake)
    t0, t1 = as_time(since), as_time(until)
    files = lk.files(FINDINGS)
    if not files:
        return schema.empty(schema.FINDINGS).to_pandas()
    dataset = ds.dataset(
        [lk.path(f) for f in files],
        filesystem=lk.fs,
        format="parquet",
        schema=schema.FINDINGS.append(pa.field("date", pa.string())),
        partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
        partition_base_dir=lk.path(FINDINGS),
    )
    ts = pa.timestamp("us", tz="UTC")
    expr: pc.Expression | None = None
    if t0 is not None:
        expr = (pc.field("date") >= f"{t0:%Y-%m-%d}") & (
            pc.field("window_start") >= pa.scalar(t0, ts)
        )
    if t1 is not None:
        e = (pc.field("date") <= f"{t1:%Y-%m-%d}") & (pc.field("window_start") < pa.scalar(t1, ts))
        expr = e if expr is None else expr & e
    table = dataset.to_table(columns=schema.FINDINGS.names, filter=expr).cast(schema.FINDINGS)
    return _keep(table.to_pandas(), detector, min_severity, tenant, actor)


def incidents(
    lake: LakeLike,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    *,
    detector: str | None = None,
    min_severity: str | None = None,
    tenant: str | None = None,
    actor: str | None = None,
    status: str | None = None,
) -> pd.DataFrame:
    """The latest revision of each incident whose activity overlaps [since, until), worst
    first, with the ``detectors`` of all its signals (``detector`` picks an incident by any of
    them). (Incidents are few: their state is read whole, then filtered.)"""
    from pipeline.alert.store import load_incidents

    rows = [i.as_row() for i in load_incidents(as_lake(lake))]
    frame = pa.Table.from_pylist(rows, schema=schema.INCIDENTS).to_pandas()
    frame["detectors"] = [_detectors(r) for r in rows]
    t0, t1 = as_time(since), as_time(until)
    if t0 is not None:
        frame = frame[frame["last_seen"].fillna(frame["window_end"]) >= t0]
    if t1 is not None:
        frame = frame[frame["first_seen"].fillna(frame["window_start"]) < t1]
    if status is not None:
        frame = frame[frame["status"] == status]
    return _keep(frame, detector, min_severity, tenant, actor).reset_index(drop=True)


def _detectors(incident: dict[str, Any]) -> list[str]:
    """The detectors of every signal of an incident's story, the lead one included."""
    signals = orjson.loads(incident.get("signals") or "[]")
    return sorted({incident["detector"], *(str(s["detector"]) for s in signals)})


def verdicts(lake: LakeLike) -> pd.DataFrame:
    """Every verdict given on an incident (``tenantwatch incident close``), oldest first."""
    import pandas as pd

    from pipeline import verdicts as v

    rows = [x.as_row() for x in v.read_verdicts(as_lake(lake))]
    return pd.DataFrame(rows, columns=schema.VERDICTS.names)


def verdict_precision(lake: LakeLike) -> pd.DataFrame:
    """Per detector, the closed incidents by their latest verdict, and the precision of its
    pages: true positives, remediated ones among them, over closed incidents (a benign one was
    real but needed nobody)."""
    import pandas as pd

    from pipeline import verdicts as v

    lk = as_lake(lake)
    rows = v.precision(v.read_incidents(lk), v.read_verdicts(lk))
    columns = ["detector", "closed", *schema.VERDICT_KINDS, "precision"]
    return pd.DataFrame(rows, columns=columns)


def incident(lake: LakeLike, incident_id: str) -> Incident:
    """One incident by its id or an unambiguous beginning of it."""
    from pipeline.alert.store import load_incidents

    hits = [i for i in load_incidents(as_lake(lake)) if i.incident_id.startswith(incident_id)]
    if len(hits) != 1:
        what = "no incident" if not hits else f"{len(hits)} incidents"
        raise InputError(f"{what} with an id starting {incident_id!r}")
    return hits[0]


def evidence(row: Any) -> dict[str, Any]:
    """A finding's or an incident's evidence (a row, a dict or an ``Incident``) as a dict."""
    raw = row.evidence if hasattr(row, "evidence") else row["evidence"]
    out: dict[str, Any] = orjson.loads(raw) if raw else {}
    return out


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with None for missing values (pandas shows them as NaN), as the pipeline's
    own code (``eval.evaluate``, alerting) sees findings."""
    return pa.Table.from_pandas(frame, preserve_index=False).to_pylist()


# --- forensic snapshots ----------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """An incident's forensic snapshot: its manifest, its files as DataFrames, and ``verify``."""

    incident_id: str
    manifest_uri: str
    sha256: str | None  # of manifest.json, as the incident (and its notification) recorded it
    manifest: dict[str, Any] = field(repr=False)

    def _read(self, name: str) -> pd.DataFrame:
        from pipeline.alert.snapshot import MANIFEST, open_store

        store = open_store(self.manifest_uri[: -len(MANIFEST)].rstrip("/"))
        return pq.read_table(io.BytesIO(store.get(name))).to_pandas()

    def events(self) -> pd.DataFrame:
        """The normalized evidence events (``events.parquet``), in time order."""
        return self._read("events.parquet")

    def raw(self) -> pd.DataFrame:
        """``event_id``, ``event_time``, ``source`` and the original record (``raw.parquet``)."""
        return self._read("raw.parquet")

    def verify(self) -> Verified:
        """Re-hash every file against the manifest, and the manifest against ``sha256``."""
        from pipeline.alert.snapshot import verify

        return verify(self.manifest_uri, self.sha256)


def snapshot(lake: LakeLike, incident_or_id: Incident | str) -> Snapshot:
    """The incident's forensic snapshot: its latest part (``verify`` checks the earlier ones)."""
    from pipeline.alert.snapshot import MANIFEST, open_store

    inc = incident(lake, incident_or_id) if isinstance(incident_or_id, str) else incident_or_id
    if not inc.snapshot_uri:
        raise InputError(f"incident {inc.incident_id} has no snapshot (see `tenantwatch alert`)")
    store = open_store(inc.snapshot_uri[: -len(MANIFEST)].rstrip("/"))
    manifest = orjson.loads(store.get(MANIFEST))
    return Snapshot(inc.incident_id, inc.snapshot_uri, inc.snapshot_sha256, manifest)


# --- impact ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImpactReport:
    """An incident's impact (``pipeline.impact``): the assessment and its tables."""

    assessment: Impact = field(repr=False)
    tenants: pd.DataFrame  # one row per tenant whose data was touched, flagged first
    resources: pd.DataFrame  # one row per object of those tenants
    events: pd.DataFrame  # the events assessed, with ``access``, ``actor`` and ``scope``

    def notice(self, tenant: str) -> str:
        """The Markdown draft of the customer notice for ``tenant`` (``pipeline.notice``)."""
        from pipeline.notice import draft

        return draft(self.assessment, tenant).text

    def notices(self) -> dict[str, str]:
        """The drafts for every flagged tenant, by tenant."""
        from pipeline.notice import drafts

        return {n.tenant: n.text for n in drafts(self.assessment)}


def impact(
    lake: LakeLike, incident_or_id: Incident | str, cfg: Config | None = None
) -> ImpactReport:
    """Whose data the incident's actors touched, which objects, read, written or denied, how
    often, by whom, when: from its snapshot, and the lake for what the snapshot lacks
    (``assessment.provenance`` says which)."""
    import dataclasses

    import pandas as pd

    from pipeline.impact import ResourceImpact, TenantImpact, assess

    found = assess(lake, incident_or_id, cfg or config())

    def frame(items: tuple[Any, ...], cls: type) -> pd.DataFrame:
        columns = [f.name for f in dataclasses.fields(cls)]
        return pd.DataFrame([dataclasses.asdict(x) for x in items], columns=columns)

    return ImpactReport(
        found,
        frame(found.tenants, TenantImpact),
        frame(found.resources, ResourceImpact),
        found.rows.to_pandas(),
    )


# --- re-running a detector -------------------------------------------------------------------


def detector(detector_id: str, cfg: Config | None = None, **overrides: Any) -> Detector:
    """A detector built from ``cfg``'s ``[detectors.<id>]`` with ``overrides`` on top, validated
    as at start (a wrong key or type raises ``ConfigError``), with the break-glass tickets of
    ``cfg``'s files and tables read in."""
    import detectors

    cfg = cfg or config()
    if detector_id not in detectors.REGISTRY:
        raise InputError(
            f"unknown detector {detector_id!r}; valid: {', '.join(detectors.REGISTRY)}"
        )
    from pipeline import tickets

    cls = detectors.load(detector_id)
    settings = cls.parse_settings({**cfg.detectors.get(detector_id, {}), **overrides})
    return cls(settings, tickets.resolve(cfg).relationships)


@dataclass
class Inputs:
    """What one detector reads for one window: the window and its baseline, as Arrow."""

    since: datetime
    until: datetime
    window: pa.Table
    baseline: pa.Table | None
    baseline_start: datetime


def inputs(
    lake: LakeLike,
    detector_id: str,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    cfg: Config | None = None,
) -> Inputs:
    """Read a detector's window (default: the latest day) and baseline, as ``detect`` does."""
    from pipeline.detect import read_baseline, read_window, resolve_window

    lk = as_lake(lake)
    det = detector(detector_id, cfg)
    t0, t1 = resolve_window(lk, as_time(since), as_time(until))
    window = read_window(lk, det, t0, t1)
    base_start = t0 - det.lookback
    baseline = read_baseline(lk, det, base_start, t0) if det.lookback else None
    return Inputs(t0, t1, window, baseline, base_start)


@dataclass
class DetectorRun:
    detector: Detector  # fitted: its learned state (``..._``) is what the window was scored on
    findings: pd.DataFrame  # schema.FINDINGS, worst first; never written to the lake
    window: pd.DataFrame  # the events it scored, strings as categoricals
    since: datetime
    until: datetime


def _run(det: Detector, data: Inputs) -> DetectorRun:
    import pandas as pd

    from detectors.base import to_frame

    found = det.detect(
        data.baseline,
        data.window,
        start=data.since,
        end=data.until,
        baseline_start=data.baseline_start,
    )
    window = to_frame(data.window)
    window.attrs["period"] = (pd.Timestamp(data.since), pd.Timestamp(data.until))
    return DetectorRun(det, found.to_pandas(), window, data.since, data.until)


def run_detector(
    lake: LakeLike,
    detector_id: str,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    *,
    cfg: Config | None = None,
    data: Inputs | None = None,
    **overrides: Any,
) -> DetectorRun:
    """Run one detector over [since, until) (default: the latest day) with ``overrides`` of its
    settings; ``data`` from ``inputs`` skips reading the lake again."""
    data = data or inputs(lake, detector_id, since, until, cfg)
    return _run(detector(detector_id, cfg, **overrides), data)


def sweep(
    lake: LakeLike,
    detector_id: str,
    setting: str,
    values: list[Any],
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    *,
    cfg: Config | None = None,
    data: Inputs | None = None,
) -> pd.DataFrame:
    """The findings for each value of one setting (the lake is read once): the FINDINGS columns
    plus ``value``."""
    import pandas as pd

    data = data or inputs(lake, detector_id, since, until, cfg)
    parts = [
        run_detector(lake, detector_id, cfg=cfg, data=data, **{setting: v}).findings.assign(value=v)
        for v in values
    ]
    return pd.concat(parts, ignore_index=True)


def compare_findings(
    lake: LakeLike,
    detector_id: str,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    *,
    cfg: Config | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """One row per finding key that the configured settings (``current``) or the same settings
    with ``overrides`` (``proposed``) find over the window: ``change`` is ``same``, ``severity``
    or ``score`` (found by both, differently), ``dropped`` or ``added``."""
    import pandas as pd

    data = inputs(lake, detector_id, since, until, cfg)
    cols = ["dedup_key", "title", "severity", "score", "threshold", "event_count"]
    cur = run_detector(lake, detector_id, cfg=cfg, data=data).findings[cols]
    new = run_detector(lake, detector_id, cfg=cfg, data=data, **overrides).findings[cols]
    both = cur.merge(
        new, on="dedup_key", how="outer", suffixes=("_current", "_proposed"), indicator=True
    )
    both["title"] = both["title_proposed"].fillna(both["title_current"])

    def change(r: pd.Series) -> str:
        if r["_merge"] == "left_only":
            return "dropped"
        if r["_merge"] == "right_only":
            return "added"
        if r["severity_current"] != r["severity_proposed"]:
            return "severity"
        return "same" if r["score_current"] == r["score_proposed"] else "score"

    both["change"] = both.apply(change, axis=1) if len(both) else pd.Series(dtype=object)
    first = ["change", "dedup_key", "title"]
    rest = [f"{c}_{side}" for c in cols[2:] for side in ("current", "proposed")]
    out = both[first + rest].sort_values(["change", "dedup_key"], ignore_index=True)
    out.attrs.update(detector=detector_id, overrides=overrides, since=data.since, until=data.until)
    return out
