"""What detectors share to read the window and describe a finding: column helpers, grouping
(``positions``, ``request_keys``, ``fold``), which API requests the authorizer's cache answered
(``cache_answers``) and the evidence every finding carries (``evidence``).

Nothing here knows a detector: the base class (``detectors.base``) builds each finding's evidence
with ``evidence``, and the detectors call the rest while scoring.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pandas as pd

from pipeline import schema

SAMPLE_IDS = 50  # sample event ids per finding: enough to open the incident, small in SNS
HOUR_US = 3_600_000_000


def text(series: pd.Series) -> pd.Series:
    """A categorical or string column as plain objects (for comparisons across frames)."""
    return series.astype(object).where(series.notna(), None)


def match(series: pd.Series, pattern: str | None, group: str | None = None) -> pd.Series:
    """Regex ``search`` over a (categorical) column, run once per distinct value: a boolean
    mask, or with ``group`` the captured text (None where no match)."""
    if pattern is None:
        return pd.Series(False if group is None else None, index=series.index, dtype=object)
    rx = re.compile(pattern)
    values = series.astype("category")
    cats = values.cat.categories
    if group is None:
        hits = np.array([bool(rx.search(str(v))) for v in cats] + [False])
        return pd.Series(hits[values.cat.codes.to_numpy()], index=series.index)
    found = []
    for v in cats:
        m = rx.search(str(v))
        found.append(m.group(group) if m else None)
    arr = np.array([*found, None], dtype=object)
    return pd.Series(arr[values.cat.codes.to_numpy()], index=series.index)


def any_of(patterns: list[str]) -> str | None:
    return "|".join(f"(?:{p})" for p in patterns) if patterns else None


def positions(frame: pd.DataFrame, by: list[str]) -> pd.Series:
    """Each group's events as window positions: ``frame``'s index must be the window's
    (a RangeIndex), which stays true through boolean filtering."""
    index = frame.index.to_numpy()
    grouped = frame.groupby(by, observed=True, sort=True)
    return pd.Series({k: index[v] for k, v in grouped.indices.items()}, dtype=object)


def evidence(rows: pd.DataFrame, details: Any) -> str:
    """A finding's evidence as sorted JSON: the top actions, addresses, user agents, outcomes and
    sources of its events, sample event ids (and request ids), with ``details`` merged in."""

    def top(col: str, n: int = 5) -> list[list[Any]]:
        if col not in rows:
            return []
        counts = rows[col].astype(object).dropna().value_counts()
        counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        return [[str(k), int(v)] for k, v in counts.head(n).items()]

    # By time, then id as text: a categorical sorts by its dictionary's order, which is the
    # order the lake's files gave it, and compaction changes that.
    ordered = rows.assign(_id=rows["event_id"].astype(object)).sort_values(
        ["event_time", "_id"], kind="stable"
    )
    ev: dict[str, Any] = {
        "top_actions": top("action"),
        "source_ips": top("source_ip"),
        "user_agents": top("user_agent", 3),
        "outcomes": dict(top("outcome")),
        "sources": dict(top("source")),
        "event_ids": [str(x) for x in ordered["event_id"].head(SAMPLE_IDS)],
    }
    if "request_id" in rows:
        # API requests: the id shared by the access log and the authorizer log (joins them).
        req = text(ordered["request_id"]).dropna()
        ev["request_ids"] = [str(x) for x in req.drop_duplicates().head(SAMPLE_IDS)]
    if isinstance(details, Mapping):
        ev.update(details)
    return orjson.dumps(ev, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def most(values: pd.Series, n: int) -> dict[str, int]:
    """The ``n`` most frequent values (nulls left out) with their counts, ties by value: never
    by the order the rows came in."""
    counts = values.astype(object).dropna().value_counts()
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    return {str(k): int(v) for k, v in counts.head(n).items()}


def describe_hours(hours: float) -> str:
    return f"{hours / 24:.0f} d" if hours >= 48 else f"{hours:.0f} h"


def severity_max(values: pd.Series) -> str:
    return schema.SEVERITIES[int(values.map(schema.SEVERITY_RANK).max())]


def epoch_us(times: pd.Series) -> np.ndarray:
    """A tz-aware datetime column as int64 microseconds since the epoch (UTC)."""
    # ``asi8`` of a tz-aware array is already UTC: no converted copy of millions of stamps.
    return np.asarray(pd.DatetimeIndex(times).as_unit("us").asi8)


def request_keys(window: pd.DataFrame) -> np.ndarray:
    """One key per request: an API request logged by both API Gateway and the authorizer has
    the same ``request_id``; other events are their own request."""
    ids = text(window["event_id"])
    if "request_id" in window:
        ids = text(window["request_id"]).fillna(ids)
    return ids.to_numpy(dtype=object)


def cache_answers(
    frame: pd.DataFrame, *, part: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per row, (hit, miss): an API Gateway request answered from API Gateway's authorizer
    cache, or one the authorizer decided itself.

    The authorizer's log has a line for each decision it made, with the request id of the
    request it decided (the access log's ``requestId``). A request that names an authorizer
    principal (the context API Gateway passed on, a cached one included) but has no decision of
    its own was answered from the cache: the authorizer did not run, which the access log also
    shows as ``authorizerLatency`` ``-``. A request with a decision is a miss, whatever its
    principal (an expired token's ``Unauthorized`` names none). Requests the authorizer never
    guards (a login route) are neither.

    None when the events hold no authorizer decision at all: the authorizer's log is not
    ingested (or not in these events), and a hit cannot be told from a miss. ``part``: the
    events are a part of a larger set (every event of a request together) whose decisions may
    lie in other parts; the answer is then given whatever this part holds."""
    src = text(frame["source"]).to_numpy(dtype=object)
    is_auth = src == "authorizer"
    if not is_auth.any() and not part:
        return None
    request = text(frame["request_id"])
    decided = request[is_auth].dropna()
    access = src == "apigateway"
    own = request.isin(decided).to_numpy(dtype=bool) & access
    named = text(frame["actor_principal"]).notna().to_numpy(dtype=bool)
    return access & named & ~own, own


def fold(groups: list[dict[str, Any]], keys: np.ndarray, overlap: float) -> list[dict[str, Any]]:
    """Keep groups in the given order; a group whose requests lie mostly (``overlap``) inside a
    kept group's is not reported on its own but listed in that group's ``details["also"]``."""
    kept: list[dict[str, Any]] = []
    for g in groups:
        mine = keys[np.asarray(g["rows"], dtype=np.int64)]
        home = next((k for k in kept if np.isin(mine, k["_keys"]).mean() >= overlap), None)
        if home is not None:
            home["details"]["also"].append(g["key"])
            continue
        g["_keys"] = mine
        kept.append(g)
    for g in kept:
        del g["_keys"]
    return kept
