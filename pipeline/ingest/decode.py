"""The workers' half of ingestion: a batch of inputs -> normalized rows, quarantine, sessions.

Pure apart from reading the inputs (no lake access), so batches decode in parallel processes.
Rows leave Python for Arrow a chunk at a time (``CHUNK_RECORDS`` records or ``CHUNK_BYTES`` of raw
text, whichever comes first): a chunk's Python objects are released before the next is decoded,
so memory follows the chunk size, not the batch size.

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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import timeparse
from pipeline.config import IngestConfig
from pipeline.ingest import (
    cloudtrail,
    formats,
    gz,
    jsonnum,
    native,
    normalize,
    prefilter,
    redact,
    tenancy,
)
from pipeline.ingest.quarantine import Quarantined, QuarantineLog, kept, too_large
from pipeline.ingest.reading import Reading
from pipeline.ingest.sources import InputRef, read_input

CHUNK_RECORDS = 4096
CHUNK_BYTES = 64 << 20
_S = pa.string()

_Record = cloudtrail.Record | cloudtrail.SessionRecord
_CloudTrailRecord = cloudtrail.Record  # (inside _Rows, "cloudtrail" names its method)


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
    cyclic collector would only walk them again and again (about a fifth of decoding time)."""
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
    rows = _Rows(ingest.max_record_bytes, out, q, reading)
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
        else:
            native_rows = rows.native_file(data, ref.uri)
            if native_rows is not None:
                out.records_in += native_rows
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
                # checks walk (CloudTrail writes one for every hour, files or not).
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


def _record(item: formats.Item, uri: str, reading: Reading, rows: _Rows) -> None:
    """One record that ``formats.split`` recognised, on its way to a row."""
    if item.kind == formats.CLOUDTRAIL:
        rec = cloudtrail.from_dict(item.obj)
        rows.cloudtrail([rec], [item.raw], uri, (item.position,))
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


