"""The ingest stage: inputs -> normalized, tenant-resolved, deduplicated Parquet in the lake.

Work is cut into batches of input objects (``ingest.batch_input_bytes`` of compressed input each, so
memory stays bounded whatever the number of files, and follows how far they inflate). Workers decode
and normalize batches in parallel (``decode.decode_batch``: pure, no lake access), work out all that
needs no history (``prepare``: dedup keys, partitions, target tenants, actor candidates) and hand
the parent only those columns (``handoff``); the parent takes their results *in input order* and
does what needs the whole history: learning AssumeRole sessions, resolving actor tenants by session,
dropping duplicate event ids (within the batch and against the lake), and planning the files; the
worker that decoded a batch writes its files to that plan, and the parent records the batch as done.
A batch's files are named by a hash of its inputs, and a batch is recorded as done only after its
files are written, so a run that dies half way is re-run to the same lake.

The parent's work per batch is a fixed number of Arrow calls, not a loop over rows: with one
worker it shares the CPU with decoding, and with N it must keep up with N of them.

Invariant, checked by tests: records_in = ingested + duplicates + quarantined.
"""

from __future__ import annotations

import os
import posixpath
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import aws
from pipeline.config import Config, IngestConfig
from pipeline.ingest import handoff, native, prepare, tenancy, write
from pipeline.ingest.commit import (
    DIGESTS,
    INGESTED,
    Counts,
    keep_outputs,
    keep_sessions,
    record_done,
)
from pipeline.ingest.commit import quarantine_table as _quarantine_table
from pipeline.ingest.decode import Batch, Decoded, decode_batch
from pipeline.ingest.lookups import load_lookups
from pipeline.ingest.quarantine import Quarantined
from pipeline.ingest.reading import Reading
from pipeline.ingest.records import read_records
from pipeline.ingest.seen import SeenIndex, ingested_partition
from pipeline.ingest.sessions import CLOCK_SKEW
from pipeline.ingest.sources import (
    InputRef,
    LogPosition,
    list_inputs,
    load_positions,
    save_position,
)
from pipeline.lake import (
    COMPACTED,
    STATE_INGESTED,
    STATE_SESSIONS,
    Lake,
    event_partition,
    legacy_files,
    sessions_day,
)

__all__ = [
    "DIGESTS",
    "INGESTED",
    "Batch",
    "Decoded",
    "Ingestor",
    "Summary",
    "_quarantine_table",
    "decode_batch",
    "ingest",
    "make_batches",
]

NEW_FILES_LISTED = 64
_US = timedelta(microseconds=1)


def make_batches(inputs: list[InputRef], limit: int) -> list[Batch]:
    batches: list[Batch] = []
    current: list[InputRef] = []
    size = 0
    for ref in inputs:
        if current and size + ref.size > limit:
            batches.append(Batch(tuple(current)))
            current, size = [], 0
        current.append(ref)
        size += ref.size
    if current:
        batches.append(Batch(tuple(current)))
    return batches


@dataclass
class Summary:
    files: int = 0
    files_skipped: int = 0
    records_in: int = 0
    ingested: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    unresolved_tenants: int = 0
    digests: int = 0
    elapsed_s: float = 0.0
    # The earliest and latest time (µs) of the events this run added: the windows it touched.
    new_events: tuple[int, int] | None = None
    # The event files holding them (the fast path reads just these), while few.
    new_files: list[str] = field(default_factory=list)

    def saw(self, times: pa.Array | pa.ChunkedArray) -> None:
        if not len(times):
            return
        lo, hi = pc.min(times).value, pc.max(times).value
        if self.new_events is not None:
            lo, hi = min(lo, self.new_events[0]), max(hi, self.new_events[1])
        self.new_events = (lo, hi)

    def as_dict(self) -> dict[str, Any]:
        q = dict(sorted(self.quarantined.items()))
        return {
            "files": self.files,
            "files_skipped": self.files_skipped,
            "records_in": self.records_in,
            "ingested": self.ingested,
            "duplicates": self.duplicates,
            "quarantined": q,
            "quarantined_total": sum(q.values()),
            "unresolved_tenants": self.unresolved_tenants,
            "digest_files": self.digests,
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(self.records_in / self.elapsed_s) if self.elapsed_s else 0,
            "new_events": None
            if self.new_events is None
            else {"first": _iso(self.new_events[0]), "last": _iso(self.new_events[1])},
            # Listed while few (an S3 object's run); a large run's would only fill its report.
            "new_files": sorted(self.new_files)
            if len(self.new_files) <= NEW_FILES_LISTED
            else None,
        }


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat()


