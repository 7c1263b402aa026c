"""Event times from every source into timestamp[us, UTC], vectorised where the format is common.

CloudTrail's own format (``2026-11-16T09:12:44Z``) and epoch milliseconds are parsed by Arrow in
one call per batch; everything else (fractions, a space instead of ``T``, no zone, API Gateway's
``16/Nov/2026:09:12:44 +0000``, Powertools' ``2026-11-16 09:12:44,123+0000``) falls back to Python
per value. A value no format accepts, or one outside the bounds below, becomes null and its
record is quarantined by the caller; no value raises. Times without a zone are taken as UTC: every
AWS log here is written in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

TS = pa.timestamp("us", tz="UTC")
_CLF = "%d/%b/%Y:%H:%M:%S %z"
_FRACTION = re.compile(r"([.,]\d{6})\d+")
# Sane bounds: a year outside them is a broken record, not an event.
_MIN = datetime(2000, 1, 1, tzinfo=UTC)
_MAX = datetime(2100, 1, 1, tzinfo=UTC)


def parse_one(text: str) -> datetime | None:
    try:
        dt = _parse(text.strip())
    except (ValueError, OverflowError, OSError):
        # No such date, or one that only exists west of UTC (9999-12-31T23:59:59-01:00 is in
        # year 10000 there), or a platform's time functions refusing it.
        return None
    return dt if dt is not None and _MIN <= dt < _MAX else None


def as_time(value: datetime | str | None) -> datetime | None:
    """An ISO date or date-time given by a person (``--since``, a notebook's window), or a
    datetime, as an aware UTC datetime (no zone: UTC); None stays None. A ``ValueError`` for text
    no format accepts."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    parsed = parse_one(value)
    if parsed is None:
        raise ValueError(f"expected an ISO date or date-time, got {value!r}")
    return parsed


_DURATION = re.compile(r"(?P<n>[1-9]\d{0,4})(?P<unit>[mhdw])")
_UNITS = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


def duration(text: str) -> timedelta:
    """A length of time a person gives: a whole number of minutes, hours, days or weeks
    (``30m``, ``4h``, ``2d``, ``1w``); ``ValueError`` otherwise."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise ValueError(f"expected a duration such as 30m, 4h or 2d, got {text!r}")
    return int(m["n"]) * _UNITS[m["unit"]]


def _parse(s: str) -> datetime | None:
    if not s:
        return None
    dt: datetime
    # ASCII digits only: str.isdigit is also true of superscripts, which int() refuses.
    if s.isascii() and s.isdigit() and 10 <= len(s) <= 13:
        n = int(s)
        dt = datetime.fromtimestamp(n / 1000 if len(s) == 13 else n, tz=UTC)
    elif "/" in s[:7]:
        dt = datetime.strptime(s, _CLF)
    else:
        dt = datetime.fromisoformat(_FRACTION.sub(r"\1", s.replace(",", ".", 1)))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_times(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """timestamp[us, UTC] for each string; null where no known format applies."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    # Bounded before anything becomes a Python datetime: Arrow parses year 0, Python has none.
    out = _bounded(pc.strptime(texts, "%Y-%m-%dT%H:%M:%SZ", "us", error_is_null=True).cast(TS))
    missing = pc.and_(pc.is_null(out), pc.is_valid(texts))
    if pc.any(missing).as_py():
        slow = [parse_one(t) for t in texts.filter(missing).to_pylist()]
        out = pc.replace_with_mask(out, missing, pa.array(slow, TS))
    return out


def _bounded(when: pa.Array) -> pa.Array:
    lo, hi = pa.scalar(_MIN, TS), pa.scalar(_MAX, TS)
    in_range = pc.and_(pc.greater_equal(when, lo), pc.less(when, hi))
    return pc.if_else(in_range, when, pa.scalar(None, TS))
