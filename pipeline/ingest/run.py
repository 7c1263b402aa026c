"""The ingest stage: inputs -> normalized, tenant-resolved, deduplicated Parquet in the lake.

Work is cut into batches of input objects (``ingest.batch_input_bytes`` of compressed input each,
so memory stays bounded whatever the number of files). Workers decode and normalize batches in
parallel (``decode_batch``: pure, no lake access); the parent takes their results *in input
order* and does what needs the whole history: learning AssumeRole sessions, resolving tenants,
dropping duplicate event ids (within the batch and against the lake), writing, and recording the
batch as done. A batch's files are named by a hash of its inputs, and a batch is recorded as done
only after its files are written, so a run that dies half way is re-run to the same lake.

Invariant, checked by tests: records_in = ingested + duplicates + quarantined.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema
from pipeline.config import AuthorizerContext, Config, IngestConfig
from pipeline.ingest import formats, gz, normalize, redact, tenancy, timeparse
from pipeline.ingest.sources import InputRef, LogPosition, list_inputs, read_input
from pipeline.lake import Lake, event_partition

_S = pa.string()
WIDE = pa.schema(
    [
        (name, pa.int32() if name == "status_code" else _S if name != "raw" else pa.binary())
        for name in normalize.ROW_FIELDS
    ]
)
INGESTED = pa.schema(
    [
        ("uri", _S),
        ("identity", _S),
        ("records", pa.int64()),
        ("ingested", pa.int64()),
        ("duplicates", pa.int64()),
        ("quarantined", pa.int64()),
    ]
)
SESSIONS = pa.schema([("access_key_id", _S), ("tag", _S), ("value", _S), ("started", timeparse.TS)])
DIGESTS = pa.schema([("digest_uri", _S), ("log_object", _S), ("hash_value", _S)])


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
    rows: pa.Table  # WIDE schema, event_time still text
    quarantine: list[tuple[str, int, str, str, bytes]] = field(default_factory=list)
    sessions: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    digests: list[tuple[str, str, str]] = field(default_factory=list)
    records_in: int = 0


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


def decode_batch(batch: Batch, ingest: IngestConfig, claim_key: str) -> Decoded:
    """Read, decompress, split and normalize every input of a batch. Pure apart from reading."""
    out = Decoded(batch, WIDE.empty_table())
    rows: list[tuple[Any, ...]] = []
    uris: list[str] = []
    hashes: list[str] = []
    q = out.quarantine
    for ref in batch.inputs:
        if ref.size > ingest.max_decompressed_bytes:
            q.append((ref.uri, -1, "input_too_large", f"{ref.size:,} bytes", b""))
            out.records_in += 1
            continue
        try:
            data = gz.maybe_decompress(read_input(ref), ingest.max_decompressed_bytes)
        except gz.GzipError as exc:
            q.append((ref.uri, -1, exc.reason, str(exc), b""))
            out.records_in += 1
            continue
        except OSError as exc:
            q.append((ref.uri, -1, "unreadable_input", str(exc), b""))
            out.records_in += 1
            continue
        for item in formats.split(data):
            if item.kind == formats.DIGEST:
                for lf in item.obj.get("logFiles") or []:
                    if isinstance(lf, dict):
                        out.digests.append(
                            (ref.uri, str(lf.get("s3Object")), str(lf.get("hashValue")))
                        )
                continue
            out.records_in += 1
            if item.kind == formats.QUARANTINE:
                q.append((ref.uri, item.position, item.reason, item.detail, item.raw))
                continue
            if len(item.raw) > ingest.max_record_bytes:
                q.append(
                    (ref.uri, item.position, "record_too_large", f"{len(item.raw):,} bytes", b"")
                )
                continue
            raw = redact.redact_raw(item.raw)
            try:
                if item.kind == formats.CLOUDTRAIL:
                    row = normalize.cloudtrail_row(item.obj, raw)
                    s = normalize.assumed_session(item.obj)
                    if s is not None:
                        out.sessions.append((s[0], s[1], row[1]))
                elif item.kind == formats.APIGATEWAY:
                    row = normalize.access_log_row(item.obj, raw, claim_key)
                else:
                    row = normalize.authorizer_row(item.obj, raw)
            except normalize.Unusable as exc:
                q.append((ref.uri, item.position, exc.reason, str(exc), raw))
                continue
            rows.append(row)
            uris.append(ref.uri)
            hashes.append(hashlib.blake2b(orjson.dumps(row[:18]), digest_size=8).hexdigest())
    out.rows = _to_table(rows, uris, hashes)
    return out


def _to_table(rows: list[tuple[Any, ...]], uris: list[str], hashes: list[str]) -> pa.Table:
    if rows:
        cols = list(zip(*rows, strict=True))
        arrays = [pa.array(col, type=f.type) for col, f in zip(cols, WIDE, strict=True)]
        t = pa.Table.from_arrays(arrays, schema=WIDE)
    else:
        t = WIDE.empty_table()
    return t.append_column("input_uri", pa.array(uris, _S)).append_column(
        "record_hash", pa.array(hashes, _S)
    )


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
        }


class Ingestor:
    """The parent's side: state, session map, dedup index, writing."""

    def __init__(self, lake: Lake, cfg: Config) -> None:
        self.lake = lake
        self.cfg = cfg
        self.sessions = tenancy.SessionMap(timedelta(hours=cfg.tenancy.session_ttl_hours))
        self.done: set[str] = set()
        self._ids: dict[str, set[str]] = {}
        self._load_state()

    def _load_state(self) -> None:
        for t in self.lake.read_tables("_state/ingested", ["identity"]):
            self.done.update(t["identity"].to_pylist())
        for t in self.lake.read_tables("_state/sessions"):
            for key, tag, value, started in zip(
                *(t[c].to_pylist() for c in SESSIONS.names), strict=True
            ):
                tags, _ = self.sessions.sessions.get(key, ({}, started))
                self.sessions.learn(key, {**tags, tag: value}, started)

    def _existing_ids(self, partition: str, own_file: str) -> set[str]:
        """Event ids already in a partition, except in this batch's own (re-written) file."""
        if partition not in self._ids:
            ids: set[str] = set()
            for f in self.lake.files(partition):
                if not f.endswith(own_file):
                    t = self.lake.read_file(f, _DEDUP_COLUMNS.names)
                    ids.update(_dedup_key(t).to_pylist())
            self._ids[partition] = ids
        return self._ids[partition]

    def absorb(self, d: Decoded, summary: Summary) -> None:
        batch_id = d.batch.id
        summary.records_in += d.records_in
        quarantine = list(d.quarantine)
        # Sessions first: an AssumeRole and the calls it enabled often share a batch.
        times = timeparse.parse_times(pa.array([s[2] for s in d.sessions], _S))
        for (key, tags, _), started in zip(d.sessions, times.to_pylist(), strict=True):
            if started is not None:
                self.sessions.learn(key, tags, started)

        t = d.rows
        when = timeparse.parse_times(t["event_time"])
        bad = pc.is_null(when)
        if pc.any(bad).as_py():
            for i in pc.indices_nonzero(bad).to_pylist():
                quarantine.append(
                    (
                        t["input_uri"][i].as_py(),
                        -1,
                        "bad_event_time",
                        f"unparseable time {str(t['event_time'][i].as_py())[:40]!r}",
                        t["raw"][i].as_py(),
                    )
                )
            keep = pc.invert(bad)
            t, when = t.filter(keep), when.filter(keep)
        t = t.set_column(t.schema.get_field_index("event_time"), "event_time", when)
        if t.num_rows:
            self.sessions.expire(pc.min(when).as_py())
        t = tenancy.resolve(t, self.cfg.tenancy, self.sessions)

        # Dedup within the batch (first occurrence in input order wins) ...
        t = t.append_column("_dedup", _dedup_key(t))
        first = _first_occurrence(t["_dedup"])
        dup_in_batch = t.num_rows - int(pc.sum(first).as_py() or 0)
        t = t.filter(first)
        t = t.append_column("date", pc.strftime(t["event_time"], "%Y-%m-%d"))
        t = t.append_column("hour", pc.strftime(t["event_time"], "%H"))
        own = f"part-{batch_id}.parquet"
        written = dup_lake = 0
        for part in _partitions(t):
            source, date, hour = part
            sel = pc.and_(
                pc.and_(pc.equal(t["source"], source), pc.equal(t["date"], date)),
                pc.equal(t["hour"], hour),
            )
            pt = t.filter(sel)
            rel = event_partition(source, date, hour)
            seen = self._existing_ids(rel, own)
            new = pc.invert(pc.is_in(pt["_dedup"], value_set=pa.array(list(seen), _S)))
            dup_lake += pt.num_rows - int(pc.sum(new).as_py() or 0)
            pt = pt.filter(new)
            if not pt.num_rows:
                continue
            seen.update(pt["_dedup"].to_pylist())
            out = pt.select(schema.EVENTS.names).cast(schema.EVENTS)
            self.lake.write_table(
                f"{rel}/{own}", out, sort_by=["target_tenant", "actor_tenant", "event_time"]
            )
            written += out.num_rows
            has_target = pc.is_valid(out["target_tenant"])
            summary.unresolved_tenants += int(
                pc.sum(pc.and_(has_target, pc.is_null(out["actor_tenant"]))).as_py() or 0
            )
        summary.ingested += written
        summary.duplicates += dup_in_batch + dup_lake
        for entry in quarantine:
            summary.quarantined[entry[2]] += 1
        if quarantine:
            self.lake.write_table(f"quarantine/{own}", _quarantine_table(quarantine))
        if d.digests:
            summary.digests += len({x[0] for x in d.digests})
            self.lake.write_table(
                f"_state/digests/{batch_id}.parquet",
                pa.Table.from_pylist(
                    [dict(zip(DIGESTS.names, x, strict=True)) for x in d.digests], DIGESTS
                ),
            )
        if d.sessions:
            self.lake.write_table(f"_state/sessions/{batch_id}.parquet", self._sessions_table(d))
        # Last: marking the inputs done. A crash before this re-runs the batch to the same files.
        self.lake.write_table(
            f"_state/ingested/{batch_id}.parquet",
            pa.Table.from_pylist(
                [
                    {
                        "uri": r.uri,
                        "identity": r.identity,
                        "records": d.records_in,
                        "ingested": written,
                        "duplicates": dup_in_batch + dup_lake,
                        "quarantined": len(quarantine),
                    }
                    for r in d.batch.inputs
                ],
                INGESTED,
            ),
        )
        self.done.update(r.identity for r in d.batch.inputs)

    def _sessions_table(self, d: Decoded) -> pa.Table:
        rows = []
        for key, tags, started_text in d.sessions:
            started = timeparse.parse_one(started_text) if started_text else None
            if started is None:
                continue
            for tag, value in tags.items():
                rows.append({"access_key_id": key, "tag": tag, "value": value, "started": started})
        return pa.Table.from_pylist(rows, SESSIONS)


