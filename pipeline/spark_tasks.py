"""What executors run for the Spark runner (``pipeline.spark_detect``): one bucket of one pass.

Each function here returns the function ``cogroup(...).applyInPandas`` calls once per bucket
with its window rows and its baseline rows (``pipeline.spark_plan``: Spark columns, with their
order in a local read). It rebuilds the tables a local run would hand the detector (the window
as ``read_events`` gives it, the baseline dictionary-encoded as ``read_baseline`` gives it), runs
a fresh copy of the detector on them (``pipeline.partitioned``: the pure-Python reference of the
same steps) and returns rows of ``OUT``: findings, and what the driver needs beside them (the
bucket's event counts, parts skipped or failed, a detector's error). Nothing here raises for a
detector's error: the driver reports it as ``run_detect`` does, and the other detectors run.

Findings travel as ``schema.FINDINGS`` columns, their times as microseconds since the epoch
(``pipeline.spark_plan``); ``findings_table`` makes them ``schema.FINDINGS`` again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import schema
from pipeline.spark_plan import events_table, spark_type

if TYPE_CHECKING:
    import pandas as pd

    from detectors.base import Detector, Partition

Task = Callable[["pd.DataFrame", "pd.DataFrame"], "pd.DataFrame"]

# What a row of ``OUT`` is beside a finding: ``counts`` (window and baseline events of the
# bucket), ``skipped`` and ``failed`` (a part and why), ``error`` (the detector raised: why).
META = pa.schema(
    [
        ("_tw_meta", pa.string()),
        ("_tw_part", pa.string()),
        ("_tw_text", pa.string()),
        ("_tw_window", pa.int64()),
        ("_tw_baseline", pa.int64()),
    ]
)
_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def out_schema(rows: pa.Schema) -> Any:
    """The Spark schema of a task's output: ``rows`` (findings, or a detector's summary rows)
    and ``META``, every field nullable."""
    from pyspark.sql import types as st

    fields = [st.StructField(f.name, spark_type(f.type)) for f in [*rows, *META]]
    return st.StructType(fields)


def _frame(rows: pa.Table, meta: list[dict[str, Any]]) -> pd.DataFrame:
    """``rows`` (times as microseconds) and the ``meta`` rows as one pandas frame for Spark."""
    import pandas as pd

    cols: dict[str, Any] = {}
    for f in rows.schema:
        col = rows[f.name]
        if pa.types.is_timestamp(f.type):
            col = col.cast(pa.int64())
        if pa.types.is_integer(col.type):
            values = pd.array(col.to_pylist() + [None] * len(meta), dtype="Int64")
        else:
            values = col.to_pylist() + [None] * len(meta)
        cols[f.name] = values
    for f in META:
        values = [None] * rows.num_rows + [m.get(f.name) for m in meta]
        cols[f.name] = pd.array(values, dtype="Int64") if pa.types.is_integer(f.type) else values
    return pd.DataFrame(cols)


def _error(exc: BaseException) -> dict[str, Any]:
    return {"_tw_meta": "error", "_tw_text": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}


def _counts(window: int, baseline: int) -> dict[str, Any]:
    return {"_tw_meta": "counts", "_tw_window": window, "_tw_baseline": baseline}


def _bounds(bounds: dict[str, int]) -> dict[str, datetime]:
    return {k: _EPOCH + v * _US for k, v in bounds.items()}


def detect_task(
    det: Detector,
    part: Partition | None,
    bounds: dict[str, int],
    window_columns: Sequence[str],
    baseline_columns: Sequence[str] | None,
) -> Task:
    """One bucket of a pass: ``det`` over the bucket's window and baseline, what ``part``
    keeps (``pipeline.partitioned.detect_bucket``). ``bounds``: start, end and baseline start
    in microseconds; ``baseline_columns`` None: the detector reads no history."""

    def run(window_rows: pd.DataFrame, baseline_rows: pd.DataFrame) -> pd.DataFrame:
        from pipeline.detect import encode
        from pipeline.partitioned import detect_bucket, fresh

        meta = [_counts(len(window_rows), len(baseline_rows))]
        found = schema.empty(schema.FINDINGS)
        if len(window_rows):  # a bucket of history alone has nothing to find
            try:
                window = events_table(window_rows, window_columns)
                baseline = None
                if baseline_columns is not None:
                    baseline = encode(events_table(baseline_rows, baseline_columns))
                got = detect_bucket(fresh(det), part, window, baseline, **_bounds(bounds))
                found = got.findings
                meta += [
                    {"_tw_meta": "skipped", "_tw_part": k, "_tw_text": v}
                    for k, v in sorted(got.skipped.items())
                ]
                meta += [
                    {"_tw_meta": "failed", "_tw_part": k, "_tw_text": v}
                    for k, v in sorted(got.failed.items())
                ]
            except Exception as exc:  # reported by the driver, as run_detect reports it
                meta.append(_error(exc))
        return _frame(found, meta)

    return run


def summary_task(
    det: Detector,
    index: int,
    span: dict[str, int],
    window_columns: Sequence[str],
    baseline_columns: Sequence[str],
) -> Task:
    """One bucket of a two-step detector's summary pass ``index`` (``TwoStep.summarize``): its
    sample candidates and its window actors' state, as ``det.summary_schema`` rows."""

    def run(window_rows: pd.DataFrame, baseline_rows: pd.DataFrame) -> pd.DataFrame:
        from detectors.base import two_step
        from pipeline.detect import encode
        from pipeline.partitioned import fresh

        ts = two_step(fresh(det))
        assert ts is not None
        meta = [_counts(len(window_rows), len(baseline_rows))]
        rows = ts.summary_schema.empty_table()
        if len(baseline_rows):
            try:
                window = events_table(window_rows, window_columns)
                baseline = encode(events_table(baseline_rows, baseline_columns))
                times = _bounds(span)
                rows = ts.summarize(index, baseline, window, (times["first"], times["start"]))
            except Exception as exc:
                meta.append(_error(exc))
        return _frame(rows, meta)

    return run


