"""tenant_switching's features: the events of one actor kind and their actor-hours.

An actor is a principal, a session or a source address (``ACTOR_KINDS``); an actor-hour is one
actor's events of one hour. ``events`` reads one kind's events (with a target tenant) as
categorical codes, ``actor_hours`` turns them into ``FEATURES`` per actor-hour, ``pairs`` gives
the (actor, tenant) pairs a history has seen. Everything works on codes in numpy, so 14 days of
history (millions of rows, thousands of actors and tenants) never make a full-size copy.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detectors.evidence import HOUR_US, any_of, epoch_us
from detectors.rules import ROLE_SESSION_NAME, Rules

ACTOR_KINDS = {"principal": "actor_principal", "session": "actor_session", "ip": "source_ip"}
FEATURES = (
    "tenants",  # distinct tenants in the hour
    "new_tenants",  # tenants never seen for this actor before this hour
    "switches",  # changes of target tenant in time order
    "requests_per_tenant",
    "denied_ratio",
    "sequential_ratio",  # consecutive first-touched tenant ids that differ by one
    "over_own_max",  # tenants above this actor's busiest hour in its history
)


def events(
    frame: pd.DataFrame | pa.Table,
    kind: str,
    rules: Rules,
    *,
    aws_services: bool = True,
    exclude_ips: tuple[str, ...] = (),
    positions: bool = True,
) -> pd.DataFrame:
    """One kind's events with a target tenant, sorted by actor then time: actor, tenant
    (categoricals), hour, denied, foreign; the index is ``frame``'s if ``positions``.

    Service roles (and with ``aws_services`` AWS services acting for themselves) are no actor,
    nor (kind ``ip``) the ``exclude_ips``; ``foreign`` is a target the actor has no reason for
    (``Rules.explained``).

    Works on categorical codes in numpy: a 14-day history is millions of rows but only
    thousands of distinct actors and tenants, so strings are handled once per distinct
    value, and no full-size copy of the frame is made. ``frame`` may be an Arrow table
    (the baseline, dictionary-encoded by the lake reader): then it never becomes pandas."""
    col = ACTOR_KINDS[kind]
    principal, principals = _codes(frame, "actor_principal")
    service = rules.service_pattern(aws_services=aws_services)
    keep = ~_hits(principals, service)[principal]
    del principal
    tenant, tenants = _codes(frame, "target_tenant")
    keep &= tenant >= 0
    actor, actors = _codes(frame, col)
    keep &= actor >= 0
    if kind == "ip" and exclude_ips:
        ips = any_of([rf"^{re.escape(ip)}$" for ip in exclude_ips])
        keep &= ~_hits(actors, ips)[actor]
    idx = np.flatnonzero(keep)
    del keep
    actor, tenant = actor[idx], tenant[idx]
    t = _epoch_us(frame)[idx]
    # Sorted by actor, then time: an actor-hour is then one run of rows (see actor_hours).
    order = np.lexsort((t, actor))
    idx, actor, tenant, t = idx[order], actor[order], tenant[order], t[order]
    del order
    hour = (t // HOUR_US).astype(np.int32)  # hours since 1970 fit in 32 bits until 2215
    del t
    # "Explained" depends only on (principal, actor tenant, target): decide it per combination.
    principal, principals = _codes(frame, "actor_principal", idx)
    home, homes = _codes(frame, "actor_tenant", idx)
    combo = (principal + 1).astype(np.int64) * (len(homes) + 1) + home + 1
    combo *= len(tenants) + 1
    combo += tenant
    combo_id, distinct = pd.factorize(combo)
    del combo
    first = _first(combo_id, len(distinct))
    who = pd.DataFrame(
        {
            "actor_principal": pd.Categorical.from_codes(principal[first], principals),
            "actor_tenant": pd.Categorical.from_codes(home[first], homes),
            "target_tenant": pd.Categorical.from_codes(tenant[first], tenants),
        }
    )
    del home
    foreign = ~rules.explained(who, ROLE_SESSION_NAME).to_numpy(dtype=bool)[combo_id]
    del combo_id
    columns = {
        "actor": pd.Categorical.from_codes(actor, actors),
        "tenant": pd.Categorical.from_codes(tenant, tenants),
        "hour": hour,
        "denied": _is(frame, "outcome", "denied", idx),
        "foreign": foreign,
    }
    if kind == "session":  # a session is judged against its principal's history too
        columns["principal"] = pd.Categorical.from_codes(principal, principals)
    del principal
    return pd.DataFrame(
        columns,
        index=frame.index[idx] if positions and isinstance(frame, pd.DataFrame) else None,
    )


def actor_hours(
    ev: pd.DataFrame, seen: pd.MultiIndex | None, owners: pd.MultiIndex | None = None
) -> pd.DataFrame:
    """Per (actor, hour): FEATURES plus ``foreign`` and ``foreign_new``. ``seen`` is the
    (actor, tenant) pairs of the history; None means "new" is relative to earlier hours
    of ``ev`` itself (the history's own training rows). ``owners``, with a ``principal``
    column in ``ev`` (sessions), is the history's (principal, tenant) pairs: a tenant the
    session's principal (that of its first event in the actor-hour-tenant) already knew is
    not new either, so a fresh session inherits its principal's habits.

    ``ev`` is sorted by actor then time (``events``), so each actor-hour is a run of rows
    and each (actor, hour, tenant) first appears in the order the tenants were touched:
    runs and ``pd.factorize`` (a hash, no sort) give every feature in numpy, in a few
    passes over the codes, for millions of events."""
    cols = ["actor", "hour", "requests", "switches", "denied_ratio", "tenants"]
    cols += ["new_tenants", "foreign", "foreign_new", "sequential_ratio"]
    cols += ["requests_per_tenant"]
    n = len(ev)
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in cols})
    actors = ev["actor"].cat.categories
    hour = ev["hour"].to_numpy()
    low = int(hour.min())
    span = int(hour.max()) - low + 1
    ah = ev["actor"].cat.codes.to_numpy().astype(np.int64)  # one value per actor-hour
    ah *= span
    ah += hour
    ah -= low
    if (ah[1:] < ah[:-1]).any():
        raise ValueError("tenant_switching: events must be sorted by actor, then time")
    step = ah[1:] != ah[:-1]
    start = np.flatnonzero(np.r_[True, step])
    requests = np.diff(np.r_[start, n])
    tenant = ev["tenant"].cat.codes.to_numpy()
    switch = np.r_[False, ~step & (tenant[1:] != tenant[:-1])]
    del step
    switches = np.add.reduceat(switch, start, dtype=np.int64)
    del switch
    denied = np.add.reduceat(ev["denied"].to_numpy(dtype=bool), start, dtype=np.int64)
    # Each (actor, hour, tenant) once, in the order first touched.
    width = len(ev["tenant"].cat.categories) + 1
    ah *= width
    ah += tenant
    triple_id, triples = pd.factorize(ah)
    del ah
    t_ah, t_tenant = triples // width, triples % width
    foreign = np.zeros(len(triples), dtype=bool)
    foreign[triple_id[ev["foreign"].to_numpy(dtype=bool)]] = True
    by_owner = seen is not None and owners is not None and "principal" in ev.columns
    first_row = _first(triple_id, len(triples)) if by_owner else None
    del triple_id
    t_actor = t_ah // span
    if seen is None:
        # New: the first hour this actor touched this tenant (triples are in time order).
        pair_id, pairs = pd.factorize(t_actor * width + t_tenant)
        new = _first(pair_id, len(pairs))[pair_id] == np.arange(len(triples))
    else:
        tenants = ev["tenant"].cat.categories.astype(str)
        known = pd.MultiIndex.from_arrays([actors.astype(str)[t_actor], tenants[t_tenant]])
        new = ~known.isin(seen)
        if first_row is not None:
            # Only the triples still new are looked up (a few per cent of them).
            ask = np.flatnonzero(new)
            owner = ev["principal"].cat.codes.to_numpy()[first_row[ask]]
            names = np.append(ev["principal"].cat.categories.astype(str), "").astype(object)
            pairs_p = pd.MultiIndex.from_arrays([names[owner], tenants[t_tenant[ask]]])
            new[ask[(owner >= 0) & pairs_p.isin(owners)]] = False
    # The tenant id's trailing number, computed once per distinct tenant.
    cats = ev["tenant"].cat.categories.astype(str)
    per_cat = pd.to_numeric(cats.str.extract(r"(\d+)$")[0], errors="coerce").to_numpy()
    num = np.append(per_cat.astype(np.float64), np.nan)[t_tenant]
    seq = np.r_[False, (t_ah[1:] == t_ah[:-1]) & (np.abs(num[1:] - num[:-1]) == 1)]
    t_start = np.flatnonzero(np.r_[True, t_ah[1:] != t_ah[:-1]])
    tenants_n = np.diff(np.r_[t_start, len(triples)])

    def per_hour(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x, t_start, dtype=np.int64)

    out = pd.DataFrame(
        {
            "actor": pd.Categorical.from_codes(t_actor[t_start], actors),
            "hour": (t_ah[t_start] % span + low).astype(np.int64),
            "requests": requests.astype(np.int32),
            "switches": switches.astype(np.int32),
            "denied_ratio": denied / requests,
            "tenants": tenants_n.astype(np.int32),
            "new_tenants": per_hour(new).astype(np.int32),
            "foreign": per_hour(foreign).astype(np.int32),
            "foreign_new": per_hour(foreign & new).astype(np.int32),
            "sequential_ratio": per_hour(seq) / np.maximum(tenants_n - 1, 1),
            "requests_per_tenant": requests / tenants_n,
        }
    )
    return out


def pairs(ev: pd.DataFrame) -> pd.MultiIndex:
    """The distinct (actor, tenant) pairs of ``ev``, as strings."""
    width = len(ev["tenant"].cat.categories) + 1
    actor = ev["actor"].cat.codes.to_numpy().astype(np.int64)
    tenant = ev["tenant"].cat.codes.to_numpy().astype(np.int64)
    _, pairs = pd.factorize(actor * width + tenant)
    return pd.MultiIndex.from_arrays(
        [
            ev["actor"].cat.categories.astype(str)[pairs // width],
            ev["tenant"].cat.categories.astype(str)[pairs % width],
        ]
    )


def principal_of(ev: pd.DataFrame) -> pd.Series:
    """A session's principal (that of its first event), by session name; ``ev`` sorted by
    actor."""
    actor = ev["actor"].cat.codes.to_numpy()
    start = np.flatnonzero(np.r_[True, actor[1:] != actor[:-1]])
    owner = ev["principal"].cat.codes.to_numpy()[start]
    names = np.full(len(ev["principal"].cat.categories) + 1, None, dtype=object)
    names[:-1] = ev["principal"].cat.categories.astype(str)
    return pd.Series(names[owner], index=ev["actor"].cat.categories.astype(str)[actor[start]])


def _codes(
    frame: pd.DataFrame | pa.Table, name: str, rows: np.ndarray | None = None
) -> tuple[np.ndarray, pd.Index]:
    """A column as int32 codes (-1 where missing), at ``rows`` if given, and its categories:
    from a pandas column (categorical or not) or an Arrow one (dictionary-encoded or not)."""
    if isinstance(frame, pd.DataFrame):
        values = frame[name]
        cat = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
        codes = cat.cat.codes.to_numpy()
        return (codes if rows is None else codes[rows]).astype(np.int32), cat.cat.categories
    col = frame.column(name)
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    if not _shared_dictionary(col):
        col = pa.table({name: col}).unify_dictionaries().column(0)
    if col.num_chunks == 0:
        return np.zeros(0, np.int32), pd.Index([], dtype=object)
    categories = pd.Index(col.chunk(0).dictionary.to_pandas(), dtype=object)
    parts = [pc.fill_null(c.indices, -1).to_numpy().astype(np.int32) for c in col.chunks]
    codes = np.concatenate(parts)
    del parts
    return codes if rows is None else codes[rows], categories


def _shared_dictionary(col: pa.ChunkedArray) -> bool:
    """Whether every chunk already uses the same dictionary (``read_baseline`` unifies them):
    unifying again would hash the whole dictionary once per chunk."""
    if col.num_chunks == 0:
        return True
    first = [b.address if b is not None else 0 for b in col.chunk(0).dictionary.buffers()]
    return all(
        [b.address if b is not None else 0 for b in c.dictionary.buffers()] == first
        for c in col.chunks
    )


def _epoch_us(frame: pd.DataFrame | pa.Table) -> np.ndarray:
    if isinstance(frame, pd.DataFrame):
        return epoch_us(frame["event_time"])
    col = frame.column("event_time").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.concatenate([c.to_numpy() for c in col.chunks]) if col.num_chunks else np.zeros(0)


def _is(frame: pd.DataFrame | pa.Table, name: str, value: str, rows: np.ndarray) -> np.ndarray:
    """Where the column equals ``value``, at ``rows``."""
    codes, categories = _codes(frame, name, rows)
    hit = np.append(categories.astype(object) == value, False)
    return hit[codes]


def _hits(categories: pd.Index, pattern: str | None) -> np.ndarray:
    """Regex ``search`` per category, one more False at the end (so code -1 reads False)."""
    if pattern is None:
        return np.zeros(len(categories) + 1, dtype=bool)
    rx = re.compile(pattern)
    return np.array([bool(rx.search(str(v))) for v in categories] + [False], dtype=bool)


def _first(ids: np.ndarray, n: int) -> np.ndarray:
    """For ``pd.factorize`` codes (numbered in order of appearance), where each first occurs."""
    seen_before = np.maximum.accumulate(np.r_[-1, ids[:-1]]) if len(ids) else ids
    first = np.flatnonzero(ids > seen_before)
    assert len(first) == n
    return first


def over_previous_max(actor: np.ndarray, tenants: np.ndarray) -> np.ndarray:
    """Per row, tenants above the most its actor had in any earlier row (0 in its first row);
    rows sorted by actor. A running maximum over actor * big + tenants restarts per actor."""
    if len(actor) == 0:
        return np.zeros(0, dtype=np.int64)
    big = int(tenants.max()) + 1
    key = actor.astype(np.int64) * big + tenants
    running = np.maximum.accumulate(key) - actor.astype(np.int64) * big
    prev = np.r_[0, running[:-1]]
    prev[np.r_[True, actor[1:] != actor[:-1]]] = 0
    return np.clip(tenants - prev, 0, None)
