"""The detect stage on Spark: the same detectors and the same findings, past one machine.

``run_detect_spark`` is ``pipeline.detect.run_detect`` with the reading and the detecting done on
Spark's executors: the same window, history start and suppressions, the same finding ids, rows
and columns (evidence included), the same files written to the lake (``part_name``), the live
files settled as ``run_detect`` settles them, and the same summary (with ``"engine": "spark"``).

What runs where:

- the driver builds the detectors from the configuration (relationships, tickets and Sigma rules
  read there), resolves the window, lists the event files of the window and of each detector's
  history with the lake's own listing (``pipeline.spark_plan``), and at the end marks
  suppressions and writes each detector's findings file. It never holds events: only findings
  (and a two-step detector's bounded sample) come back to it.
- executors read the event files (``mapInArrow``, the lake's own reader: a local folder or S3
  alike), and for each detector and ``Partition`` of it, the rows of each bucket (a hash of the
  partition key, ``pmod(xxhash64(key), buckets)``) are brought together, window and history
  (``cogroup``), and a copy of the detector detects them (``pipeline.spark_tasks``). A detector
  without partitions is one bucket: one task holds its whole window and history.
- a two-step detector (``detectors.base.TwoStep``: tenant_switching, authorizer_cache)
  summarizes its history per bucket of each summary pass on executors; the driver collects the
  ``sample_size`` rows of smallest rank, fits the model, and one task scores the whole window
  with it (the detector, model included, shipped in the task) and the state, which never passes
  the driver (counts, ``summary_merge``, summed by Spark first).

A detector's promise (its ``partitions``) is what makes the buckets' findings the whole run's;
``pipeline.partitioned`` is the same procedure without Spark, and the tests compare both with
``run_detect``. Detectors are shipped to executors pickled.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import schema
from pipeline.config import Config
from pipeline.detect import (
    Detected,
    _settle_live,
    _worst_first,
    baseline_days,
    detect_summary,
    earliest_event,
    history_start,
    part_name,
    prepare,
    window_columns,
)
from pipeline.errors import MissingExtra
from pipeline.lake import Lake
from pipeline.partitioned import key_columns, order_findings
from pipeline.spark_plan import (
    BUCKET,
    ITEMS,
    Read,
    carried_env,
    events_schema,
    items,
    micros,
    read_tasks,
    reader,
    spark_type,
)
from pipeline.spark_tasks import detect_task, from_rows, out_schema, score_task, summary_task

if TYPE_CHECKING:
    from detectors.base import Detector, Partition

# Buckets per core the cluster offers by default: several tasks per core, so that a bucket
# heavier than the others (a big tenant) is not the whole run's wait.
BUCKETS_PER_CORE = 4
RANK = "rank"


class _Failed(Exception):
    """A detector raised on an executor: ``text`` is what ``run_detect`` reports for it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def require_pyspark() -> None:
    """Raise ``MissingExtra`` unless pyspark can be imported."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise MissingExtra(
            "the spark engine needs pyspark: install tenantwatch[spark] "
            "(pip install 'tenantwatch[spark]')"
        ) from None


def local_session(master: str = "local[*]", conf: Mapping[str, str] | None = None) -> Any:
    """A Spark session for ``master`` (``local[N]`` or a cluster's URL), without a web UI. A
    local one's Python workers run this interpreter (its pyarrow, pandas and tenantwatch)
    unless ``PYSPARK_PYTHON`` says otherwise, and it listens on 127.0.0.1 only. ``conf``: more
    settings, over these."""
    require_pyspark()
    from pyspark.sql import SparkSession

    settings = {
        "spark.app.name": "tenantwatch-detect",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # the CLI shows its own progress
    }
    if master.startswith("local"):
        # The workers are this interpreter (else the first python3 on the path, which may
        # lack pyarrow), and everything listens on 127.0.0.1.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings |= {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}
    builder = SparkSession.builder.master(master)
    for key, value in {**settings, **(conf or {})}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def run_detect_spark(
    lake_root: str,
    cfg: Config,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    only: tuple[str, ...] | None = None,
    write: bool = True,
    master: str | None = None,
    spark: Any = None,
    warn: Callable[[str], None] | None = None,
    now: datetime | None = None,
    buckets: int | None = None,
) -> Detected:
    """``run_detect`` on Spark: every enabled detector (or ``only``) over [since, until).

    ``spark``: a session to run on (left running); else the active one, else one is made for
    ``master`` (default ``local[*]``) and stopped at the end. ``buckets``: how many buckets
    each partitioned pass hashes its keys into (default: ``BUCKETS_PER_CORE`` per core of the
    session)."""
    from pipeline import suppressions

    started = time.perf_counter()
    require_pyspark()
    dets, missing, lake, (since, until), sups = prepare(
        lake_root, cfg, since, until, only, warn, now
    )
    session, own = spark, False
    if session is None:
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()  # a notebook's, a job's: theirs to stop
        own = session is None
        session = session or local_session(master or "local[*]")
    tables, failed, counts = [], {}, {}
    skipped: dict[str, str] = {}
    try:
        n = buckets or BUCKETS_PER_CORE * session.sparkContext.defaultParallelism
        history_from = earliest_event(lake)
        with lake.snapshot():  # one listing of each event folder for every detector
            for det_id, det in dets.items():
                run = _Run(session, lake, det, since, until, history_from, n)
                try:
                    found, counts[det_id], mine_skipped, mine_failed = run.detect()
                except _Failed as exc:
                    failed[det_id] = exc.text
                    continue
                except Exception as exc:  # one broken detector must not stop the rest
                    failed[det_id] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    continue
                failed.update({f"{det_id}:{k}": v for k, v in mine_failed.items()})
                skipped.update({f"{det_id}:{k}": v for k, v in mine_skipped.items()})
                found = suppressions.mark(found, sups.active)
                if write:
                    lake.write_table(part_name(det_id, since, until), found)
                    _settle_live(lake, det_id, since, until, found)
                tables.append(found)
    finally:
        if own:
            session.stop()
    findings = _worst_first(pa.concat_tables(tables) if tables else schema.empty(schema.FINDINGS))
    parts = {"failed": failed, "skipped": skipped, "unavailable": missing}
    summary = detect_summary(lake, (since, until), counts, findings, sups, parts, started)
    summary["engine"] = "spark"
    return Detected(findings, summary)


class _Run:
    """One detector over one window on Spark."""

    def __init__(
        self,
        session: Any,
        lake: Lake,
        det: Detector,
        since: datetime,
        until: datetime,
        history_from: datetime | None,
        buckets: int,
    ) -> None:
        self.session, self.lake, self.det, self.buckets = session, lake, det, buckets
        self.since, self.until = since, until
        self.base_start = history_start(det, since, history_from)
        keys = key_columns(det)
        own = window_columns(det)
        self.window_columns = [*own, *(k for k in keys if k not in own)]
        self.baseline_columns: list[str] | None = None
        if det.lookback:
            base = list(det.baseline_columns)
            self.baseline_columns = [*base, *(k for k in keys if k not in base)]
        self.bounds = {
            "start": micros(since),
            "end": micros(until),
            "baseline_start": micros(self.base_start),
        }
        self._persisted: list[Any] = []

    # --- reading ------------------------------------------------------------------------------

    def _read(
        self,
        spans: Sequence[tuple[datetime, datetime]],
        columns: Sequence[str],
        only: tuple[tuple[str, tuple[str, ...]], ...] = (),
    ) -> Any:
        """The events of ``spans`` read on executors, one task per group of files."""
        plan = items(self.lake, spans, self.det.sources)
        if not plan:
            return self.session.createDataFrame([], events_schema(columns))
        from pyspark.sql import types as st

        root = self.lake.base if self.lake.is_local else self.lake.root
        read = Read(root, tuple(columns), tuple(self.det.sources), only, carried_env())
        spark_items = st.StructType([st.StructField(f.name, spark_type(f.type)) for f in ITEMS])
        rdd = self.session.sparkContext.parallelize(plan, read_tasks(plan, self.buckets))
        frame = self.session.createDataFrame(rdd, spark_items)
        return frame.mapInArrow(reader(read), events_schema(columns))

    def window(self) -> Any:
        return self._read([(self.since, self.until)], self.window_columns, self.det.window_only)

    def baseline(self) -> Any:
        if self.baseline_columns is None:  # no history: an empty side of the cogroup
            return self.session.createDataFrame([], events_schema(self.window_columns))
        days = baseline_days(self.base_start, self.since)
        return self._read(days, self.baseline_columns, self.det.baseline_only)

    def _bucketed(self, frame: Any, part: Partition | None) -> Any:
        from pyspark.sql import functions as F

        if part is None:
            return frame.withColumn(BUCKET, F.lit(0))
        key = F.coalesce(*[F.col(c) for c in part.by]) if len(part.by) > 1 else F.col(part.by[0])
        if part.link is not None:  # a follower takes its lead's key (``Partition``)
            from pyspark.sql import Window

            lead = F.col("source") == F.lit(part.lead)
            linked = F.min(F.when(lead, key)).over(Window.partitionBy(part.link))
            follows = ~lead & F.col(part.link).isNotNull() & linked.isNotNull()
            key = F.when(follows, linked).otherwise(key)
        return frame.withColumn(BUCKET, F.pmod(F.xxhash64(key), F.lit(self.buckets)))

    def _cogroup(self, window: Any, other: Any, task: Any, rows: pa.Schema) -> Any:
        grouped = window.groupBy(BUCKET).cogroup(other.groupBy(BUCKET))
        return grouped.applyInPandas(task, out_schema(rows))

    # --- detecting ----------------------------------------------------------------------------

    def detect(self) -> tuple[pa.Table, dict[str, int], dict[str, str], dict[str, str]]:
        """The findings (``schema.FINDINGS``, in the detector's order), the counts, the parts
        skipped and the parts failed."""
        from detectors.base import two_step

        if two_step(self.det) is not None and self.baseline_columns is not None:
            return self._two_step()
        passes = self.det.partitions or (None,)
        window, baseline = self._kept(self.window(), len(passes)), self.baseline()
        baseline = self._kept(baseline, len(passes))
        rows: list[tuple[int, dict[str, Any]]] = []
        try:
            for i, part in enumerate(passes):
                task = detect_task(
                    self.det, part, self.bounds, self.window_columns, self.baseline_columns
                )
                w, b = self._bucketed(window, part), self._bucketed(baseline, part)
                out = self._cogroup(w, b, task, schema.FINDINGS)
                rows += [(i, r.asDict()) for r in out.collect()]
        finally:
            self._release()
        return self._gather(rows, rows)

    def _kept(self, frame: Any, uses: int) -> Any:
        """``frame``, kept by the executors once read when more than one pass reads it."""
        if uses < 2:
            return frame
        from pyspark import StorageLevel

        kept = frame.persist(StorageLevel.MEMORY_AND_DISK)
        self._persisted.append(kept)
        return kept

    def _release(self) -> None:
        for frame in self._persisted:
            frame.unpersist()
        self._persisted.clear()

    def _gather(
        self, rows: list[tuple[int, dict[str, Any]]], counted: list[tuple[int, dict[str, Any]]]
    ) -> tuple[pa.Table, dict[str, int], dict[str, str], dict[str, str]]:
        """Findings and what came with them; ``counted``: the rows whose counts are the run's
        (its first pass: every pass reads the same events)."""
        errors = [r["_tw_text"] for _, r in rows if r["_tw_meta"] == "error"]
        if errors:
            raise _Failed(sorted(errors)[0])
        found = from_rows([r for _, r in rows if r["_tw_meta"] is None], schema.FINDINGS)
        found = order_findings(found)
        window = sum(r["_tw_window"] for i, r in counted if i == 0 and r["_tw_meta"] == "counts")
        baseline = sum(
            r["_tw_baseline"] for i, r in counted if i == 0 and r["_tw_meta"] == "counts"
        )
        counts = {
            "window_events": int(window),
            "baseline_events": int(baseline) if self.baseline_columns is not None else 0,
            "findings": found.num_rows,
        }
        parts = {
            kind: {r["_tw_part"]: r["_tw_text"] for _, r in rows if r["_tw_meta"] == kind}
            for kind in ("skipped", "failed")
        }
        return found, counts, parts["skipped"], parts["failed"]

    def _two_step(self) -> tuple[pa.Table, dict[str, int], dict[str, str], dict[str, str]]:
        """Summarize the history per bucket of each summary pass, learn on the driver from the
        smallest ranks, score the whole window in one task (``detectors.base.TwoStep``)."""
        import pandas as pd
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        from detectors.base import two_step

        ts = two_step(self.det)
        assert ts is not None and self.baseline_columns is not None
        uses = len(ts.summary_passes())
        window, baseline = self._kept(self.window(), uses + 1), self._kept(self.baseline(), uses)
        span = {"first": self.bounds["baseline_start"], "start": self.bounds["start"]}
        parts = []
        for i, step in enumerate(ts.summary_passes()):
            task = summary_task(self.det, i, span, self.window_columns, self.baseline_columns)
            out = self._cogroup(
                self._bucketed(window, step),
                self._bucketed(baseline, step),
                task,
                ts.summary_schema,
            )
            parts.append(out.withColumn("_tw_pass", F.lit(i)))
        summary = parts[0]
        for more in parts[1:]:
            summary = summary.unionByName(more)
        summary = summary.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            meta = [
                (r["_tw_pass"], r.asDict())
                for r in summary.filter(F.col("_tw_meta").isNotNull()).collect()
            ]
            self._gather(meta, [])  # raises if a summary failed
            rows = summary.filter(F.col("_tw_meta").isNull())
            order = [RANK, *(f.name for f in ts.summary_schema if f.name != RANK)]
            sample = rows.filter(F.col(RANK).isNotNull()).orderBy(*order).limit(ts.sample_size())
            learnt = from_rows([r.asDict() for r in sample.collect()], ts.summary_schema)
            ts.learn(learnt, (pd.Timestamp(self.base_start), pd.Timestamp(self.since)))
            state = rows.filter(F.col(RANK).isNull())
            merge = getattr(ts, "summary_merge", None)
            if merge:  # the parts' counts summed by Spark: one row per count, not per part
                keys = [f.name for f in ts.summary_schema if f.name not in merge]
                how = {"sum": F.sum, "max": F.max}
                state = state.groupBy(*keys).agg(*(how[h](c).alias(c) for c, h in merge.items()))
            state = state.withColumn(BUCKET, F.lit(0))
            task = score_task(self.det, self.bounds, self.window_columns, ts.summary_schema)
            out = self._cogroup(window.withColumn(BUCKET, F.lit(0)), state, task, schema.FINDINGS)
            scored = [(0, r.asDict()) for r in out.collect()]
        finally:
            summary.unpersist()
            self._release()
        found, counts, skipped, failed = self._gather(scored, scored)
        counts["baseline_events"] = sum(
            r["_tw_baseline"] for i, r in meta if i == 0 and r["_tw_meta"] == "counts"
        )
        return found, counts, skipped, failed
