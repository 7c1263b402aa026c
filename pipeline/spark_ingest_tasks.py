"""What executors run for ingestion on Spark (``pipeline.spark_ingest``), and the session map as
the driver saw it after each batch (``SessionHistory``).

Three functions, each the local code on one batch or one partition:

- ``keys_task`` (``mapInArrow`` over batches): a batch decoded as a local run decodes it
  (``decode_batch``, ``prepare.plan_rows``), and what crosses batches taken out of it: the dedup
  key of each of its rows that is the first in the batch with its key, with its event hour
  partition (rows of ``KEYS``), and, for the driver, what the session map needs (``Found``: its
  sessions, its ``AssumeRole*`` calls' columns, its events' earliest and latest times).
- ``lake_keys_task`` (``mapInArrow`` over event hour partitions): the dedup keys already in the
  lake's files of a partition, but this run's own batches' (``SeenIndex.in_lake``).
- ``write_task`` (``cogroup(...).applyInPandas`` by batch): the batch decoded again, its tenants
  resolved with the session map as of the batch (``SessionHistory.as_of``), placed, deduplicated
  against the keys the driver's dedup stage found not new (``Dropped``) and written, its event
  files, quarantine and digests, as ``run.place``, ``write.write`` and ``commit.keep_outputs`` do
  locally (``Written``).

Nothing here raises: an exception is returned, pickled, with its traceback, and the driver raises
it as a local run would have.
"""

from __future__ import annotations

import os
import pickle
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Config
from pipeline.ingest import native, prepare, tenancy, write
from pipeline.ingest.commit import Counts, keep_outputs
from pipeline.ingest.decode import Batch, decode_batch
from pipeline.ingest.reading import Reading
from pipeline.ingest.run import Summary, _date_hour, check_written, place
from pipeline.ingest.seen import SeenIndex
from pipeline.ingest.sessions import ORIGIN, STATE, SessionMap
from pipeline.lake import Lake, event_partition

if TYPE_CHECKING:
    import pandas as pd

_S = pa.string()
# A batch's first rows, one per dedup key, with their partition; ``meta`` (a pickled ``Found``)
# on one more row per batch, whose other columns are null.
KEYS = pa.schema(
    [
        ("batch", pa.int32()),
        ("source", _S),
        ("hour", pa.int64()),
        ("key", _S),
        ("meta", pa.binary()),
    ]
)
PARTS = pa.schema([("source", _S), ("hour", pa.int64())])
# An event hour partition's keys in the lake; ``error`` (a pickled ``Failure``) instead.
LAKE_KEYS = pa.schema([*PARTS, ("key", _S), ("error", pa.binary())])
TASKS = pa.schema([("batch", pa.int32()), ("task", pa.binary())])
RESULTS = pa.schema([("batch", pa.int32()), ("result", pa.binary())])
_FOREVER = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Setup:
    """What every task needs: the lake as executors open it, the configuration, what is read of
    each record (lookups included: loaded once, on the driver) and ``spark_plan.CARRIED_ENV``."""

    root: str
    cfg: Config
    reading: Reading
    env: tuple[tuple[str, str], ...] = ()

    def enter(self) -> None:
        for key, value in self.env:
            os.environ.setdefault(key, value)


@dataclass
class Failure:
    """An exception on an executor, for the driver to raise (``raise_it``)."""

    error: BaseException
    trace: str

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        try:
            pickle.dumps(exc)
        except Exception:  # an exception that does not pickle
            exc = RuntimeError(repr(exc))
        return cls(exc, traceback.format_exc())

    def raise_it(self) -> None:
        from pipeline.ingest.handoff import RemoteTraceback

        raise self.error from RemoteTraceback(self.trace)


@dataclass
class Found:
    """What the driver's session map needs of a batch (``Ingestor.advance`` and the
    ``AssumeRole*`` calls' origins, ``tenancy.finish``), and the partitions its rows fall in."""

    records_in: int = 0
    times: pa.Array = field(default_factory=lambda: pa.array([], pa.timestamp("us", tz="UTC")))
    sessions: pa.Table = field(default_factory=tenancy.SESSION_ROWS.empty_table)
    calls: pa.Table | None = None  # the plan columns of its AssumeRole* calls (session_origin)
    parts: list[tuple[str, int]] = field(default_factory=list)
    cpu_s: float = 0.0
    decoder: str = ""
    failure: Failure | None = None


@dataclass
class Written:
    """What a batch's write task hands back: what it counts for in the run's summary and in its
    record of inputs done."""

    summary: Summary = field(default_factory=Summary)
    counts: Counts | None = None
    cpu_s: float = 0.0
    decoder: str = ""
    failure: Failure | None = None


# --- the first pass: keys and sessions --------------------------------------------------------


