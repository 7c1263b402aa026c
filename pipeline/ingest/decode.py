"""The workers' half of ingestion: a batch of inputs -> normalized rows, quarantine, sessions.

Pure apart from reading the inputs (no lake access), so batches decode in parallel processes.
Rows leave Python for Arrow a chunk at a time (``rows``: ``CHUNK_RECORDS`` records or
``CHUNK_BYTES`` of raw text, whichever comes first): a chunk's Python objects are released before
the next is decoded, so memory follows the chunk size, not the batch size.

A quarantine entry keeps its raw text. Two kinds keep only its first ``max_record_bytes``, the
detail saying how many of how many: a gzip stream that broke or was stopped (the text decompressed
until then) and a record over ``max_record_bytes``. That is as much as any record the lake would
take, and keeps a bomb's or a runaway record's megabytes out of memory and out of the quarantine;
any other entry's text is at most its input, which ``max_decompressed_bytes`` bounds.

Logs are hostile, and no list of rules foresees every value: whatever raises on a record (past the
reasons the rules name) quarantines that record alone, with the error as its detail
(``normalize.failure``). Records are handled a chunk at a time; when a chunk raises, its records
are handled again one by one, so the one that raised is found and the others go on.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import timeparse
from pipeline.config import IngestConfig
from pipeline.ingest import (
    cloudtrail,
    formats,
    gz,
    normalize,
    redact,
    securitylake,
    tenancy,
)
from pipeline.ingest.quarantine import Quarantined, QuarantineLog, kept, too_large
from pipeline.ingest.reading import Reading
from pipeline.ingest.rows import Rows
from pipeline.ingest.sources import InputRef, read_input


@dataclass(frozen=True)
class Batch:
    inputs: tuple[InputRef, ...]

    @property
    def id(self) -> str:
        h = hashlib.sha256("\n".join(i.identity for i in self.inputs).encode())
        return h.hexdigest()[:24]


@dataclass
class Decoded:
    """What a worker hands back for one batch (picklable)."""

    batch: Batch
    rows: pa.Table  # Reading.wide, but event_time parsed (timestamp[us, UTC])
    quarantine: list[Quarantined] = field(default_factory=list)  # as QuarantineLog bounds it
    sessions: pa.Table = field(default_factory=tenancy.SESSION_ROWS.empty_table)
    # (digest uri, log file, hash); a digest listing no file has one row with neither
    digests: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    records_in: int = 0
    rows_file: str | None = None  # rows left in a file by a worker (``handoff``), not yet read


def decode_batch(batch: Batch, ingest: IngestConfig, reading: Reading) -> Decoded:
    """Read, decompress, split and normalize every input of a batch, as ``reading`` says."""
    with _no_cyclic_gc():
        return _decode_batch(batch, ingest, reading)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Decoding allocates millions of short-lived containers (decoded attribute maps, column
    lists, tuples) and none of them forms a cycle: reference counting frees them all, and the
    cyclic collector would only go through them again and again (about a fifth of decoding time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _decode_batch(batch: Batch, ingest: IngestConfig, reading: Reading) -> Decoded:
    out = Decoded(batch, normalize.WIDE.empty_table())
    q = QuarantineLog(ingest.max_record_bytes)
    rows = Rows(ingest.max_record_bytes, q, reading)
    keep = ingest.max_record_bytes
    limit = ingest.max_decompressed_bytes
    for ref in batch.inputs:
        if ref.size > limit:
            size = f"{ref.size:,} bytes, over ingest.max_decompressed_bytes ({limit:,})"
            q.append((ref.uri, -1, "input_too_large", size, b""))
            out.records_in += 1
            continue
        rest: Quarantined | None = None  # what a gzip stream cut short left after its records
        items: Iterable[formats.Item]
        try:
            data = gz.maybe_decompress(read_input(ref), limit)
        except gz.GzipError as exc:
            cut = (
                None
                if exc.reason == "decompressed_too_large"
                else formats.split_cut(exc.partial, limit, reading.line_kind)
            )
            if cut is None:
                q.append(kept(ref.uri, -1, exc.reason, str(exc), exc.partial, keep))
                out.records_in += 1
                continue
            items, text, before, position = cut
            detail = f"{exc}; the {before:,} records or lines before this rest were read"
            rest = kept(ref.uri, position, exc.reason, detail, text, keep)
        except OSError as exc:
            q.append((ref.uri, -1, "unreadable_input", str(exc), b""))
            out.records_in += 1
            continue
        if rest is not None:
            q.append(rest)
            out.records_in += 1
        elif securitylake.is_parquet(data):
            items = securitylake.items(data)  # Security Lake's OCSF rows, as CloudTrail records
        else:
            taken = rows.c_file(data, ref.uri)
            if taken is not None:
                out.records_in += taken
                continue
            typed = formats.typed_cloudtrail(data)
            if typed is not None:
                out.records_in += len(typed[0])
                rows.cloudtrail(typed[0], typed[1], ref.uri, range(len(typed[0])))
                continue
            items = formats.split(data, limit, reading.line_kind)
        for item in items:
            if item.kind == formats.DIGEST:
                listed = [lf for lf in item.obj["logFiles"] if isinstance(lf, dict)]
                # A digest that lists no file is still a link of the chain that integrity
                # checks follow (CloudTrail writes one for every hour, files or not).
                out.digests += [
                    (ref.uri, _text(lf.get("s3Object")), _text(lf.get("hashValue")))
                    for lf in listed
                ] or [(ref.uri, None, None)]
                continue
            out.records_in += 1
            if item.kind == formats.QUARANTINE:
                q.append((ref.uri, item.position, item.reason, item.detail, item.raw))
            elif len(item.raw) > keep:
                q.append(too_large(ref.uri, item.position, item.raw, keep))
            else:
                try:
                    _record(item, ref.uri, reading, rows)
                except Exception as exc:
                    q.append((ref.uri, item.position, *normalize.failure(exc), item.raw))
    table = rows.table()
    # Entries come from chunks as well as from files: put them back in input order.
    order = {ref.uri: i for i, ref in enumerate(batch.inputs)}
    out.rows = _with_times(table, q)
    out.quarantine = sorted(q.finish(), key=lambda e: (order.get(e[0], -1), e[1]))
    out.sessions = tenancy.session_rows(rows.sessions)
    return out


def _record(item: formats.Item, uri: str, reading: Reading, rows: Rows) -> None:
    """One record that ``formats.split`` recognised, on its way to a row."""
    if item.kind == formats.CLOUDTRAIL:
        rec = cloudtrail.from_dict(item.obj)
        ocsf = None if item.ocsf is None else [item.ocsf]
        rows.cloudtrail([rec], [item.raw], uri, (item.position,), ocsf)
        return
    raw = redact.redact_raw(item.raw)
    try:
        if item.kind == formats.APIGATEWAY:
            row = normalize.access_log_row(item.obj, raw, reading.apigateway)
        else:
            row = normalize.authorizer_row(item.obj, raw, reading.authorizer)
    except normalize.Unusable as exc:
        rows.quarantine.append((uri, item.position, exc.reason, str(exc), raw))
        return
    if reading.columns:
        # Path columns are read from the text the lake keeps: a secret never becomes a hint.
        obj = item.obj if raw is item.raw or raw == item.raw else redact.redact(item.obj)
        row += reading.line_values(item.kind, obj)
    rows.row(row, uri, item.position)


def _text(value: Any) -> str | None:
    """A value as text, a missing one as None (not "None")."""
    return None if value is None else str(value)


def _with_times(t: pa.Table, q: QuarantineLog) -> pa.Table:
    """``event_time`` parsed (timestamp[us, UTC]); a row whose time no format accepts goes to
    the quarantine (here, where its raw text is: the parent does not see it)."""
    when = timeparse.parse_times(t["event_time"])
    bad = pc.is_null(when)
    if pc.any(bad).as_py():
        for i in pc.indices_nonzero(bad).to_pylist():
            text = str(t["event_time"][i].as_py())[:40]
            uri, raw = t["input_uri"][i].as_py(), t["raw"][i].as_py().encode()
            q.append((uri, -1, "bad_event_time", f"unparseable time {text!r}", raw))
        keep = pc.invert(bad)
        t, when = t.filter(keep), when.filter(keep)
    return t.set_column(t.schema.get_field_index("event_time"), "event_time", when)
