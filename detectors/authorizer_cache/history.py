"""What ``authorizer_cache`` learns from its 14 days of history, summarized in parts.

The history is most of what the detector reads (every API request and authorizer decision of
14 days), yet all it keeps of it is counts: the misses of each API, route and tenant per hour,
the requests and misses of each route and of each tenant, and the last decision of each token
in the hour before the window. Counts add up, so the history can be summarized in parts (by
request id, which keeps a request with its decision) and the parts' rows summed
(``SUMMARY``, ``MERGE``): a runner on many machines then never holds the history in one place
(``detectors.base.TwoStep``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from detectors.authorizer_cache.requests import SEP, key, requests
from detectors.base import to_frame
from detectors.evidence import HOUR_US, text

# One row per count; ``kind``:
# - ``decided``: authorizer decisions in the part (``n``); none anywhere: nothing is learnt;
# - ``count``: misses (``n``) of the surge group ``key`` in the hour ``hour`` (since the epoch);
# - ``route`` / ``tenant``: requests (``n``) and misses of an API's route, or of its tenant;
# - ``token``: a token's last decision (``last``, µs) in the ``token_memory_s`` before the window.
SUMMARY = pa.schema(
    [
        ("kind", pa.string()),
        ("key", pa.string()),
        ("hour", pa.int64()),
        ("n", pa.int64()),
        ("misses", pa.int64()),
        ("last", pa.int64()),
        ("rank", pa.float64()),  # always null: nothing is sampled
    ]
)
# How the rows of several parts combine: rows alike in every other column are one.
MERGE = {"n": "sum", "misses": "sum", "last": "max"}
SHARES = {"route": ["service", "route"], "tenant": ["service", "tenant"]}


@dataclass(frozen=True)
class Span:
    """The history's hours: the first (since the epoch), how many, and its end (µs)."""

    first_hour: int
    hours: int
    end_us: int | None

    @classmethod
    def of(cls, span: tuple[datetime, datetime] | None) -> Span:
        p0, p1 = span if span is not None else (None, None)
        if p0 is None or p1 is None or p1 <= p0:
            return cls(0, 0, None)
        end_us = int(pd.Timestamp(p1).value // 1000)
        first = int(pd.Timestamp(p0).floor("h").value // 1000 // HOUR_US)
        return cls(first, max(end_us // HOUR_US - first, 0), end_us)


def _rows(kind: str, **columns: Any) -> pa.Table:
    n = len(next(iter(columns.values())))
    arrays = [
        pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
        for f in SUMMARY
    ]
    arrays[0] = pa.array([kind] * n, pa.string())
    return pa.Table.from_arrays(arrays, schema=SUMMARY)


def summarize(
    baseline: pd.DataFrame | pa.Table,
    sources: tuple[str, ...],
    span: Span,
    token_memory_us: int,
) -> pa.Table:
    """The ``SUMMARY`` rows of a part of the history (whole requests: every line of a request
    id in the same part), of the hours of ``span``."""
    if span.hours == 0 or not len(baseline):
        return SUMMARY.empty_table()
    frame = to_frame(baseline) if isinstance(baseline, pa.Table) else baseline
    mine = text(frame["source"]).isin(sources).to_numpy()
    frame = frame[mine].reset_index(drop=True) if not mine.all() else frame.copy(deep=False)
    for c in ("actor_tenant", "outcome", "source_ip", "user_agent"):
        frame[c] = None  # not read from the history
    decided = int((text(frame["source"]) == "authorizer").sum())
    parts = [_rows("decided", n=[decided])]
    req = requests(frame, part=True)
    assert req is not None
    hour = req["t"] // HOUR_US
    inside = ((hour >= span.first_hour) & (hour < span.first_hour + span.hours)).to_numpy()
    req, hour = req[inside], hour[inside]
    misses = req[req["miss"]]
    counts = misses.groupby([key(misses), hour[req["miss"]]]).size()
    parts.append(
        _rows(
            "count",
            key=counts.index.get_level_values(0).to_numpy(dtype=object),
            hour=counts.index.get_level_values(1).to_numpy(dtype=np.int64),
            n=counts.to_numpy(dtype=np.int64),
        )
    )
    for kind, cols in SHARES.items():
        g = req.groupby(cols, observed=True, dropna=False)["miss"]
        sizes, missed = g.size(), g.sum()
        parts.append(
            _rows(
                kind,
                key=[SEP.join(map(str, k)) for k in sizes.index],
                n=sizes.to_numpy(dtype=np.int64),
                misses=missed.reindex(sizes.index).to_numpy(dtype=np.int64),
            )
        )
    if span.end_us is not None:
        recent = misses[misses["t"] >= span.end_us - token_memory_us]
        last = recent.dropna(subset=["token"]).groupby("token")["t"].max()
        parts.append(
            _rows("token", key=last.index.to_numpy(dtype=object), last=last.to_numpy(np.int64))
        )
    return pa.concat_tables(parts)


@dataclass
class Learnt:
    """What ``score`` compares with: misses per surge group and hour of the history (hours
    since its first), the usual miss share of each route and tenant (of at least 20
    requests), and the tokens decided just before the window."""

    counts: pd.Series
    shares: dict[str, dict[str, float]]
    tokens: dict[str, int]

    @classmethod
    def empty(cls) -> Learnt:
        return cls(pd.Series(dtype=np.float64), {kind: {} for kind in SHARES}, {})


def absorb(state: pa.Table, span: Span) -> Learnt:
    """The ``SUMMARY`` rows of every part (merged or not) as what the detector learnt."""
    frame = state.to_pandas()
    kind = frame["kind"]
    if span.hours == 0 or not frame.loc[kind == "decided", "n"].sum():
        return Learnt.empty()
    c = frame[kind == "count"]
    counts = c.groupby([c["key"], c["hour"] - span.first_hour])["n"].sum().astype(np.float64)
    shares: dict[str, dict[str, float]] = {}
    for name in SHARES:
        g = frame[kind == name].groupby("key")[["n", "misses"]].sum()
        g = g[g["n"] >= 20]  # a share of a handful of requests says nothing
        shares[name] = {
            str(k): float(m / n) for k, n, m in zip(g.index, g["n"], g["misses"], strict=True)
        }
    t = frame[kind == "token"]
    tokens = {str(k): int(v) for k, v in t.groupby("key")["last"].max().items()}
    return Learnt(counts, shares, tokens)
