"""Reading the lake's events and quarantine: only the partitions and columns asked for
(``pipeline.lake`` names the layout and re-exports these, so ``from pipeline.lake import
read_events`` reads as it always did).

A read costs the window's days, not the lake's age: the day folders of the window are listed
one by one (``_event_files``), the date/hour partitions and ``event_time`` filter the rows, and
only the requested columns are decoded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipeline.timeparse import as_time

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.lake import Lake, LakeLike


def _lake(lake: LakeLike) -> Lake:
    from pipeline.lake import as_lake

    return as_lake(lake)


def _partition_filter(since: datetime | None, until: datetime | None) -> pc.Expression | None:
    """A filter on the date/hour partition columns covering [since, until). A day's compacted
    file has no hour (null): it is kept for any hour of its day, and the filter on
    ``event_time`` picks its rows."""
    expr: pc.Expression | None = None
    date, hour = pc.field("date"), pc.field("hour")
    if since is not None:
        d, h = since.strftime("%Y-%m-%d"), since.strftime("%H")
        e = (date > d) | ((date == d) & (hour.is_null() | (hour >= h)))
        expr = e
    if until is not None:
        d, h = until.strftime("%Y-%m-%d"), until.strftime("%H")
        if until != until.replace(minute=0, second=0, microsecond=0):
            e = (date < d) | ((date == d) & (hour.is_null() | (hour <= h)))
        elif h != "00":  # ends on the hour: that hour's partition holds none of its rows
            e = (date < d) | ((date == d) & (hour.is_null() | (hour < h)))
        else:  # ends at midnight: nor does that day's
            e = date < d
        expr = e if expr is None else expr & e
    return expr


def allowed_rows(pairs: Sequence[tuple[str, Sequence[str]]]) -> pc.Expression | None:
    """A filter for ``read_events`` keeping the rows whose columns each hold one of their
    allowed values (a detector's ``window_only``, ``baseline_only``); None when there is none."""
    where = None
    for column, values in pairs:
        e = pc.field(column).isin(list(values))
        where = e if where is None else where & e
    return where


def read_events(
    lake: LakeLike,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    sources: tuple[str, ...] | None = None,
    columns: list[str] | None = None,
    tenants: tuple[str, ...] | None = None,
    where: pc.Expression | None = None,
    files: Sequence[str] | None = None,
) -> pa.Table:
    """Events with ``since <= event_time < until`` as an Arrow table of the pinned schema.

    Only the partitions (source, date, hour) that can hold such events are opened, and only the
    requested ``columns`` are read. ``tenants`` keeps rows whose actor or target tenant is one of
    them. ``where`` is any further Arrow filter expression. ``files`` (event files, relative to
    the lake) reads those files only, instead of the partitions' listing: what one ingest wrote.
    """
    from pipeline import schema

    cols = list(columns) if columns is not None else schema.EVENTS.names
    target = pa.schema([schema.EVENTS.field(c) for c in cols])
    found = _events_dataset(_lake(lake), since, until, sources, tenants, where, files, held=True)
    if found is None:
        return target.empty_table()
    dataset, expr = found
    table = dataset.to_table(columns=cols, filter=expr)
    return table.cast(target)


def event_files(
    lake: LakeLike,
    since: datetime | None,
    until: datetime | None,
    *,
    sources: tuple[str, ...] | None = None,
) -> list[tuple[str, int | None]]:
    """The event files ``read_events`` opens for [since, until) of ``sources`` (its listing,
    less the partitions its filter prunes), in the order it reads them, each with the size its
    listing gave: what a reader elsewhere needs to read them one by one (``read_event_file``)
    and give the same rows in the same order."""
    lk = _lake(lake)
    found = _events_dataset(lk, since, until, sources, None, None)
    if found is None:
        return []
    dataset, expr = found
    cut = len(lk.base) + 1
    rels = [f.path[cut:] for f in dataset.get_fragments(filter=expr)]
    return [(rel, lk.size(rel)) for rel in rels]


def read_event_file(
    lake: LakeLike,
    rel: str,
    size: int | None,
    since: datetime | None,
    until: datetime | None,
    *,
    sources: tuple[str, ...] | None = None,
    columns: list[str] | None = None,
    where: pc.Expression | None = None,
) -> pa.Table:
    """``read_events`` of the one event file ``rel`` (one of ``event_files``), opened with the
    ``size`` its listing gave (no HEAD request on S3)."""
    lk = _lake(lake)
    if size is not None:
        lk._sizes[rel] = size  # as if this process had listed its folder
    return read_events(lk, since, until, sources=sources, columns=columns, where=where, files=[rel])


def event_batches(
    lake: LakeLike,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    columns: list[str],
    batch_size: int = 1 << 17,
) -> Iterator[pa.RecordBatch]:
    """``read_events``'s rows as record batches of ``columns``, a file at a time in path order
    (source, date, then a compacted day's files, then hour): for reading a whole lake in bounded
    memory. (A dataset scan reads
    ahead as far as its consumer lags: with a slow one, hundreds of MB.)"""
    found = _events_dataset(_lake(lake), since, until, None, None, None)
    if found is None:
        return
    dataset, expr = found
    for fragment in sorted(dataset.get_fragments(filter=expr), key=lambda f: f.path):
        yield from fragment.to_batches(
            schema=dataset.schema, columns=columns, filter=expr, batch_size=batch_size
        )


def tenant_seen(lake: LakeLike, tenant: str) -> bool:
    """Whether any event of the lake has ``tenant`` as its actor or target tenant. Event files are
    sorted by target and actor tenant, so their row groups' statistics pass over most of them,
    and the scan stops at the first row found."""
    found = _events_dataset(_lake(lake), None, None, None, (tenant,), None)
    if found is None:
        return False
    dataset, expr = found
    return bool(dataset.head(1, columns=["target_tenant"], filter=expr).num_rows)


def sample_events(
    lake: LakeLike,
    since: datetime | None,
    until: datetime | None,
    *,
    source: str,
    columns: list[str],
    limit: int,
    files: int = 1000,
) -> pa.Table:
    """At most ``limit`` events of ``source`` in [since, until), taken from at most ``files``
    files spread evenly over the window (in path order: date, hour), an equal share from each:
    a sample of the whole window that opens a bounded number of files."""
    import math

    from pipeline import schema

    empty = pa.schema([schema.EVENTS.field(c) for c in columns]).empty_table()
    found = _events_dataset(_lake(lake), since, until, (source,), None, None)
    if found is None or limit < 1:
        return empty
    dataset, expr = found
    every = sorted(dataset.get_fragments(filter=expr), key=lambda f: f.path)
    if len(every) > files:
        step = len(every) / files
        every = [every[int(i * step)] for i in range(files)]
    share = math.ceil(limit / len(every)) if every else 0
    parts = [
        f.scanner(schema=dataset.schema, columns=columns, filter=expr).head(share) for f in every
    ]
    parts = [p for p in parts if p.num_rows]
    return pa.concat_tables(parts).slice(0, limit) if parts else empty


def _event_files(
    lk: Lake, since: datetime | None, until: datetime | None, sources: tuple[str, ...] | None
) -> list[str]:
    """The event files that can hold rows of [since, until) of ``sources``: the day folders of
    the window, listed one by one, so a read costs the window's days, not the lake's age (a
    14-day baseline read a day at a time listed the whole lake 14 times). Without both bounds,
    every file."""
    from pipeline import schema
    from pipeline.lake import EVENTS, event_day

    if since is None or until is None:
        return lk.files(EVENTS)
    lo, hi = (
        t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC) for t in (since, until)
    )
    first, last = lo.date(), (hi - timedelta(microseconds=1)).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [
        f
        for source in (sources if sources is not None else schema.SOURCES)
        for day in days
        for f in lk.files(event_day(source, day.isoformat()))
    ]


