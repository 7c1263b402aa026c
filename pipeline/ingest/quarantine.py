"""The quarantine of a batch: what could not be used, with its reason, in bounded memory.

A quarantine entry keeps its raw text. Two kinds keep only its first ``max_record_bytes``, the
detail saying how many of how many (``kept``): a gzip stream that broke or was stopped (the text
decompressed until then) and a record over ``max_record_bytes`` (``too_large``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow as pa

# A quarantine entry is kept one by one while its input has had fewer than KEPT_PER_INPUT and its
# batch fewer than KEPT_PER_BATCH; past either, an input's further entries of one reason are
# gathered into one entry that says how many records it stands for, keeping their first bytes
# (GATHERED_RAW_BYTES a batch in all). A few kilobytes of gzip can inflate to millions of bad
# lines, and an entry a line costs a few hundred bytes: kept one by one, they would take
# gigabytes; gathered, a batch's quarantine stays within some megabytes, and every record is
# still counted, under its reason.
KEPT_PER_INPUT = 1_000
KEPT_PER_BATCH = 10_000
GATHERED_RAW_BYTES = 8 << 20


class Quarantined(NamedTuple):
    input_uri: str
    position: int  # record index / line number; -1: the whole input
    reason: str
    detail: str
    raw: bytes
    records: int = 1  # the input records it stands for (more than 1: gathered)


@dataclass
class _Gathered:
    first: int
    last: int = -1
    records: int = 0
    size: int = 0  # bytes of raw text the records had
    raw: bytearray = field(default_factory=bytearray)


class QuarantineLog:
    """A batch's quarantine entries as they come (``append`` of a 5-tuple, as ``Quarantined``
    without ``records``), bounded as ``KEPT_PER_INPUT`` says."""

    def __init__(self, keep: int) -> None:
        self.keep = keep  # ingest.max_record_bytes: the most raw text a gathered entry keeps
        self.entries: list[Quarantined] = []
        self._per_input: Counter[str] = Counter()
        self._gathered: dict[tuple[str, str], _Gathered] = {}
        self._raw_budget = GATHERED_RAW_BYTES

    def append(self, entry: tuple[str, int, str, str, bytes] | Quarantined) -> None:
        uri, position, reason, detail, raw = entry[:5]
        seen = self._per_input[uri]
        self._per_input[uri] = seen + 1
        if seen < KEPT_PER_INPUT and len(self.entries) < KEPT_PER_BATCH:
            self.entries.append(Quarantined(uri, position, reason, detail, raw))
            return
        g = self._gathered.get((uri, reason))
        if g is None:
            g = self._gathered[(uri, reason)] = _Gathered(position)
        g.last, g.records, g.size = position, g.records + 1, g.size + len(raw)
        room = min(self.keep - len(g.raw), self._raw_budget)
        if room > 0:
            piece = raw[:room] + b"\n"
            g.raw += piece
            self._raw_budget -= len(piece)

    def finish(self) -> list[Quarantined]:
        """The entries kept one by one, then one gathered entry per input and reason (the
        caller puts them in input order)."""
        out = list(self.entries)
        for (uri, reason), g in self._gathered.items():
            detail = (
                f"{g.records:,} more records of this input quarantined as {reason} (positions "
                f"{g.first}..{g.last}), gathered into one entry: a quarantine keeps "
                f"{KEPT_PER_INPUT:,} entries an input ({KEPT_PER_BATCH:,} a batch) one by one; "
                f"raw keeps the first {len(g.raw):,} bytes of their {g.size:,}, a line each"
            )
            out.append(Quarantined(uri, g.first, reason, detail, bytes(g.raw), g.records))
        return out


def kept(
    uri: str, position: int, reason: str, detail: str, raw: bytes | pa.Buffer, keep: int
) -> Quarantined:
    """A quarantine entry with the first ``keep`` bytes of ``raw`` (bytes or an Arrow buffer,
    sliced before it is copied); the detail says what was cut."""
    if len(raw) > keep:
        detail = f"{detail}; raw keeps the first {keep:,} of {len(raw):,} bytes"
        raw = raw[:keep]
    return Quarantined(uri, position, reason, detail, bytes(raw))


def too_large(uri: str, position: int, raw: bytes | pa.Buffer, keep: int) -> Quarantined:
    """A record over ``max_record_bytes`` (``keep``), alike by both decoders."""
    detail = f"over ingest.max_record_bytes ({keep:,})"
    return kept(uri, position, "record_too_large", detail, raw, keep)
