"""Writing a batch's event files, apart from deciding what goes in them.

The parent decides (``run.Ingestor.plan``): which of a batch's rows are new to the lake, in which
order, in which partition files, with which resolved tenants. That needs the whole history and
runs one batch after another. Putting ~100 MB of rows into that order and encoding them as
zstd Parquet needs none of it, and is most of the parent's time, so with ``--workers N`` a worker
does it (``write``), from the rows file the decoding worker left in shared memory
(``handoff``) and a ``Plan`` of a few columns; with one worker the parent calls ``write`` itself on
the rows it holds. Either way the files are the same.

A plan's files are named by the batch; the batch is marked done only after ``write`` returned
(``run``), so a run that dies between the two is re-run to the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import schema
from pipeline.lake import Lake

# What the parent adds to a batch's rows: the parsed time and the resolved tenants.
EXTRA = (
    "event_time",
    "actor_tenant",
    "actor_tenant_source",
    "target_tenant",
    "target_tenant_source",
    "tenant_conflict",
)


@dataclass(frozen=True)
class Plan:
    batch_id: str
    rows_file: str | None  # the decoded rows in a hand-off file, or None: the caller has them
    order: np.ndarray  # int64 row numbers of the batch, in file order, the rows to write only
    extra: pa.Table  # the EXTRA columns, aligned with ``order``
    files: tuple[tuple[str, int, int], ...]  # (path in the lake, start, end) over ``order``


def write(lake_root: str, plan: Plan, rows: pa.Table | None = None) -> int:
    """Write the plan's files; the rows come from ``rows`` or the plan's file (then deleted).
    Returns the number of rows written."""
    if rows is None:
        if plan.rows_file is None:
            raise ValueError("a plan without rows_file needs its rows")
        # Not closed here: the table's buffers point into the mapping while they live.
        rows = pa.ipc.open_file(pa.memory_map(plan.rows_file)).read_all()
    try:
        if not plan.files:
            return 0
        # A chunked string column is joined by every take: join once. Then a take per file:
        # a few MB each, which the allocator reuses, where one take of the batch is fresh
        # memory each time (its page faults cost more than the copy).
        if rows["raw"].num_chunks > 1:
            rows = rows.combine_chunks()
        rows = rows.drop_columns([n for n in EXTRA if n in rows.column_names])
        lake = Lake(lake_root)
        for rel, start, end in plan.files:
            t = rows.take(pa.array(plan.order[start:end], pa.int64()))
            extra = plan.extra.slice(start, end - start)
            for name in EXTRA:
                t = t.append_column(name, extra[name])
            lake.write_table(rel, t.select(schema.EVENTS.names).cast(schema.EVENTS))
        return sum(end - start for _, start, end in plan.files)
    finally:
        if plan.rows_file is not None:
            Path(plan.rows_file).unlink(missing_ok=True)
