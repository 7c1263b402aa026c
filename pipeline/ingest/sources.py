"""Where inputs come from: local files and folders, S3 prefixes and CloudWatch Logs.

An ``InputRef`` names one input and carries what makes it the same input next time (size and,
on S3, the ETag; for CloudWatch Logs chunks a content hash), so a re-run skips what was already
ingested. ``--since/--until`` select objects by the date in AWS's delivery key layouts
(``.../YYYY/MM/DD/...``, and Security Lake's ``.../eventDay=YYYYMMDD/...``); on S3 with both bounds
only the day prefixes in the window are listed, and a local folder's day folders outside the window
are not entered. Objects without a date in their key are always taken. Records are never filtered
by time here: a record read is a record counted.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline import aws
from pipeline.errors import InputError

_KEY_DATE = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/|/eventDay=(\d{4})(\d{2})(\d{2})/")
_YEAR_PREFIX = re.compile(r"(?:^|/)\d{4}/$")
# Security Lake's day folders: .../region=<r>/accountId=<a>/eventDay=YYYYMMDD/
_EVENT_DAY_PREFIX = re.compile(r"(?:^|/)eventDay=\d{8}/$")
# A CloudWatch Logs export task writes under <prefix>/<task id>/<log stream>/000000.gz, once. A
# stream's name may hold a date (a Lambda function's: YYYY/MM/DD/[$LATEST]<id>): the day the
# stream began, not the delivery's, which can be days later. Such keys are not a dated layout.
_EXPORT_TASK = re.compile(r"(?:^|/)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/")


@dataclass(frozen=True, slots=True, order=True)
class InputRef:
    uri: str  # /abs/path, s3://bucket/key, or logs://group/prefix#<first>-<last> for a chunk
    size: int
    etag: str = ""  # S3 ETag, or a content hash for CloudWatch Logs chunks
    # CloudWatch Logs chunks carry their lines: there is no object to read them from again.
    data: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def identity(self) -> str:
        return f"{self.uri}\t{self.etag or self.size}"


def key_date(key: str) -> date | None:
    m = _KEY_DATE.search(key)
    if not m:
        return None
    y, mo, d = m.groups()[:3] if m.group(1) else m.groups()[3:]
    try:
        return date(int(y), int(mo), int(d))
    except ValueError:
        return None


def in_window(key: str, since: datetime | None, until: datetime | None) -> bool:
    d = key_date(key)
    if d is None:
        return True
    if since is not None and d < since.date():
        return False
    return not (until is not None and d > until.date())


def _client(service: str) -> Any:
    """The shared boto3 client (standard retries; AWS_ENDPOINT_URL honoured by boto3)."""
    return aws.client(service)


# --- local files ---------------------------------------------------------------------------------


def _local(source: str, since: datetime | None, until: datetime | None) -> Iterator[InputRef]:
    p = Path(source)
    if p.is_file():
        yield InputRef(str(p.resolve()), p.stat().st_size)
        return
    if not p.is_dir():
        raise InputError(f"{source}: no such file or directory")
    yield from _folder(os.path.realpath(p), since, until, set())


def _folder(
    folder: str, since: datetime | None, until: datetime | None, entered: set[str]
) -> Iterator[InputRef]:
    """The files under ``folder`` (absolute, resolved) as ``os.walk`` gives them: a folder's own
    files by name, then its sub-folders by name; hidden files skipped. Symlinks are followed,
    to files and to folders (an input tree is often put together from links), each by its
    resolved path. A folder already entered is not entered again, so a link back up the tree
    ends there; a file reached twice is one input (``list_inputs`` keeps each once). One stat
    per file (resolving each file's path cost a stat per path component)."""
    entered.add(folder)
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.name.startswith(".") or e.is_dir():
            continue
        if e.is_file() and in_window(e.path, since, until):
            uri = os.path.realpath(e.path) if e.is_symlink() else e.path
            yield InputRef(uri, e.stat().st_size)
    for e in entries:
        if e.is_dir() and in_window(e.path + "/", since, until):
            sub = os.path.realpath(e.path) if e.is_symlink() else e.path
            if sub not in entered:
                yield from _folder(sub, since, until, entered)


# --- S3 ----------------------------------------------------------------------------------------


# Folders known to hold a dated layout somewhere below (bucket, folder): a warm process walks
# them by folder again without probing. The layout's folders (accounts, regions) bound it.
_DATED_BELOW: set[tuple[str, str]] = set()
_PROBE_KEYS = 100


def _undated_subtree(client: Any, bucket: str, folder: str) -> list[dict[str, Any]] | None:
    """Every object under ``folder`` when none of its keys is dated, listed flat (a page holds
    1,000 keys); None as soon as a dated key shows up, for the folder to be walked instead.
    The first page is small: a dated tree usually shows a dated key in it."""
    if (bucket, folder) in _DATED_BELOW:
        return None
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": folder, "MaxKeys": _PROBE_KEYS}
    while True:
        page = client.list_objects_v2(**kwargs)
        for obj in page.get("Contents", []):
            key = obj["Key"]
            task = _EXPORT_TASK.search(key)
            if _KEY_DATE.search(key, 0, task.start() if task else len(key)):
                if len(_DATED_BELOW) > 10_000:
                    _DATED_BELOW.clear()
                # Every folder on the way down to the dated key is dated below: one probe
                # serves the walk down that path.
                ends = [i for i in range(len(folder) - 1, len(key)) if key[i] == "/"]
                _DATED_BELOW.update((bucket, key[: i + 1]) for i in ends)
                return None
            if not obj["Key"].endswith("/"):
                found.append(obj)
        if not page.get("IsTruncated"):
            return found
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
        kwargs["MaxKeys"] = 1000


def _layout(
    client: Any, bucket: str, prefix: str
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """The dated roots under ``prefix``: prefixes whose children are year folders
    (``.../CloudTrail/us-east-1/``; AWSLogs/<org>/<account>/CloudTrail/<region>/ is 5 levels
    down), and those whose children are Security Lake's ``eventDay=YYYYMMDD/`` folders
    (``aws/CLOUD_TRAIL_MGMT/2.0/region=<r>/accountId=<a>/``); and the objects outside them.

    Folders above a dated root are walked by delimiter listings, so a dated root's keys are
    never listed beyond a probe's first page and the cost is the layout's (accounts, regions),
    not the bucket's age. A sub-tree without a dated key (CloudWatch Logs exports:
    ``<prefix>/<task id>/<stream>/000000.gz``, a new task folder a day) is listed flat,
    1,000 keys a page, rather than folder by folder: walking it would cost a listing per task
    ever exported, on every run. A date inside an export task's folder (a Lambda log stream's
    name) does not make a key dated: the export is delivered when it is run, so its objects, like
    every object outside a dated layout, are inputs once written since the run's start."""
    roots: list[str] = []
    day_roots: list[str] = []
    loose: list[dict[str, Any]] = []
    todo = [prefix]
    while todo:
        at = todo.pop()
        children: list[str] = []
        here: list[dict[str, Any]] = []
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=at, Delimiter="/"
        )
        for page in pages:
            children += [cp["Prefix"] for cp in page.get("CommonPrefixes", [])]
            here += [o for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        if any(_YEAR_PREFIX.search(c[len(at) :]) for c in children):
            roots.append(at)  # its day folders are listed by day; nothing else of it is read
            continue
        if any(_EVENT_DAY_PREFIX.search(c[len(at) :]) for c in children):
            day_roots.append(at)
            continue
        loose += here
        for child in children:
            flat = _undated_subtree(client, bucket, child)
            if flat is None:
                todo.append(child)
            else:
                loose += flat
    return sorted(roots), sorted(day_roots), sorted(loose, key=lambda o: str(o["Key"]))


def _written_since(obj: dict[str, Any], since: datetime) -> bool:
    written = obj.get("LastModified")
    if not isinstance(written, datetime):
        return True
    utc = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    return written >= utc


def _s3_list(
    client: Any, bucket: str, prefix: str, delimiter: str = ""
) -> Iterator[dict[str, Any]]:
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
        yield from page.get("Contents", [])


def _s3(source: str, since: datetime | None, until: datetime | None) -> Iterator[InputRef]:
    bucket, _, prefix = source[len("s3://") :].partition("/")
    if not bucket:
        raise InputError(f"{source}: expected s3://bucket[/prefix]")
    client = _client("s3")

    def ref(obj: dict[str, Any]) -> InputRef:
        return InputRef(f"s3://{bucket}/{obj['Key']}", obj["Size"], obj["ETag"].strip('"'))

    try:
        if since is not None and until is not None and until >= since:
            # Pruned: list only the day folders inside the window under each dated layout,
            # plus whatever sits outside any dated layout.
            roots, day_roots, loose = _layout(client, bucket, prefix)
            days = [since.date() + timedelta(days=i) for i in range((until - since).days + 2)]
            days = [d for d in days if d <= until.date()]
            for root in roots:
                for d in days:
                    for obj in _s3_list(client, bucket, f"{root}{d:%Y/%m/%d}/"):
                        yield ref(obj)
            for root in day_roots:
                for d in days:
                    for obj in _s3_list(client, bucket, f"{root}eventDay={d:%Y%m%d}/"):
                        yield ref(obj)
            # Outside a dated layout the key says nothing of time: an object last written
            # before ``since`` was listed by the run that read up to then (a scheduled run's
            # ``since`` is its watermark less the lag), so only later ones are inputs. Else every
            # run would look up every such object ever delivered in the ingest state.
            yield from (ref(obj) for obj in loose if _written_since(obj, since))
            return
        for obj in _s3_list(client, bucket, prefix):
            if not obj["Key"].endswith("/") and in_window(f"/{obj['Key']}", since, until):
                yield ref(obj)
    except client.exceptions.NoSuchBucket:
        raise InputError(f"{source}: no such bucket") from None


# --- CloudWatch Logs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogPosition:
    """Where the last run stopped in one log source: the newest event's timestamp (ms) and the
    ids of the events with exactly that timestamp (FilterLogEvents' startTime is inclusive)."""

    timestamp_ms: int
    ids_at_timestamp: tuple[str, ...] = ()


def _positions_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [("uri", pa.string()), ("timestamp_ms", pa.int64()), ("ids", pa.list_(pa.string()))]
    )


def load_positions(lake: Any) -> dict[str, LogPosition]:
    """Where each CloudWatch Logs source was read up to (``_state/logs``), by its uri."""
    from pipeline.lake import STATE_LOGS

    columns = _positions_schema()
    t = lake.read_all(STATE_LOGS, columns)
    return {
        uri: LogPosition(ts, tuple(ids))
        for uri, ts, ids in zip(*(t[c].to_pylist() for c in columns.names), strict=True)
    }


def save_position(lake: Any, uri: str, pos: LogPosition) -> None:
    import pyarrow as pa

    from pipeline.lake import STATE_LOGS, state_file

    name = hashlib.sha256(uri.encode()).hexdigest()[:24]
    row = {"uri": uri, "timestamp_ms": pos.timestamp_ms, "ids": list(pos.ids_at_timestamp)}
    table = pa.Table.from_pylist([row], _positions_schema())
    lake.write_table(state_file(STATE_LOGS, name), table)


CHUNK_BYTES = 4 << 20


class LogsReader:
    """``logs://<log group>[/<stream prefix>]`` read with FilterLogEvents, paginated.

    Log group names contain slashes (``/aws/lambda/x``), so the split between group and stream
    prefix is found by asking CloudWatch which groups exist. Throttling is retried by botocore's
    standard retry mode. Events are cut into chunks of about 4 MB of lines, each an input whose
    identity is its content hash, so a re-run over the same window skips what it already has.
    """

    def __init__(self, uri: str, position: LogPosition | None) -> None:
        self.uri = uri
        self.position = position or LogPosition(0)
        self.client = _client("logs")
        self.group, self.prefix = self._split(uri[len("logs://") :])

    def _split(self, path: str) -> tuple[str, str]:
        if not path.strip("/"):
            raise InputError(f"{self.uri}: expected logs://<log group>[/<stream prefix>]")
        first = path.split("/")[1] if path.startswith("/") else path.split("/")[0]
        lookup = ("/" + first) if path.startswith("/") else first
        pages = self.client.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=lookup)
        names = [g["logGroupName"] for page in pages for g in page.get("logGroups", [])]
        # The longest existing group that the path starts with, at a "/" boundary.
        for name in sorted(names, key=len, reverse=True):
            if path == name or path.startswith(name.rstrip("/") + "/"):
                return name, path[len(name) :].lstrip("/")
        raise InputError(f"{self.uri}: no such log group")

    def chunks(self, since: datetime | None, until: datetime | None) -> Iterator[InputRef]:
        start = self.position.timestamp_ms
        if since is not None:
            start = max(start, int(since.timestamp() * 1000))
        kwargs: dict[str, Any] = {"logGroupName": self.group, "startTime": start}
        if self.prefix:
            kwargs["logStreamNamePrefix"] = self.prefix
        if until is not None:
            kwargs["endTime"] = int(until.timestamp() * 1000)
        skip = set(self.position.ids_at_timestamp)
        newest, at_newest = self.position.timestamp_ms, list(self.position.ids_at_timestamp)
        lines: list[bytes] = []
        size, first_ts = 0, -1
        for page in self.client.get_paginator("filter_log_events").paginate(**kwargs):
            for ev in page.get("events", []):
                ts, event_id = int(ev["timestamp"]), str(ev["eventId"])
                if ts == self.position.timestamp_ms and event_id in skip:
                    continue  # read by the previous run
                if ts > newest:
                    newest, at_newest = ts, [event_id]
                elif ts == newest:
                    at_newest.append(event_id)
                first_ts = ts if first_ts < 0 else first_ts
                # One event, one line: an embedded newline must not split a record.
                msg = str(ev.get("message", "")).replace("\n", " ").rstrip()
                lines.append(msg.encode("utf-8", "surrogateescape") + b"\n")
                size += len(lines[-1])
                if size >= CHUNK_BYTES:
                    yield self._chunk(lines, first_ts, ts)
                    lines, size, first_ts = [], 0, -1
        if lines:
            yield self._chunk(lines, first_ts, newest)
        self.position = LogPosition(newest, tuple(sorted(at_newest)))

    def _chunk(self, lines: list[bytes], first: int, last: int) -> InputRef:
        data = b"".join(lines)
        digest = hashlib.sha256(data).hexdigest()[:32]
        return InputRef(f"{self.uri}#{first}-{last}", len(data), digest, data)


