"""The findings files of windows: each detector's file of a window (``part_name``) and the live
file its sliding windows keep until the window's own detection settles it (``live_name``,
``_write_live``, ``_settle_live``). Each file is read in one request (``Lake.read_bytes``), a
missing one known from the read's answer rather than asked first."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipeline import lake_io, schema
from pipeline.lake import FINDINGS, Lake, findings_file


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def part_name(detector_id: str, since: datetime, until: datetime) -> str:
    h = hashlib.sha256(f"{detector_id}|{since.isoformat()}|{until.isoformat()}".encode())
    return findings_file(f"{since:%Y-%m-%d}", h.hexdigest()[:24])


def live_name(detector_id: str, since: datetime, until: datetime) -> str:
    """The file of a detector's findings that sliding windows anchored in [since, until)."""
    return part_name(f"{detector_id}|live", since, until)


def window_floor(ts: datetime, step: timedelta) -> datetime:
    ts = _utc(ts)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    return day + ((ts - day) // step) * step


def anchor(found: pa.Table, length: timedelta) -> dict[datetime, pa.Table]:
    """Findings of a sliding window, each moved to the clock-aligned window of ``length`` that
    holds its first event, with the id the detector gives that group in that window: so the
    window's own detection, once it is complete, finds the same ids, and every tick that sees a
    burst gives it the same id."""
    from detectors.base import finding_id

    out: dict[datetime, list[dict[str, Any]]] = {}
    for row in found.to_pylist():
        start = window_floor(row["first_seen"] or row["window_start"], length)
        detector, _, key = row["dedup_key"].partition(":")
        row.update(
            window_start=start,
            window_end=start + length,
            finding_id=finding_id(detector, key, start, start + length),
        )
        out.setdefault(start, []).append(row)
    return {s: pa.Table.from_pylist(rows, schema.FINDINGS) for s, rows in out.items()}


def _read_or_none(lake: Lake, rel: str, columns: list[str] | None = None) -> pa.Table | None:
    """The findings file ``rel`` in one request, or None if there is none."""
    import pyarrow.parquet as pq

    try:
        data = lake.read_bytes(rel)
    except FileNotFoundError:
        return None
    return pq.read_table(pa.BufferReader(data), columns=columns)


def _merge_live(old: pa.Table | None, new: pa.Table, settled: set[str]) -> tuple[pa.Table, int]:
    """The live file's rows (``old``) after a tick: every finding any tick found (none is
    dropped when the window slides past its first events), each in its largest view (most
    events), less those the window's own detection has found since (``settled``); and how many
    of ``new`` are news (not in the file, or with more events than there)."""
    rows: dict[str, dict[str, Any]] = {}
    for row in old.to_pylist() if old is not None else []:
        rows[row["finding_id"]] = row
    news = 0
    for row in new.to_pylist():
        have = rows.get(row["finding_id"])
        if have is None or row["event_count"] > have["event_count"]:
            rows[row["finding_id"]] = row
            news += row["finding_id"] not in settled
    kept = [r for fid, r in sorted(rows.items()) if fid not in settled]
    return pa.Table.from_pylist(kept, schema.FINDINGS), news


def _settle_live(
    lake: Lake, detector_id: str, since: datetime, until: datetime, found: pa.Table
) -> None:
    """The window's own detection is written: the live file of the same window keeps only the
    findings it did not find again (a burst the sliding window saw whole and the aligned window
    only in part), so no finding is in the lake twice and none is lost."""
    rel = live_name(detector_id, since, until)
    old = _read_or_none(lake, rel)
    if old is None:
        return
    left, _ = _merge_live(old, schema.empty(schema.FINDINGS), set(found["finding_id"].to_pylist()))
    if left.num_rows:
        lake.write_table(rel, left)
    else:
        lake_io.delete(lake, rel)


def _present(
    lake: Lake, detector_id: str, start: datetime, end: datetime, live: str, done: bool
) -> set[str]:
    """Ids of the detector's findings of [start, end) already in the lake outside its live file:
    those of the window's own findings file or, once compaction has merged a finished window's
    files into its day's few files, of that day's rows of this detector and window."""
    final = part_name(detector_id, start, end)
    whole = _read_or_none(lake, final, ["finding_id"])
    if whole is not None:
        return set(whole["finding_id"].to_pylist())
    if not done:
        return set()  # not detected as a whole yet: nothing of it is settled
    ids: set[str] = set()
    for rel in lake.files(f"{FINDINGS}/date={start:%Y-%m-%d}"):
        if rel == live:
            continue
        try:
            t = lake.read_file(rel, columns=["finding_id", "detector", "window_start"])
        except FileNotFoundError:
            continue  # compacted away since the listing: its rows are in a file listed too
        for row in t.to_pylist():
            if row["detector"] == detector_id and row["window_start"] == start:
                ids.add(row["finding_id"])
    return ids


def _write_live(
    lake: Lake, detector_id: str, start: datetime, end: datetime, part: pa.Table, done: bool
) -> int:
    """Merge ``part`` into the live file of [start, end) (``_merge_live``; ``done``: the
    window has had its own detection); how many of its findings are news. A file with nothing
    new is not written again."""
    rel = live_name(detector_id, start, end)
    present = _present(lake, detector_id, start, end, rel, done)
    old = _read_or_none(lake, rel)
    merged, news = _merge_live(old, part, present)
    exists = old is not None
    if merged.num_rows:
        if news or not exists or present:
            lake.write_table(rel, merged)
    elif exists:
        lake_io.delete(lake, rel)
    return news