class _Rows:
    """One batch's rows on their way into Arrow: CloudTrail as columns, other sources as tuples.

    CloudTrail comes by two roads: whole delivery files through the compiled builder
    (``native``), and records decoded in Python (``cloudtrail.Record``). Each road keeps its
    pending rows; switching roads flushes the other first, so rows stay in input order (the
    first of two copies of an event is the one kept)."""

    def __init__(
        self, max_record_bytes: int, out: Decoded, quarantine: QuarantineLog, reading: Reading
    ) -> None:
        self.max_record_bytes = max_record_bytes
        self.reading = reading
        self.wide = reading.wide
        self.out = out
        self.quarantine = quarantine
        self.tables: list[pa.Table] = []
        self.native: Any = native.builder()
        self.native_runs: list[tuple[str, int]] = []
        self.ct: list[cloudtrail.Record] = []
        self.ct_raw: list[bytes | msgspec.Raw] = []
        self.ct_uri: list[str] = []
        self.ct_pos: list[int] = []
        self.ct_bytes = 0
        self.rows: list[tuple[Any, ...]] = []
        self.row_uri: list[str] = []
        self.row_pos: list[int] = []
        # (access key id, tags, start time as logged) of each AssumeRole, in input order
        self.sessions: list[tuple[str, dict[str, str], str | None]] = []

    def native_file(self, data: bytes, uri: str) -> int | None:
        """The records of a delivery file through the compiled road, or None (nothing taken)
        when it is not for that road."""
        if self.native is None:
            return None
        body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not (body.startswith(b"{") and b'"Records"' in body[:4096]):
            return None
        if not body.isascii():  # ASCII is UTF-8, and checking it allocates nothing
            try:
                body.decode("utf-8")  # the builder reads UTF-8 it need not check
            except UnicodeDecodeError:
                return None
        if self.ct:
            self._flush_cloudtrail()
        n: int | None = self.native.add(body)
        if n is None:
            return None
        self.native_runs.append((uri, n))
        if self.native.rows >= CHUNK_RECORDS or self.native.nbytes >= CHUNK_BYTES:
            self._flush_native()
        return n

    def cloudtrail(
        self,
        recs: list[cloudtrail.Record],
        raws: list[bytes] | list[msgspec.Raw],
        uri: str,
        positions: range | tuple[int, ...],
    ) -> None:
        if self.native_runs:
            self._flush_native()
        self.ct += recs
        self.ct_raw += raws
        self.ct_uri += [uri] * len(recs)
        self.ct_pos += positions
        self.ct_bytes += sum(map(len, raws))
        if len(self.ct) >= CHUNK_RECORDS or self.ct_bytes >= CHUNK_BYTES:
            self._flush_cloudtrail()

    def row(self, row: tuple[Any, ...], uri: str, position: int) -> None:
        self.rows.append(row)
        self.row_uri.append(uri)
        self.row_pos.append(position)
        if len(self.rows) >= CHUNK_RECORDS:
            self._flush_rows()

    def table(self) -> pa.Table:
        self._flush_native()
        self._flush_cloudtrail()
        self._flush_rows()
        return pa.concat_tables(self.tables) if self.tables else self.wide.empty_table()

    def _one_by_one(
        self,
        n: int,
        chunk: Callable[[list[int]], None],
        entry: Callable[[int], tuple[str, int, bytes]],
    ) -> None:
        """``chunk(rows)`` for the chunk's rows ``0..n-1`` together; if that raises, for each
        row alone, and a row that raises alone is quarantined (``entry``: its input, position
        and raw text). ``chunk`` changes nothing unless it returns."""
        if n > 1:
            try:
                chunk(list(range(n)))
                return
            except MemoryError:
                raise
            except Exception:  # noqa: S110 - one of its records raised: found below
                pass
        for i in range(n):
            try:
                chunk([i])
            except MemoryError:
                raise
            except Exception as exc:
                uri, position, raw = entry(i)
                self.quarantine.append((uri, position, *normalize.failure(exc), raw))

    def _flush_rows(self) -> None:
        if not self.rows:
            return
        rows, uris, pos = self.rows, self.row_uri, self.row_pos
        self.rows, self.row_uri, self.row_pos = [], [], []
        raw_at = normalize.ROW_FIELDS.index("raw")
        # A row: the ROW_FIELDS, then the path columns (or none, when the run reads none).
        fields = [self.wide.field(name) for name in normalize.ROW_FIELDS]
        if len(rows[0]) > len(fields):
            fields += [self.wide.field(col.name) for col in self.reading.columns]

        def chunk(which: list[int]) -> None:
            columns = list(zip(*_pick(rows, which), strict=True))
            cols = {
                f.name: pa.array(col, pa.binary() if f.name == "raw" else f.type).cast(f.type)
                for col, f in zip(columns, fields, strict=True)
            }
            redact.scrub_token_columns(cols)
            self.tables.append(_table(cols, pa.array(_pick(uris, which), _S), self.wide))

        self._one_by_one(len(rows), chunk, lambda i: (uris[i], pos[i], rows[i][raw_at]))

    def _flush_native(self) -> None:
        if not self.native_runs:
            return
        runs, self.native_runs = self.native_runs, []
        # Secrets first: the builder writes the redacted text in place of the original as it
        # hands the raw column over (one copy, not a second pass over every record).
        rows, texts = self.native.secrets()
        # A record over max_record_bytes is quarantined as it came, as the Python road does (it
        # measures before it redacts): redaction can shorten a record (escapes re-spelt) and so
        # would turn "record_too_large" into whatever the record's fields make of it.
        small = [len(t) <= self.max_record_bytes for t in texts]
        rows = [r for r, keep in zip(rows, small, strict=True) if keep]
        texts = [t for t, keep in zip(texts, small, strict=True) if keep]
        originals: dict[int, bytes] = {}
        try:
            redacted = redact.redact_many(texts) if rows else []
        except MemoryError:
            raise
        except Exception:
            redacted = None  # the chunk takes the Python road below, record by record
        if redacted:
            changed = [
                (row, text, new)
                for row, text, new in zip(rows, texts, redacted, strict=True)
                if new != text
            ]
            originals = {row: text for row, text, _ in changed}
            taken = self.native.take([c[0] for c in changed], [c[2] for c in changed])
        else:
            taken = self.native.take()
        n, buffers, flag_bytes = taken
        arrays = {name: native.string_array(n, *bufs) for name, bufs in buffers.items()}
        raw = arrays.pop("raw")
        counts = np.array([c for _, c in runs], np.int64)
        uris = pa.DictionaryArray.from_arrays(
            pa.array(np.repeat(np.arange(len(runs), dtype=np.int32), counts)),
            pa.array([u for u, _ in runs], _S),
        ).cast(_S)
        pos = (np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)).tolist()

        def text(i: int) -> bytes:
            return originals.get(i) or raw[i].as_py().encode()  # as it came: before redaction

        def record(i: int) -> cloudtrail.SessionRecord:
            rec: cloudtrail.SessionRecord = cloudtrail.session_decoder.decode(text(i))
            return rec

        if redacted is not None:
            try:
                flags = pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(flag_bytes)])
                cols = cloudtrail.finish(
                    {k: arrays[k] for k in cloudtrail.VALUE_FIELDS},
                    {k: arrays[k] for k in cloudtrail.TARGET_FIELDS},
                    pc.not_equal(pc.bit_wise_and(flags, 1), 0),
                    {k: arrays[k] for k in cloudtrail.NAME_FIELDS},
                )
                secret_rows = pc.not_equal(pc.bit_wise_and(flags, 2), 0)
                self._finish_cloudtrail(cols, raw, uris, pos, record, secret_rows)
                return
            except MemoryError:
                raise
            except Exception:  # noqa: S110 - one of its records raised: found below
                pass
        # The Python road gives what this one does (tests/test_native.py holds them equal), and
        # finds the record that raised.
        self._python_road([text(i) for i in range(n)], uris.to_pylist(), pos)

    def _python_road(self, texts: list[bytes], uris: list[str], pos: list[int]) -> None:
        """Records the compiled road had taken, decoded again by the Python road."""
        recs, kept = [], []
        for i, text in enumerate(texts):
            try:
                recs.append(cloudtrail.record_decoder.decode(text))
            except (msgspec.DecodeError, msgspec.ValidationError):
                try:
                    recs.append(cloudtrail.from_dict(jsonnum.loads(text)))
                except Exception as exc:
                    self.quarantine.append((uris[i], pos[i], *normalize.failure(exc), text))
                    continue
            kept.append(i)
        self._cloudtrail_chunk(
            recs, [texts[i] for i in kept], [uris[i] for i in kept], [pos[i] for i in kept]
        )

    def _flush_cloudtrail(self) -> None:
        if not self.ct:
            return
        recs, raws, uris, pos = self.ct, self.ct_raw, self.ct_uri, self.ct_pos
        self.ct, self.ct_raw, self.ct_uri, self.ct_pos, self.ct_bytes = [], [], [], [], 0
        self._cloudtrail_chunk(recs, raws, uris, pos)

    def _cloudtrail_chunk(
        self,
        recs: list[_CloudTrailRecord],
        raws: list[bytes] | list[msgspec.Raw],
        uris: list[str],
        pos: list[int],
    ) -> None:
        def chunk(which: list[int]) -> None:
            picked = _pick(recs, which)
            self._finish_cloudtrail(
                cloudtrail.columns(picked),
                _strings(_pick(raws, which)),
                pa.array(_pick(uris, which), _S),
                _pick(pos, which),
                picked.__getitem__,
            )

        self._one_by_one(len(recs), chunk, lambda i: (uris[i], pos[i], bytes(raws[i])))

    def _finish_cloudtrail(
        self,
        cols: dict[str, pa.Array],
        raw: pa.Array,
        uris: pa.Array,
        pos: list[int],
        record: Callable[[int], _Record],
        secret_rows: pa.Array | None = None,
    ) -> None:
        """What both roads share: records too large, secrets (unless the caller redacted them
        already: then ``secret_rows`` says which records might have held one), tokens out of
        the free-text columns of those records, unusable records, missing ids, AssumeRole
        sessions; then the chunk joins the batch. Nothing changes unless it returns: its
        quarantine entries, sessions and rows are kept only then (``_one_by_one``)."""
        entries: list[Quarantined] = []
        big = pc.greater(pc.binary_length(raw), self.max_record_bytes)
        if pc.any(big).as_py():
            texts = raw.cast(pa.binary())  # the same buffers: each record's slice, no copy
            for i in pc.indices_nonzero(big).to_pylist():
                text = texts[i].as_buffer()
                entries.append(too_large(uris[i].as_py(), pos[i], text, self.max_record_bytes))
            small = pc.invert(big)
            cols = {k: v.filter(small) for k, v in cols.items()}
            raw, uris = raw.filter(small), uris.filter(small)
            secret_rows = None if secret_rows is None else secret_rows.filter(small)
            kept = pc.indices_nonzero(small).to_pylist()
            pos = [pos[i] for i in kept]

            def record_of(i: int, record: Callable[[int], _Record] = record) -> Any:
                return record(kept[i])

            record = record_of
            if not len(raw):
                self._keep(entries, [], None)
                return
        if secret_rows is None:
            secret_rows = prefilter.flag_secrets(raw)
            if pc.any(secret_rows).as_py():
                which = pc.indices_nonzero(secret_rows)
                texts = redact.redact_many([r.encode() for r in raw.take(which).to_pylist()])
                raw = pc.replace_with_mask(raw, secret_rows, _strings(texts))
        # A token in a column is in its record's text too, which the needles flagged.
        redact.scrub_token_columns(cols, secret_rows)
        no_time = pc.is_null(cols["event_time"])
        unusable = pc.or_(no_time, pc.and_(pc.is_null(cols["service"]), pc.is_null(cols["action"])))
        for i in pc.indices_nonzero(unusable).to_pylist():
            if no_time[i].as_py():
                entry = ("missing_event_time", "no eventTime (nor @timestamp)")
            else:
                entry = ("missing_event_name", "neither eventName nor eventSource")
            entries.append(Quarantined(uris[i].as_py(), pos[i], *entry, raw[i].as_py().encode()))
        usable = pc.invert(unusable)
        no_id = pc.and_(pc.is_null(cols["event_id"]), usable)
        if pc.any(no_id).as_py():
            ids = cols["event_id"].to_pylist()
            for i in pc.indices_nonzero(no_id).to_pylist():
                ids[i] = normalize.synthetic_id(raw[i].as_py().encode())
            cols["event_id"] = pa.array(ids, _S)
        assume = pc.indices_nonzero(
            pc.and_(
                pc.and_(pc.is_in(cols["action"], value_set=_ASSUME_ROLE), usable),
                pc.is_null(cols["error_code"]),
            )
        )
        # Their times in one conversion (indexing an Arrow array costs a microsecond a value).
        times = cols["event_time"].take(assume).to_pylist()
        sessions = []
        started: dict[int, str] = {}  # row -> the access key id its AssumeRole* returned
        for i, when in zip(assume.to_pylist(), times, strict=True):
            s = cloudtrail.assumed_session(record(i))
            if s is not None:
                sessions.append((s[0], s[1], when))
                started[i] = s[0]
        cols["h_new_session"] = _at(started, len(raw))
        cloudtrail.name_users(cols, raw)
        cols["raw"] = raw
        if pc.any(unusable).as_py():
            cols = {k: v.filter(usable) for k, v in cols.items()}
            uris = uris.filter(usable)
        cols.update(self.reading.cloudtrail_columns(cols["raw"]))
        self._keep(entries, sessions, _table(cols, uris, self.wide))

    def _keep(
        self,
        entries: list[Quarantined],
        sessions: list[tuple[str, dict[str, str], str | None]],
        table: pa.Table | None,
    ) -> None:
        for e in entries:
            self.quarantine.append(e)
        self.sessions += sessions
        if table is not None:
            self.tables.append(table)


