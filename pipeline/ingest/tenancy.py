"""Resolve every row's actor tenant and target tenant from the configured strategies, vectorised.

Strategies are tried in the configured order of trust; the first that yields a value wins and
the row records its kind (``actor_tenant_source``). When a later strategy yields a *different*
value, or one ``[*]`` path yields two, the row keeps the winner and records the disagreement in
``tenant_conflict``: ambiguity is never silently resolved (docs/ARCHITECTURE.md, "Tenant
resolution").

What each strategy makes of a column is ``strategies``. Only the session strategies need the
run's history, so resolution comes in two steps: ``prepare``, where a batch was decoded, for
everything else, and ``finish``, in batch order, for the sessions and for combining the actor
side. ``session_tag`` reads the tags of the ``AssumeRole*`` that started the session (joined by
access key id, ``sessions.SessionMap``); ``session_origin`` the tenant resolved for that
``AssumeRole*`` call itself, which ``finish`` learns as it goes: a batch's ``AssumeRole*`` calls
are resolved in rounds, a call only once the session that made it is settled, so a chain of roles
keeps its first origin whatever the order of its calls in the batch.

Break-glass tickets are resolved here too (``actor_ticket``): for rows of a break-glass
principal, the ticket is the session tag ``ticket_tag`` if set, else what ``ticket_pattern``
finds in the role session name. Whether the ticket is valid is the detector's question.

``diagnose`` says, per strategy and row, what the strategy made of the row and why it gave no
tenant (``tenantwatch tenancy explain`` and ``report``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import config as c
from pipeline.ingest import strategies
from pipeline.ingest.reading import Reading
from pipeline.ingest.sessions import (
    CLOCK_SKEW,
    ORIGIN,
    SESSION_ROWS,
    STATE,
    SessionMap,
    session_rows,
    state_rows,
)
from pipeline.ingest.strategies import SESSION_KINDS, Trace, kind_of

__all__ = [
    "ORIGIN",
    "SESSION_ROWS",
    "STATE",
    "Diagnosis",
    "SessionMap",
    "diagnose",
    "finish",
    "kind_of",
    "prepare",
    "session_rows",
    "session_tags",
    "state_rows",
]

_S = pa.string()


def _session_values(t: pa.Table, tag: str, sessions: SessionMap) -> pa.Array:
    """Per row, the value of ``tag`` of the session it belongs to (by ``actor_session``), while
    the session lives: from its start (less some clock skew between services) until the longest
    session could have ended."""
    keys, values, started = sessions.lookup(tag)
    if not len(keys) or not t.num_rows:
        return pa.nulls(t.num_rows, _S)
    idx = pc.index_in(t["actor_session"], value_set=keys)
    start = pc.take(started, idx)
    skew = pa.scalar(CLOCK_SKEW, pa.duration("us"))
    live = pc.and_(
        pc.greater_equal(t["event_time"], pc.subtract(start, skew)),
        pc.less_equal(t["event_time"], pc.add(start, pa.scalar(sessions.ttl, pa.duration("us")))),
    )
    return pc.if_else(pc.fill_null(live, False), pc.take(values, idx), pa.scalar(None, _S))


def _session_tag(s: c.SessionTag | c.SessionOrigin) -> str:
    return s.key if isinstance(s, c.SessionTag) else ORIGIN


def session_tags(cfg: c.Config) -> frozenset[str]:
    """The session tags ``finish`` looks up, ``ORIGIN`` among them: those of the session
    strategies and the break-glass relationships' ``ticket_tag``."""
    tags = {_session_tag(s) for s in cfg.tenancy.actor if isinstance(s, SESSION_KINDS)}
    return frozenset(tags | {r.ticket_tag for r in _break_glass(cfg) if r.ticket_tag})


Candidate = tuple[str, pa.Array, pa.Array | None]  # (kind, tenant, every tenant where several)


