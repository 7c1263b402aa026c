"""The month's table: the medians of each measured day's ticks (days 1, 10 and 30, and the last
day reached)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.soak_month import Result, Tick

MEASURED_DAYS = (1, 10, 30)


def measured_days(days: int) -> list[int]:
    return sorted({d for d in MEASURED_DAYS if d <= days} | {days})


TABLE_HEAD = (
    "| day | ticks | scheduled run s | object run s | peak memory MB | files read "
    "| state rows read | listings | lake files at day end |\n|---|---|---|---|---|---|---|---|---|"
)


def row_of(day: int, ticks: list[Tick], files: int | str) -> str:
    """A day's medians over its ticks (the scheduled run's slowest tick too)."""

    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else 0.0

    if not ticks:
        return f"| {day} | not reached | | | | | | | |"
    objs = [s for t in ticks for s in t.object_s]
    return (
        f"| {day} | {len(ticks)} | {med([t.sched_s for t in ticks]):.2f} "
        f"(max {max(t.sched_s for t in ticks):.2f}) | {med(objs):.2f} "
        f"| {med([t.peak_mb for t in ticks]):.0f} | {med([t.files_read for t in ticks]):.0f} "
        f"| {med([t.state_rows for t in ticks]):.0f} | {med([t.listings for t in ticks]):.0f} "
        f"| {files} |"
    )


def table(res: Result) -> str:
    by_day: dict[int, list[Tick]] = defaultdict(list)
    for t in res.ticks:
        by_day[t.day].append(t)
    reached = max(by_day, default=1)
    days = sorted(set(measured_days(res.spec.days)) | {reached})
    rows = [row_of(d, by_day.get(d, []), res.day_files.get(d, "")) for d in days]
    return "\n".join([TABLE_HEAD, *rows])
