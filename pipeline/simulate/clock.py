"""Time formats of each log, from integer epoch seconds / milliseconds (cheap per record)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

DAY = 86_400
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# 86,400 "HH:MM:SS" strings, built once: formatting is the hottest per-record work.
_HMS = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY)]
_day_cache: dict[int, tuple[str, str]] = {}


def day_start(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _day(epoch: int) -> tuple[str, str]:
    d = epoch // DAY
    got = _day_cache.get(d)
    if got is None:
        t = time.gmtime(d * DAY)
        got = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}",
            f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}",
        )
        _day_cache[d] = got
    return got


def iso(epoch: int) -> str:
    """CloudTrail's eventTime: 2026-11-16T09:12:44Z."""
    return f"{_day(epoch)[0]}T{_HMS[epoch % DAY]}Z"


def iso_ms(epoch_ms: int) -> str:
    """CloudWatch Logs export line prefix: 2026-11-16T09:12:44.123Z."""
    s = epoch_ms // 1000
    return f"{_day(s)[0]}T{_HMS[s % DAY]}.{epoch_ms % 1000:03d}Z"


def clf(epoch: int) -> str:
    """API Gateway's $context.requestTime: 16/Nov/2026:09:12:44 +0000."""
    return f"{_day(epoch)[1]}:{_HMS[epoch % DAY]} +0000"


def powertools(epoch_ms: int) -> str:
    """Powertools Logger's default timestamp: 2026-11-16 09:12:44,123+0000."""
    s = epoch_ms // 1000
    return f"{_day(s)[0]} {_HMS[s % DAY]},{epoch_ms % 1000:03d}+0000"


def compact(epoch: int, seconds: bool = False) -> str:
    """File-name stamps: 20261116T0910Z (logs) or 20261116T091031Z (digests)."""
    t = time.gmtime(epoch)
    base = f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}T{t.tm_hour:02d}{t.tm_min:02d}"
    return f"{base}{t.tm_sec:02d}Z" if seconds else f"{base}Z"


def ymd_path(epoch: int) -> str:
    return _day(epoch)[0].replace("-", "/")