def _day(us: int) -> date:
    return datetime.fromtimestamp(us / 1e6, UTC).date()


class Ingestor:
    """The parent's side: state, session map, dedup index, writing.

    State is read for what the run works on, not the lake's whole history: the records of
    ``_state/ingested`` in its inputs' partitions (``load_done``), and the sessions of the days
    that can hold a session live during a batch's events (``plan``), each day once per run."""

    def __init__(self, lake: Lake, cfg: Config, reading: Reading | None = None) -> None:
        self.lake = lake
        self.cfg = cfg
        self.reading = reading if reading is not None else Reading.of(cfg)
        self.sessions = tenancy.SessionMap(timedelta(hours=cfg.tenancy.session_ttl_hours))
        self.done: set[str] = set()
        self.seen = SeenIndex(lake)
        self._session_days: set[date] = set()
        self._committed: dict[str, frozenset[str]] = {}  # partition -> batches recorded there
        # Written before the folders were partitioned: read whole, as then.
        for f in legacy_files(lake, STATE_SESSIONS):
            self.sessions.learn(_numbered(self.lake.read_file(f)))

    def load_done(self, inputs: list[InputRef]) -> None:
        """Learn which of ``inputs`` earlier runs ingested: the records in their partitions
        whose batch was committed (its file in its commit partition is there)."""
        for f in legacy_files(self.lake, STATE_INGESTED):
            self.done.update(self.lake.read_file(f, ["identity"])["identity"].to_pylist())
        for part in sorted({ingested_partition(r.uri) for r in inputs}):
            for identity, commit, batch in self._records(part):
                if commit == part or batch in self._batches(commit):
                    self.done.add(identity)

    def _records(self, part: str) -> list[tuple[str, str, str | None]]:
        """(identity, commit partition, batch) of each record in the partition ``part``; the
        batch ids found there are kept for ``_batches``."""
        out: list[tuple[str, str, str | None]] = []
        batches: set[str] = set()
        for f, t in read_records(self.lake, f"{STATE_INGESTED}/{part}"):
            name = posixpath.basename(f).removesuffix(".parquet")
            ids = t["identity"].to_pylist()
            commits = t["commit"].to_pylist() if "commit" in t.column_names else [part] * len(ids)
            if "batch" in t.column_names:
                names = t["batch"].to_pylist()
            elif name.startswith(COMPACTED):
                # Compacted before batches were recorded, days after their commits.
                names, commits = [None] * len(ids), [part] * len(ids)
            else:
                names = [name] * len(ids)
            batches.update(n for n in names if n is not None)
            out += zip(ids, [c or part for c in commits], names, strict=True)
        self._committed[part] = frozenset(batches)
        return out

    def _batches(self, part: str) -> frozenset[str]:
        """The batches with a file (or compacted rows) in the ingested partition ``part``."""
        if part not in self._committed:
            self._records(part)
        return self._committed[part]

    def _load_sessions(self, times: pa.Array | pa.ChunkedArray, started: pa.ChunkedArray) -> None:
        """The stored sessions that can be live for a batch's events (at ``times``) or started
        with its ``AssumeRole*`` calls (at ``started``): those that started on the days from the
        earliest time less the longest session to the latest time plus the clock skew allowed."""
        spans = [
            (pc.min(c).value, pc.max(c).value)
            for c in (times, started)
            if len(c) and c.null_count < len(c)
        ]
        if not spans:
            return
        lo = min(s[0] for s in spans) - self.sessions.ttl // _US
        hi = max(s[1] for s in spans) + CLOCK_SKEW // _US
        day, last = _day(lo), _day(hi)
        while day <= last:
            if day not in self._session_days:
                self._session_days.add(day)
                stored = tenancy.SessionMap(self.sessions.ttl)
                for _, t in self.lake.read_folder(sessions_day(f"{day:%Y-%m-%d}")):
                    stored.learn(_numbered(t))
                self.sessions.learn_earlier(stored.tags)
            day += timedelta(days=1)

    def advance(self, times: pa.Array | pa.ChunkedArray, sessions: pa.Table) -> None:
        """The session map brought to the next batch, whose events happen at ``times`` (parsed)
        and whose ``AssumeRole*`` calls started ``sessions`` (``SESSION_ROWS``): the stored
        sessions that can be live then, the batch's own (first: an AssumeRole and the calls it
        enabled often share a batch), and those over before its earliest event forgotten."""
        self._load_sessions(times, sessions["started"])
        self.sessions.learn(sessions)
        if len(times):
            self.sessions.expire(pc.min(times).value)

    def plan(
        self,
        d: Decoded,
        summary: Summary,
        wait: Callable[[str], None] | None = None,
    ) -> Planned:
        """Everything about a batch that needs the run's history, in batch order: sessions,
        times, tenants, duplicates (within the batch and against the lake), the files' order.
        Writing the files is ``write.write`` (here or in a worker); ``commit`` then records the
        batch. ``wait(partition)`` is called before a partition's keys are read from the lake,
        so that this run's own files for it are there first. The plan carries only what this
        adds to the rows (``write.EXTRA``); the writer takes the rest from the rows it holds."""
        summary.records_in += d.records_in
        self.seen.planned.add(d.batch.id)
        # ``event_time`` was parsed by the decoder, which quarantined what did not parse.
        self.advance(d.rows["event_time"], d.sessions)
        # The rows stay where they are (in the worker that decoded the batch, or in ``absorb``):
        # ``d.rows`` are only what the plan reads (``prepare.plan_rows``), the plan names rows by
        # number, and only ``write`` copies them.
        t = d.rows.append_column("_row", pa.array(np.arange(d.rows.num_rows)))
        t, origins = tenancy.finish(t, self.reading, self.sessions)
        return place(d, t, origins, self.seen, summary, wait)

    def commit(self, p: Planned, written: int) -> None:
        """After the plan's files are written: the batch's quarantine and state, the inputs
        marked done last (a crash before that re-runs the batch to the same files)."""
        check_written(p, written)
        d, batch_id = p.decoded, p.plan.batch_id
        keep_outputs(self.lake, batch_id, d, p.quarantine)
        keep_sessions(self.lake, batch_id, d.sessions, p.origins)
        record_done(self.lake, p.decoded.batch, p.counts)
        self.done.update(r.identity for r in p.decoded.batch.inputs)

    def absorb(self, d: Decoded, summary: Summary) -> None:
        """``plan``, write and ``commit`` one batch in this process."""
        p = self.plan(replace(d, rows=prepare.plan_rows(d.rows, self.reading)), summary)
        self.commit(p, write.write(self.lake.root, p.plan, d.rows))


