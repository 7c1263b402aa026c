"""Compaction: a closed folder's many small Parquet files rewritten into a few large ones.

Ingestion writes at least one file per input object and hour partition, detection one per
detector and window; readers (this package, Athena, DuckDB) pay per file. ``compact`` rewrites
the folders that can no longer change: a source's day of events that ended before ``before``
into a few files directly in the day's folder (``events/source=/date=/compacted-...``, replacing
the files of all its ``hour=`` folders: a closed day then has a few files per source, not one or
more per hour), the event hours that ended before it in a day that has not, findings days before
it, the quarantine's files written before it.

One step, safe to kill anywhere, on a local disk or on S3 (where nothing can be renamed):

1. the folder's files (a day's: those of its hours' folders, in hour order) are packed in name
   order into groups of about ``target_bytes``;
2. each group becomes one file, ``compacted-<hash of the group's names>.parquet``, whose footer
   lists the names it replaces (``lake.REPLACES``); it appears whole (a rename locally, one PUT
   on S3): this is the commit;
3. the files it replaces are deleted, the compacted files replaced in turn last.

Readers go through ``Lake.files``, which leaves out any file a compacted file beside it (or, for
an hour's file, in its day's folder) lists,
so from the commit on they read the group's rows once, from the new file, whether or not the
deletions have happened. A run that died before a commit left no visible trace (at most a
temporary in ``_tmp/``); one that died after it left files that are already hidden, which the
next run deletes first. The same files give the same groups, names and rows, so a re-run
converges to what one uninterrupted run makes.

Rows are only moved: event files are sorted as ingestion sorts them (target tenant, actor tenant,
time), other files keep their rows in the order of their names. A file written again under a
name already compacted (a batch re-ingested after a crash) holds rows the compacted file already
has, and stays hidden until the next compaction deletes it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from pipeline import lake_io, schema
from pipeline.lake import (
    COMPACTED,
    EVENTS,
    FINDINGS,
    QUARANTINE,
    REPLACES,
    STATE,
    STATE_DIGESTS,
    STATE_INGESTED,
    STATE_SESSIONS,
    Lake,
)

# A state folder still written to is compacted once readers see this many files in it.
OPEN_STATE_FILES = 8
# Athena's and DuckDB's advice: files of 128 MB and more.
TARGET_BYTES = 128 << 20
# The order ingestion writes an event file in (the last two make it total, so a group's file is
# the same bytes however often it is made).
EVENT_ORDER = ("target_tenant", "actor_tenant", "event_time", "event_id", "record_hash")
AREAS = ("events", "quarantine", "findings", "state")
# State folders whose files are rewritten under the same name.
_REWRITTEN = ("logs", "watermark", "metrics")

_HOUR = re.compile(r"^events/source=[^/]+/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")
_EVENT_DAY = re.compile(r"^events/source=[^/]+/date=(\d{4}-\d{2}-\d{2})$")
# The folders below a day's events folder whose files a day's compacted file replaces.
_HOUR_NAME = re.compile(r"^hour=\d{2}$")
_DAY = re.compile(r"^findings/date=(\d{4}-\d{2}-\d{2})$")
# The partitions of the state that grows with every batch: input records and sessions, by day or
# (inputs named by no date) by folder (the two folders themselves hold an older lake's files),
# and the digest files seen, one file a batch.
_STATE_PART = re.compile(
    r"^_state/(?:ingested|sessions|digests)(?:/(?:date=(\d{4}-\d{2}-\d{2})|prefix=[^/]+))?$"
)


@dataclass
class Compacted:
    """What a compaction did, JSON-able (``as_dict``)."""

    folders: int = 0  # folders looked at
    files_before: int = 0  # their files that readers saw
    files_after: int = 0
    written: int = 0  # compacted files written
    deleted: int = 0  # files deleted (replaced ones)
    complete: bool = True  # False: stopped by ``check``; the next run continues
    by_folder: dict[str, tuple[int, int]] = field(default_factory=dict)  # files before, after

    def add(self, other: Compacted) -> None:
        self.folders += other.folders
        self.files_before += other.files_before
        self.files_after += other.files_after
        self.written += other.written
        self.deleted += other.deleted
        self.by_folder.update(other.by_folder)

    def as_dict(self) -> dict[str, Any]:
        return {
            "folders": self.folders,
            "files_before": self.files_before,
            "files_after": self.files_after,
            "written": self.written,
            "deleted": self.deleted,
            "complete": self.complete,
        }


class Stop(Exception):
    """Raised by a ``check`` callback to stop between two groups (the work done is kept)."""


def _listing(lake: Lake, rel: str, hours: bool = False) -> dict[str, int]:
    """The Parquet files directly in the folder ``rel`` (``hours``: and in its ``hour=HH``
    folders, as ``hour=HH/<name>``): name -> size."""
    sel = pafs.FileSelector(lake.path(rel), recursive=hours, allow_not_found=True)
    out = {}
    for i in lake.fs.get_file_info(sel):
        if i.type != pafs.FileType.File or not i.path.endswith(".parquet"):
            continue
        name = posixpath.relpath(i.path, lake.path(rel))
        parent = posixpath.dirname(name)
        if not parent or (hours and _HOUR_NAME.match(parent)):
            out[name] = i.size or 0
    return out


def _mtimes(lake: Lake, rel: str) -> dict[str, datetime]:
    sel = pafs.FileSelector(lake.path(rel), recursive=False, allow_not_found=True)
    out = {}
    for i in lake.fs.get_file_info(sel):
        if i.type == pafs.FileType.File and i.mtime is not None:
            t = i.mtime
            out[posixpath.basename(i.path)] = t if t.tzinfo else t.replace(tzinfo=UTC)
    return out


def compacted_name(names: Iterable[str]) -> str:
    h = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:32]
    return f"{COMPACTED}{h}.parquet"


def _groups(files: dict[str, int], target_bytes: int, regroup: bool = False) -> list[list[str]]:
    """Files not yet compacted into this folder, packed in name order into groups of at most
    ``target_bytes`` (a group of one is left as it is: there is nothing to gain). An hour's
    compacted file (``hour=HH/compacted-...``) goes into its day's like any other; with
    ``regroup`` the folder's own compacted files do too (a folder compacted while it is still
    written to: its compacted file and the files written since become one)."""
    out: list[list[str]] = []
    group: list[str] = []
    size = 0
    for name in sorted(n for n in files if regroup or not n.startswith(COMPACTED)):
        if group and size + files[name] > target_bytes:
            out.append(group)
            group, size = [], 0
        group.append(name)
        size += files[name]
    if group:
        out.append(group)
    return [g for g in out if len(g) > 1]


def _rows(lake: Lake, folder: str, names: list[str]) -> pa.Table:
    """The files' rows as one table, in the file's layout for its area."""
    tables = [lake.read_file(posixpath.join(folder, n)) for n in names]
    if folder.startswith(f"{STATE_INGESTED}/"):
        # Input records name their batch (the commit check of ``Ingestor.load_done``): older
        # files by their name only.
        tables = [_with_batch(t, n) for t, n in zip(tables, names, strict=True)]
    if folder == EVENTS or folder.startswith(f"{EVENTS}/"):
        return _pinned(tables, schema.EVENTS, {}).sort_by([(c, "ascending") for c in EVENT_ORDER])
    if folder == QUARANTINE:
        return _pinned(tables, schema.QUARANTINE, {"records": pa.scalar(1, pa.int64())})
    if folder == FINDINGS or folder.startswith(f"{FINDINGS}/"):
        return _pinned(tables, schema.FINDINGS, {})
    return pa.concat_tables(tables, promote_options="permissive")


def _with_batch(t: pa.Table, name: str) -> pa.Table:
    if "batch" in t.column_names:
        return t
    batch = None if name.startswith(COMPACTED) else name.removesuffix(".parquet")
    return t.append_column("batch", pa.repeat(pa.scalar(batch, pa.string()), t.num_rows))


def _pinned(tables: list[pa.Table], pinned: pa.Schema, defaults: dict[str, pa.Scalar]) -> pa.Table:
    """Tables of ``pinned`` (files written before a column was added get it as ``defaults``
    says, or null, as readers read them)."""
    out = []
    for t in tables:
        for f in pinned:
            if f.name not in t.column_names:
                value = defaults.get(f.name, pa.scalar(None, f.type))
                t = t.append_column(f.name, pa.repeat(value, t.num_rows).cast(f.type))
        out.append(t.select(pinned.names).cast(pinned))
    return pa.concat_tables(out) if out else pinned.empty_table()


def compact_folder(
    lake: Lake,
    folder: str,
    target_bytes: int = TARGET_BYTES,
    check: Callable[[], None] | None = None,
    only: Callable[[str], bool] | None = None,
    hours: bool = False,
    regroup: bool = False,
    min_files: int = 2,
) -> Compacted:
    """Compact the files directly in ``folder`` (``only``: the names that may be compacted, for
    a folder that is still written to; ``hours``: a day's events folder, whose compacted files
    take in the files of its ``hour=HH`` folders too; ``regroup``: its own compacted files are
    compacted again with the others; ``min_files``: nothing is written while readers see fewer
    files). Raises what ``check`` raises between two groups."""
    done = Compacted(folders=1)
    files = _listing(lake, folder, hours)
    visible = {posixpath.relpath(r, folder) for r in lake.current(_under(folder, files))}
    done.files_before = len(visible)
    # What an earlier run committed but did not get to delete: plain files first, then the
    # hours' compacted files, the day's last, so that a compacted file is deleted only once
    # nothing it replaces is left.
    hidden = sorted(set(files) - visible, key=_deletion_order)
    for name in hidden:
        done.deleted += lake_io.delete(lake, posixpath.join(folder, name))
        files.pop(name)
    pool = {n: s for n, s in files.items() if n in visible and (only is None or only(n))}
    # Below ``min_files`` nothing is written: only what an earlier run left hidden is deleted.
    groups = _groups(pool, target_bytes, regroup) if len(visible) >= min_files else []
    for group in groups:
        if check is not None:
            check()
        rows = _rows(lake, folder, group)
        meta = dict(rows.schema.metadata or {})
        meta[REPLACES] = json.dumps(group).encode()
        out = compacted_name(group)
        lake.write_table(posixpath.join(folder, out), rows.replace_schema_metadata(meta))
        done.written += 1
        for name in sorted(group, key=_deletion_order):
            done.deleted += lake_io.delete(lake, posixpath.join(folder, name))
            files.pop(name)
        files[out] = 0
    done.files_after = len(lake.current(_under(folder, files)))
    done.by_folder[folder] = (done.files_before, done.files_after)
    return done


def _under(folder: str, names: Iterable[str]) -> list[str]:
    return sorted(posixpath.join(folder, n) for n in names)


def _deletion_order(name: str) -> tuple[bool, bool]:
    """Plain files, then compacted files in an hour's folder, then those of the folder itself."""
    return posixpath.basename(name).startswith(COMPACTED), "/" not in name


