"""The API requests the authorizer guards, each with its decision (joined by request id), as both
the window's scoring and the history's summary read them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.evidence import cache_answers, epoch_us, text

SEP = "\x1f"


def requests(frame: pd.DataFrame, *, part: bool = False) -> pd.DataFrame | None:
    """The API requests the authorizer guards, one row per access-log line (index: its
    position), with ``miss``, the decision's position (``decision``, -1 for a hit) and token,
    and the group columns. None when there is no authorizer decision at all, unless ``part``:
    the events are a part of the history whose other parts may hold decisions (every
    request named by a principal is then a hit, ``cache_answers``)."""
    answers = cache_answers(frame, part=part)
    if answers is None:
        return None
    hit, miss = answers
    src = text(frame["source"])
    auth = frame[(src == "authorizer").to_numpy()]
    by_request = pd.Series(auth.index.to_numpy(), index=text(auth["request_id"]).to_numpy())
    by_request = by_request[by_request.index.notna() & ~by_request.index.duplicated()]
    rows = frame[hit | miss]
    decision = text(rows["request_id"]).map(by_request)
    decision = decision.where(miss[rows.index.to_numpy()], np.nan).fillna(-1).astype(np.int64)
    token = pd.Series(None, index=rows.index, dtype=object)
    has = (decision >= 0).to_numpy()
    token[has] = text(frame["actor_session"]).to_numpy(dtype=object)[decision[has].to_numpy()]
    status = pd.to_numeric(rows["status_code"], errors="coerce")
    return pd.DataFrame(
        {
            "t": epoch_us(rows["event_time"]),
            "service": text(rows["service"]).fillna("-"),
            "route": text(rows["action"]).fillna("-"),
            "tenant": text(rows["target_tenant"]),
            "principal": text(rows["actor_principal"]),
            "actor_tenant": text(rows["actor_tenant"]),
            "ip": text(rows["source_ip"]).fillna(""),
            "ua": text(rows["user_agent"]).fillna(""),
            "ok": (status < 400).to_numpy(dtype=bool),
            "miss": miss[rows.index.to_numpy()],
            "decision": decision,
            "token": token,
        },
        index=rows.index,
    )


def key(req: pd.DataFrame) -> pd.Series:
    """A miss surge's group per request: API and stage, route, path tenant (``-``: none)."""
    return req["service"] + SEP + req["route"] + SEP + req["tenant"].fillna("-")


def fresh(req: pd.DataFrame, known: dict[str, int], memory_us: int) -> pd.Series:
    """Per miss: its token had no decision in the ``memory_us`` before (``known``: the last
    decision of each token in the history just before the window)."""
    dec = req[req["miss"] & req["token"].notna()].sort_values("t", kind="stable")
    prev = dec.groupby("token", sort=False)["t"].shift(1)
    first = prev.isna()
    prev[first] = dec.loc[first, "token"].map(known)
    return (prev.isna() | (dec["t"] - prev > memory_us)).reindex(req.index, fill_value=False)
