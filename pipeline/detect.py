"""The detect stage: lake events -> every enabled detector -> ``findings/`` in the lake.

For each detector it reads, with partition and column pruning, only the sources and columns the
detector declares: the window, and the ``lookback`` before it as the baseline (a day at a time,
strings dictionary-encoded, so 14 days of history stay small in memory). A detector that raises
is recorded in the summary and the others still run (pySigma's collect-errors habit).

Findings go to ``findings/date=<window start>/part-<hash of detector + window>.parquet``, one
file per detector and window, written even when empty: re-running a window rewrites the same
files (and ids) instead of adding copies, and a re-run that finds nothing clears the old ones.

Default window: the latest UTC day that has events in the lake (``--since`` alone: one day from
it; ``--until`` alone: the day before it).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import schema
from pipeline.config import Config
from pipeline.errors import InputError
from pipeline.lake import (
    FINDINGS,
    Lake,
    LakeLike,
    as_lake,
    file_hour,
    findings_file,
    read_events,
)

if TYPE_CHECKING:
    from detectors.base import Detector

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Detected:
    """What ``run_detect`` hands back: the findings themselves and the window's summary (the
    orchestration reads it as ``pipeline.runs.DetectResult``)."""

    findings: pa.Table  # schema.FINDINGS, every detector's findings, worst first
    summary: dict[str, Any]  # JSON-able


def latest_day(lake: Lake) -> datetime | None:
    """00:00 UTC of the latest day with events in the lake (from the day folders' names)."""
    for day in reversed(lake.event_dates()):
        if lake.event_day_files(day):
            return datetime.fromisoformat(day).replace(tzinfo=UTC)
    return None


def earliest_event(lake: Lake) -> datetime | None:
    """The time of the oldest event in the lake: where its history really begins (from the
    footers of the first day's files; their ``event_time`` column where statistics are
    missing). Only the day folders are listed, and the first day's files: not the lake; of
    those, only the first hour's footers and the compacted files' are read."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for day in lake.event_dates():
        times = []
        files = lake.event_day_files(day)
        # The day's first hour's files, and its compacted ones (no hour: any may hold it).
        first = min((h for f in files if (h := file_hour(f)) is not None), default=None)
        for rel in (f for f in files if file_hour(f) in (None, first)):
            meta = pq.read_metadata(lake.path(rel), filesystem=lake.fs)
            names = meta.schema.names
            stats = [
                meta.row_group(i).column(names.index("event_time")).statistics
                for i in range(meta.num_row_groups)
                if "event_time" in names
            ]
            if stats and all(st is not None and st.has_min_max for st in stats):
                times.append(min(st.min for st in stats if st is not None))
            else:
                col = lake.read_file(rel, ["event_time"])["event_time"]
                if len(col):
                    times.append(pc.min(col).as_py())
        found = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in times if t is not None]
        if found:
            return min(found)
    return None


def resolve_window(
    lake: Lake, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime]:
    if since is None and until is None:
        day = latest_day(lake)
        if day is None:
            raise InputError(f"lake {lake.root}: no events to detect on (run ingest first)")
        since, until = day, day + DAY
    elif since is None:
        assert until is not None
        since = until - DAY
    elif until is None:
        until = since + DAY
    since, until = _utc(since), _utc(until)
    if until <= since:
        raise InputError(f"empty window: until ({until}) is not after since ({since})")
    return since, until


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def window_columns(det: Detector) -> list[str]:
    """The columns ``det`` reads of a window: its own, and those of its optional ones that events
    have (a column a later version adds is read once the schema names it; older files then read
    it as null)."""
    optional = [c for c in det.optional_columns if c in schema.EVENTS.names]
    return [*det.columns, *optional]


def read_baseline(lake: Lake, det: Detector, start: datetime, end: datetime) -> pa.Table:
    """The detector's baseline columns over [start, end), one day at a time, strings
    dictionary-encoded (a 14-day history is mostly repeated principals, tenants, addresses)."""
    import pyarrow.compute as pc

    cols = list(det.baseline_columns)
    where = None
    for column, values in det.baseline_only:
        e = pc.field(column).isin(list(values))
        where = e if where is None else where & e
    parts = []
    day = start
    while day < end:
        nxt = min(day + DAY, end)
        t = read_events(lake, day, nxt, sources=det.sources, columns=cols, where=where)
        if t.num_rows:
            parts.append(_encode(t))
        day = nxt
    if not parts:
        return _encode(read_events(lake, start, start, sources=det.sources, columns=cols))
    return pa.concat_tables(parts, promote_options="permissive").unify_dictionaries()


def _encode(t: pa.Table) -> pa.Table:
    cols = [c.dictionary_encode() if pa.types.is_string(c.type) else c for c in t.columns]
    return pa.table(cols, names=t.column_names)


def part_name(detector_id: str, since: datetime, until: datetime) -> str:
    h = hashlib.sha256(f"{detector_id}|{since.isoformat()}|{until.isoformat()}".encode())
    return findings_file(f"{since:%Y-%m-%d}", h.hexdigest()[:24])


def run_detect(
    lake_root: str,
    cfg: Config,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    only: tuple[str, ...] | None = None,
    write: bool = True,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> Detected:
    """Run every enabled detector (or ``only`` these) over [since, until).

    Findings a suppression matches are written with its id in ``suppressed_by``. ``warn`` is
    told, before any detector runs, of each suppression that expired (by ``now``, default the
    clock) and so no longer applies; the summary lists them too."""
    import detectors
    from pipeline import suppressions

    started = time.perf_counter()
    # Validates settings and reads the break-glass tickets before any data is read.
    dets = detectors.from_config(cfg, only)
    lake = Lake(lake_root)
    since, until = resolve_window(lake, since, until)
    sups = suppressions.in_force(cfg, lake, now)
    if warn is not None:
        for line in sups.warnings():
            warn(line)
    tables, failed, counts = [], {}, {}
    # History starts where the lake's first event is, not a lookback before the window: hours
    # before it are not "quiet", they are unknown, and the detectors say so.
    history_from = earliest_event(lake)
    for i, (det_id, det) in enumerate(dets.items()):
        if progress:
            progress(i, len(dets))
        try:
            window = read_events(
                lake, since, until, sources=det.sources, columns=window_columns(det)
            )
            base_start = since - det.lookback
            if history_from is not None:
                base_start = max(base_start, min(history_from, since))
            baseline = read_baseline(lake, det, base_start, since) if det.lookback else None
            found = det.detect(baseline, window, start=since, end=until, baseline_start=base_start)
        except Exception as exc:  # one broken detector must not stop the rest
            failed[det_id] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            continue
        found = suppressions.mark(found, sups.active)
        counts[det_id] = {
            "window_events": window.num_rows,
            "baseline_events": baseline.num_rows if baseline is not None else 0,
            "findings": found.num_rows,
        }
        if write:
            lake.write_table(part_name(det_id, since, until), found)
        tables.append(found)
    if progress:
        progress(len(dets), len(dets))
    findings = _worst_first(pa.concat_tables(tables) if tables else schema.empty(schema.FINDINGS))
    severities = Counter(findings["severity"].to_pylist())
    summary: dict[str, Any] = {
        "lake": lake.root,
        "window_start": since.isoformat(),
        "window_end": until.isoformat(),
        "detectors": counts,
        "findings": findings.num_rows,
        "by_severity": {s: severities[s] for s in reversed(schema.SEVERITIES) if severities[s]},
        # Written, and never paged.
        "suppressed": findings.num_rows - findings["suppressed_by"].null_count,
        "suppressions_active": len(sups.active),
        "suppressions_expired": [s.id for s, _ in sups.expired],
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return Detected(findings, summary)


def _worst_first(t: pa.Table) -> pa.Table:
    rank = schema.SEVERITY_RANK
    ranked = t.append_column("r", pa.array([rank[s] for s in t["severity"].to_pylist()], pa.int8()))
    order = [("r", "descending"), ("detector", "ascending"), ("score", "descending")]
    return ranked.sort_by([*order, ("finding_id", "ascending")]).drop_columns(["r"])


def read_findings(lake: LakeLike) -> pa.Table:
    """Every finding in the lake (schema.FINDINGS)."""
    lk = as_lake(lake)
    return lk.read_all(FINDINGS, schema.FINDINGS, {"suppressed_by": pa.scalar(None, pa.string())})