def score_task(
    det: Detector, bounds: dict[str, int], window_columns: Sequence[str], state: pa.Schema
) -> Task:
    """A two-step detector, its model learnt on the driver (``det``, shipped with it), scoring
    the whole window given the state of its actors (``state``: the summary rows without a
    rank)."""

    def run(window_rows: pd.DataFrame, state_rows: pd.DataFrame) -> pd.DataFrame:
        from detectors.base import two_step
        from pipeline.partitioned import fresh

        meta = [_counts(len(window_rows), 0)]
        found = schema.empty(schema.FINDINGS)
        if len(window_rows):
            try:
                mine = fresh(det)
                ts = two_step(mine)
                assert ts is not None
                ts.absorb(_table(state_rows, state))
                window = events_table(window_rows, window_columns)
                found = mine.detect(None, window, fitted=True, **_bounds(bounds))
                skipped = dict(getattr(mine, "skipped", None) or {})
                meta += [
                    {"_tw_meta": "skipped", "_tw_part": k, "_tw_text": v}
                    for k, v in sorted(skipped.items())
                ]
            except Exception as exc:
                meta.append(_error(exc))
        return _frame(found, meta)

    return run


def _table(frame: pd.DataFrame, target: pa.Schema) -> pa.Table:
    """Rows as Spark hands them to pandas (an integer column with nulls as floats), as
    ``target``."""
    arrays = []
    for f in target:
        values = frame[f.name] if len(frame) else []
        if pa.types.is_integer(f.type) and len(frame):
            arr = pa.array(values, from_pandas=True).cast(f.type)
        else:
            arr = pa.array(values, f.type, from_pandas=True)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=target)


def from_rows(rows: Sequence[dict[str, Any]], target: pa.Schema) -> pa.Table:
    """Rows collected on the driver (``Row.asDict()``) as ``target``, times from microseconds."""
    travel = pa.schema(
        [
            pa.field(f.name, pa.int64()) if pa.types.is_timestamp(f.type) else f.with_nullable(True)
            for f in target
        ]
    )
    table = pa.Table.from_pylist([{f.name: r[f.name] for f in target} for r in rows], travel)
    arrays = [
        table[f.name].cast(f.type) if pa.types.is_timestamp(f.type) else table[f.name]
        for f in target
    ]
    return pa.Table.from_arrays(arrays, schema=target)