def event_days(lake: Lake, days: Iterable[str] | None = None) -> dict[str, list[str]]:
    """The lake's event days (``events/source=/date=``) holding files, of ``days`` only if
    given, each with its hours' folders that hold files."""
    if days is None:
        tops = [EVENTS]
    else:
        tops = [f"{EVENTS}/source={s}/date={d}" for s in schema.SOURCES for d in days]
    out: dict[str, set[str]] = {}
    for top in tops:
        sel = pafs.FileSelector(lake.path(top), recursive=True, allow_not_found=True)
        for info in lake.fs.get_file_info(sel):
            if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
                folder = posixpath.dirname(posixpath.relpath(info.path, lake.base))
                if _HOUR.match(folder):
                    out.setdefault(posixpath.dirname(folder), set()).add(folder)
                elif _EVENT_DAY.match(folder):
                    out.setdefault(folder, set())
    return {day: sorted(hours) for day, hours in sorted(out.items())}


def findings_folders(lake: Lake) -> list[str]:
    sel = pafs.FileSelector(lake.path(FINDINGS), recursive=False, allow_not_found=True)
    found = [posixpath.relpath(i.path, lake.base) for i in lake.fs.get_file_info(sel)]
    return sorted(f for f in found if _DAY.match(f))


def state_folders(lake: Lake) -> list[str]:
    """The folders of ``_state/ingested``, ``_state/sessions`` and ``_state/digests`` that hold
    state files (each top folder itself too: the files written before it was partitioned)."""
    out = [STATE_DIGESTS, STATE_INGESTED, STATE_SESSIONS]
    for top in (STATE_DIGESTS, STATE_INGESTED, STATE_SESSIONS):
        sel = pafs.FileSelector(lake.path(top), recursive=False, allow_not_found=True)
        for info in lake.fs.get_file_info(sel):
            rel = posixpath.relpath(info.path, lake.base)
            if info.type == pafs.FileType.Directory and _STATE_PART.match(rel):
                out.append(rel)
    return sorted(out)


