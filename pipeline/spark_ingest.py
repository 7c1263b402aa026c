"""The ingest stage on Spark: the same lake as ``pipeline.ingest.run.ingest``, its batches decoded
and written on executors.

The run's inputs are listed, batched and skipped when done as a local run does it
(``run.pending``: the same batches, so the same file names). What a local run does one batch
after another, in input order, needs the run's history in two places only: the session map (an
event's actor tenant may come from the tags of an ``AssumeRole*`` in another batch, of this run
or an earlier one) and the dedup index (an event delivered in two inputs, or already in the
lake). Everything else about a batch is its own. So:

1. Executors decode every batch (``spark_ingest_tasks.keys_task``: the local decoding, the same
   code) and hand back the dedup key and partition of each of its first rows (kept by Spark,
   never by the driver) and, to the driver, its sessions, its ``AssumeRole*`` calls' columns and
   its events' earliest and latest times: one row per ``AssumeRole*``, not per event.
2. The driver runs the local session steps over those, batch after batch (``Ingestor.advance``,
   and ``tenancy.finish`` over the calls, which learns their origins): the same stored sessions
   read, the same sessions learnt, replaced and expired as in a local run. It records what its
   map held after each batch (``SessionHistory``), which executors get whole.
3. The dedup stage, in Spark SQL: a batch's row is not new when its key is in the lake's files
   of its partition but this run's batches' (``lake_keys_task``), or is the key of a row of an
   earlier batch of the run in the same partition. That is what a local run's index holds when
   it plans the batch: the lake's files, and the keys of the batches before it, which it kept
   or found in the lake; so the copy kept of a duplicate is the first batch's, in the file of
   that batch, as in a local run.
4. Executors decode each batch again (``write_task``), resolve its tenants with the session map
   as of the batch, and do the rest of a local plan with the dedup stage's answer
   (``run.place``): the same rows, in the same files, with the same names; then its quarantine
   and digests (``commit.keep_outputs``).
5. Once every batch is written, the driver keeps each batch's sessions and records it done, in
   input order (``commit.keep_sessions``, ``commit.record_done``), as a local run commits: a run
   that fails or dies leaves the sessions of the batches it recorded, and is run again to the
   same lake as a local run that died there.

Decoding twice costs CPU (a decoded batch is ~100 MB, nine tenths raw text, which Spark would
otherwise hold or move), and spreads over the executors; the driver's work is per ``AssumeRole*``
and per batch. Executors read S3 inputs with boto3 and write the lake with its own writer, both
honouring ``AWS_ENDPOINT_URL`` (``spark_plan.CARRIED_ENV`` is passed on); a local folder, as
input or lake, is read where the executors run (a local master, or a shared folder).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.config import Config
from pipeline.ingest import native, tenancy
from pipeline.ingest.commit import keep_sessions, record_done
from pipeline.ingest.run import Pending, Summary, pending
from pipeline.ingest.sessions import STATE
from pipeline.spark_detect import local_session, require_pyspark
from pipeline.spark_ingest_tasks import (
    KEYS,
    LAKE_KEYS,
    PARTS,
    RESULTS,
    TASKS,
    Failure,
    Found,
    SessionHistory,
    Setup,
    Written,
    keys_task,
    lake_keys_task,
    write_task,
)
from pipeline.spark_plan import carried_env

# Batches per core in the first pass's tasks: several, so that a slow batch is not everyone's wait.
SLICES_PER_CORE = 4
# Spark's adaptive execution would merge the write tasks (their input: a few bytes each) into one.
_NOT_MERGED = {"spark.sql.adaptive.coalescePartitions.enabled": "false"}


def run_ingest_spark(
    sources: list[str],
    lake_root: str,
    cfg: Config,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    master: str | None = None,
    spark: Any = None,
) -> dict[str, Any]:
    """``run.ingest`` on Spark: the same lake and the same summary (with ``"engine": "spark"``).

    ``spark``: a session to run on (left running); else the active one, else one is made for
    ``master`` (default ``local[*]``) and stopped at the end. None is started when every input
    was ingested before."""
    started, cpu = time.perf_counter(), time.process_time()
    require_pyspark()
    run = pending(sources, lake_root, cfg, since, until)
    work = _Work()
    if run.batches:
        session, own = spark, False
        if session is None:
            from pyspark.sql import SparkSession

            session = SparkSession.getActiveSession()  # a notebook's, a job's: theirs to stop
            own = session is None
            session = session or local_session(
                master or "local[*]", {"spark.app.name": "tenantwatch-ingest"}
            )
        try:
            work.cores = session.sparkContext.defaultParallelism
            _Ingest(session, run, cfg, work).run()
        finally:
            if own:
                session.stop()
    run.save_positions()
    summary = run.summary
    summary.elapsed_s = time.perf_counter() - started
    out = summary.as_dict()
    out["lake"] = run.lake.uri("")
    out["workers"] = work.cores
    out["decoder"] = "; ".join(sorted(work.decoders)) or native.decoder()
    out["cpu_s"] = {
        "main": round(time.process_time() - cpu, 2),
        "workers": round(work.cpu_s, 2),
    }
    out["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out["engine"] = "spark"
    return out


class _Work:
    """What the executors' reports add up to: their CPU time (Python's, both passes), the
    decoders they ran, the cores the run had."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.decoders: set[str] = set()
        self.cores = 0

    def saw(self, report: Found | Written) -> None:
        self.cpu_s += report.cpu_s
        self.decoders.add(report.decoder)