def _combine(
    side: str, candidates: list[Candidate], n: int
) -> tuple[pa.Array, pa.Array, list[str | None]]:
    """(winner, winning kind, conflict text per row) for one side."""
    if not candidates:
        return pa.nulls(n, _S), pa.nulls(n, _S), [None] * n
    arrays = [a for _, a, _ in candidates]  # strategies give no blank tenant
    winner = pc.coalesce(*arrays)
    kind = pa.nulls(n, _S)
    for (name, _, _), arr in reversed(list(zip(candidates, arrays, strict=True))):
        kind = pc.if_else(pc.is_valid(arr), pa.scalar(name, _S), kind)
    any_conflict = pa.array(np.zeros(n, np.bool_))
    for arr in arrays[1:]:
        differs = pc.fill_null(pc.not_equal(arr, winner), False)
        any_conflict = pc.or_(any_conflict, differs)
    for _, _, others in candidates:
        if others is not None:
            any_conflict = pc.or_(any_conflict, pc.is_valid(others))
    conflicts: list[str | None] = [None] * n
    if pc.any(any_conflict).as_py():
        for row in pc.indices_nonzero(any_conflict).to_pylist():
            seen = []
            for (name, _, others), arr in zip(candidates, arrays, strict=True):
                several = others[row].as_py() if others is not None else None
                if several:
                    seen += [f"{name}={v}" for v in several]
                elif arr[row].is_valid:
                    seen.append(f"{name}={arr[row].as_py()}")
            conflicts[row] = f"{side}:" + ",".join(seen)
    return winner, kind, conflicts


def _actor_column(i: int) -> str:
    return f"_actor{i}"


def _others_column(i: int) -> str:
    return f"_actor{i}_others"


def prepare(t: pa.Table, reading: Reading) -> dict[str, pa.Array]:
    """All of the resolution that needs no history, from a batch's decoded rows: the target
    tenant, its source and the target side's conflicts (``_target_conflict``), the candidates of
    every actor strategy but the session ones (``_actor<i>``), and what ``finish`` needs for
    origins and tickets."""
    cfg = reading.cfg.tenancy
    n = t.num_rows
    sources = strategies.Sources(t)
    target: list[Candidate] = []
    for i, ts in enumerate(cfg.target):
        tr = strategies.evaluate(t, ts, f"tenancy.target[{i}]", reading, sources)
        target.append((kind_of(ts), tr.tenant, tr.others))
    t_val, t_src, t_conf = _combine("target", target, n)
    out = {
        "target_tenant": t_val,
        "target_tenant_source": t_src,
        "_target_conflict": pa.array(t_conf, _S) if any(t_conf) else pa.nulls(n, _S),
    }
    for i, s in enumerate(cfg.actor):
        if not isinstance(s, SESSION_KINDS):
            tr = strategies.evaluate(t, s, f"tenancy.actor[{i}]", reading, sources)
            out[_actor_column(i)] = tr.tenant
            if tr.others is not None:
                out[_others_column(i)] = tr.others
    if any(isinstance(s, c.SessionOrigin) for s in cfg.actor):
        out["_new_session"] = t["h_new_session"]
    out.update(_ticket_hints(t, reading.cfg))
    return out


def _break_glass(cfg: c.Config) -> list[c.BreakGlass]:
    return [r for r in cfg.relationships if isinstance(r, c.BreakGlass)]


def _ticket_hints(t: pa.Table, cfg: c.Config) -> dict[str, pa.Array]:
    """``_bg``: the break-glass relationship (by position) whose principal pattern the row's
    principal matches; ``_ticket``: its ticket pattern's ticket in the role session name."""
    rels = _break_glass(cfg)
    if not rels:
        return {}
    n = t.num_rows
    principals = pc.dictionary_encode(_chunk(t["actor_principal"]))
    names = principals.dictionary.to_pylist()
    codes = pc.fill_null(principals.indices, -1).to_numpy(zero_copy_only=False)
    which = np.full(len(names) + 1, -1, np.int64)  # the last slot (code -1): no principal
    for j, rel in reversed(list(enumerate(rels))):  # the first relationship that matches wins
        rx = re.compile(rel.principal_pattern)
        hits = np.array([bool(rx.search(name)) for name in names] + [False], np.bool_)
        which[hits] = j
    bg = which[codes]
    ticket: list[str | None] = [None] * n
    rows = np.flatnonzero(bg >= 0)
    sessions = t["h_session_name"].take(pa.array(rows)).to_pylist() if len(rows) else []
    for row, name in zip(rows.tolist(), sessions, strict=True):
        found = re.search(rels[bg[row]].ticket_pattern, name) if name else None
        ticket[row] = found.group("ticket") if found and found.group("ticket") else None
    return {"_bg": pa.array(bg, mask=bg < 0).cast(pa.int32()), "_ticket": pa.array(ticket, _S)}


