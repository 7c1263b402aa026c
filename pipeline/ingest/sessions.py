"""The sessions a run has seen start: access key id -> session tags and origin, in Arrow.

CloudTrail logs a session's tags only on the ``AssumeRole*`` call that started it; every later
call names the session by its access key id. ``SessionMap`` holds what each session started with,
fed batch by batch in time order and persisted in the lake between runs (``_state/sessions``, one
row per tag, a folder per day the sessions started on), and forgets a session
``session_ttl_hours`` after it started (STS sessions last at most 12 hours, so an older mapping is
stale). A run reads the stored sessions of only the days that can hold a session live during its
events (``learn_earlier``).

Besides its tags, a session may have an *origin*: the tenant of whoever called ``AssumeRole*`` to
start it, as tenant resolution found it for that call (``session_origin``). It is kept as a tag of
the reserved name ``ORIGIN`` and differs from tags in one way: it is never replaced. A chain of
roles, A -> a role in B -> a role in C, keeps A: the session in C was started by the session in B,
whose origin is A, and nothing later changes what started a session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import timeparse
from pipeline.ingest import arrowops

_S = pa.string()
_TS = pa.timestamp("us", tz="UTC")
_US = timedelta(microseconds=1)
# How long before its session's start a call may be logged (clocks of AWS services differ).
CLOCK_SKEW = timedelta(minutes=5)
_Column: TypeAlias = pa.Array | pa.ChunkedArray

# A name no session tag can have: IAM tag keys may not start with "aws:", and ours is spelled
# with our own prefix, which a SaaS would not pass as a session tag.
ORIGIN = "tenantwatch:origin"

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


def origin_rows(keys: pa.Array, tenants: pa.Array, started: pa.Array) -> pa.Table:
    """``STATE`` rows giving each session ``keys[i]`` the origin ``tenants[i]``."""
    tag = pa.repeat(pa.scalar(ORIGIN, _S), len(keys))
    return pa.Table.from_arrays([keys, tag, tenants, started.cast(_TS)], schema=STATE)


def _is_origin(rows: pa.Table) -> pa.Array:
    return pc.fill_null(pc.equal(rows["tag"], ORIGIN), False)


@dataclass
class SessionMap:
    """The live sessions, a row per tag (``STATE``), in Arrow: a run learns tens of thousands
    of sessions and looks them up for every batch.

    As a map from access key id to tags: the last session learnt for a key replaces the tags
    known of it (its origin stays), and a session is forgotten once expired."""

    ttl: timedelta
    tags: pa.Table = field(default_factory=STATE.empty_table)
    origins: bool = False  # whether any row of ``tags`` is an origin
    cutoff: pa.Scalar | None = None  # sessions that started before it are forgotten (``expire``)

    def learn(self, rows: pa.Table) -> None:
        """Sessions (``SESSION_ROWS``, numbered in the order they started); those whose start
        time did not parse are left out. Rows of the tag ``ORIGIN`` are origins
        (``learn_origins``)."""
        rows = rows.filter(pc.is_valid(rows["started"]))
        if not rows.num_rows:
            return
        origin = _is_origin(rows)
        if pc.any(origin).as_py():  # only state files hold them
            o = rows.filter(origin)
            self.learn_origins(o["access_key_id"], o["value"], o["started"])
            rows = rows.filter(pc.invert(origin))
            if not rows.num_rows:
                return
        last = rows.group_by("access_key_id", use_threads=False).aggregate([("session", "max")])
        rows = rows.filter(pc.is_in(rows["session"], value_set=last["session_max"]))
        new = state_rows(rows)
        pair = pc.binary_join_element_wise(new["access_key_id"], new["tag"], "\x1f")
        new = new.filter(arrowops.occurrences(pair, last=True))  # a tag twice: the last holds
        known = pc.is_in(self.tags["access_key_id"], value_set=last["access_key_id"])
        if self.origins:  # a session learnt again keeps its origin
            known = pc.and_(known, pc.invert(_is_origin(self.tags)))
        self.tags = pa.concat_tables([self.tags.filter(pc.invert(known)), new]).combine_chunks()

    def learn_origins(self, keys: _Column, tenants: _Column, started: _Column) -> pa.Table:
        """Give each session ``keys[i]`` the origin ``tenants[i]`` unless it has one (the first
        given wins); returns what was learnt (``STATE`` rows)."""
        rows = origin_rows(*(_array(a) for a in (keys, tenants, started)))
        rows = rows.filter(pc.and_(pc.is_valid(rows["value"]), pc.is_valid(rows["started"])))
        known, _, _ = self.lookup(ORIGIN)
        rows = rows.filter(pc.invert(pc.is_in(rows["access_key_id"], value_set=known)))
        rows = rows.filter(arrowops.occurrences(rows["access_key_id"]))
        if rows.num_rows:
            self.tags = pa.concat_tables([self.tags, rows]).combine_chunks()
            self.origins = True
        return rows

    def learn_earlier(self, known: pa.Table) -> None:
        """Sessions (``STATE`` rows, as a ``SessionMap`` holds them) that were known before
        everything this map learnt: read from the lake after the run began, they are taken as
        if read first. What this map learnt of a session (its tags; its origin) stands, and what
        it has forgotten as expired stays forgotten."""
        if not known.num_rows:
            return
        if self.cutoff is not None:
            known = known.filter(pc.greater_equal(known["started"], self.cutoff))
        origin = _is_origin(known)
        mine = _is_origin(self.tags)
        tagged = self.tags.filter(pc.invert(mine))["access_key_id"]
        has_origin = self.tags.filter(mine)["access_key_id"]
        take = pc.if_else(
            origin,
            pc.invert(pc.is_in(known["access_key_id"], value_set=has_origin)),
            pc.invert(pc.is_in(known["access_key_id"], value_set=tagged)),
        )
        new = known.filter(take)
        if new.num_rows:
            self.tags = pa.concat_tables([new, self.tags]).combine_chunks()
            self.origins = self.origins or bool(pc.any(_is_origin(new)).as_py())

    def expire(self, oldest_event_us: int) -> None:
        """Forget sessions that ended before the oldest event still to be resolved."""
        cutoff = pa.scalar(oldest_event_us - self.ttl // _US, pa.int64()).cast(_TS)
        if self.cutoff is None or cutoff.value > self.cutoff.value:
            self.cutoff = cutoff
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


def _array(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
