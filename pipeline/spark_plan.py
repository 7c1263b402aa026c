"""What the Spark runner reads, and how rows travel through Spark (``pipeline.spark_detect``).

The driver lists the event files of a read with the lake's own listing and partition pruning
(``lake_reads.event_files``: what ``read_events`` opens, in the order it reads them) and turns
them into *items*: a file, its size, the time span to read of it and an ordinal. A DataFrame of
items is read with ``mapInArrow``: each executor opens its files with the lake's own reader
(``lake_reads.read_event_file``: the same columns, sources, time and row filters as a local
read), so a local folder and S3 (moto through ``AWS_ENDPOINT_URL``, or AWS) work alike, with no
Hadoop filesystem on the classpath. A baseline is read a day at a time, as
``pipeline.detect.read_baseline`` reads it, each day's files its own items.

Each row carries ``_tw_order``: its item's ordinal and its position in the item's read. Sorted
by it, the rows of any group are in the order a local read gives them (a subsequence of it), so
a detector sees on an executor what it would see in one process.

Rows travel as Spark columns of plain types: text as strings, ``status_code`` as an integer,
``event_time`` as microseconds since the epoch (a Spark timestamp would take the session's time
zone on its way to pandas). ``events_table`` turns them back into ``schema.EVENTS`` columns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import schema

if TYPE_CHECKING:
    from pipeline.lake import Lake

ORDER = "_tw_order"  # the item's ordinal << 32 | the row's position in the item's read
BUCKET = "_tw_bucket"
_ROW_BITS = 32
# Parquet a read task takes on (``read_tasks``): about 380,000 events of the bench's lakes (about
# 22 bytes an event), a quarter of the 32 MB tasks that ran. It bounds a task; what an executor
# keeps of a detector's reads is bounded by its heap (README, "Past one machine").
READ_TASK_BYTES = 8 << 20
# What an executor needs to reach the lake that is no secret: where S3 is, in which region.
# Credentials are never shipped; executors use their own (an instance role, their environment).
CARRIED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")
ITEMS = pa.schema(
    [
        ("file", pa.string()),
        ("size", pa.int64()),
        ("since", pa.int64()),
        ("until", pa.int64()),
        ("ordinal", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Read:
    """What one read takes of each file: the lake, the columns, the sources, and the rows a
    detector can use (``baseline_only``: column -> allowed values)."""

    root: str
    columns: tuple[str, ...]
    sources: tuple[str, ...]
    only: tuple[tuple[str, tuple[str, ...]], ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def carried_env() -> tuple[tuple[str, str], ...]:
    """The driver's ``CARRIED_ENV`` values, for executors that lack them."""
    return tuple((k, os.environ[k]) for k in CARRIED_ENV if os.environ.get(k))


def micros(ts: datetime) -> int:
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // _MICRO


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


def items(
    lake: Lake, spans: Sequence[tuple[datetime, datetime]], sources: tuple[str, ...]
) -> list[tuple[str, int, int, int, int]]:
    """The items of reading ``spans`` one after another (a window: one span; a baseline: its
    days), numbered in the order a local read takes them."""
    from pipeline.lake_reads import event_files

    out: list[tuple[str, int, int, int, int]] = []
    for since, until in spans:
        for rel, size in event_files(lake, since, until, sources=sources):
            out.append((rel, -1 if size is None else size, micros(since), micros(until), len(out)))
    return out


def read_tasks(plan: Sequence[tuple[str, int, int, int, int]], buckets: int) -> int:
    """How many tasks read the files of ``plan``: one per bucket at least, and as many more as
    keep a task's files near ``READ_TASK_BYTES`` of Parquet (a file of unknown size counted as
    the mean of those known). A task's rows are what an executor holds of them at once, so that
    stays bounded however long the history: with a task per bucket, a 14-day history of 50M
    events a month was 2.9M rows a task."""
    if not plan:
        return 1
    known = [size for _, size, *_ in plan if size >= 0]
    mean = sum(known) / len(known) if known else 0
    total = sum(known) + mean * (len(plan) - len(known))
    return min(len(plan), max(buckets, math.ceil(total / READ_TASK_BYTES)))


def spark_type(t: pa.DataType) -> Any:
    """The Spark type a column of Arrow type ``t`` travels as."""
    from pyspark.sql import types as st

    if pa.types.is_timestamp(t) or pa.types.is_int64(t):
        return st.LongType()
    if pa.types.is_int32(t):
        return st.IntegerType()
    if pa.types.is_floating(t):
        return st.DoubleType()
    if pa.types.is_boolean(t):
        return st.BooleanType()
    if pa.types.is_list(t):
        return st.ArrayType(spark_type(t.value_type))
    return st.StringType()


def events_schema(columns: Sequence[str]) -> Any:
    """The Spark schema of events of ``columns``, with ``ORDER``."""
    from pyspark.sql import types as st

    fields = [st.StructField(c, spark_type(schema.EVENTS.field(c).type)) for c in columns]
    return st.StructType([*fields, st.StructField(ORDER, st.LongType(), False)])


def reader(read: Read) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function ``mapInArrow`` runs over batches of items: each item's rows, as
    ``events_schema`` has them."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:

        from pipeline.lake import Lake
        from pipeline.lake_reads import allowed_rows, read_event_file

        for key, value in read.env:
            os.environ.setdefault(key, value)
        lake = Lake(read.root)
        where = allowed_rows(read.only)
        out = pa.schema(
            [
                *(_travel(schema.EVENTS.field(c)) for c in read.columns),
                pa.field(ORDER, pa.int64(), nullable=False),
            ]
        )
        for batch in batches:
            for item in batch.to_pylist():
                t = read_event_file(
                    lake,
                    item["file"],
                    None if item["size"] < 0 else item["size"],
                    _time(item["since"]),
                    _time(item["until"]),
                    sources=read.sources,
                    columns=list(read.columns),
                    where=where,
                )
                order = pa.array(
                    [(item["ordinal"] << _ROW_BITS) + i for i in range(t.num_rows)], pa.int64()
                )
                cols = [_travelled(t[c]) for c in read.columns]
                yield from pa.Table.from_arrays([*cols, order], schema=out).to_batches()

    return run


def _time(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + us * _MICRO


def _travel(f: pa.Field) -> pa.Field:
    return pa.field(f.name, pa.int64()) if pa.types.is_timestamp(f.type) else f.with_nullable(True)


def _travelled(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col


def events_table(frame: Any, columns: Sequence[str]) -> pa.Table:
    """Rows as Spark hands them to pandas (``events_schema``), back in the order of a local read
    and as ``schema.EVENTS`` columns: what ``read_events`` gives."""
    import pandas as pd

    frame = frame.sort_values(ORDER, kind="stable") if len(frame) else frame
    arrays = []
    for c in columns:
        f = schema.EVENTS.field(c)
        values: Any = frame[c] if c in frame else pd.Series([], dtype=object)
        if pa.types.is_timestamp(f.type):
            arr = pa.array(values.to_numpy(dtype="int64"), pa.int64()).cast(f.type)
        elif pa.types.is_integer(f.type):
            arr = pa.array(values, from_pandas=True)
            arr = arr.cast(f.type) if len(arr) else pa.array([], f.type)
        else:
            arr = pa.array(values, f.type, from_pandas=True)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=pa.schema([schema.EVENTS.field(c) for c in columns]))