def keys_task(setup: Setup) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function ``mapInArrow`` runs over batches (rows of ``TASKS``): rows of ``KEYS``."""

    def run(tasks: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        setup.enter()
        for rb in tasks:
            for k, blob in zip(rb["batch"].to_pylist(), rb["task"].to_pylist(), strict=True):
                yield from _keys(setup, k, pickle.loads(blob))  # noqa: S301 - the driver's own

    return run


def _keys(setup: Setup, k: int, batch: Batch) -> Iterator[pa.RecordBatch]:
    cpu = time.process_time()
    found = Found(decoder=native.decoder())
    try:
        d = decode_batch(batch, setup.cfg.ingest, setup.reading)
        rows = prepare.plan_rows(d.rows, setup.reading)
        first = rows.filter(rows["_first"])
        found.records_in, found.sessions = d.records_in, d.sessions
        when = rows["event_time"]
        if len(when):  # the earliest and the latest: all the map needs of them
            ends = [pc.min(when).value, pc.max(when).value]
            found.times = pa.array(ends, pa.int64()).cast(when.type)
        if "_new_session" in rows.column_names:
            found.calls = rows.filter(pc.is_valid(rows["_new_session"]))
        parts = first.select(["source", "_hour"]).group_by(["source", "_hour"]).aggregate([])
        found.parts = sorted(zip(*(parts[c].to_pylist() for c in ("source", "_hour")), strict=True))
        n = first.num_rows
        yield pa.RecordBatch.from_arrays(
            [
                pa.repeat(pa.scalar(k, pa.int32()), n),
                first["source"].combine_chunks(),
                first["_hour"].combine_chunks().cast(pa.int64()),
                first["_dedup"].combine_chunks(),
                pa.nulls(n, pa.binary()),
            ],
            schema=KEYS,
        )
    except Exception as exc:
        found = Found(decoder=found.decoder, failure=Failure.of(exc))
    found.cpu_s = time.process_time() - cpu
    yield _meta_row(k, found)


def _meta_row(k: int, found: Found) -> pa.RecordBatch:
    nulls = [pa.nulls(1, f.type) for f in KEYS if f.name not in ("batch", "meta")]
    meta = pa.array([pickle.dumps(found)], pa.binary())
    return pa.RecordBatch.from_arrays([pa.array([k], pa.int32()), *nulls, meta], schema=KEYS)


# --- the lake's keys ------------------------------------------------------------------------


def lake_keys_task(
    setup: Setup, mine: frozenset[str]
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function ``mapInArrow`` runs over event hour partitions (rows of ``PARTS``): each
    one's keys in the lake's files but those of this run's batches (``mine``), rows of
    ``LAKE_KEYS``."""

    def run(parts: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        setup.enter()
        seen = SeenIndex(Lake(setup.root))
        seen.mine = set(mine)
        for rb in parts:
            for source, hour in zip(rb["source"].to_pylist(), rb["hour"].to_pylist(), strict=True):
                try:
                    keys = seen.in_lake(event_partition(source, *_date_hour(hour)))
                    error = pa.nulls(len(keys), pa.binary())
                except Exception as exc:
                    keys = pa.chunked_array([pa.nulls(1, _S)])
                    error = pa.array([pickle.dumps(Failure.of(exc))], pa.binary())
                n = len(keys)
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.repeat(pa.scalar(source, _S), n),
                        pa.repeat(pa.scalar(hour, pa.int64()), n),
                        keys.combine_chunks(),
                        error,
                    ],
                    schema=LAKE_KEYS,
                )

    return run


# --- the second pass: writing -----------------------------------------------------------------


class Dropped:
    """``run.Seen`` for one batch: the keys of its rows that are not new, per partition, as the
    driver's dedup stage found them (in the lake, or first in an earlier batch of the run)."""

    def __init__(self, by_partition: dict[str, pa.Array]) -> None:
        self.by_partition = by_partition

    def keys(
        self, partition: str, own_file: str, wait: Callable[[str], None] | None = None
    ) -> pa.Array:
        return self.by_partition.get(partition, pa.array([], _S))

    def add(self, partition: str, new: pa.ChunkedArray) -> None:
        pass  # the dedup stage has seen every batch's keys already


