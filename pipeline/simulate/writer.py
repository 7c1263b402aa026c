"""The edge: collects encoded records per UTC day and writes them laid out as AWS delivers them.

- CloudTrail: one gzip file per 5-minute delivery slot, named by the slot's start, holding the
  events delivered in it (events arrive 0-15 minutes after their eventTime; a slot never takes
  events from another UTC day, so a file's date folder is its events' date).
- CloudTrail-Digest: one per hour, chained by ``previousDigest*``; ``hashValue`` is SHA-256 of
  each log file's uncompressed content, as CloudTrail's validation defines it.
- API Gateway access logs and authorizer logs: one CloudWatch Logs export task per UTC day,
  ``<task id>/<log stream>/000000.gz`` with ``<ISO timestamp> <message>`` lines.
- ``truth.parquet``: every event's true actor and target tenant (``TRUTH``), a row group per day.

An organisation trail writes each account's files under ``AWSLogs/<org id>/<account>/`` with a
digest chain per account; a quiet account's files cover longer (as CloudTrail's do).

gzip uses mtime 0 and a fixed level, so the bytes are a pure function of the spec. It is the
standard library's zlib, not ISA-L: ISA-L once compressed the same content to different bytes
inside a busy test process (CRC and size equal, deflate stream not), which breaks byte-for-byte
regeneration. zlib is slower, so compression and writing run in a background thread (zlib
releases the GIL) while the next day is generated.
"""

from __future__ import annotations

import gzip as _gzip
import hashlib
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.simulate import clock, ids
from pipeline.simulate.world import TRAIL, World

GZIP_LEVEL = 1  # ~8x smaller than the JSON at ~270 MB/s
CT_BUCKET_SUFFIX = "-cloudtrail-logs"
TRUTH_FILE = "truth.parquet"
# The ground truth of every event. ``event_id`` is the id the lake gives it (CloudTrail eventID,
# access-log requestId, the authorizer invocation's request id); ``tenant_scoped``: a tenant acts
# or a tenant's resource is acted on (either tenant is known).
_DICT = pa.dictionary(pa.int8(), pa.string())
TRUTH = pa.schema(
    [
        ("source", _DICT),
        ("event_id", pa.string()),
        ("actor_tenant", pa.dictionary(pa.int16(), pa.string())),
        ("target_tenant", pa.dictionary(pa.int16(), pa.string())),
        ("tenant_scoped", pa.bool_()),
    ]
)
Truth = tuple[str | None, str | None]  # (actor tenant, target tenant)


def gzip(data: bytes) -> bytes:
    return _gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


@dataclass
class Invocation:
    """One authorizer run; its Powertools line is built at write time, once cold starts are
    known (the first invocation of each execution environment)."""

    ts_ms: int
    env: int
    duration_ms: float
    function_request_id: str  # the Lambda invocation's request id (START/END/REPORT lines)
    fields: dict[str, Any]


@dataclass
class DaySink:
    # (delivered, eventTime, json, recipient account)
    ct: list[tuple[int, int, bytes, str]] = field(default_factory=list)
    api: list[tuple[int, bytes]] = field(default_factory=list)  # (ms, json message)
    auth: list[Invocation] = field(default_factory=list)
    truth: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)


@dataclass
class LogFile:
    key: str
    sha256: str
    oldest: int
    newest: int
    start: int  # of its delivery slot


