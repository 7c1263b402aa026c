"""What a batch's plan reads, computed where the batch was decoded.

The parent plans every batch, one after another (``run.Ingestor.plan``): with ``--workers N``
its work per batch bounds how many workers it can keep busy. So everything about a batch that
needs none of the run's history is done here, by the worker that decoded it (or by the one
process, with ``--workers 1``), and the parent gets a few narrow columns instead of the hints
they come from:

- the dedup key (``dedup_key``) and the partition hour of every row (``hours``);
- whether a row is the first in the batch with its key (``_first``);
- the target tenant, its source and any conflict (``tenancy.prepare``: no target strategy needs
  history), the actor candidates of every actor strategy but the session ones, and what the
  session origins and break-glass tickets need (the session an ``AssumeRole*`` started, the
  ticket named in the role session name).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest import arrowops, tenancy
from pipeline.ingest.reading import Reading

_S = pa.string()
_US_PER_HOUR = 3_600_000_000


def dedup_key(t: pa.Table) -> pa.Array:
    """What makes two rows the same event: its id and the hash of its normalized content.

    An id alone is not enough: third-party and test data reuse placeholder ids ("1", "EXAMPLE")
    for different events, and dropping those would lose records. A genuine re-delivery repeats
    both. (Source needs no place here: each source has its own partitions.)
    """
    return pc.binary_join_element_wise(t["event_id"], t["record_hash"], "\x1f")


def hours(when: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Hours since the epoch: the partition of each event, as a number (cheaper than text)."""
    return pc.divide(when.cast(pa.int64()), _US_PER_HOUR)


def plan_rows(rows: pa.Table, reading: Reading) -> pa.Table:
    """The columns of a batch's decoded ``rows`` that its plan reads, row for row."""
    key = dedup_key(rows)
    t = pa.table(
        {
            "source": rows["source"],
            "event_time": rows["event_time"],
            "actor_session": rows["actor_session"],
            "_dedup": key,
            "_hour": hours(rows["event_time"]),
            "_first": arrowops.occurrences(key),
        }
    )
    for name, col in tenancy.prepare(rows, reading).items():
        t = t.append_column(name, col)
    return t
