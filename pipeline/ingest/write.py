"""Writing a batch's event files, apart from deciding what goes in them.

The parent decides (``run.Ingestor.plan``): which of a batch's rows are new to the lake, in which
order, in which partition files, with which resolved tenants. That needs the whole history and
runs one batch after another. Putting ~100 MB of rows into that order and encoding them as
zstd Parquet needs none of it, so with ``--workers N`` the worker that decoded the batch, and
holds its rows, does it (``write``) from a ``Plan`` of a few columns (``handoff``); with one
worker the parent calls ``write`` itself on the rows it holds. Either way the files are the same.

A plan's files are named by the batch; the batch is marked done only after ``write`` returned
(``run``), so a run that dies between the two is re-run to the same files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline import schema
from pipeline.ingest import native
from pipeline.lake import Lake

# What the plan gives the writer for each row it writes, in file order: the parsed time, the
# resolved tenants (the target's were worked out where the batch was decoded, ``prepare``) and
# the break-glass ticket (a session tag, joined in the plan).
EXTRA = (
    "event_time",
    "actor_tenant",
    "actor_tenant_source",
    "target_tenant",
    "target_tenant_source",
    "tenant_conflict",
    "actor_ticket",
)


@dataclass(frozen=True)
class Plan:
    batch_id: str
    order: np.ndarray  # int64 row numbers of the batch, in file order, the rows to write only
    extra: pa.Table  # the EXTRA columns, aligned with ``order``
    files: tuple[tuple[str, int, int], ...]  # (path in the lake, start, end) over ``order``


def write(lake_root: str, plan: Plan, rows: pa.Table) -> int:
    """Write the plan's files from the batch's decoded ``rows``; returns the number of rows
    written."""
    if not plan.files:
        return 0
    # A take per file: a few MB each, which the allocator reuses, where one take of the batch is
    # fresh memory each time (its page faults cost more than the copy). The raw text, nearly all
    # of the bytes, is picked from its chunks directly (Arrow's take would join them first); the
    # other columns are joined once.
    raw = rows["raw"]
    rest = rows.select([n for n in schema.EVENTS.names if n != "raw" and n not in EXTRA])
    rest = rest.combine_chunks()
    lake = Lake(lake_root)
    for rel, start, end in plan.files:
        picked = plan.order[start:end]
        t = plan.extra.slice(start, end - start)
        for name, col in zip(rest.column_names, rest.take(picked).columns, strict=True):
            t = t.append_column(name, col)
        t = t.append_column("raw", native.take_strings(raw, picked))
        lake.write_table(rel, t.select(schema.EVENTS.names).cast(schema.EVENTS))
    return sum(end - start for _, start, end in plan.files)