_DEDUP_COLUMNS = pa.schema([("event_id", _S), ("record_hash", _S)])


def _dedup_key(t: pa.Table) -> pa.Array:
    """What makes two rows the same event: its id and the hash of its normalized content.

    An id alone is not enough: third-party and test data reuse placeholder ids ("1", "EXAMPLE")
    for different events, and dropping those would lose records. A genuine re-delivery repeats
    both. (Source needs no place here: each source has its own partitions.)
    """
    return pc.binary_join_element_wise(t["event_id"], t["record_hash"], "\x1f")


def _first_occurrence(key: pa.ChunkedArray) -> pa.Array:
    seen: set[str] = set()
    flags = []
    for k in key.to_pylist():
        flags.append(k not in seen)
        seen.add(k)
    return pa.array(flags, pa.bool_())


def _partitions(t: pa.Table) -> list[tuple[str, str, str]]:
    if not t.num_rows:
        return []
    g = t.group_by(["source", "date", "hour"]).aggregate([])
    return sorted(
        zip(g["source"].to_pylist(), g["date"].to_pylist(), g["hour"].to_pylist(), strict=True)
    )


def _quarantine_table(entries: list[tuple[str, int, str, str, bytes]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "input_uri": uri,
                "position": pos,
                "reason": reason,
                "detail": detail[:2000],
                "raw": redact.scrub_bytes(raw),
            }
            for uri, pos, reason, detail, raw in entries
        ],
        schema.QUARANTINE,
    )