# --- all together ------------------------------------------------------------------------------


def list_inputs(
    sources: list[str],
    since: datetime | None = None,
    until: datetime | None = None,
    positions: dict[str, LogPosition] | None = None,
) -> tuple[list[InputRef], dict[str, LogPosition]]:
    """Every input named by ``sources``, deduplicated, in key order (CloudTrail keys sort by
    delivery time, which keeps the AssumeRole -> later calls join in order), and for each
    CloudWatch Logs source the position to record once its chunks are in the lake."""
    if since is not None and until is not None and until < since:
        raise InputError(
            f"empty window: --until ({until:%Y-%m-%dT%H:%M:%S}) is before --since "
            f"({since:%Y-%m-%dT%H:%M:%S})"
        )
    refs: set[InputRef] = set()
    new_positions: dict[str, LogPosition] = {}
    for source in sources:
        if source.startswith("logs://"):
            reader = LogsReader(source, (positions or {}).get(source))
            refs.update(reader.chunks(since, until))
            new_positions[source] = reader.position
        elif source.startswith("s3://"):
            refs.update(_s3(source, since, until))
        elif "://" in source:
            raise InputError(f"{source}: expected a path, s3://bucket/prefix or logs://group")
        else:
            refs.update(_local(source, since, until))
    return sorted(refs), new_positions


# What S3 says of one object that cannot be read as listed, however often it is asked: access
# denied (a bucket policy, a KMS key not granted), archived (Glacier, until restored), gone, or
# changed since it was listed (its new ETag is a new input, read by the next run).
_OBJECT_REFUSED = frozenset({403, 404, 412})


class UnreadableInput(OSError):
    """An input that cannot be read; the run quarantines it and goes on with the others."""


def read_input(ref: InputRef) -> bytes:
    if ref.data is not None:
        return ref.data
    if ref.uri.startswith("s3://"):
        bucket, _, key = ref.uri[len("s3://") :].partition("/")
        client = _client("s3")
        try:
            # IfMatch: the object read is the object listed (its ETag is what marks it done).
            obj = client.get_object(Bucket=bucket, Key=key, IfMatch=ref.etag)
        except client.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in _OBJECT_REFUSED:
                raise UnreadableInput(f"{ref.uri}: {exc}") from None
            raise  # throttling or an outage past the retries: the run stops, the next retries
        return bytes(obj["Body"].read())
    return Path(ref.uri).read_bytes()