class Seen(Protocol):
    """The dedup keys a batch's rows are new against, per event hour partition (``SeenIndex``:
    the lake's and this run's so far)."""

    def keys(
        self, partition: str, own_file: str, wait: Callable[[str], None] | None = None
    ) -> pa.ChunkedArray | pa.Array: ...

    def add(self, partition: str, new: pa.ChunkedArray) -> None: ...


def place(
    d: Decoded,
    t: pa.Table,
    origins: pa.Table,
    seen: Seen,
    summary: Summary,
    wait: Callable[[str], None] | None = None,
) -> Planned:
    """The rest of a batch's plan, its tenants resolved (``t``: ``d.rows`` numbered by ``_row``,
    through ``tenancy.finish``): the files' order, the rows new to ``seen`` in each partition
    (which then has them), what the batch counts for in ``summary``."""
    order = _file_order(t)
    dup_in_batch = t.num_rows - len(order)
    # File order, of the columns the rest needs. Only these are put in order here: the
    # writer takes each file's rows of the others from its batch, once (taking every column
    # here as well cost a tenth of a run's CPU).
    keep = [n for n in ("_row", "_dedup", "_hour", "source") if n not in write.EXTRA]
    t = t.select([*keep, *write.EXTRA]).take(order)

    own = f"part-{d.batch.id}.parquet"
    keep_parts: list[pa.Array] = []
    files: list[tuple[str, int, int]] = []
    dup_lake = at = 0
    for (source, hour), start, end in _partitions(t):
        pt = t.slice(start, end - start)
        rel = event_partition(source, *_date_hour(hour))
        known = seen.keys(rel, own, wait)
        new = pa.repeat(pa.scalar(True), pt.num_rows)
        if len(known):
            new = pc.invert(pc.is_in(pt["_dedup"], value_set=known)).combine_chunks()
        fresh = int(pc.sum(new).as_py() or 0)
        dup_lake += pt.num_rows - fresh
        keep_parts.append(new)
        if fresh:
            seen.add(rel, pt["_dedup"].filter(new))
            summary.saw(pt["event_time"].filter(new))
            summary.new_files.append(f"{rel}/{own}")
            files.append((f"{rel}/{own}", at, at + fresh))
            at += fresh
    if keep_parts:
        t = t.filter(pa.concat_arrays(keep_parts))
    has_target = pc.is_valid(t["target_tenant"])
    summary.unresolved_tenants += int(
        pc.sum(pc.and_(has_target, pc.is_null(t["actor_tenant"]))).as_py() or 0
    )
    quarantine = list(d.quarantine)
    summary.ingested += t.num_rows
    summary.duplicates += dup_in_batch + dup_lake
    for entry in quarantine:
        summary.quarantined[entry.reason] += entry.records
    summary.digests += len({x[0] for x in d.digests})
    plan = write.Plan(
        d.batch.id,
        t["_row"].to_numpy(),
        t.select(write.EXTRA),
        tuple(files),
    )
    return Planned(plan, d, quarantine, t.num_rows, dup_in_batch + dup_lake, origins)