def write_task(
    setup: Setup, history: pa.Table, ttl: timedelta
) -> Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]:
    """The function ``cogroup(...).applyInPandas`` calls once per batch with its task (``TASKS``)
    and the keys of its rows that are not new (batch, source, hour, key): one row of
    ``RESULTS``."""

    def run(tasks: pd.DataFrame, drops: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        setup.enter()
        by_partition: dict[str, list[str]] = {}
        for source, hour, key in zip(drops["source"], drops["hour"], drops["key"], strict=True):
            rel = event_partition(source, *_date_hour(int(hour)))
            by_partition.setdefault(rel, []).append(key)
        dropped = Dropped({rel: pa.array(keys, _S) for rel, keys in by_partition.items()})
        out = []
        for k, blob in zip(tasks["batch"], tasks["task"], strict=True):
            batch = pickle.loads(blob)  # noqa: S301 - the driver's own
            done = _write(setup, as_of(history, int(k), ttl), batch, dropped)
            out.append((int(k), pickle.dumps(done)))
        return pd.DataFrame(out, columns=RESULTS.names)

    return run


def _write(setup: Setup, sessions: SessionMap, batch: Batch, dropped: Dropped) -> Written:
    cpu = time.process_time()
    done = Written(decoder=native.decoder())
    try:
        d = decode_batch(batch, setup.cfg.ingest, setup.reading)
        done.summary.records_in += d.records_in
        planned = replace(d, rows=prepare.plan_rows(d.rows, setup.reading))
        t = planned.rows
        # The origins of the batch's calls were learnt on the driver (which keeps them), and
        # are in ``sessions``.
        if "_new_session" in t.column_names:
            t = t.drop_columns(["_new_session"])
        t = t.append_column("_row", pa.array(np.arange(t.num_rows)))
        t, _ = tenancy.finish(t, setup.reading, sessions)
        p = place(planned, t, STATE.empty_table(), dropped, done.summary)
        written = write.write(setup.root, p.plan, d.rows)
        check_written(p, written)
        keep_outputs(Lake(setup.root), p.plan.batch_id, p.decoded, p.quarantine)
        done.counts = p.counts
    except Exception as exc:
        done = Written(decoder=done.decoder, failure=Failure.of(exc))
    done.cpu_s = time.process_time() - cpu
    return done


# --- the session map after each batch -------------------------------------------------------


class SessionHistory:
    """What the driver's session map (``SessionMap.tags``) held after each batch, of the tags
    resolution looks up (``tenancy.session_tags``): every row it held, with the first batch it
    held it after (``since``) and the first it no longer did (``until``).

    A map holds one row per access key id and tag, so a session's lookup depends only on which
    rows it holds, not on their order: the rows held after batch ``k`` (``as_of``) resolve
    batch ``k`` as the driver's map would have."""

    def __init__(self, tags: frozenset[str]) -> None:
        self.tags = pa.array(sorted(tags), _S)
        self._open = _with_identity(STATE.empty_table()).append_column(
            "since", pa.array([], pa.int32())
        )
        self._closed: list[pa.Table] = []
        self._last: pa.Table | None = None

    def after(self, k: int, held: pa.Table) -> None:
        """The map's rows after batch ``k`` (batches in order, from 0)."""
        if held is self._last:  # a map that did not change keeps its table
            return
        self._last = held
        now = _with_identity(held.filter(pc.is_in(held["tag"], value_set=self.tags)))
        stay = pc.is_in(self._open["_id"], value_set=now["_id"])
        gone = self._open.filter(pc.invert(stay))
        if gone.num_rows:
            self._closed.append(
                gone.append_column("until", pa.repeat(pa.scalar(k, pa.int32()), gone.num_rows))
            )
        new = now.filter(pc.invert(pc.is_in(now["_id"], value_set=self._open["_id"])))
        since = pa.repeat(pa.scalar(k, pa.int32()), new.num_rows)
        self._open = pa.concat_tables([self._open.filter(stay), new.append_column("since", since)])

    def table(self) -> pa.Table:
        """Every row held, ``STATE`` with ``since`` and ``until``."""
        forever = pa.repeat(pa.scalar(_FOREVER, pa.int32()), self._open.num_rows)
        rows = pa.concat_tables([*self._closed, self._open.append_column("until", forever)])
        return rows.select([*STATE.names, "since", "until"]).combine_chunks()


def as_of(history: pa.Table, k: int, ttl: timedelta) -> SessionMap:
    """The session map as the driver held it after batch ``k`` (of the tags looked up)."""
    k32 = pa.scalar(k, pa.int32())
    held = pc.and_(pc.less_equal(history["since"], k32), pc.greater(history["until"], k32))
    rows = history.filter(held).select(STATE.names)
    origins = bool(pc.any(pc.equal(rows["tag"], ORIGIN)).as_py()) if rows.num_rows else False
    return SessionMap(ttl, rows.cast(STATE), origins)


def _with_identity(rows: pa.Table) -> pa.Table:
    """``rows`` with ``_id``: text that only rows of the same key, tag, value and start share
    (each field as its length and itself, or "-" when null)."""
    parts = []
    for name in ("access_key_id", "tag", "value"):
        col = rows[name]
        length = pc.cast(pc.binary_length(col), _S)
        parts.append(pc.fill_null(pc.binary_join_element_wise(length, col, ":"), "-"))
    parts.append(pc.fill_null(pc.cast(pc.cast(rows["started"], pa.int64()), _S), "-"))
    return rows.append_column("_id", pc.binary_join_element_wise(*parts, "|"))
