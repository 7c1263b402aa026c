"""Where a batch's rows go once a chunk of them is done, and the array helpers every kind of row
uses.

Rows leave Python for Arrow a chunk at a time: ``CHUNK_RECORDS`` records or ``CHUNK_BYTES`` of
raw text, whichever comes first. A chunk that raises is done again record by record
(``Output.one_by_one``), so the record that raised is quarantined alone and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import accumulate
from typing import Any

import msgspec
import pyarrow as pa

from pipeline.ingest import normalize
from pipeline.ingest.quarantine import Quarantined, QuarantineLog

CHUNK_RECORDS = 4096
CHUNK_BYTES = 64 << 20
S = pa.string()
# (access key id, tags, start time as logged) of an AssumeRole* call that started a session
Session = tuple[str, dict[str, str], str | None]


class Output:
    """One batch's finished chunks (tables, in the order they were done), its quarantine, and
    the sessions its AssumeRole* calls started, in input order."""

    def __init__(self, quarantine: QuarantineLog) -> None:
        self.quarantine = quarantine
        self.tables: list[pa.Table] = []
        self.sessions: list[Session] = []

    def keep(
        self, entries: list[Quarantined], sessions: list[Session], table: pa.Table | None
    ) -> None:
        """A chunk's results, kept together once the chunk is done."""
        for e in entries:
            self.quarantine.append(e)
        self.sessions += sessions
        if table is not None:
            self.tables.append(table)

    def one_by_one(
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


def pick(items: list[Any], which: list[int]) -> list[Any]:
    """``items`` at ``which``: all of them (no copy), or some when a chunk is retried."""
    return items if len(which) == len(items) else [items[i] for i in which]


def table(cols: dict[str, pa.Array], uris: pa.Array, wide: pa.Schema) -> pa.Table:
    """A chunk's columns as rows of ``wide`` (``Reading.wide``), with their inputs and content
    hashes; a column the chunk lacks is null."""
    cols["input_uri"] = uris
    cols["record_hash"] = normalize.record_hashes(cols)
    n = len(uris)
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in wide]
    return pa.Table.from_arrays(arrays, schema=wide)


def strings(parts: list[bytes] | list[msgspec.Raw]) -> pa.Array:
    """A string array over the parts laid end to end (one join, no per-part Arrow calls). The
    parts are known UTF-8: their files were checked before decoding."""
    offsets = pa.array(accumulate(map(len, parts), initial=0), pa.int64())
    data = pa.py_buffer(b"".join(parts))
    text = pa.Array.from_buffers(pa.large_string(), len(parts), [None, offsets.buffers()[1], data])
    return text.cast(S)  # 64-bit offsets first, so a chunk past 2 GiB fails loudly
