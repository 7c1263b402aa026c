"""What the lake has already seen, as ingestion asks it: which partition of ``_state/ingested``
records an input (``ingested_partition``, from its uri alone) and the dedup keys of the events
already in each hour partition (``SeenIndex``)."""

from __future__ import annotations

import hashlib
import posixpath
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa

from pipeline.ingest import prepare
from pipeline.ingest.sources import key_date
from pipeline.lake import Lake

_S = pa.string()


def ingested_partition(uri: str) -> str:
    """The partition of ``_state/ingested`` that records the input ``uri``, from the uri alone,
    so a run opens only its inputs' partitions and an input delivered again finds its record:
    the day of a CloudWatch Logs chunk's first event, else the day in the key's delivery
    layout (``.../YYYY/MM/DD/...``: CloudTrail, Firehose, CloudWatch Logs exports), else a
    hash of the folder the input is in."""
    if uri.startswith("logs://") and "#" in uri:
        first = uri.rsplit("#", 1)[1].split("-", 1)[0]
        try:
            return f"date={datetime.fromtimestamp(int(first) / 1000, UTC):%Y-%m-%d}"
        except (ValueError, OverflowError, OSError):
            pass
    day = key_date(uri)
    if day is not None:
        return f"date={day:%Y-%m-%d}"
    folder = uri.rsplit("/", 1)[0]
    return f"prefix={hashlib.sha256(folder.encode()).hexdigest()[:16]}"


_DEDUP_COLUMNS = pa.schema([("event_id", _S), ("record_hash", _S)])

# The dedup keys of event files read last in this process, by lake, partition, file and size,
# least recently used first, at most ``_FILE_KEYS_MAX`` keys: a warm function ingesting object
# after object into the same hour reads only the files written since it last looked, not the
# hour's every file again. An event file's name is its batch's id (a hash of the batch's
# inputs) or, compacted, a hash of the names it replaces, so a file of that name holds the same
# events whichever run wrote it (a batch written again after a failed run may hold fewer, those
# another batch wrote meanwhile, whose keys are in the lake either way); a compaction's deleted
# files are no longer listed, and so no longer asked for.
_FILE_KEYS: OrderedDict[tuple[str, str, str, int | None], pa.Array] = OrderedDict()
_FILE_KEYS_MAX = 1_000_000
_file_keys_size = 0


def file_keys(lake: Lake, partition: str, rel: str) -> pa.Array:
    """The dedup keys of the rows of the event hour ``partition`` in ``rel``, read once per
    process (see ``_FILE_KEYS``)."""
    global _file_keys_size
    key = (lake.root, partition, rel, lake.size(rel))
    got = _FILE_KEYS.get(key)
    if got is not None:
        _FILE_KEYS.move_to_end(key)
        return got
    got = prepare.dedup_key(lake.read_event_hour(partition, rel, _DEDUP_COLUMNS.names))
    if isinstance(got, pa.ChunkedArray):
        got = got.combine_chunks()
    _FILE_KEYS[key] = got
    _file_keys_size += len(got)
    while _file_keys_size > _FILE_KEYS_MAX and len(_FILE_KEYS) > 1:
        _, dropped = _FILE_KEYS.popitem(last=False)
        _file_keys_size -= len(dropped)
    return got


class SeenIndex:
    """Dedup keys already in the lake, per partition: read from its files on first touch, kept up
    to date as this run writes. Memory is bounded: past ``budget`` keys the least recently used
    partitions are forgotten (and re-read if touched again; CloudTrail arrives roughly in time
    order, so that is rare).

    Every file in a partition counts, as it does for readers, but those of this run's own
    batches that it has not planned yet (``counts``): a run that died may have written them
    ahead, or a run beside this one over the same inputs may be writing them, and counted before
    their batch is planned they would make its rows duplicates of themselves."""

    def __init__(self, lake: Lake, budget: int = 2_000_000) -> None:
        self.lake = lake
        self.budget = budget
        self.mine: set[str] = set()  # all this run's batches
        self.planned: set[str] = set()  # those planned so far
        self._parts: OrderedDict[str, pa.ChunkedArray] = OrderedDict()
        self._size = 0

    def counts(self, rel: str) -> bool:
        """Do the rows of the partition file ``rel`` count as in the lake?"""
        batch = posixpath.basename(rel).removeprefix("part-").removesuffix(".parquet")
        return batch not in self.mine or batch in self.planned

    def keys(
        self, partition: str, own_file: str, wait: Callable[[str], None] | None = None
    ) -> pa.ChunkedArray:
        """The partition's keys, except those in this batch's own (re-written) file. Read from
        the lake on first touch (or after being forgotten), after ``wait(partition)``."""
        if partition in self._parts:
            self._parts.move_to_end(partition)
            return self._parts[partition]
        if wait is not None:
            wait(partition)
        keys = self.in_lake(partition, own_file)
        self._put(partition, keys)
        return keys

    def in_lake(self, partition: str, own_file: str | None = None) -> pa.ChunkedArray:
        """The keys of the partition's files in the lake that count, but ``own_file``."""
        chunks = [
            file_keys(self.lake, partition, f)
            for f in self.lake.event_hour_files(partition)
            if (own_file is None or not f.endswith(own_file)) and self.counts(f)
        ]
        return pa.chunked_array(chunks, _S)

    def add(self, partition: str, new: pa.ChunkedArray) -> None:
        old = self._parts.pop(partition, pa.chunked_array([], _S))
        self._size -= len(old)
        self._put(partition, pa.chunked_array(old.chunks + new.chunks, _S))

    def _put(self, partition: str, keys: pa.ChunkedArray) -> None:
        self._parts[partition] = keys
        self._size += len(keys)
        while self._size > self.budget and len(self._parts) > 1:
            _, dropped = self._parts.popitem(last=False)
            self._size -= len(dropped)