_ASSUME_ROLE = pa.array(sorted(cloudtrail.ASSUME_ROLE_EVENTS), _S)


def _pick(items: list[Any], which: list[int]) -> list[Any]:
    """``items`` at ``which``: all of them (no copy), or some when a chunk is retried."""
    return items if len(which) == len(items) else [items[i] for i in which]


def _table(cols: dict[str, pa.Array], uris: pa.Array, wide: pa.Schema) -> pa.Table:
    """A chunk's columns as rows of ``wide`` (``Reading.wide``), with their inputs and content
    hashes; a column the chunk lacks is null."""
    cols["input_uri"] = uris
    cols["record_hash"] = normalize.record_hashes(cols)
    n = len(uris)
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in wide]
    return pa.Table.from_arrays(arrays, schema=wide)


def _at(values: dict[int, str], n: int) -> pa.Array:
    """A string column of ``n`` rows holding ``values`` at their rows, null elsewhere."""
    if not values:
        return pa.nulls(n, _S)
    column: list[str | None] = [None] * n
    for i, v in values.items():
        column[i] = v
    return pa.array(column, _S)


def _strings(parts: list[bytes] | list[msgspec.Raw]) -> pa.Array:
    """A string array over the parts laid end to end (one join, no per-part Arrow calls). The
    parts are known UTF-8: their files were checked before decoding."""
    offsets = pa.array(accumulate(map(len, parts), initial=0), pa.int64())
    data = pa.py_buffer(b"".join(parts))
    text = pa.Array.from_buffers(pa.large_string(), len(parts), [None, offsets.buffers()[1], data])
    return text.cast(_S)  # 64-bit offsets first, so a chunk past 2 GiB fails loudly
