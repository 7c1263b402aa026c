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

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import schema
from pipeline.config import Config
from pipeline.detect_live import (  # noqa: F401 (part_name, live_name: pipeline.detect's API)
    _settle_live,
    _write_live,
    anchor,
    live_name,
    part_name,
    window_floor,
)
from pipeline.errors import InputError
from pipeline.lake import (
    FINDINGS,
    Lake,
    LakeLike,
    as_lake,
    file_hour,
    read_events,
)
from pipeline.lake_reads import allowed_rows

if TYPE_CHECKING:
    from detectors.base import Detector
    from pipeline.suppressions import InForce

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


def history_start(det: Detector, since: datetime, history_from: datetime | None) -> datetime:
    """Where ``det``'s baseline begins for a window from ``since``: ``lookback`` before it, but
    not before the lake's first event (``history_from``)."""
    start = since - det.lookback
    return start if history_from is None else max(start, min(history_from, since))


def baseline_days(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) a day at a time: how a baseline is read (and ordered)."""
    n = -((start - end) // DAY)  # days begun, the last one cut at ``end``
    return [(start + i * DAY, min(start + (i + 1) * DAY, end)) for i in range(n)]


def read_window(
    lake: Lake,
    det: Detector,
    since: datetime,
    until: datetime,
    extra: Sequence[str] = (),
    files: Sequence[str] | None = None,
) -> pa.Table:
    """The rows ``det`` reads of [since, until) (its sources, ``window_only``), its window
    columns and ``extra`` (``files``: only these event files, as ``read_events``)."""
    own = window_columns(det)
    cols = [*own, *(c for c in extra if c not in own)]
    where = allowed_rows(det.window_only)
    return read_events(
        lake, since, until, sources=det.sources, columns=cols, where=where, files=files
    )


def read_baseline(
    lake: Lake, det: Detector, start: datetime, end: datetime, extra: Sequence[str] = ()
) -> pa.Table:
    """The detector's baseline columns (and ``extra``) over [start, end), a day at a time,
    strings dictionary-encoded (a 14-day history is mostly repeated principals, tenants ...)."""
    cols = [*det.baseline_columns, *(c for c in extra if c not in det.baseline_columns)]
    where = allowed_rows(det.baseline_only)
    parts = []
    for day, nxt in baseline_days(start, end):
        t = read_events(lake, day, nxt, sources=det.sources, columns=cols, where=where)
        if t.num_rows:
            parts.append(encode(t))
    if not parts:
        return encode(read_events(lake, start, start, sources=det.sources, columns=cols))
    return pa.concat_tables(parts, promote_options="permissive").unify_dictionaries()


def encode(t: pa.Table) -> pa.Table:
    """``t`` with its string columns dictionary-encoded, as a baseline is handed to detectors."""
    cols = [c.dictionary_encode() if pa.types.is_string(c.type) else c for c in t.columns]
    return pa.table(cols, names=t.column_names)


def prepare(
    lake_root: str,
    cfg: Config,
    since: datetime | None,
    until: datetime | None,
    only: tuple[str, ...] | None,
    warn: Callable[[str], None] | None,
    now: datetime | None,
) -> tuple[dict[str, Detector], dict[str, str], Lake, tuple[datetime, datetime], InForce]:
    """What a detection run settles before it reads any event, whichever engine runs it: the
    detectors (settings validated, break-glass tickets read), the plugins left out and why,
    the lake, the window, and the suppressions in force (``warn`` told of the expired ones and
    of the plugins left out)."""
    import detectors
    from pipeline import suppressions

    dets = detectors.from_config(cfg, only)
    missing = detectors.unavailable()
    lake = Lake(lake_root)
    window = resolve_window(lake, since, until)
    sups = suppressions.in_force(cfg, lake, now)
    if warn is not None:
        for line in sups.warnings():
            warn(line)
        for det_id, why in missing.items():
            warn(f"detector {det_id} left out: {why}")
    return dets, missing, lake, window, sups


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
    from pipeline import suppressions

    started = time.perf_counter()
    dets, missing, lake, (since, until), sups = prepare(
        lake_root, cfg, since, until, only, warn, now
    )
    tables, failed, counts = [], {}, {}
    skipped: dict[str, str] = {}
    # History starts where the lake's first event is, not a lookback before the window: hours
    # before it are not "quiet", they are unknown, and the detectors say so.
    history_from = earliest_event(lake)
    # The detectors' reads share one listing of each event folder (Lake.snapshot).
    with lake.snapshot():
        for i, (det_id, det) in enumerate(dets.items()):
            if progress:
                progress(i, len(dets))
            try:
                found, counts[det_id] = _detect_one(lake, det, since, until, history_from)
            except Exception as exc:  # one broken detector must not stop the rest
                failed[det_id] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                continue
            failed.update(parts_failed(det_id, det))
            skipped.update(parts_skipped(det_id, det))
            found = suppressions.mark(found, sups.active)
            if write:
                lake.write_table(part_name(det_id, since, until), found)
                _settle_live(lake, det_id, since, until, found)
            tables.append(found)
    if progress:
        progress(len(dets), len(dets))
    findings = _worst_first(pa.concat_tables(tables) if tables else schema.empty(schema.FINDINGS))
    parts = {"failed": failed, "skipped": skipped, "unavailable": missing}
    summary = detect_summary(lake, (since, until), counts, findings, sups, parts, started)
    return Detected(findings, summary)


def detect_summary(
    lake: Lake,
    window: tuple[datetime, datetime],
    counts: dict[str, dict[str, int]],
    findings: pa.Table,
    sups: InForce,
    parts: dict[str, dict[str, str]],
    started: float,
) -> dict[str, Any]:
    """A window's detection summary (``run_detect``'s, whichever engine ran it); ``parts``:
    the detectors or parts that failed, were skipped, or are unavailable."""
    severities = Counter(findings["severity"].to_pylist())
    return {
        "lake": lake.root,
        "window_start": window[0].isoformat(),
        "window_end": window[1].isoformat(),
        "detectors": counts,
        "findings": findings.num_rows,
        "by_severity": {s: severities[s] for s in reversed(schema.SEVERITIES) if severities[s]},
        # Written, and never paged.
        "suppressed": findings.num_rows - findings["suppressed_by"].null_count,
        "suppressions_active": len(sups.active),
        "suppressions_expired": [s.id for s, _ in sups.expired],
        "failed": parts["failed"],
        # Parts a detector could not judge from the events it was given, with why (the
        # authorizer's log not ingested, say): they ran and found nothing to say.
        "skipped": parts["skipped"],
        "unavailable": parts["unavailable"],  # plugins that do not load: the others ran
        "seconds": round(time.perf_counter() - started, 3),
    }


def _detect_one(
    lake: Lake,
    det: Detector,
    since: datetime,
    until: datetime,
    history_from: datetime | None,
    files: Sequence[str] | None = None,
) -> tuple[pa.Table, dict[str, int]]:
    """``det``'s findings over [since, until), given the history before it, and its counts
    (``files``: read the window from these event files only)."""
    window = read_window(lake, det, since, until, files=files)
    base_start = history_start(det, since, history_from)
    baseline = read_baseline(lake, det, base_start, since) if det.lookback else None
    found = det.detect(baseline, window, start=since, end=until, baseline_start=base_start)
    counts = {
        "window_events": window.num_rows,
        "baseline_events": baseline.num_rows if baseline is not None else 0,
        "findings": found.num_rows,
    }
    return found, counts


# --- sliding windows ---------------------------------------------------------------------------


def _live_summary(
    lake: Lake,
    since: datetime,
    until: datetime,
    counts: dict[str, dict[str, int]],
    findings: pa.Table,
    news: int,
    failed: dict[str, str],
    started: float,
) -> dict[str, Any]:
    return {
        "lake": lake.root,
        "window_start": since.isoformat(),
        "window_end": until.isoformat(),
        "detectors": counts,
        "findings": findings.num_rows,
        "news": news,  # findings not in the lake before, or with more events than there
        "suppressed": findings.num_rows - findings["suppressed_by"].null_count,
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 3),
    }


def run_fast(
    lake_root: str,
    cfg: Config,
    window: tuple[datetime, datetime],
    files: Sequence[str],
    *,
    only: tuple[str, ...] | None = None,
    settled: datetime | None = None,
) -> Detected:
    """The detectors that need no history (or ``only``) over the events of ``files`` (what one
    S3 object's ingest wrote) in ``window``: the S3-object function's fast path. Its cost is
    the object's, not the window's so far (which gains a file with every object). Findings take
    the window's ids and go to its live file (a finding a later object adds events to keeps
    its largest view there; the window's own detection, complete, settles it)."""
    import detectors
    from pipeline import suppressions

    started = time.perf_counter()
    chosen = detectors.from_config(cfg, only)
    dets = {d: x for d, x in chosen.items() if only is not None or not x.lookback}
    lake = Lake(lake_root)
    since, until = _utc(window[0]), _utc(window[1])
    sups = suppressions.in_force(cfg, lake, None)
    tables, failed, counts, news = [], {}, {}, 0
    with lake.snapshot():  # the object's files fetched once for every detector
        for det_id, det in dets.items():
            try:
                found, counts[det_id] = _detect_one(lake, det, since, until, None, files)
            except Exception as exc:  # one broken detector must not stop the rest
                failed[det_id] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                continue
            failed.update(parts_failed(det_id, det))
            found = suppressions.mark(found, sups.active)
            if found.num_rows:
                done = settled is not None and until <= settled
                news += _write_live(lake, det_id, since, until, found, done)
            tables.append(found)
    findings = _worst_first(pa.concat_tables(tables) if tables else schema.empty(schema.FINDINGS))
    summary = _live_summary(lake, since, until, counts, findings, news, failed, started)
    summary["files"] = len(files)
    return Detected(findings, summary)


# A windowed detector fitted on the history before the aligned window its sliding window starts
# in, per detector: every tick of that window scores with it instead of reading and fitting the
# same history again (a scheduled function's warm container keeps it between ticks).
_FITTED: dict[str, tuple[tuple[Any, ...], Detector]] = {}


def _detect_growing(
    lake: Lake,
    det_id: str,
    det: Detector,
    end: datetime,
    length: timedelta,
    history_from: datetime | None,
) -> tuple[pa.Table, dict[str, int]]:
    """``det`` over the events from the aligned window that ``end - length`` falls in up to
    ``end`` (between one and two window lengths: the sliding window and what comes before it
    in its first aligned window), against the history before that window: the same history for
    every tick until the next window starts, fitted once (``_FITTED``)."""
    start = window_floor(end - length, length)
    base_start = history_start(det, start, history_from)
    key = (lake.root, start, base_start, repr(det.settings), repr(det.relationships))
    window = read_window(lake, det, start, end)
    counts = {"window_events": window.num_rows, "baseline_events": 0}
    cached = _FITTED.get(det_id)
    if cached is not None and cached[0] == key:
        found = cached[1].detect(
            None, window, start=start, end=end, baseline_start=base_start, fitted=True
        )
    else:
        baseline = read_baseline(lake, det, base_start, start)
        counts["baseline_events"] = baseline.num_rows
        found = det.detect(baseline, window, start=start, end=end, baseline_start=base_start)
        del baseline
        _FITTED[det_id] = (key, det)
    counts["findings"] = found.num_rows
    return found, counts


def run_live(
    lake_root: str,
    cfg: Config,
    end: datetime,
    length: timedelta,
    *,
    only: tuple[str, ...] | None = None,
    settled: datetime | None = None,
) -> Detected:
    """Every enabled detector (or ``only``) over the sliding window [end - length, end): what
    has arrived of the current hour and the one before, evaluated at every schedule tick so that
    a burst pages within a tick of its delivery instead of after its clock-aligned window closes
    and the lag for late delivery has passed.

    A windowed detector (one with a lookback) sees the sliding window whole; its findings are
    ``anchor``ed to the aligned window of their first event. A rule (no lookback) is run over
    each aligned window the sliding one overlaps, up to ``end``, with that window's ids: it
    catches what the S3-object function left (a run that found the lease held) within a tick.
    Either way findings are kept in the aligned window's live file (``live_name``) beside its
    own findings file; the aligned detection settles it (``_settle_live``). Windows that end by
    ``settled`` (the schedule's watermark) have had their own detection: a finding it wrote is
    never written again as live."""
    import detectors
    from pipeline import suppressions

    started = time.perf_counter()
    dets = detectors.from_config(cfg, only)
    lake = Lake(lake_root)
    end = _utc(end)
    since = end - length
    sups = suppressions.in_force(cfg, lake, end)
    history_from = earliest_event(lake)
    tables, failed, counts, news = [], {}, {}, 0
    with lake.snapshot():  # one listing of each event folder for every detector
        for det_id, det in dets.items():
            try:
                if det.lookback:
                    found, counts[det_id] = _detect_growing(
                        lake, det_id, det, end, length, history_from
                    )
                    parts = anchor(suppressions.mark(found, sups.active), length)
                else:
                    # A rule needs no history: each aligned window the sliding one overlaps, from
                    # its start up to now, gives exactly the findings (and ids) of that window.
                    parts, n = {}, Counter[str]()
                    start = window_floor(since, length)
                    while start < end:
                        found, c = _detect_one(lake, det, start, start + length, None)
                        n.update(c)
                        parts[start] = suppressions.mark(found, sups.active)
                        start += length
                    counts[det_id] = dict(n)
            except Exception as exc:  # one broken detector must not stop the rest
                failed[det_id] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                continue
            failed.update(parts_failed(det_id, det))
            for start, part in sorted(parts.items()):
                done = settled is not None and start + length <= settled
                news += _write_live(lake, det_id, start, start + length, part, done)
                tables.append(part)
    findings = _worst_first(pa.concat_tables(tables) if tables else schema.empty(schema.FINDINGS))
    summary = _live_summary(lake, since, end, counts, findings, news, failed, started)
    summary["sliding"] = True
    return Detected(findings, summary)


def parts_failed(det_id: str, det: Detector) -> dict[str, str]:
    """The parts of a detector that failed while the rest of it ran (a Sigma rule whose SQL
    failed), as ``"<detector>:<part>" -> why``: reported like a failed detector."""
    parts: dict[str, str] = getattr(det, "failures", None) or {}
    return {f"{det_id}:{k}": v for k, v in parts.items()}


def parts_skipped(det_id: str, det: Detector) -> dict[str, str]:
    """What a detector left unjudged in the window it just scored (its ``skipped``: part ->
    why, such as an API whose authorizer log is not ingested), as ``"<detector>:<part>"``."""
    parts: dict[str, str] = getattr(det, "skipped", None) or {}
    return {f"{det_id}:{k}": v for k, v in parts.items()}


def _worst_first(t: pa.Table) -> pa.Table:
    rank = schema.SEVERITY_RANK
    ranked = t.append_column("r", pa.array([rank[s] for s in t["severity"].to_pylist()], pa.int8()))
    order = [("r", "descending"), ("detector", "ascending"), ("score", "descending")]
    return ranked.sort_by([*order, ("finding_id", "ascending")]).drop_columns(["r"])


def read_findings(lake: LakeLike) -> pa.Table:
    """Every finding in the lake (schema.FINDINGS)."""
    lk = as_lake(lake)
    return lk.read_all(FINDINGS, schema.FINDINGS, {"suppressed_by": pa.scalar(None, pa.string())})