def compact(
    lake: Lake,
    before: datetime,
    *,
    since: datetime | None = None,
    areas: Iterable[str] = AREAS,
    target_bytes: int = TARGET_BYTES,
    check: Callable[[], None] | None = None,
    written_before: datetime | None = None,
) -> Compacted:
    """Compact every closed folder of ``areas``: event days that ended by ``before`` (and, with
    ``since``, began at or after it) into their day's folder, the event hours that ended by it
    in the days that have not, findings days that ended by ``before``, the state's input-record
    and session days that ended by ``before`` (those that have not, and its folders named by no
    date, once they hold ``OPEN_STATE_FILES`` files: their files are written once, under names
    of their own), quarantine files
    written before ``written_before`` (by the clock; default now: the quarantine's files are
    named by batch, not by the time of what they hold). ``check`` is called before each group is
    written; when it raises ``Stop`` the result says ``complete=False`` (whatever else it raises
    goes through)."""
    before = before.astimezone(UTC)
    areas = tuple(areas)
    done = Compacted()
    try:
        if "events" in areas:
            days = None
            if since is not None:
                first = since.astimezone(UTC).date()
                n = (before.date() - first).days + 1
                days = [str(first + timedelta(days=i)) for i in range(max(n, 0))]
            for day, hours in event_days(lake, days).items():
                m = _EVENT_DAY.match(day)
                assert m is not None
                start = datetime.fromisoformat(f"{m[1]}T00:00:00+00:00")
                if start + timedelta(days=1) <= before and (since is None or start >= since):
                    done.add(compact_folder(lake, day, target_bytes, check, hours=True))
                    continue
                for folder in hours:
                    m = _HOUR.match(folder)
                    assert m is not None
                    start = datetime.fromisoformat(f"{m[1]}T{m[2]}:00:00+00:00")
                    end = start + timedelta(hours=1)
                    if end > before or (since is not None and start < since):
                        continue
                    done.add(compact_folder(lake, folder, target_bytes, check))
        if "findings" in areas:
            for folder in findings_folders(lake):
                m = _DAY.match(folder)
                assert m is not None
                start = datetime.fromisoformat(f"{m[1]}T00:00:00+00:00")
                if start + timedelta(days=1) > before or (since is not None and start < since):
                    continue
                done.add(compact_folder(lake, folder, target_bytes, check))
        if "state" in areas:
            for folder in state_folders(lake):
                m = _STATE_PART.match(folder)
                assert m is not None
                # A day still written to (or a folder named by no day: always) is compacted
                # once it holds ``OPEN_STATE_FILES`` files, its compacted file with the rest:
                # a run every few minutes reads a few files of today, not hundreds.
                least = OPEN_STATE_FILES
                if m[1] is not None:
                    start = datetime.fromisoformat(f"{m[1]}T00:00:00+00:00")
                    if since is not None and start < since:
                        continue
                    if start + timedelta(days=1) <= before:
                        least = 2
                done.add(
                    compact_folder(lake, folder, target_bytes, check, regroup=True, min_files=least)
                )
        if "quarantine" in areas:
            times = _mtimes(lake, QUARANTINE)
            written = written_before or datetime.now(UTC)
            if times:
                done.add(
                    compact_folder(
                        lake,
                        QUARANTINE,
                        target_bytes,
                        check,
                        lambda n: times.get(n, written) < written,
                    )
                )
    except Stop:
        done.complete = False
    return done


def compact_state(
    lake: Lake,
    area: str,
    *,
    target_bytes: int = TARGET_BYTES,
    check: Callable[[], None] | None = None,
    only: Callable[[str], bool] | None = None,
) -> Compacted:
    """Compact the files of ``_state/<area>`` (or of a folder below it, ``area`` being e.g.
    ``ingested`` or ``sessions/date=2026-11-16``) the same way as events: readers through
    ``Lake.files``/``read_tables``/``read_all`` see every row once, at every moment. For folders
    whose files are written once under names of their own: a file rewritten in place under the
    same name (``_state/logs``) would stay hidden behind the compacted file."""
    folder = f"{STATE}/{area.strip('/')}"
    lake.path(folder)  # checks the name
    if folder.split("/")[1] in _REWRITTEN:
        raise ValueError(f"{folder}: its files are rewritten in place, it cannot be compacted")
    try:
        return compact_folder(lake, folder, target_bytes, check, only)
    except Stop:
        return Compacted(complete=False)
