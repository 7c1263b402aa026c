"""The session map behind the session-tag strategy, in Arrow: it must answer as a map from access
key id to the tags of the last session learnt for it would."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from pipeline.ingest import tenancy
from pipeline.timeparse import TS


def known(sessions: tenancy.SessionMap, tag: str) -> dict[str, str]:
    keys, values, _ = sessions.lookup(tag)
    assert len(set(keys.to_pylist())) == len(keys)  # one answer per key
    return dict(zip(keys.to_pylist(), values.to_pylist(), strict=True))


def test_a_session_learnt_again_replaces_the_old_one_within_a_batch_and_across() -> None:
    m = tenancy.SessionMap(timedelta(hours=12))
    m.learn(
        tenancy.session_rows(
            [
                ("ASIA1", {"tenant_id": "t1", "team": "a"}, "2026-11-16T10:00:00Z"),
                ("ASIA2", {"tenant_id": "t2"}, "2026-11-16T10:01:00Z"),
                ("ASIA1", {"tenant_id": "t3"}, "2026-11-16T10:02:00Z"),  # the same key again
            ]
        )
    )
    assert known(m, "tenant_id") == {"ASIA1": "t3", "ASIA2": "t2"}
    assert known(m, "team") == {}  # replaced, not merged
    m.learn(tenancy.session_rows([("ASIA2", {}, "2026-11-16T11:00:00Z")]))
    assert known(m, "tenant_id") == {"ASIA1": "t3"}  # a session without tags forgets the old
    m.learn(tenancy.session_rows([("ASIA1", {"tenant_id": "t9"}, "not a time")]))
    assert known(m, "tenant_id") == {"ASIA1": "t3"}  # a start time that did not parse: ignored


def test_sessions_expire_after_the_ttl_from_the_oldest_event_to_resolve() -> None:
    m = tenancy.SessionMap(timedelta(hours=1))
    m.learn(
        tenancy.session_rows(
            [
                ("ASIA1", {"tenant_id": "t1"}, "2026-11-16T10:00:00Z"),
                ("ASIA2", {"tenant_id": "t2"}, "2026-11-16T10:30:00Z"),
            ]
        )
    )
    m.expire(pa.scalar("2026-11-16T11:15:00").cast(pa.timestamp("us")).value)
    assert known(m, "tenant_id") == {"ASIA2": "t2"}
    _, _, started = m.lookup("tenant_id")
    assert started.type == TS


def test_a_tag_twice_for_one_session_answers_with_the_last_value() -> None:
    # As a state file could hold it: the rows of one session, a tag repeated.
    rows = pa.table(
        {
            "access_key_id": ["ASIA1", "ASIA1", "ASIA1"],
            "tag": ["tenant_id", "team", "tenant_id"],
            "value": ["t1", "a", "t2"],
            "started": pa.array([1, 1, 1], pa.int64()).cast(TS),
            "session": pa.array([0, 0, 0], pa.int32()),
        },
        schema=tenancy.SESSION_ROWS,
    )
    m = tenancy.SessionMap(timedelta(hours=12))
    m.learn(rows)
    assert known(m, "tenant_id") == {"ASIA1": "t2"}
    assert known(m, "team") == {"ASIA1": "a"}
