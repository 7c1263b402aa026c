"""Retention: whole partitions older than ``[lake] retention_days`` deleted, area by area.

An area's partitions are its day folders (``date=YYYY-MM-DD``): events (every source), findings,
and the incidents' state, outbox, notifications, verdicts and containment records. The
quarantine has no days: its files are deleted by when they were written (a compacted file by
when it was compacted). A day is deleted once it ended more than the area's days ago; an unset
area is kept forever.
Snapshots are never touched here: they keep the Object Lock retention they were written with.

Deleting a partition removes files a reader of that old day may be reading; no reader of newer
days is affected, and a deletion cut short is finished by the next run.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.fs as pafs

from pipeline.config import RetentionDays
from pipeline.lake import (
    CONTAINMENT,
    EVENTS,
    FINDINGS,
    INCIDENT_STATE,
    NOTIFICATIONS,
    OUTBOX,
    QUARANTINE,
    VERDICTS,
    Lake,
)

# The folders holding each area's day partitions (events: below each source).
AREA_FOLDERS = {
    "events": (EVENTS,),
    "findings": (FINDINGS,),
    "incidents": (INCIDENT_STATE, OUTBOX, NOTIFICATIONS, VERDICTS, CONTAINMENT),
}
_DAY = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


@dataclass
class Expired:
    """What retention deleted, JSON-able."""

    partitions: dict[str, int] = field(default_factory=dict)  # area -> day folders deleted
    files: dict[str, int] = field(default_factory=dict)  # area -> files deleted (quarantine)

    def as_dict(self) -> dict[str, Any]:
        return {"partitions": self.partitions, "files": self.files}


def cutoff(now: datetime, days: int) -> date:
    """Days before this one are expired (a day is kept until it ended ``days`` days ago)."""
    return (now.astimezone(UTC) - timedelta(days=days)).date()


def _day_folders(lake: Lake, top: str) -> list[tuple[str, date]]:
    """``date=`` folders directly under ``top`` (or, for events, under each source)."""
    out: list[tuple[str, date]] = []
    tops = [top]
    if top == EVENTS:
        sel = pafs.FileSelector(lake.path(EVENTS), recursive=False, allow_not_found=True)
        tops = [
            posixpath.relpath(i.path, lake.base)
            for i in lake.fs.get_file_info(sel)
            if i.type == pafs.FileType.Directory
            and posixpath.basename(i.path).startswith("source=")
        ]
    for t in tops:
        sel = pafs.FileSelector(lake.path(t), recursive=False, allow_not_found=True)
        for info in lake.fs.get_file_info(sel):
            m = _DAY.match(posixpath.basename(info.path))
            if info.type == pafs.FileType.Directory and m:
                out.append((posixpath.relpath(info.path, lake.base), date.fromisoformat(m[1])))
    return sorted(out)


def apply(
    lake: Lake,
    days: RetentionDays,
    now: datetime,
    check: Callable[[], None] | None = None,
) -> Expired:
    """Delete what ``days`` no longer keeps, as of ``now``. ``check`` is called before each
    partition (it may raise to stop; what is left is deleted by the next run)."""
    done = Expired()
    for area, tops in AREA_FOLDERS.items():
        keep: int | None = getattr(days, area)
        if keep is None:
            continue
        first = cutoff(now, keep)
        for top in tops:
            for folder, day in _day_folders(lake, top):
                if day >= first:
                    continue
                if check is not None:
                    check()
                lake.fs.delete_dir(lake.path(folder))
                done.partitions[area] = done.partitions.get(area, 0) + 1
    if days.quarantine is not None:
        oldest = now.astimezone(UTC) - timedelta(days=days.quarantine)
        sel = pafs.FileSelector(lake.path(QUARANTINE), recursive=False, allow_not_found=True)
        for info in lake.fs.get_file_info(sel):
            t = info.mtime
            if info.type != pafs.FileType.File or t is None:
                continue
            if (t if t.tzinfo else t.replace(tzinfo=UTC)) < oldest:
                if check is not None:
                    check()
                lake.fs.delete_file(info.path)
                done.files["quarantine"] = done.files.get("quarantine", 0) + 1
    return done