class Sink:
    """Where the builders put records: encoded at once (bytes are far smaller than dicts)."""

    def __init__(self, start_epoch: int, end_epoch: int) -> None:
        self.start = start_epoch
        self.end = end_epoch
        self.days: dict[int, DaySink] = defaultdict(DaySink)

    def _day(self, ts: int) -> DaySink | None:
        if not self.start <= ts < self.end:
            return None  # a session that runs past the end of the simulation is cut off
        return self.days[ts // clock.DAY]

    def cloudtrail(self, ts: int, delivered: int, record: dict[str, Any], truth: Truth) -> None:
        day = self._day(ts)
        if day is not None:
            day.ct.append((delivered, ts, orjson.dumps(record), record["recipientAccountId"]))
            day.truth.append(("cloudtrail", record["eventID"], *truth))

    def apigateway(self, ts_ms: int, message: dict[str, Any], event_id: str, truth: Truth) -> None:
        day = self._day(ts_ms // 1000)
        if day is not None:
            day.api.append((ts_ms, orjson.dumps(message)))
            day.truth.append(("apigateway", event_id, *truth))

    def authorizer(self, inv: Invocation, event_id: str, truth: Truth) -> None:
        day = self._day(inv.ts_ms // 1000)
        if day is not None:
            day.auth.append(inv)
            day.truth.append(("authorizer", event_id, *truth))


class Writer:
    def __init__(self, out_dir: Path, world: World) -> None:
        self.out = out_dir
        self.world = world
        self.style = world.style
        spec = world.spec
        self.seed = spec.seed
        self.acct = spec.account
        self.region = spec.region
        self.ct_bucket = f"acme-saas-{spec.account}{CT_BUCKET_SUFFIX}"
        self.ct_files: list[LogFile] = []
        # CloudTrail writes a file about every 5 minutes when busy; a quiet trail's files cover
        # longer (up to 15 minutes), which keeps small simulations from being mostly gzip headers.
        self.slot_s = 300 if spec.events_per_day >= 20_000 else 900
        self.counts: dict[str, int] = defaultdict(int)
        rng = ids.stream(spec.seed, "log-streams")
        # API Gateway spreads a stage's access log over a handful of long-lived streams.
        self.api_streams = tuple(ids.hex_id(rng, 32) for _ in range(4))
        fn = self.style.function_name
        self.function_arn = f"arn:aws:lambda:{spec.region}:{spec.account}:function:{fn}"
        # One thread: files are written in order, and generation keeps the other core.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulate-io")
        self._pending: list[Future[int]] = []
        self._truth: pq.ParquetWriter | None = None

    def _put(self, rel: str, data: bytes, *, compress: bool = False) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pending.append(self._io.submit(_write, path, data, compress))

    def close(self) -> None:
        """Wait for every file to be on disk (and raise the first write error, if any)."""
        self._pending.append(self._io.submit(self._close_truth))
        self._io.shutdown(wait=True)
        self.counts["bytes_written"] += sum(f.result() for f in self._pending)
        self._pending.clear()

    # --- ground truth ---------------------------------------------------------------------------

    def write_truth(self, rows: list[tuple[str, str, str | None, str | None]]) -> None:
        if not rows:
            return
        source, event_id, actor, target = zip(*rows, strict=True)
        scoped = [a is not None or t is not None for a, t in zip(actor, target, strict=True)]
        table = pa.Table.from_arrays(
            [
                pa.array(source, pa.string()).dictionary_encode().cast(TRUTH.field(0).type),
                pa.array(event_id, pa.string()),
                pa.array(actor, pa.string()).dictionary_encode().cast(TRUTH.field(2).type),
                pa.array(target, pa.string()).dictionary_encode().cast(TRUTH.field(3).type),
                pa.array(scoped, pa.bool_()),
            ],
            schema=TRUTH,
        )
        self.counts["truth_rows"] += len(rows)
        self._pending.append(self._io.submit(self._append_truth, table))

    def _append_truth(self, table: pa.Table) -> int:
        if self._truth is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._truth = pq.ParquetWriter(
                self.out / TRUTH_FILE,
                TRUTH,
                compression="zstd",
                use_dictionary=["source", "actor_tenant", "target_tenant"],
            )
        self._truth.write_table(table)
        return 0

    def _close_truth(self) -> int:
        if self._truth is None:
            return 0
        self._truth.close()
        return (self.out / TRUTH_FILE).stat().st_size

    # --- CloudTrail ---------------------------------------------------------------------------

    def write_cloudtrail(self, day_index: int, recs: list[tuple[int, int, bytes, str]]) -> None:
        by_account: dict[str, list[tuple[int, int, bytes]]] = defaultdict(list)
        for delivered, ts, body, account in recs:
            by_account[account].append((delivered, ts, body))
        for account in sorted(by_account):
            self._write_account(day_index, account, by_account[account])

    def _write_account(self, day_index: int, acct: str, recs: list[tuple[int, int, bytes]]) -> None:
        slot_s = self.style.slot_seconds(acct, self.slot_s)
        first = day_index * clock.DAY
        last_slot = (first + clock.DAY) // slot_s - 1
        slots: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        for delivered, ts, body in recs:
            slots[min(delivered // slot_s, last_slot)].append((ts, body))
        prefix = self.style.trail_prefix(acct)
        for slot in sorted(slots):
            items = sorted(slots[slot], key=lambda x: x[0])
            body = b'{"Records":[' + b",".join(b for _, b in items) + b"]}"
            when = slot * slot_s
            rng = ids.stream(self.seed, *self.style.ct_file_stream(slot, acct))
            key = (
                f"{prefix}CloudTrail/{self.region}/{clock.ymd_path(when)}/"
                f"{acct}_CloudTrail_{self.region}_{clock.compact(when)}_{ids.alnum(rng, 16)}"
                ".json.gz"
            )
            self._put(key, body, compress=True)
            self.ct_files.append(
                LogFile(key, hashlib.sha256(body).hexdigest(), items[0][0], items[-1][0], when)
            )
            self.counts["cloudtrail_files"] += 1
            self.counts["cloudtrail_records"] += len(items)

    def write_digests(self, start: int, end: int) -> None:
        """Hourly digests over the whole run, chained per account; an hour without files still
        gets one."""
        for acct in self.style.accounts():
            prefix = self.style.trail_prefix(acct)
            mine = [f for f in self.ct_files if f.key.startswith(f"{prefix}CloudTrail/")]
            self._digests(acct, prefix, mine, start, end)

    def _digests(self, acct: str, prefix: str, files: list[LogFile], start: int, end: int) -> None:
        rng = ids.stream(self.seed, *self.style.digest_stream(acct))
        offset = 60 + rng.randrange(120)  # CloudTrail digests end a minute or two past the hour
        fingerprint = ids.hex_id(rng, 32)
        files = sorted(files, key=lambda f: f.start)
        i = 0
        prev: tuple[str, str, str] | None = None  # key, sha256 of content, signature
        digest_end = start + offset
        while True:
            in_window: list[LogFile] = []
            while i < len(files) and files[i].start < digest_end:
                in_window.append(files[i])
                i += 1
            key = (
                f"{prefix}CloudTrail-Digest/{self.region}/"
                f"{clock.ymd_path(digest_end)}/{acct}_CloudTrail-Digest_{self.region}_"
                f"{TRAIL}_{self.region}_{clock.compact(digest_end, seconds=True)}.json.gz"
            )
            doc = {
                "awsAccountId": acct,
                "digestStartTime": clock.iso(digest_end - 3600),
                "digestEndTime": clock.iso(digest_end),
                "digestS3Bucket": self.ct_bucket,
                "digestS3Object": key,
                "digestPublicKeyFingerprint": fingerprint,
                "digestSignatureAlgorithm": "SHA256withRSA",
                "newestEventTime": clock.iso(max(f.newest for f in in_window))
                if in_window
                else None,
                "oldestEventTime": clock.iso(min(f.oldest for f in in_window))
                if in_window
                else None,
                "previousDigestS3Bucket": self.ct_bucket if prev else None,
                "previousDigestS3Object": prev[0] if prev else None,
                "previousDigestHashValue": prev[1] if prev else None,
                "previousDigestHashAlgorithm": "SHA-256" if prev else None,
                "previousDigestSignature": prev[2] if prev else None,
                "logFiles": [
                    {
                        "s3Bucket": self.ct_bucket,
                        "s3Object": f.key,
                        "hashValue": f.sha256,
                        "hashAlgorithm": "SHA-256",
                        "newestEventTime": clock.iso(f.newest),
                        "oldestEventTime": clock.iso(f.oldest),
                    }
                    for f in in_window
                ],
            }
            body = orjson.dumps(doc)
            self._put(key, body, compress=True)
            self.counts["digest_files"] += 1
            digest_hash = hashlib.sha256(body).hexdigest()
            # The real signature is RSA over the digest and lives in S3 object metadata; we
            # cannot sign as AWS, so this is a stand-in of the right length (not verifiable).
            signature = (hashlib.sha512(body).hexdigest() * 4)[:512]
            prev = (key, digest_hash, signature)
            if i >= len(files) and digest_end >= end:
                break
            digest_end += 3600

    # --- CloudWatch Logs exports -------------------------------------------------------------

    def write_apigateway(self, day_index: int, lines: list[tuple[int, bytes]]) -> None:
        if not lines:
            return
        rng = ids.stream(self.seed, "export-apigateway", day_index)
        task = ids.uuid4(rng)
        streams: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
        for ts_ms, msg in lines:
            # The request id's first byte picks the stream: stable, and spread like AWS's.
            streams[self.api_streams[msg[14] % len(self.api_streams)]].append((ts_ms, msg))
        for name in self.api_streams:
            items = sorted(streams.get(name, []), key=lambda x: x[0])
            if not items:
                continue
            body = b"".join(clock.iso_ms(t).encode() + b" " + m + b"\n" for t, m in items)
            self._put(f"apigateway/exportedlogs/{task}/{name}/000000.gz", body, compress=True)
            self.counts["apigateway_files"] += 1
            self.counts["apigateway_records"] += len(items)

    def write_authorizer(self, day_index: int, invocations: list[Invocation]) -> None:
        if not invocations:
            return
        rng = ids.stream(self.seed, "export-authorizer", day_index)
        task = ids.uuid4(rng)
        day_path = clock.ymd_path(day_index * clock.DAY)
        by_env: dict[int, list[Invocation]] = defaultdict(list)
        for inv in invocations:
            by_env[inv.env].append(inv)
        for env in sorted(by_env):
            items = sorted(by_env[env], key=lambda x: x.ts_ms)
            stream = f"{day_path}/[$LATEST]{ids.hex_id(rng, 32)}"
            out: list[bytes] = []
            for n, inv in enumerate(items):
                rid = inv.function_request_id
                line = self.style.authorizer_line(inv, n == 0, self.function_arn)
                t = inv.ts_ms
                out.append(f"{clock.iso_ms(t)} START RequestId: {rid} Version: $LATEST\n".encode())
                out.append(clock.iso_ms(t + 2).encode() + b" " + orjson.dumps(line) + b"\n")
                end_ms = t + int(inv.duration_ms) + 1
                init = "\tInit Duration: 412.57 ms" if n == 0 else ""
                out.append(f"{clock.iso_ms(end_ms)} END RequestId: {rid}\n".encode())
                out.append(
                    f"{clock.iso_ms(end_ms)} REPORT RequestId: {rid}\tDuration: "
                    f"{inv.duration_ms:.2f} ms\tBilled Duration: {int(inv.duration_ms) + 1} ms\t"
                    f"Memory Size: 256 MB\tMax Memory Used: {78 + n % 7} MB{init}\t\n".encode()
                )
                self.counts["authorizer_records"] += 1
            self._put(
                f"authorizer/exportedlogs/{task}/{stream}/000000.gz", b"".join(out), compress=True
            )
            self.counts["authorizer_files"] += 1

    def write_text(self, rel: str, text: str) -> None:
        self._put(rel, text.encode())


__all__ = ["TRUTH", "TRUTH_FILE", "Invocation", "Sink", "Writer"]


def _write(path: Path, data: bytes, compress: bool) -> int:
    body = gzip(data) if compress else data
    path.write_bytes(body)
    return len(body)