def check_written(p: Planned, written: int) -> None:
    if written != p.ingested:
        raise RuntimeError(f"batch {p.plan.batch_id}: {written} rows written, {p.ingested} planned")


@dataclass
class Planned:
    """A batch between ``Ingestor.plan`` and ``Ingestor.commit``."""

    plan: write.Plan
    decoded: Decoded  # its rows released (the plan names them by number)
    quarantine: list[Quarantined]
    ingested: int
    duplicates: int
    origins: pa.Table  # sessions.STATE rows: the session origins its AssumeRole* calls taught

    def __post_init__(self) -> None:
        self.decoded = replace(self.decoded, rows=self.decoded.rows.schema.empty_table())

    @property
    def counts(self) -> Counts:
        quarantined = sum(e.records for e in self.quarantine)
        return Counts(self.decoded.records_in, self.ingested, self.duplicates, quarantined)


def _numbered(t: pa.Table) -> pa.Table:
    """A state file's sessions (``sessions.STATE``) numbered for ``SessionMap.learn``: a file
    holds one batch's sessions, and an access key id's rows in it are one session."""
    keys = t["access_key_id"]
    session = pc.index_in(keys, value_set=pc.unique(keys)).cast(pa.int32())
    return t.append_column("session", session)


def _date_hour(hour: int) -> tuple[str, str]:
    start = datetime.fromtimestamp(hour * 3600, UTC)
    return start.strftime("%Y-%m-%d"), start.strftime("%H")


_FILE_ORDER = [
    ("source", "ascending"),
    ("_hour", "ascending"),
    ("target_tenant", "ascending"),
    ("actor_tenant", "ascending"),
    ("event_time", "ascending"),
]


def _file_order(t: pa.Table) -> pa.Array:
    """Row indices in the order of the files they go to, first occurrences only (input order
    wins).

    One stable sort by partition, then by the order inside a file, so each partition is a
    contiguous run of indices already sorted: a file holds exactly the rows, in exactly the
    order, a per-partition filter-and-sort would give.
    """
    order = pc.sort_indices(t.select([k for k, _ in _FILE_ORDER]), sort_keys=_FILE_ORDER)
    first = t["_first"]  # the first of the batch's rows with its dedup key (prepare)
    if not pc.all(first).as_py():
        order = order.filter(pc.take(first, order))
    return order


def _partitions(t: pa.Table) -> Iterator[tuple[tuple[str, int], int, int]]:
    """((source, hour), start, end) of each partition of ``t``, a table in file order (each
    partition a contiguous run of rows, ``_file_order``)."""
    if not t.num_rows:
        return
    source, hour = t["source"].combine_chunks(), t["_hour"].combine_chunks()
    changes = pc.or_(pc.not_equal(source[1:], source[:-1]), pc.not_equal(hour[1:], hour[:-1]))
    starts = [0, *(i + 1 for i in pc.indices_nonzero(changes).to_pylist()), t.num_rows]
    for start, end in pairwise(starts):
        yield (source[start].as_py(), hour[start].as_py()), start, end