def finish(t: pa.Table, reading: Reading, sessions: SessionMap) -> tuple[pa.Table, pa.Table]:
    """``t``, a table with ``prepare``'s columns and ``actor_session`` and ``event_time``, with
    the actor tenant, its source, the conflicts of both sides (``tenant_conflict``) and the
    ticket (``actor_ticket``) in place of ``prepare``'s working columns; and the session origins
    learnt from its ``AssumeRole*`` calls (``STATE`` rows, which ``sessions`` has learnt)."""
    cfg = reading.cfg.tenancy
    n = t.num_rows
    learnt = _learn_origins(t, cfg, sessions)
    a_val, a_src, a_conf = _combine("actor", _actor_candidates(t, cfg, sessions), n)
    t_conf = t["_target_conflict"]
    if any(a_conf) or t_conf.null_count < n:
        pairs = zip(a_conf, t_conf.to_pylist(), strict=True)
        conflict = pa.array([";".join(x for x in p if x) or None for p in pairs], _S)
    else:  # the common case, without a Python step per row
        conflict = pa.nulls(n, _S)
    working = [
        name
        for name in t.column_names
        if name.startswith("_actor") or name in ("_target_conflict", "_new_session")
    ]
    ticket = _tickets(t, reading.cfg, sessions)
    out = (
        t.drop_columns([*working, "_bg", "_ticket"] if "_bg" in t.column_names else working)
        .append_column("actor_tenant", a_val)
        .append_column("actor_tenant_source", a_src)
        .append_column("tenant_conflict", conflict)
        .append_column("actor_ticket", ticket)
    )
    return out, learnt


def _actor_candidates(t: pa.Table, cfg: c.TenancyConfig, sessions: SessionMap) -> list[Candidate]:
    out: list[Candidate] = []
    for i, s in enumerate(cfg.actor):
        if isinstance(s, SESSION_KINDS):
            out.append((kind_of(s), _session_values(t, _session_tag(s), sessions), None))
        else:
            others = t[_others_column(i)] if _others_column(i) in t.column_names else None
            out.append((kind_of(s), _chunk(t[_actor_column(i)]), _chunk(others)))
    return out


def _chunk(col: pa.ChunkedArray | pa.Array | None) -> pa.Array | None:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _learn_origins(t: pa.Table, cfg: c.TenancyConfig, sessions: SessionMap) -> pa.Table:
    """Learn the origin of every session an ``AssumeRole*`` of ``t`` started: the actor tenant
    resolved for that call. In rounds: a call waits while the session that made it was itself
    started by a call still waiting, so its origin is known first (a chain keeps its first)."""
    if "_new_session" not in t.column_names or t["_new_session"].null_count == t.num_rows:
        return STATE.empty_table()
    calls = t.filter(pc.is_valid(t["_new_session"]))
    calls = calls.take(pc.sort_indices(calls["event_time"]))  # stable: input order breaks ties
    pending = np.ones(calls.num_rows, np.bool_)
    learnt = []
    while pending.any():
        waiting = calls.filter(pa.array(pending))
        made_by_waiting = pc.is_in(calls["actor_session"], value_set=waiting["_new_session"])
        ready = pending & ~pc.fill_null(made_by_waiting, False).to_numpy(zero_copy_only=False)
        if not ready.any():
            ready = pending.copy()  # calls that started each other: no log can hold that
        part = calls.filter(pa.array(ready))
        winner, _, _ = _combine("actor", _actor_candidates(part, cfg, sessions), part.num_rows)
        learnt.append(sessions.learn_origins(part["_new_session"], winner, part["event_time"]))
        pending &= ~ready
    return pa.concat_tables(learnt)


def _tickets(t: pa.Table, cfg: c.Config, sessions: SessionMap) -> pa.Array:
    if "_bg" not in t.column_names:
        return pa.nulls(t.num_rows, _S)
    ticket = _chunk(t["_ticket"])
    bg = _chunk(t["_bg"])
    for j, rel in enumerate(_break_glass(cfg)):
        if rel.ticket_tag:
            tagged = _session_values(t, rel.ticket_tag, sessions)
            mine = pc.and_(pc.fill_null(pc.equal(bg, j), False), pc.is_valid(tagged))
            ticket = pc.if_else(mine, tagged, ticket)
    return ticket


# --- why a strategy gave no tenant -------------------------------------------------------------

STATUSES = ("resolved", "absent", "no_match", "not_in_lookup", "not_applicable", "session_unknown")