class _Ingest:
    """One run's batches on Spark (the module's docstring: steps 1 to 5)."""

    def __init__(self, session: Any, run: Pending, cfg: Config, work: _Work) -> None:
        self.session, self.job, self.cfg, self.work = session, run, cfg, work
        lake = run.lake
        root = lake.base if lake.is_local else lake.root
        self.setup = Setup(root, cfg, run.ing.reading, carried_env())
        self.ttl = timedelta(hours=cfg.tenancy.session_ttl_hours)
        cores = session.sparkContext.defaultParallelism
        self.slices = max(1, min(len(run.batches), SLICES_PER_CORE * cores))

    def run(self) -> None:
        from pyspark import StorageLevel

        batches = self.job.batches
        # The shuffles' tasks: the write stage's, a batch each or a few.
        settings = {**_NOT_MERGED, "spark.sql.shuffle.partitions": str(self.slices)}
        frame = self._frame([(k, pickle.dumps(b)) for k, b in enumerate(batches)], TASKS)
        found = frame.mapInArrow(keys_task(self.setup), _spark_schema(KEYS))
        kept = [found.persist(StorageLevel.MEMORY_AND_DISK)]
        try:
            with _settings(self.session, settings):
                reports = self._reports(found)
                history, origins = self._sessions(reports)
                parts = sorted({p for r in reports for p in r.parts})
                lake_keys = self._lake_keys(parts, kept)
                drops = _drops(found.where("meta IS NULL").drop("meta"), lake_keys)
                grouped = frame.groupBy("batch").cogroup(drops.groupBy("batch"))
                task = write_task(self.setup, history, self.ttl)
                out = grouped.applyInPandas(task, _spark_schema(RESULTS)).collect()
                results = {r["batch"]: pickle.loads(r["result"]) for r in out}  # noqa: S301
        finally:
            for held in kept:
                held.unpersist()
        self._record(results, [r.sessions for r in reports], origins)

    def _frame(self, rows: list[tuple[Any, ...]], schema: Any) -> Any:
        rdd = self.session.sparkContext.parallelize(rows, max(1, min(len(rows), self.slices)))
        return self.session.createDataFrame(rdd, _spark_schema(schema))

    def _reports(self, found: Any) -> list[Found]:
        """What the first pass found of each batch, in input order; a batch that failed
        raises its error."""
        rows = found.where("meta IS NOT NULL").select("batch", "meta").collect()
        by_batch: dict[int, Found] = {r["batch"]: pickle.loads(r["meta"]) for r in rows}  # noqa: S301
        reports = [by_batch[k] for k in range(len(self.job.batches))]
        for report in reports:
            self.work.saw(report)
            if report.failure is not None:
                report.failure.raise_it()
        return reports

    def _sessions(self, found: list[Found]) -> tuple[Any, list[Any]]:
        """The local session steps over the batches in order (``run.Ingestor.plan``'s), on what
        the executors found of them: the map's history, and each batch's origins learnt."""
        ing = self.job.ing
        history = SessionHistory(tenancy.session_tags(self.cfg))
        origins = []
        for k, f in enumerate(found):
            ing.advance(f.times, f.sessions)
            learnt = STATE.empty_table()
            if f.calls is not None and f.calls.num_rows:
                _, learnt = tenancy.finish(f.calls, ing.reading, ing.sessions)
            origins.append(learnt)
            history.after(k, ing.sessions.tags)
        return history.table(), origins

    def _lake_keys(self, parts: list[tuple[str, int]], kept: list[Any]) -> Any:
        """The keys in the lake of each partition the run's rows fall in (``LAKE_KEYS``), kept
        by the executors (``kept``); a partition that could not be read raises its error."""
        from pyspark import StorageLevel

        mine = frozenset(b.id for b in self.job.batches)
        frame = self._frame(parts, PARTS)
        keys = frame.mapInArrow(lake_keys_task(self.setup, mine), _spark_schema(LAKE_KEYS))
        kept.append(keys.persist(StorageLevel.MEMORY_AND_DISK))
        for r in keys.where("error IS NOT NULL").select("error").collect():
            failure: Failure = pickle.loads(r["error"])  # noqa: S301 - the executors' own
            failure.raise_it()
        return keys

    def _record(
        self, results: Mapping[int, Written], sessions: list[Any], origins: list[Any]
    ) -> None:
        """Each batch's sessions kept and the batch recorded done, in input order, its counts
        added to the summary; a batch that failed raises its error, the batches before it
        recorded (as a local run would have)."""
        for k, batch in enumerate(self.job.batches):
            done = results[k]
            self.work.saw(done)
            if done.failure is not None:
                done.failure.raise_it()
            assert done.counts is not None
            keep_sessions(self.job.lake, batch.id, sessions[k], origins[k])
            record_done(self.job.lake, batch, done.counts)
            _add(self.job.summary, done.summary)