def _cpu_times() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its ended child processes."""
    own, ended = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, ended.ru_utime + ended.ru_stime


def _worker_count(requested: int | None, cfg: IngestConfig) -> int:
    n = requested if requested is not None else cfg.workers
    return n if n and n > 0 else (os.cpu_count() or 1)


def _in_process(
    ing: Ingestor, batches: list[Batch], ingest: IngestConfig, summary: Summary
) -> Iterator[Batch]:
    """One process: decode, plan, write and commit each batch in turn."""
    for b in batches:
        ing.absorb(decode_batch(b, ingest, ing.reading), summary)
        yield b


def _with_workers(
    ing: Ingestor,
    batches: list[Batch],
    workers: int,
    ingest: IngestConfig,
    summary: Summary,
) -> Iterator[Batch]:
    """N processes decode batches and write their files (``handoff``); this one plans each
    batch in input order (the part that needs the history) and commits it, in input order,
    once its files are written."""
    decoded: dict[int, Decoded] = {}
    writing: dict[int, Planned] = {}  # planned and sent to be written, not yet committed
    written: dict[int, int] = {}
    committed: list[Batch] = []
    todo = iter(enumerate(batches))
    next_plan = next_commit = 0
    with handoff.Workers(workers, ingest, ing.reading, ing.lake.root) as pool:

        def feed() -> None:
            while pool.room() and (b := next(todo, None)) is not None:
                pool.decode(*b)

        def take_reply() -> None:
            nonlocal next_commit
            kind, i, value = pool.next_reply()
            if kind == "decoded":
                decoded[i] = handoff.load_rows(value)
            else:
                written[i] = value
            while next_commit in written:
                ing.commit(writing.pop(next_commit), written.pop(next_commit))
                committed.append(batches[next_commit])
                next_commit += 1
            feed()

        def wait_for(partition: str) -> None:
            # A partition whose keys must be read from the lake again: this run's files for it
            # first (rare: only a partition forgotten by the dedup index's budget).
            prefix = partition + "/"
            while any(f.startswith(prefix) for p in writing.values() for f, _, _ in p.plan.files):
                take_reply()

        feed()
        while next_commit < len(batches):
            take_reply()
            while next_plan in decoded:
                planned = ing.plan(decoded.pop(next_plan), summary, wait_for)
                writing[next_plan] = planned
                pool.write(next_plan, planned.plan)
                next_plan += 1
            yield from committed
            committed.clear()


@dataclass
class Pending:
    """A run's start: the lake opened, its state read, the inputs listed and batched."""

    lake: Lake
    ing: Ingestor
    summary: Summary
    pending: list[InputRef]
    batches: list[Batch]
    positions: dict[str, LogPosition]
    new_positions: dict[str, LogPosition]

    def save_positions(self) -> None:
        """Only once every chunk is in the lake may the next run start after them."""
        for uri, pos in self.new_positions.items():
            if self.positions.get(uri) != pos:
                save_position(self.lake, uri, pos)


def pending(
    sources: list[str],
    lake_root: str,
    cfg: Config,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Pending:
    """What a run over ``sources`` has to do: the inputs no run ingested, in batches."""
    aws.require([*sources, lake_root])
    # The lookups first: a run never starts on half a registry, nor ends half way for one.
    reading = Reading.of(cfg, load_lookups(cfg))
    lake = Lake(lake_root)
    lake.ensure_writable()
    lake.clean_temporaries()  # what runs that were killed left (a live run's stay)
    ing = Ingestor(lake, cfg, reading)
    summary = Summary()
    positions = load_positions(lake)
    inputs, new_positions = list_inputs(sources, since, until, positions)
    ing.load_done(inputs)
    todo = [r for r in inputs if r.identity not in ing.done]
    summary.files = len(inputs)
    summary.files_skipped = len(inputs) - len(todo)
    batches = make_batches(todo, cfg.ingest.batch_input_bytes)
    ing.seen.mine.update(b.id for b in batches)
    return Pending(lake, ing, summary, todo, batches, positions, new_positions)


def ingest(
    sources: list[str],
    lake_root: str,
    cfg: Config,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_before = _cpu_times()
    run = pending(sources, lake_root, cfg, since, until)
    ing, summary, batches = run.ing, run.summary, run.batches
    n = _worker_count(workers, cfg.ingest)
    done_files = 0
    if n <= 1 or len(batches) <= 1:
        done = _in_process(ing, batches, cfg.ingest, summary)
    else:
        done = _with_workers(ing, batches, n, cfg.ingest, summary)
    for b in done:
        done_files += len(b.inputs)
        if progress:
            progress(done_files, len(run.pending))
    run.save_positions()
    summary.elapsed_s = time.perf_counter() - started
    out = summary.as_dict()
    out["lake"] = run.lake.uri("")
    out["workers"] = n
    # Without the compiled decoder ingest runs at less than half the speed: say so, and why.
    out["decoder"] = native.decoder()
    # Where the CPU went: when "main" nears elapsed_s, the main process (planning every batch)
    # is what holds the run back, and more workers would not make it faster.
    out["cpu_s"] = {
        k: round(after - before, 2)
        for k, before, after in zip(("main", "workers"), cpu_before, _cpu_times(), strict=True)
    }
    out["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out
