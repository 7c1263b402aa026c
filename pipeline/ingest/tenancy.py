"""Resolve every row's actor tenant and target tenant from the configured strategies, vectorised.

Strategies are tried in the configured order of trust; the first that yields a value wins and
the row records its kind (``actor_tenant_source``). When a later strategy yields a *different*
value the row keeps the winner and records the disagreement in ``tenant_conflict``: ambiguity is
never silently resolved (DESIGN.md "Tenant resolution").

Regexes run as Arrow compute kernels (RE2) over whole columns: no per-row Python. Only the
session-tag strategy needs the run's history, so resolution comes in two steps: ``prepare``,
where a batch was decoded, for everything else, and ``finish``, in batch order, for the sessions
and for combining the actor side.

The session-tag strategy needs the ``AssumeRole`` that created the session: CloudTrail records the
tags only on that call. ``SessionMap`` holds access key id -> tags (as Arrow rows), fed batch by
batch in time order and persisted in the lake's state between runs, and forgets a session after
``session_ttl_hours``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import config as c
from pipeline.errors import ConfigError
from pipeline.ingest import arrowops, timeparse

_S = pa.string()
_TS = pa.timestamp("us", tz="UTC")
_SKEW = timedelta(minutes=5)
_US = timedelta(microseconds=1)

# What the sessions' state files hold (``_state/sessions``): a row per tag of a session.
STATE = pa.schema([("access_key_id", _S), ("tag", _S), ("value", _S), ("started", _TS)])
# The sessions a batch started, as decoded: a row per tag (a session without tags: one row, its
# tag null), ``session`` numbering them in the order they started.
SESSION_ROWS = pa.schema([*STATE, ("session", pa.int32())])


def session_rows(sessions: list[tuple[str, dict[str, str], str | None]]) -> pa.Table:
    """``SESSION_ROWS`` from (access key id, tags, start time as logged) per session."""
    keys: list[str] = []
    tags: list[str | None] = []
    values: list[str | None] = []
    session: list[int] = []
    for i, (key, tag_map, _) in enumerate(sessions):
        for tag, value in tag_map.items() or [(None, None)]:
            keys.append(key)
            tags.append(tag)
            values.append(value)
            session.append(i)
    numbers = pa.array(session, pa.int32())
    started = timeparse.parse_times(pa.array([s[2] for s in sessions], _S)).take(numbers)
    columns = [pa.array(keys, _S), pa.array(tags, _S), pa.array(values, _S), started, numbers]
    return pa.Table.from_arrays(columns, schema=SESSION_ROWS)


def state_rows(rows: pa.Table) -> pa.Table:
    """What is learnt of ``SESSION_ROWS``, as ``STATE``: the tags of the sessions whose start
    time parsed."""
    learnt = pc.and_(pc.is_valid(rows["started"]), pc.is_valid(rows["tag"]))
    return rows.filter(learnt).select(STATE.names)


@dataclass
class SessionMap:
    """The live sessions, a row per tag (``STATE``), in Arrow: a run learns tens of thousands
    of sessions and looks them up for every batch.

    As a map from access key id to tags: the last session learnt for a key replaces what was
    known of it, and a session is forgotten once expired."""

    ttl: timedelta
    tags: pa.Table = field(default_factory=STATE.empty_table)

    def learn(self, rows: pa.Table) -> None:
        """Sessions (``SESSION_ROWS``, numbered in the order they started); those whose start
        time did not parse are left out."""
        rows = rows.filter(pc.is_valid(rows["started"]))
        if not rows.num_rows:
            return
        last = rows.group_by("access_key_id", use_threads=False).aggregate([("session", "max")])
        rows = rows.filter(pc.is_in(rows["session"], value_set=last["session_max"]))
        new = state_rows(rows)
        pair = pc.binary_join_element_wise(new["access_key_id"], new["tag"], "\x1f")
        new = new.filter(arrowops.occurrences(pair, last=True))  # a tag twice: the last holds
        known = pc.is_in(self.tags["access_key_id"], value_set=last["access_key_id"])
        self.tags = pa.concat_tables([self.tags.filter(pc.invert(known)), new]).combine_chunks()

    def expire(self, oldest_event_us: int) -> None:
        """Forget sessions that ended before the oldest event still to be resolved."""
        cutoff = pa.scalar(oldest_event_us - self.ttl // _US, pa.int64()).cast(_TS)
        live = pc.greater_equal(self.tags["started"], cutoff)
        if not pc.all(live).as_py():
            self.tags = self.tags.filter(live)

    def lookup(self, tag: str) -> tuple[pa.Array, pa.Array, pa.Array]:
        """(access key ids, the tag's values, session start times) for sessions with ``tag``."""
        rows = self.tags.filter(pc.equal(self.tags["tag"], tag))
        keys, values, started = (
            rows[c].combine_chunks() for c in ("access_key_id", "value", "started")
        )
        return keys, values, started


def kind_of(strategy: object) -> str:
    """The ``kind`` tag of a configured strategy (msgspec keeps tags on the class)."""
    return str(type(strategy).__struct_config__.tag)  # type: ignore[attr-defined]


def _extract(values: pa.Array, pattern: str, where: str) -> pa.Array:
    try:
        groups = pc.extract_regex(values, pattern=pattern)
    except pa.ArrowInvalid as exc:
        # Arrow's regex engine is RE2: no look-arounds or back-references.
        raise ConfigError(f"{where}: the pattern is not supported by RE2 ({exc})") from None
    return pc.struct_field(groups, "tenant")


def _mask(values: pa.Array, allowed_in: pa.Array, allowed: tuple[str, ...]) -> pa.Array:
    if not allowed:
        return values
    keep = pc.fill_null(pc.is_in(allowed_in, value_set=pa.array(allowed, _S)), False)
    return pc.if_else(keep, values, pa.scalar(None, _S))


def _session_candidate(t: pa.Table, s: c.SessionTag, sessions: SessionMap) -> pa.Array:
    keys, values, started = sessions.lookup(s.key)
    if not len(keys):
        return pa.nulls(t.num_rows, _S)
    idx = pc.index_in(t["actor_session"], value_set=keys)
    # Only while the session lives: from its AssumeRole (less some clock skew between
    # services) until the longest session could have ended.
    start = pc.take(started, idx)
    live = pc.and_(
        pc.greater_equal(t["event_time"], pc.subtract(start, pa.scalar(_SKEW, pa.duration("us")))),
        pc.less_equal(t["event_time"], pc.add(start, pa.scalar(sessions.ttl, pa.duration("us")))),
    )
    return pc.if_else(pc.fill_null(live, False), pc.take(values, idx), pa.scalar(None, _S))


def _actor_candidate(t: pa.Table, i: int, s: c.ActorStrategy) -> pa.Array:
    """The candidates of an actor strategy that needs no history (not ``SessionTag``)."""
    where = f"tenancy.actor[{i}]"
    if isinstance(s, c.RoleSessionName):
        cand = _extract(t["h_session_name"], s.pattern, where)
        return _mask(cand, t["h_role_name"], s.roles)
    if isinstance(s, c.RoleArn):
        return _extract(pc.coalesce(t["h_role_arn"], t["actor_principal"]), s.pattern, where)
    if isinstance(s, c.SourceIdentity):
        return _extract(t["h_source_identity"], s.pattern, where)
    if isinstance(s, c.AuthorizerContext):
        return t["h_claim"]
    raise ConfigError(f"{where}: unsupported kind")  # pragma: no cover - SessionTag is apart


def _target_candidate(t: pa.Table, i: int, s: c.TargetStrategy) -> pa.Array:
    where = f"tenancy.target[{i}]"
    if isinstance(s, c.S3Key):
        return _mask(_extract(t["h_s3_key"], s.pattern, where), t["h_s3_bucket"], s.buckets)
    if isinstance(s, c.S3Bucket):
        return _extract(t["h_s3_bucket"], s.pattern, where)
    if isinstance(s, c.DynamoDBKey):
        return _mask(_extract(t["h_ddb_key"], s.pattern, where), t["h_ddb_table"], s.tables)
    if isinstance(s, c.ResourceArn):
        return _extract(t["h_arns"], s.pattern, where)
    if isinstance(s, c.ApiPath):
        return _extract(t["h_api_path"], s.pattern, where)
    if isinstance(s, c.Header):
        return t["h_headers"]
    if isinstance(s, c.Subdomain):
        return _extract(t["h_host"], s.pattern, where)
    raise ConfigError(f"{where}: unsupported kind")  # pragma: no cover


def _combine(
    side: str, candidates: list[tuple[str, pa.Array]], n: int
) -> tuple[pa.Array, pa.Array, list[str | None]]:
    """(winner, winning kind, conflict text per row) for one side."""
    if not candidates:
        return pa.nulls(n, _S), pa.nulls(n, _S), [None] * n
    arrays = [pc.if_else(pc.equal(a, ""), pa.scalar(None, _S), a) for _, a in candidates]
    winner = pc.coalesce(*arrays)
    kind = pa.nulls(n, _S)
    for (name, _), arr in reversed(list(zip(candidates, arrays, strict=True))):
        kind = pc.if_else(pc.is_valid(arr), pa.scalar(name, _S), kind)
    any_conflict = pa.array([False] * n, pa.bool_())
    for arr in arrays[1:]:
        differs = pc.fill_null(pc.not_equal(arr, winner), False)
        any_conflict = pc.or_(any_conflict, differs)
    conflicts: list[str | None] = [None] * n
    if pc.any(any_conflict).as_py():
        for row in pc.indices_nonzero(any_conflict).to_pylist():
            seen = [
                f"{name}={arr[row].as_py()}"
                for (name, _), arr in zip(candidates, arrays, strict=True)
                if arr[row].is_valid
            ]
            conflicts[row] = f"{side}:" + ",".join(seen)
    return winner, kind, conflicts


def _actor_column(i: int) -> str:
    return f"_actor{i}"


def prepare(t: pa.Table, cfg: c.TenancyConfig) -> dict[str, pa.Array]:
    """All of the resolution that needs no history, from a batch's decoded rows: the target
    tenant, its source and the target side's conflicts (``_target_conflict``), and the candidates
    of every actor strategy but the session tag's (``_actor<i>``), for ``finish``."""
    n = t.num_rows
    target = [(kind_of(s), _target_candidate(t, i, s)) for i, s in enumerate(cfg.target)]
    t_val, t_src, t_conf = _combine("target", target, n)
    out = {
        "target_tenant": t_val,
        "target_tenant_source": t_src,
        "_target_conflict": pa.array(t_conf, _S) if any(t_conf) else pa.nulls(n, _S),
    }
    for i, s in enumerate(cfg.actor):
        if not isinstance(s, c.SessionTag):
            out[_actor_column(i)] = _actor_candidate(t, i, s)
    return out


def finish(t: pa.Table, cfg: c.TenancyConfig, sessions: SessionMap) -> pa.Table:
    """``t``, a table with ``prepare``'s columns and ``actor_session`` and ``event_time``, with
    the actor tenant, its source and the conflicts of both sides (``tenant_conflict``) in place
    of ``prepare``'s working columns."""
    n = t.num_rows
    actor = [
        (
            kind_of(s),
            _session_candidate(t, s, sessions)
            if isinstance(s, c.SessionTag)
            else t[_actor_column(i)],
        )
        for i, s in enumerate(cfg.actor)
    ]
    a_val, a_src, a_conf = _combine("actor", actor, n)
    t_conf = t["_target_conflict"]
    if any(a_conf) or t_conf.null_count < n:
        pairs = zip(a_conf, t_conf.to_pylist(), strict=True)
        conflict = pa.array([";".join(x for x in p if x) or None for p in pairs], _S)
    else:  # the common case, without a Python step per row
        conflict = pa.nulls(n, _S)
    working = [_actor_column(i) for i, s in enumerate(cfg.actor) if not isinstance(s, c.SessionTag)]
    return (
        t.drop_columns([*working, "_target_conflict"])
        .append_column("actor_tenant", a_val)
        .append_column("actor_tenant_source", a_src)
        .append_column("tenant_conflict", conflict)
    )