def _events_dataset(
    lk: Lake,
    since: datetime | None,
    until: datetime | None,
    sources: tuple[str, ...] | None,
    tenants: tuple[str, ...] | None,
    where: pc.Expression | None,
    only_files: Sequence[str] | None = None,
    *,
    held: bool = False,
) -> tuple[ds.Dataset, pc.Expression | None] | None:
    """The events dataset and the filter selecting the rows asked for (None: no events yet).
    ``held``: inside a snapshot block, the small files the filter's partitions keep are decoded
    from the bytes it holds (``Lake.held``); their fragments then have no path."""
    from pipeline import schema
    from pipeline.lake import EVENTS

    files = list(only_files) if only_files is not None else _event_files(lk, since, until, sources)
    if not files:
        return None
    part_schema = pa.schema([("source", pa.string()), ("date", pa.string()), ("hour", pa.string())])
    full = schema.EVENTS.append(part_schema.field("date")).append(part_schema.field("hour"))
    partitioning = ds.partitioning(part_schema, flavor="hive")
    fmt = ds.ParquetFileFormat()
    cut = len(EVENTS) + 1
    if all(lk.size(f) is not None for f in files):
        # Each file opened with the size its folder's listing gave (no HEAD per file on S3).
        fragments = [
            fmt.make_fragment(
                lk.path(f),
                lk.fs,
                partition_expression=partitioning.parse("/" + f[cut:]),
                file_size=lk.size(f),
            )
            for f in files
        ]
        dataset: ds.Dataset = ds.FileSystemDataset(fragments, full, fmt, lk.fs)
    else:
        dataset = ds.dataset(
            [lk.path(f) for f in files],
            filesystem=lk.fs,
            format="parquet",
            schema=full,
            partitioning=partitioning,
            partition_base_dir=lk.path(EVENTS),
        )
    expr = _partition_filter(since, until)
    if sources is not None:
        e = pc.field("source").isin(list(sources))
        expr = e if expr is None else expr & e
    ts = pa.timestamp("us", tz="UTC")
    if since is not None:
        e = pc.field("event_time") >= pa.scalar(since, ts)
        expr = e if expr is None else expr & e
    if until is not None:
        e = pc.field("event_time") < pa.scalar(until, ts)
        expr = e if expr is None else expr & e
    if tenants is not None:
        e = pc.field("actor_tenant").isin(list(tenants)) | pc.field("target_tenant").isin(
            list(tenants)
        )
        expr = e if expr is None else expr & e
    if where is not None:
        expr = where if expr is None else expr & where
    if held and lk.holds:
        dataset = _held(lk, dataset, full, expr)
    return dataset, expr