def _drops(keys: Any, lake_keys: Any) -> Any:
    """The rows of ``keys`` (batch, source, hour, key) that are not new: their key in the lake's
    files of their partition, or in an earlier batch's rows of it."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    part = ["source", "hour", "key"]
    first = F.min("batch").over(Window.partitionBy(*part))
    later = keys.withColumn("_first", first).where(F.col("batch") > F.col("_first"))
    in_lake = keys.join(lake_keys.select(*part), part, "left_semi")
    return later.drop("_first").unionByName(in_lake)


def _add(summary: Summary, part: Summary) -> None:
    """A batch's part of the run's summary, added to it."""
    summary.records_in += part.records_in
    summary.ingested += part.ingested
    summary.duplicates += part.duplicates
    summary.quarantined.update(part.quarantined)
    summary.unresolved_tenants += part.unresolved_tenants
    summary.digests += part.digests
    if part.new_events is not None:
        lo, hi = part.new_events
        if summary.new_events is not None:
            lo, hi = min(lo, summary.new_events[0]), max(hi, summary.new_events[1])
        summary.new_events = (lo, hi)
    summary.new_files += part.new_files


def _spark_schema(schema: Any) -> Any:
    """The Spark schema of an Arrow one of strings, integers and bytes."""
    import pyarrow as pa
    from pyspark.sql import types as st

    def kind(t: Any) -> Any:
        if pa.types.is_int32(t):
            return st.IntegerType()
        if pa.types.is_int64(t):
            return st.LongType()
        if pa.types.is_binary(t):
            return st.BinaryType()
        return st.StringType()

    return st.StructType([st.StructField(f.name, kind(f.type)) for f in schema])


@contextmanager
def _settings(session: Any, settings: Mapping[str, str]) -> Iterator[None]:
    """``settings`` of the session while the block runs, as they were after it."""
    before = {k: session.conf.get(k, None) for k in settings}
    for k, v in settings.items():
        session.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                session.conf.unset(k)
            else:
                session.conf.set(k, v)
