"""The lake: one root, local or ``s3://bucket/prefix``, through ``pyarrow.fs``.

Its layout is named in ``pipeline.lake_layout`` and nowhere else (the constants and ``*_file``
functions, which callers import from here; docs/ARCHITECTURE.md, "The lake")::

    events/source=<source>/date=YYYY-MM-DD/hour=HH/part-<batch id>.parquet   normalized events
    events/source=<source>/date=YYYY-MM-DD/compacted-<hash>.parquet   a closed day's, compacted
    quarantine/part-<batch id>.parquet     records that could not become events, with the reason
    findings/date=YYYY-MM-DD/part-<hash>.parquet   one detector's findings for one window
    incidents/state/date=YYYY-MM-DD/<incident id>.parquet    latest revision of an incident
    incidents/outbox/date=YYYY-MM-DD/<notification id>.parquet  a message and its delivery state
    incidents/notifications/date=YYYY-MM-DD/<hash>.jsonl  what the local channel sent
    incidents/verdicts/date=YYYY-MM-DD/<verdict id>.parquet   verdicts people gave incidents
    incidents/containment/date=YYYY-MM-DD/<action id>.parquet  a containment entry written or
                                           lifted for an incident (the entry itself is in
                                           DynamoDB, where authorizers read it)
    suppressions/<suppression id>.json     suppressions written by ``incident close --suppress``
    snapshots/...                          forensic snapshots, unless configured elsewhere
    _state/ingested/<part>/<batch id>.parquet   inputs done (uri, etag, size) and their counts,
                                           <part> the input's own: date=YYYY-MM-DD of the day
                                           in its key (.../YYYY/MM/DD/...) or of a CloudWatch
                                           Logs chunk's first event, else prefix=<hash of its
                                           folder>
    _state/sessions/date=YYYY-MM-DD/<batch id>.parquet   access key id -> session tags learned
                                           from AssumeRole, by the day the session started
    _state/incidents/date=YYYY-MM-DD/<period day>.<incident id>   empty: the incident was
                                           active up to that day (an index of incidents/state)
    _state/incidents/snapshot-due/<period day>.<incident id>   empty: it lacks a snapshot part
    _state/unsent/<day>.<notification id>  empty: that outbox row may not be sent yet
    _state/late/<window start>             empty: a window to detect again (late events)
    _state/indexed                         empty: the two indexes above cover the whole store
    _state/digests/date=YYYY-MM-DD/<batch id>.parquet  CloudTrail-Digest files seen, by day
    _state/logs/<hash of the uri>.parquet  how far each CloudWatch Logs source was read
    _state/metrics/<hash>.json             metric data points CloudWatch refused, sent next run
    _state/watermark/scheduled.parquet     where the scheduled run's detection has got to
    _state/handoff/<window start>.json     a window handed to the Glue job, until it is done
    _state/jobs/<start>-<end>.json         the Glue job's record of a window it completed
    _state/lease.json, _state/lease.lock   the lease that lets one run alert at a time
    _tmp/                                  writes not yet moved into place

A folder's many small files may be rewritten into a few large ones (``pipeline.compact``): a
``compacted-<hash>.parquet`` file lists in its footer the names of the files beside it whose
rows it holds (``REPLACES``), and ``Lake.files`` (so every read here) leaves those out while
they are still there. A closed day's events are compacted into files directly in the day's
folder, which replace the files of its hours' folders (their footers say ``hour=HH/<name>``).

Lakes written before ``_state/ingested`` and ``_state/sessions`` were partitioned hold their
files directly in those folders; every run reads them as well (``legacy_files``), and no run
writes there any more. A lake without ``_state/indexed`` has its incident and outbox indexes
built once, from a whole read of the store, by the next alert run.

Every name below the root is built here from constants, dates and content hashes: no value from a
log ever becomes part of a path. ``AWS_ENDPOINT_URL`` (moto, LocalStack) is honoured for S3.

Writes go to a temporary file in ``_tmp/`` and are then moved into place on local disks, and are
single PUTs on S3, so a run that dies half way leaves whole files or none, and no reader (this
package, a pyarrow dataset, DuckDB, Athena) ever meets a temporary where it reads. A temporary
is named by its owner (``temporaries``); ``clean_temporaries`` removes those their writer left
when it died.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline import aws, lake_io, temporaries
from pipeline.errors import InputError, LakeError
from pipeline.lake_io import Held

# The layout (pipeline/lake_layout.py), named here too: callers import it from the lake.
from pipeline.lake_layout import (  # noqa: F401
    _DATE_FOLDER,
    _HOUR_FOLDER,
    COMPACTED,
    CONTAINMENT,
    EVENTS,
    FINDINGS,
    INCIDENT_STATE,
    LEASE,
    LEASE_LOCK,
    NOTIFICATIONS,
    OUTBOX,
    QUARANTINE,
    REPLACES,
    SNAPSHOT_DUE,
    SNAPSHOTS,
    STATE,
    STATE_DIGESTS,
    STATE_HANDOFF,
    STATE_INDEXED,
    STATE_INGESTED,
    STATE_JOBS,
    STATE_LATE,
    STATE_LOGS,
    STATE_METRICS,
    STATE_OPEN_INCIDENTS,
    STATE_SESSIONS,
    STATE_UNSENT,
    SUPPRESSIONS,
    VERDICTS,
    WATERMARK,
    containment_file,
    event_day,
    event_partition,
    file_hour,
    findings_file,
    handoff_file,
    incident_file,
    ingested_file,
    job_file,
    marked,
    metrics_spool_file,
    notifications_file,
    open_incident_marker,
    outbox_file,
    quarantine_file,
    sessions_day,
    sessions_file,
    snapshot_due_marker,
    state_file,
    suppression_file,
    unsent_marker,
    verdict_file,
)

# The reads (pipeline/lake_reads.py), named here too: callers import them from the lake.
from pipeline.lake_reads import (  # noqa: F401
    event_batches,
    events,
    quarantine,
    read_events,
    read_quarantine,
    sample_events,
    tenant_seen,
)


def day_folders(lake: Lake, folder: str) -> list[str]:
    """The ``date=YYYY-MM-DD`` days under ``folder``, sorted (one listing, no file read)."""
    sel = pafs.FileSelector(lake.path(folder), recursive=False, allow_not_found=True)
    days = []
    for info in lake.fs.get_file_info(sel):
        name = posixpath.basename(info.path)
        if info.type == pafs.FileType.Directory and name.startswith("date="):
            days.append(name.removeprefix("date="))
    return sorted(days)


def legacy_files(lake: Lake, folder: str) -> list[str]:
    """The Parquet files directly in ``folder`` (not in a partition of it): how a ``STATE_*``
    folder was laid out before it was partitioned."""
    sel = pafs.FileSelector(lake.path(folder), recursive=False, allow_not_found=True)
    return sorted(
        posixpath.relpath(info.path, lake.base)
        for info in lake.fs.get_file_info(sel)
        if info.type == pafs.FileType.File and info.path.endswith(".parquet")
    )


_SAFE_NAME = re.compile(r"^[A-Za-z0-9._=-]+$")
# Where writes are made before they are moved into place: a folder no reader of the lake's tables
# looks in (on the lake's own disk, so the move is a rename).
TEMPORARY = "_tmp"
_PARQUET = ds.ParquetFileFormat()
_TEMPORARY_NAME = re.compile(r"(?P<owner>[A-Za-z0-9-]+\.\d+)\.[0-9a-f]{32}\.tmp")
# Earlier versions wrote a temporary beside its file, where readers look: "part-<batch>.parquet.
# <uuid hex>.tmp". Only ingestion's own folders hold them, and looking costs a walk of the lake
# (half a second for a few months of partitions): once a walk leaves none, _SWEPT says so.
_BESIDE = re.compile(r"[A-Za-z0-9._=-]+\.parquet\.[0-9a-f]{32}\.tmp")
_BESIDE_IN = (EVENTS, QUARANTINE, STATE)
_SWEPT = "no-temporaries-beside-files"


def s3_filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    kwargs: dict[str, object] = {
        "region": region,
        # The AWS SDK's standard retries (backoff with jitter), as boto3 gets: pyarrow's default
        # of 3 attempts lets a throttled prefix fail the run.
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=aws.S3_MAX_ATTEMPTS),
    }
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    return pafs.S3FileSystem(**kwargs)


def open_root(root: str) -> tuple[pafs.FileSystem, str]:
    if root.startswith("s3://"):
        return s3_filesystem(), root[len("s3://") :].rstrip("/")
    if "://" in root:
        raise InputError(f"lake {root!r}: expected a local path or s3://bucket/prefix")
    return pafs.LocalFileSystem(), str(Path(root).resolve())


# Event files, the bulk of the lake: a dictionary only where values repeat (ids, hashes and raw
# text are unique, and trying a dictionary costs a hash per value before Parquet gives up on
# it).
_UNIQUE = frozenset({"event_id", "event_time", "raw", "record_hash", "request_id"})
# Min/max statistics only where queries filter (time, tenants, who, what): a reader skips pages
# and files by them. On ids, hashes and free text they prune nothing and cost ~0.2 us/row.
_STATISTICS = frozenset(
    {
        "event_time",
        "source",
        "event_kind",
        "service",
        "action",
        "actor_principal",
        "actor_type",
        "actor_session",
        "actor_tenant",
        "target_tenant",
        "outcome",
        "account_id",
        "region",
    }
)
# Columns with many distinct values get zstd; the others (a few values each: sources, actions,
# outcomes, tenants, regions) are dictionary pages of small integers that zstd hardly shrinks,
# and compressing each tiny page cost more than all else for them: Arrow sets up a zstd context
# per page. Measured on simulator partitions: 3.00 -> ~2.7 us/row to write, 181 -> 183 B/row.
_COMPRESSED = frozenset(
    {
        "raw",
        "event_id",
        "request_id",
        "record_hash",
        "event_time",
        "resource",
        "actor_session",
        "actor_principal",
        "source_ip",
        "user_agent",
        "input_uri",
        "tenant_conflict",
    }
)


def _event_file(table: pa.Table) -> dict[str, object]:
    names = table.column_names
    return {
        "compression": {n: "zstd" if n in _COMPRESSED else "none" for n in names},
        "compression_level": {n: 1 for n in names if n in _COMPRESSED},
        "use_dictionary": [n for n in names if n not in _UNIQUE],
        "write_statistics": [n for n in names if n in _STATISTICS],
    }


@dataclass
class Lake:
    root: str  # a folder or s3://bucket/prefix
    # The names each compacted file replaces, read once from its footer (its name is a hash of
    # them, so a file of that name always replaces the same ones).
    _replaces: dict[str, frozenset[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # Each file's size as its folder's latest listing gave it: a read opens the file without
    # asking its size first (on S3 one HEAD request fewer per file read).
    _sizes: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    # Inside ``snapshot()``: the listings of event folders made so far in the block.
    _snap: dict[tuple[str, str, bool], list[str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # Inside ``snapshot()``: the small event files read so far in the block (``lake_io``).
    _held: Held | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.fs, self.base = open_root(self.root)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def ensure_writable(self) -> None:
        """Make the lake's folder if it is missing; a ``LakeError`` if it cannot be made or
        written, before a run decodes what it could not keep."""
        try:
            self.fs.create_dir(self.base, recursive=True)
        except OSError as exc:
            raise LakeError(f"lake {self.root}: cannot be written: {exc}") from exc
        if self.is_local and not os.access(self.base, os.W_OK | os.X_OK):
            raise LakeError(f"lake {self.root}: cannot be written: permission denied")

    def path(self, *parts: str) -> str:
        for p in parts:
            for piece in p.split("/"):
                # Defence in depth: names are ours, but a bug must not walk out of the lake.
                if piece in ("", ".", "..") or not _SAFE_NAME.match(piece):
                    raise ValueError(f"unsafe lake path component {piece!r}")
        return posixpath.join(self.base, *parts)

    def uri(self, rel: str) -> str:
        return f"s3://{self.base}/{rel}" if not self.is_local else posixpath.join(self.base, rel)

    def write_table(
        self, rel: str, table: pa.Table, sort_by: list[str] | None = None, **options: object
    ) -> None:
        """Write ``table`` as Parquet at ``rel`` (zstd; under ``events/``, ``_event_file``'s
        settings); ``options`` go to ``pq.write_table``, over those defaults."""
        dest = self.path(rel)
        in_events = rel.startswith(f"{EVENTS}/")
        defaults = _event_file(table) if in_events else {"compression": "zstd"}
        options = {**defaults, **options}
        if self.is_local:  # S3 has no folders: a marker object per level would only pile up
            self.fs.create_dir(posixpath.dirname(dest), recursive=True)
        if sort_by:
            table = table.sort_by([(c, "ascending") for c in sort_by])
        if not self.is_local and table.nbytes <= lake_io.PUT_BYTES:
            out = pa.BufferOutputStream()
            pq.write_table(table, out, **options)
            lake_io.put(self, rel, out.getvalue())  # one request (lake_io's docstring)
        elif self.is_local:
            tmp = self.path(TEMPORARY, f"{temporaries.owner()}.{uuid.uuid4().hex}.tmp")
            self.fs.create_dir(self.path(TEMPORARY), recursive=True)
            pq.write_table(table, tmp, filesystem=self.fs, **options)
            self.fs.move(tmp, dest)
        else:
            pq.write_table(table, dest, filesystem=self.fs, **options)

    def clean_temporaries(self) -> list[str]:
        """Remove the temporaries that writers which died left (``temporaries.left_behind``),
        and return them; a live writer's are kept. Nothing to do on S3, where a file is written
        in one request."""
        if not self.is_local:
            return []
        now = time.time()
        folder = Path(self.base, TEMPORARY)
        found: list[tuple[Path, str | None]] = []
        if folder.is_dir():
            for path in folder.iterdir():
                m = _TEMPORARY_NAME.fullmatch(path.name)
                if path.name != _SWEPT:
                    found.append((path, m["owner"] if m else None))
        sweep = not (folder / _SWEPT).exists()
        beside: list[Path] = []
        if sweep:
            for top in _BESIDE_IN:
                for parent, _, files in os.walk(Path(self.base, top)):
                    beside += [Path(parent, f) for f in files if _BESIDE.fullmatch(f)]
        removed = []
        for path, owner in [*found, *((p, None) for p in beside)]:
            try:
                if temporaries.left_behind(owner, path.stat().st_mtime, now):
                    path.unlink()
                    removed.append(str(path.relative_to(self.base)))
            except FileNotFoundError:
                pass  # its writer moved it into place, or another run removed it
        if sweep and not any(p.exists() for p in beside):
            folder.mkdir(exist_ok=True)
            (folder / _SWEPT).touch()
        return removed

    def read_bytes(self, rel: str) -> bytes:
        """The file at ``rel`` in one request (``lake_io.read_bytes``)."""
        return lake_io.read_bytes(self, rel)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """``data`` at ``rel``, replacing what is there at once (``lake_io.write_bytes``)."""
        lake_io.write_bytes(self, rel, data)

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def files(self, rel: str, suffix: str = ".parquet") -> list[str]:
        """Relative paths of the files under ``rel`` (recursive), sorted."""
        return self.current(self._listed(rel, suffix, recursive=True))

    def _listed(self, rel: str, suffix: str = ".parquet", recursive: bool = True) -> list[str]:
        key = (rel, suffix, recursive)
        if self._snap is not None and key in self._snap:
            return self._snap[key]
        sel = pafs.FileSelector(self.path(rel), recursive=recursive, allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(sel):
            if info.type == pafs.FileType.File and info.path.endswith(suffix):
                name = posixpath.relpath(info.path, self.base)
                out.append(name)
                if info.size is not None:
                    self._sizes[name] = info.size
        out.sort()
        if self._snap is not None and rel.startswith(f"{EVENTS}/"):
            self._snap[key] = out
        return out

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Lake]:
        """Reads of the events as of one moment, for a block that reads the same folders many
        times (a window's detectors, each reading its own baseline): each folder under
        ``events/`` is listed once in the block. Events written during the block (an object
        run ingesting beside it) are left to the next read after it, as if they had landed a
        moment later; writes elsewhere are seen as usual."""
        outer, held = self._snap, self._held
        self._snap = {} if outer is None else outer
        self._held = Held() if held is None else held
        try:
            yield self
        finally:
            self._snap, self._held = outer, held

    def versions(self, rel: str, suffix: str = ".parquet") -> dict[str, str]:
        """The files under ``rel`` (recursive, as ``files``, compacted ones' replaced files left
        out) with a version of each that changes whenever the file is written again: on S3 its
        ETag, locally its size and modification time in nanoseconds."""
        out: dict[str, str] = {}
        if self.is_local:
            sel = pafs.FileSelector(self.path(rel), recursive=True, allow_not_found=True)
            for info in self.fs.get_file_info(sel):
                if info.type == pafs.FileType.File and info.path.endswith(suffix):
                    name = posixpath.relpath(info.path, self.base)
                    out[name] = f"{info.size}:{info.mtime_ns}"
                    self._sizes[name] = info.size or 0
        else:
            bucket, _, key = self.path(rel).partition("/")
            pages = aws.client("s3").get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/"):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(suffix):
                        name = posixpath.relpath(f"{bucket}/{obj['Key']}", self.base)
                        out[name] = str(obj["ETag"])
                        self._sizes[name] = int(obj["Size"])
        return {f: out[f] for f in self.current(sorted(out))}

    def size(self, rel: str) -> int | None:
        """The size of ``rel`` as the latest listing of its folder gave it (None: not listed)."""
        return self._sizes.get(rel)

    def note_size(self, rel: str, size: int) -> None:
        """``rel``'s size as a read learned it: later reads open it without asking."""
        self._sizes[rel] = size

    @property
    def holds(self) -> bool:
        """Inside ``snapshot()`` on S3: small event files are held (``held``)."""
        return self._held is not None and not self.is_local

    def held(self, rel: str) -> pa.Buffer | None:
        """Inside ``snapshot()``, the bytes of the small event file ``rel``, fetched in one GET
        on first use (``pipeline.lake_io``); None outside a block or for a file read from
        the lake as usual."""
        return None if self._held is None else lake_io.buffer(self, self._held, rel)

    def event_dates(self) -> list[str]:
        """The days (YYYY-MM-DD) with a folder in any source's events, sorted: a listing of each
        source's folder, not of its files (a year is 365 names, not tens of thousands). A day
        whose files retention has just deleted may still be named (a local folder left empty)."""
        from pipeline import schema

        days: set[str] = set()
        for source in schema.SOURCES:
            top = self.path(f"{EVENTS}/source={source}")
            sel = pafs.FileSelector(top, recursive=False, allow_not_found=True)
            for info in self.fs.get_file_info(sel):
                name = posixpath.basename(info.path)
                if info.type == pafs.FileType.Directory and _DATE_FOLDER.match(name):
                    days.add(name.removeprefix("date="))
        return sorted(days)

    def event_day_files(self, date: str) -> list[str]:
        """Every source's event files of the day ``date`` (hours' files and compacted ones)."""
        from pipeline import schema

        return [f for s in schema.SOURCES for f in self.files(event_day(s, date))]

    def event_hour_files(self, partition: str) -> list[str]:
        """The files that hold rows of the event hour ``partition`` (``event_partition``): its
        own and, once its day is compacted, the compacted files directly in the day's folder
        (which hold every hour's rows: read them with ``read_event_hour``)."""
        if not _HOUR_FOLDER.match(partition):
            raise ValueError(f"{partition}: not an event hour's folder")
        day = posixpath.dirname(partition)
        return self.current(sorted(self._listed(day, recursive=False) + self._listed(partition)))

    def read_event_hour(self, partition: str, rel: str, columns: list[str]) -> pa.Table:
        """``columns`` of the rows of the event hour ``partition`` in the file ``rel`` (one of
        ``event_hour_files``): all of an hour's file, the hour's rows of a day's file."""
        m = _HOUR_FOLDER.match(partition)
        if m is None:
            raise ValueError(f"{partition}: not an event hour's folder")
        if posixpath.dirname(rel) == partition:
            return self.read_file(rel, columns)
        start = datetime.fromisoformat(f"{m['date']}T{m['hour']}:00:00+00:00")
        ts = pa.timestamp("us", tz="UTC")
        t = pc.field("event_time")
        hour = (t >= pa.scalar(start, ts)) & (t < pa.scalar(start + timedelta(hours=1), ts))
        return pq.read_table(self.path(rel), filesystem=self.fs, columns=columns, filters=hour)

    def replaced_by(self, rel: str) -> frozenset[str]:
        """The names (relative to its folder: ``name`` or, for a day's events, ``hour=HH/name``)
        of the files whose rows the compacted file ``rel`` holds."""
        if rel not in self._replaces:
            meta = pq.read_metadata(self.path(rel), filesystem=self.fs).metadata or {}
            self._replaces[rel] = frozenset(json.loads(meta.get(REPLACES, b"[]")))
        return self._replaces[rel]

    def current(self, rels: Iterable[str]) -> list[str]:
        """``rels`` without the files a compacted file among them replaces: what a reader reads
        while a compaction is between writing its file and deleting those it replaces (or died
        there). The footers are read only of folders holding a compacted file and others."""
        rels = list(rels)
        folders: dict[str, list[str]] = {}
        for rel in rels:
            folders.setdefault(posixpath.dirname(rel), []).append(posixpath.basename(rel))
        # Folders with files in a folder below them: a day's compacted file replaces the files
        # of its hours (``hour=HH/<name>`` in its footer).
        above = {posixpath.dirname(f) for f in folders}
        gone: set[str] = set()
        for folder, names in folders.items():
            if not any(n.startswith(COMPACTED) for n in names):
                continue
            if len(names) < 2 and folder not in above:
                continue
            for n in names:
                if n.startswith(COMPACTED):
                    rel = posixpath.join(folder, n)
                    try:
                        gone.update(posixpath.join(folder, r) for r in self.replaced_by(rel))
                    except FileNotFoundError:
                        gone.add(rel)  # replaced itself, and deleted since the listing
        return [r for r in rels if r not in gone] if gone else rels

    def read_file(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        size = self._sizes.get(rel)
        if size is not None and not self.is_local:
            # Opened with the size its listing gave: no HEAD before the reads.
            frag = _PARQUET.make_fragment(self.path(rel), self.fs, file_size=size)
            try:
                return frag.to_table(columns=columns)
            except FileNotFoundError:
                raise
            except (pa.ArrowInvalid, OSError):
                # Replaced by a file of another size since the listing: asked afresh.
                self._sizes.pop(rel, None)
        return pq.read_table(self.path(rel), filesystem=self.fs, columns=columns)

    def read_folder(
        self, rel: str, columns: list[str] | None = None, attempts: int = 5
    ) -> list[tuple[str, pa.Table]]:
        """Each current file under the folder ``rel`` with its rows, read as one listing: a
        file that a compaction deleted between the listing and its read (its rows are in the
        compacted file by then) makes the folder listed and read again."""
        for attempt in range(attempts):
            try:
                return [(f, self.read_file(f, columns)) for f in self.files(rel)]
            except FileNotFoundError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def read_tables(self, rel: str, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Each Parquet file under the folder ``rel``, in name order."""
        for f in self.files(rel):
            yield self.read_file(f, columns)

    def read_all(
        self, rel: str, schema: pa.Schema, defaults: dict[str, pa.Scalar] | None = None
    ) -> pa.Table:
        """Every file under the folder ``rel`` as one table of ``schema`` (empty if none).
        ``defaults``: the value of a column added to ``schema`` after some files were written,
        for those files (they are then read whole, as they may lack the column)."""
        tables = []
        for t in self.read_tables(rel, None if defaults else schema.names):
            for name, value in (defaults or {}).items():
                if name not in t.column_names:
                    t = t.append_column(name, pa.repeat(value, t.num_rows))
            tables.append(t.select(schema.names).cast(schema))
        return pa.concat_tables(tables) if tables else schema.empty_table()


# What the reads take for a lake: a ``Lake``, or its root as text or a path (notebooks hold
# folders as ``pathlib.Path``).
LakeLike = Lake | str | os.PathLike[str]


def as_lake(lake: LakeLike) -> Lake:
    return lake if isinstance(lake, Lake) else Lake(os.fspath(lake))