def _held(lk: Lake, dataset: ds.Dataset, full: pa.Schema, expr: pc.Expression | None) -> ds.Dataset:
    """``dataset`` with the files its partitions keep for ``expr`` (the others hold no row it
    asks for) decoded from the bytes the snapshot holds where it holds them (``Lake.held``)."""
    from pipeline.lake import EVENTS

    fmt = ds.ParquetFileFormat()
    base = lk.path(EVENTS) + "/"
    fragments = []
    for frag in dataset.get_fragments(filter=expr):
        rel = f"{EVENTS}/{frag.path.removeprefix(base)}"
        data = lk.held(rel)
        fragments.append(
            frag
            if data is None
            else fmt.make_fragment(data, partition_expression=frag.partition_expression)
        )
    return ds.FileSystemDataset(fragments, full, fmt, lk.fs)


def read_quarantine(lake: LakeLike) -> pa.Table:
    """Every quarantined record with its reason (QUARANTINE schema)."""
    from pipeline import schema
    from pipeline.lake import QUARANTINE

    # Entries written before one could stand for many records stand for one.
    one = {"records": pa.scalar(1, pa.int64())}
    return _lake(lake).read_all(QUARANTINE, schema.QUARANTINE, one)


# --- for notebooks: the same reads as pandas DataFrames ------------------------------------------


def events(
    lake: LakeLike,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    *,
    source: str | tuple[str, ...] | None = None,
    tenant: str | tuple[str, ...] | None = None,
    actor: str | tuple[str, ...] | None = None,
    outcome: str | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Events in [since, until) as a DataFrame in time order, for notebooks:
    ``events("lake", "2026-11-16", tenant="t0007")``.

    Times are ISO strings or datetimes (UTC when no zone is given); ``tenant`` matches the actor's
    or the target tenant; ``actor`` the principal, the session or the source address (an
    incident's actor can be any of them, and its snapshot was selected that way). Partitions
    outside the window are never opened, and only ``columns`` are read (all by default).
    """
    where: pc.Expression | None = None
    if actor is not None:
        who = [actor] if isinstance(actor, str) else list(actor)
        where = (
            pc.field("actor_principal").isin(who)
            | pc.field("actor_session").isin(who)
            | pc.field("source_ip").isin(who)
        )
    if outcome is not None:
        e = pc.field("outcome") == outcome
        where = e if where is None else where & e
    table = read_events(
        lake,
        as_time(since),
        as_time(until),
        sources=(source,) if isinstance(source, str) else source,
        columns=columns,
        tenants=(tenant,) if isinstance(tenant, str) else tenant,
        where=where,
    )
    keys = [(c, "ascending") for c in ("event_time", "event_id") if c in table.column_names]
    return (table.sort_by(keys) if keys else table).to_pandas()


def quarantine(lake: LakeLike, reason: str | None = None) -> pd.DataFrame:
    """Quarantined records (input, position, reason, detail, raw bytes, and how many input
    records the row stands for: 1, or more for an input's many bad records gathered) as a
    DataFrame."""
    table = read_quarantine(lake)
    if reason is not None:
        table = table.filter(pc.field("reason") == reason)
    return table.to_pandas()