@dataclass(frozen=True)
class Diagnosis:
    """What one strategy made of each row: ``status`` (one of ``STATUSES``), the value it read,
    the key it looked up and the tenant it gave."""

    side: str  # actor | target
    index: int  # its position in [[tenancy.<side>]]
    strategy: c.ActorStrategy | c.TargetStrategy
    status: pa.Array
    value: pa.Array
    key: pa.Array
    tenant: pa.Array
    of_source: pa.Array  # bool: not_applicable rows of its sources were filtered out

    @property
    def label(self) -> str:
        return f"{self.side}[{self.index}] {strategies.label(self.strategy)}"

    def why(self, row: int) -> str:
        """The row's status in words: what was read, and what came of it."""
        s, status = self.strategy, self.status[row].as_py()
        value, key = self.value[row].as_py(), self.key[row].as_py()
        if status == "resolved":
            return f"{self.tenant[row].as_py()} (from {value!r})"
        if status == "not_applicable":
            if not self.of_source[row].as_py():
                return "not for this source"
            return "filtered out (" + _filters(s) + ")"
        if status == "session_unknown":
            return "session unknown (no AssumeRole seen in this input)"
        if status == "absent":
            if not isinstance(s, SESSION_KINDS):
                return "field absent"
            if value is None:
                return "no session (the record has no access key id)"
            what = "origin" if isinstance(s, c.SessionOrigin) else f"tag {s.key!r}"
            return f"the session has no {what}"
        if status == "no_match":
            return f"value {value!r} did not match pattern"
        return f"key {key!r} not in lookup {getattr(s, 'lookup', '')}"


def _filters(s: object) -> str:
    if isinstance(s, c.Field):
        return "when " + "; ".join(f"{p} in {list(v)}" for p, v in s.when.items())
    if isinstance(s, c.RoleSessionName):
        return f"roles {list(s.roles)}"
    if isinstance(s, c.S3Key):
        return f"buckets {list(s.buckets)}"
    if isinstance(s, c.DynamoDBKey):
        return f"tables {list(s.tables)}"
    return "filters"  # pragma: no cover - the kinds above are the ones with filters


def diagnose(
    rows: pa.Table, reading: Reading, sessions: SessionMap | None = None
) -> list[Diagnosis]:
    """Per configured strategy (actor ones first, then target ones, each in order of trust),
    its status on each of ``rows``, decoded rows of any source (``reading.wide``, ``event_time``
    parsed). The session strategies consult ``sessions`` (as ``finish`` left it), and call a
    session unknown when no ``AssumeRole*`` among ``rows`` started it."""
    cfg = reading.cfg.tenancy
    out = []
    for side, listed in (("actor", cfg.actor), ("target", cfg.target)):
        for i, s in enumerate(listed):
            if isinstance(s, SESSION_KINDS):
                tr = _session_trace(rows, s, sessions)
                started = pc.is_in(rows["actor_session"], value_set=rows["h_new_session"])
                unknown = pc.and_(pc.is_null(tr.tenant), pc.invert(pc.fill_null(started, False)))
            else:
                tr = strategies.evaluate(rows, s, f"tenancy.{side}[{i}]", reading)
                unknown = pa.array(np.zeros(rows.num_rows, np.bool_))
            no_tenant = "absent" if isinstance(s, SESSION_KINDS) else "not_in_lookup"
            status = _status(tr, unknown, no_tenant)
            out.append(Diagnosis(side, i, s, status, tr.value, tr.key, tr.tenant, tr.of_source))
    return out


def _session_trace(
    rows: pa.Table, s: c.SessionTag | c.SessionOrigin, sessions: SessionMap | None
) -> Trace:
    of_source = pc.fill_null(pc.equal(rows["source"], "cloudtrail"), False)
    value = pc.if_else(of_source, rows["actor_session"], pa.scalar(None, _S))
    tenant = (
        _session_values(rows, _session_tag(s), sessions)
        if sessions is not None
        else pa.nulls(rows.num_rows, _S)
    )
    return Trace(of_source, of_source, _chunk(value), _chunk(value), tenant)


def _status(tr: Trace, unknown: pa.Array, no_tenant: str) -> pa.Array:
    """The ``STATUSES`` of a trace, by the first step that gave nothing (``no_tenant``: what
    a key without a tenant means)."""
    n = len(tr.value)
    status = np.full(n, "resolved", object)
    has = pc.is_valid
    fails = [
        (no_tenant, pc.invert(has(tr.tenant))),
        ("no_match", pc.invert(has(tr.key))),
        ("absent", pc.invert(has(tr.value))),
        ("session_unknown", unknown),
        ("not_applicable", pc.invert(tr.applies)),
    ]
    for name, mask in fails:  # later ones are earlier steps: they win
        status[pc.fill_null(mask, False).to_numpy(zero_copy_only=False)] = name
    return pa.array(status.tolist(), _S)