LOG_POSITIONS = pa.schema([("uri", _S), ("timestamp_ms", pa.int64()), ("ids", pa.list_(_S))])


def _load_positions(lake: Lake) -> dict[str, LogPosition]:
    t = lake.read_all("_state/logs", LOG_POSITIONS)
    return {
        uri: LogPosition(ts, tuple(ids))
        for uri, ts, ids in zip(*(t[c].to_pylist() for c in LOG_POSITIONS.names), strict=True)
    }


def _save_position(lake: Lake, uri: str, pos: LogPosition) -> None:
    name = hashlib.sha256(uri.encode()).hexdigest()[:24]
    row = {"uri": uri, "timestamp_ms": pos.timestamp_ms, "ids": list(pos.ids_at_timestamp)}
    lake.write_table(f"_state/logs/{name}.parquet", pa.Table.from_pylist([row], LOG_POSITIONS))


def _worker_count(requested: int | None, cfg: IngestConfig) -> int:
    n = requested if requested is not None else cfg.workers
    return n if n and n > 0 else (os.cpu_count() or 1)


def _decoded(
    batches: list[Batch], workers: int, ingest: IngestConfig, claim_key: str
) -> Iterator[Decoded]:
    if workers <= 1 or len(batches) <= 1:
        for b in batches:
            yield decode_batch(b, ingest, claim_key)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # A bounded window of batches in flight keeps memory flat; results come back in order.
        window = workers + 1
        futures: list[Future[Decoded]] = []
        it = iter(batches)
        for b in it:
            futures.append(pool.submit(decode_batch, b, ingest, claim_key))
            if len(futures) >= window:
                break
        while futures:
            done = futures.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                futures.append(pool.submit(decode_batch, nxt, ingest, claim_key))
            yield done


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
    lake = Lake(lake_root)
    ing = Ingestor(lake, cfg)
    summary = Summary()
    positions = _load_positions(lake)
    inputs, new_positions = list_inputs(sources, since, until, positions)
    pending = [r for r in inputs if r.identity not in ing.done]
    summary.files = len(inputs)
    summary.files_skipped = len(inputs) - len(pending)
    batches = make_batches(pending, cfg.ingest.batch_input_bytes)
    claim_key = next(
        (s.key for s in cfg.tenancy.actor if isinstance(s, AuthorizerContext)), "tenantId"
    )
    n = _worker_count(workers, cfg.ingest)
    done_files = 0
    for d in _decoded(batches, n, cfg.ingest, claim_key):
        ing.absorb(d, summary)
        done_files += len(d.batch.inputs)
        if progress:
            progress(done_files, len(pending))
    # Only now, with every chunk in the lake, may the next run start after them.
    for uri, pos in new_positions.items():
        if positions.get(uri) != pos:
            _save_position(lake, uri, pos)
    summary.elapsed_s = time.perf_counter() - started
    out = summary.as_dict()
    out["lake"] = lake.uri("")
    out["workers"] = n
    out["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out
