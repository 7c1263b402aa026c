"""Event times from every source into timestamp[us, UTC], vectorised where the format is common.

CloudTrail's own format (``2026-11-16T09:12:44Z``) and epoch milliseconds are parsed by Arrow in
one call per batch; everything else (fractions, a space instead of ``T``, no zone, API Gateway's
``16/Nov/2026:09:12:44 +0000``, Powertools' ``2026-11-16 09:12:44,123+0000``) falls back to Python
per value. A value no format accepts becomes null and its record is quarantined by the caller.
Times without a zone are taken as UTC: every AWS log here is written in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

TS = pa.timestamp("us", tz="UTC")
_CLF = "%d/%b/%Y:%H:%M:%S %z"
_FRACTION = re.compile(r"([.,]\d{6})\d+")
# Sane bounds: a year outside them is a broken record, not an event.
_MIN = datetime(2000, 1, 1, tzinfo=UTC)
_MAX = datetime(2100, 1, 1, tzinfo=UTC)


def parse_one(text: str) -> datetime | None:
    s = text.strip()
    if not s:
        return None
    dt: datetime
    if s.isdigit() and 10 <= len(s) <= 13:
        n = int(s)
        dt = datetime.fromtimestamp(n / 1000 if len(s) == 13 else n, tz=UTC)
    else:
        if "/" in s[:7]:
            try:
                dt = datetime.strptime(s, _CLF)
            except ValueError:
                return None
        else:
            s = _FRACTION.sub(r"\1", s.replace(",", ".", 1) if "," in s else s)
            try:
                dt = datetime.fromisoformat(s)
            except ValueError:
                return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt if _MIN <= dt < _MAX else None


def parse_times(texts: pa.Array) -> pa.Array:
    """timestamp[us, UTC] for each string; null where no known format applies."""
    out = pc.strptime(texts, "%Y-%m-%dT%H:%M:%SZ", "us", error_is_null=True)
    missing = pc.and_(pc.is_null(out), pc.is_valid(texts))
    if pc.any(missing).as_py():
        values = out.to_pylist()
        for i in pc.indices_nonzero(missing).to_pylist():
            values[i] = parse_one(texts[i].as_py())
        out = pa.array(values, TS)
    else:
        out = out.cast(TS)
    # Out-of-range values from the fast path are nulled the same way as the slow path's.
    lo, hi = pa.scalar(_MIN, TS), pa.scalar(_MAX, TS)
    in_range = pc.and_(pc.greater_equal(out, lo), pc.less(out, hi))
    return pc.if_else(in_range, out, pa.scalar(None, TS))
