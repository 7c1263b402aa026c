"""The analyst's Athena queries (infra/queries/) and the query each notification prints, run by
their DuckDB twin (pipeline/athena.py) over a lake built by the pipeline itself: logs ingested,
detected, alerted, a verdict given and the closed days compacted. Each result is checked against
what the lake holds, read with pyarrow and counted here in Python, so a wrong query fails.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline import athena, schema
from pipeline.alert.run import run_alert
from pipeline.compact import compact
from pipeline.detect import run_detect
from pipeline.ingest import quarantine
from pipeline.ingest.run import ingest
from pipeline.ingest.seen import ingested_partition
from pipeline.lake import (
    FINDINGS,
    INCIDENT_STATE,
    OUTBOX,
    Lake,
    read_events,
    read_quarantine,
)
from pipeline.verdicts import close, find, read_incidents
from tests import logfactory as lf
from tests.conftest import REPO
from tests.pooled import pooled_config

QUERIES = REPO / "infra" / "queries"
ACTOR = "usr-aaaa"  # t0001's user: on t0002's data on the 16th, t0003's on the 17th
SESSION = "ASIAEXAMPLE0000001"  # the access key of its role session (CloudTrail)
OTHER = "usr-bbbb"  # t0002's own user, denied on its own tenant


def _access(day: int, hhmm: str, **kw: Any) -> dict[str, Any]:
    return lf.access_log(when=f"{day}/Nov/2026:{hhmm}:00 +0000", **kw)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("athena")
    inp, root = base / "in", base / "lake"
    trail = [
        lf.assume_role(
            tenant="t0001", session=ACTOR, new_key_id=SESSION, time="2026-11-16T09:59:00Z"
        )
    ]
    trail += [
        lf.ct(time=f"2026-11-16T10:0{i}:00Z", key_id=SESSION, key=f"tenants/t0002/invoices/{i}.pdf")
        for i in range(3)
    ]
    trail.append(
        lf.ct(time="2026-11-16T10:05:00Z", key_id=SESSION, key="tenants/t0001/invoices/own.pdf")
    )
    lf.delivery_file(inp / f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1/2026/11/16/a.json.gz", trail)
    api16 = [
        _access(16, f"11:0{m}", tenant_path="t0002", claim="t0001", status=403, principal=ACTOR)
        for m in range(5)
    ]
    api16 += [_access(16, "11:30", tenant_path="t0002", claim="t0001", status=403, principal=ACTOR)]
    api16 += [_access(16, "12:00", principal=ACTOR)]
    api16 += [
        _access(16, "11:10", tenant_path="t0002", claim="t0002", status=403, principal=OTHER),
        # Refused before any claim: no actor tenant, from outside t0002 all the same.
        _access(16, "11:20", tenant_path="t0002", claim=None, status=401, principal="-"),
        _access(16, "13:00", tenant_path="t0002", claim="t0002", principal=OTHER),
        _access(16, "14:30", tenant_path="t0002", claim="t0002", principal=OTHER),
        # From the story's address, on a tenant of the story, but before it: not evidence.
        _access(16, "07:00", tenant_path="t0002", claim="t0002", principal=OTHER),
    ]
    lf.lines_file(inp / "api/2026/11/16/access.log", api16)
    api17 = [
        _access(17, "09:00", tenant_path="t0003", claim="t0001", status=403, principal=ACTOR),
        _access(17, "09:01", tenant_path="t0003", claim="t0001", principal=ACTOR),
        _access(17, "09:30", principal=ACTOR),
        _access(17, "10:00", tenant_path="t0002", claim="t0002", status=403, principal=OTHER),
        # ... and after it.
        _access(17, "13:00", tenant_path="t0002", claim="t0002", principal=OTHER),
    ]
    lf.lines_file(inp / "api/2026/11/17/access.log", api17)
    # What ingest cannot use: two delivery days, and an input with no day in its key.
    (inp / "junk/2026/11/17").mkdir(parents=True)
    (inp / "junk/2026/11/17/bad.json").write_text("{not json\n")
    (inp / "junk/2026/11/16").mkdir(parents=True)
    (inp / "junk/2026/11/16/odd.json").write_text('{"no": "known format"}\n{broken\n' * 3)
    (inp / "undated").mkdir()
    (inp / "undated/bad.json").write_text("{not json either\n")

    cfg = pooled_config()
    with pytest.MonkeyPatch.context() as mp:
        # Past two entries an input's further ones of a reason are gathered into one entry
        # standing for several records (1000 in a run): records are counted, not entries.
        mp.setattr(quarantine, "KEPT_PER_INPUT", 2)
        summary = ingest([str(inp)], str(root), cfg, workers=1)
        # An input that changed after it was ingested is ingested again: two records of one
        # uri in ingested, its entries of both versions in the quarantine.
        (inp / "junk/2026/11/17/bad.json").write_text("{not json\n{still not\n")
        again = ingest([str(inp)], str(root), cfg, workers=1)
    assert again["files"] - again["files_skipped"] == 1, again
    assert summary["quarantined_total"] >= 3, summary
    run_detect(
        str(root), cfg, datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 18, tzinfo=UTC)
    )
    run_alert(str(root), cfg)
    store = Lake(str(root))
    records = read_incidents(store)
    assert records, "the lake has an incident"
    # Two verdicts on the first incident: the later one counts.
    first = find(records, records[0].incident_id)
    at = datetime(2026, 11, 17, 9, tzinfo=UTC)
    close(store, first, "false_positive", "looked benign", "oncall", now=at)
    close(store, first, "true_positive", "confirmed", "lead", now=at + timedelta(hours=2))
    # The closed days compacted: the tables read the compacted files (and nothing twice).
    compact(store, datetime(2026, 11, 19, tzinfo=UTC))
    assert any("compacted-" in p.name for p in (root / "events").rglob("*.parquet"))
    return root


@pytest.fixture(scope="module")
def con(lake: Path) -> Any:
    return athena.connect(lake)


# --- the queries' files ------------------------------------------------------------------------


def _parameters(sql: str) -> list[str]:
    """The parameters the header comment names (``--   N. name: ...``), in order."""
    found = re.findall(r"^--\s+(\d+)\. (\w+):", sql, flags=re.M)
    assert [int(n) for n, _ in found] == list(range(1, len(found) + 1))
    return [name for _, name in found]


def _run(con: Any, name: str, **params: str) -> list[dict[str, Any]]:
    """The query ``name`` run with ``params`` (by the names its header gives them)."""
    sql = (QUERIES / f"{name}.sql").read_text()
    names = _parameters(sql)
    assert sorted(names) == sorted(params), name
    cur = con.execute(athena.duckdb_sql(sql), [params[n] for n in names])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def test_every_query_says_what_it_answers_and_takes_its_parameters_as_placeholders() -> None:
    names = sorted(p.stem for p in QUERIES.glob("*.sql"))
    assert names == sorted(TESTED)
    for name in names:
        sql = (QUERIES / f"{name}.sql").read_text()
        header = sql.split("\n\n")[0] if sql.startswith("--") else ""
        assert header and "Parameters (in this order):" in sql, name
        body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
        # Athena's prepared-statement placeholders, one per parameter named; no other value
        # is pasted into the text.
        assert body.count("?") == len(_parameters(sql)), name
        tables = set(re.findall(r"(?<!DISTINCT )\b(?:FROM|JOIN)\s+(\w+)", body))
        assert tables - {"UNNEST"} <= set(athena.TABLES) | set(re.findall(r"(\w+) AS \(", body))


def test_the_deployment_readme_lists_every_table_and_query() -> None:
    text = (REPO / "infra" / "README.md").read_text()
    section = text[text.index("## Athena") :]
    for name in athena.TABLES:
        assert f"| `{name}` |" in section, name
    for path in QUERIES.glob("*.sql"):
        assert f"| `{path.name}` |" in section, path.name


# --- each query against the lake ---------------------------------------------------------------


def _events(lake: Path) -> list[dict[str, Any]]:
    return read_events(str(lake)).to_pylist()


def _day(ts: datetime) -> str:
    return f"{ts.astimezone(UTC):%Y-%m-%d}"


@pytest.mark.parametrize("actor", [ACTOR, SESSION])
def test_an_actor_s_tenants_per_day(con: Any, lake: Path, actor: str) -> None:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for e in _events(lake):
        if actor in (e["actor_principal"], e["actor_session"]):
            groups[(_day(e["event_time"]), e["actor_tenant"], e["target_tenant"])].append(e)
    expected = {
        key: (len(rows), sum(r["outcome"] == "denied" for r in rows))
        for key, rows in groups.items()
    }
    got = _run(
        con, "actor_tenants_by_day", actor=actor, first_day="2026-11-16", last_day="2026-11-17"
    )
    assert {
        (r["day"], r["actor_tenant"], r["target_tenant"]): (r["events"], r["denied"]) for r in got
    } == expected
    assert len(got) == len(expected)
    # What the lake was built with: t0001's user on t0002's data on the 16th, t0003's on the
    # 17th; its role session (by its access key) on t0002's on the 16th.
    assert ("2026-11-16", "t0001", "t0002") in expected
    if actor == ACTOR:
        assert ("2026-11-17", "t0001", "t0003") in expected
    assert [r["day"] for r in got] == sorted(r["day"] for r in got)
    first = {k: min(r["event_time"] for r in rows) for k, rows in groups.items()}
    assert {
        (r["day"], r["actor_tenant"], r["target_tenant"]): r["first_seen"] for r in got
    } == first
    # The days read are the days asked for.
    one = _run(
        con, "actor_tenants_by_day", actor=ACTOR, first_day="2026-11-17", last_day="2026-11-17"
    )
    assert {r["day"] for r in one} == {"2026-11-17"}
    one = _run(
        con, "actor_tenants_by_day", actor=ACTOR, first_day="2026-11-16", last_day="2026-11-16"
    )
    assert {r["day"] for r in one} == {"2026-11-16"}


def test_a_tenant_s_denials_per_hour(con: Any, lake: Path) -> None:
    counts: Counter[tuple[datetime, str]] = Counter()
    outside: Counter[tuple[datetime, str]] = Counter()
    for e in _events(lake):
        if e["target_tenant"] == "t0002" and e["outcome"] == "denied":
            key = (e["event_time"].replace(minute=0, second=0, microsecond=0), e["source"])
            counts[key] += 1
            outside[key] += e["actor_tenant"] != "t0002"
    got = _run(
        con, "tenant_denials_by_hour", tenant="t0002", first_day="2026-11-16", last_day="2026-11-17"
    )
    assert {(r["hour"], r["source"]): r["denials"] for r in got} == dict(counts)
    assert {(r["hour"], r["source"]): r["from_outside"] for r in got} == dict(outside)
    # Two hours of 11:00's denials: the attacker's five and t0002's own user's one.
    eleven = datetime(2026, 11, 16, 11, tzinfo=UTC)
    assert counts[(eleven, "apigateway")] == 8 and outside[(eleven, "apigateway")] == 7
    assert [r["hour"] for r in got] == sorted(r["hour"] for r in got)
    assert {r["hour"].date() for r in got} == {eleven.date(), eleven.date() + timedelta(days=1)}
    one = _run(
        con, "tenant_denials_by_hour", tenant="t0002", first_day="2026-11-16", last_day="2026-11-16"
    )
    assert {r["hour"].date() for r in one} == {eleven.date()}


def test_an_incident_s_evidence_is_the_events_its_findings_point_at(con: Any, lake: Path) -> None:
    store = Lake(str(lake))
    (incident,) = store.read_all(INCIDENT_STATE, schema.INCIDENTS).to_pylist()
    findings = {r["finding_id"]: r for r in store.read_all(FINDINGS, schema.FINDINGS).to_pylist()}
    events = {e["event_id"]: e for e in _events(lake)}
    expected = sorted(
        (events[ev]["event_time"], ev, fid)
        for fid in incident["finding_ids"]
        for ev in json.loads(findings[fid]["evidence"])["event_ids"]
    )
    assert len(incident["finding_ids"]) > 1 and len(expected) > 3
    got = _run(con, "incident_evidence", incident_id=incident["incident_id"])
    assert [(r["event_time"], r["event_id"], r["finding_id"]) for r in got] == expected
    for r in got:
        e = events[r["event_id"]]
        assert (r["source"], r["actor_principal"], r["target_tenant"]) == (
            e["source"],
            e["actor_principal"],
            e["target_tenant"],
        )
        assert r["detector"] == findings[r["finding_id"]]["detector"]
    assert _run(con, "incident_evidence", incident_id="no-such-incident") == []


def test_what_was_quarantined_and_why_per_day_and_folder(con: Any, lake: Path) -> None:
    entries: Counter[tuple[str, str, str]] = Counter()
    records: Counter[tuple[str, str, str]] = Counter()
    undated = 0
    for q in read_quarantine(str(lake)).to_pylist():
        part = ingested_partition(q["input_uri"])
        if not part.startswith("date="):
            undated += 1
            continue
        key = (part.removeprefix("date="), posixpath.dirname(q["input_uri"]), q["reason"])
        entries[key] += 1
        records[key] += q["records"]
    assert undated and {k[0] for k in entries} == {"2026-11-16", "2026-11-17"}
    assert max(records.values()) > max(entries.values())  # a gathered entry among them
    got = _run(con, "quarantine_by_day", first_day="2026-11-16", last_day="2026-11-17")
    assert {(r["day"], r["folder"], r["reason"]): r["entries"] for r in got} == dict(entries)
    assert {(r["day"], r["folder"], r["reason"]): r["records"] for r in got} == dict(records)
    for r in got:
        assert posixpath.dirname(r["example_input"]) == r["folder"] and r["inputs"] >= 1
    later = _run(con, "quarantine_by_day", first_day="2026-11-17", last_day="2026-11-30")
    assert {r["day"] for r in later} == {"2026-11-17"}


def test_a_tenant_s_incidents_with_their_latest_verdict(con: Any, lake: Path) -> None:
    store = Lake(str(lake))
    incidents = store.read_all(INCIDENT_STATE, schema.INCIDENTS).to_pylist()
    verdicts = {r.incident_id: r for r in _latest_verdicts(store)}
    for tenant in ("t0001", "t0002", "t0003", "t9999"):
        expected = sorted(
            (i["incident_id"], i["severity"], i["paged_severity"], i["event_count"])
            for i in incidents
            if tenant in (i["tenants"] or [])
        )
        got = _run(
            con, "tenant_incidents", tenant=tenant, first_day="2026-11-01", last_day="2026-11-30"
        )
        assert (
            sorted(
                (r["incident_id"], r["severity"], r["paged_severity"], r["event_count"])
                for r in got
            )
            == expected
        ), tenant
        for r in got:
            v = verdicts.get(r["incident_id"])
            assert r["verdict"] == (v.verdict if v else None)
    assert any(
        r["verdict"] == "true_positive"
        for r in _run(
            con, "tenant_incidents", tenant="t0001", first_day="2026-11-01", last_day="2026-11-30"
        )
    )
    for first, last in (("2026-12-01", "2026-12-31"), ("2026-11-01", "2026-11-15")):
        assert _run(con, "tenant_incidents", tenant="t0001", first_day=first, last_day=last) == []


def _latest_verdicts(store: Lake) -> list[Any]:
    from pipeline.verdicts import latest, read_verdicts

    return list(latest(read_verdicts(store)).values())


TESTED = {
    "actor_tenants_by_day",
    "tenant_denials_by_hour",
    "incident_evidence",
    "quarantine_by_day",
    "tenant_incidents",
}


def test_the_sessions_table_is_what_ingest_learned_of_each_access_key(con: Any, lake: Path) -> None:
    """A table with no query of its own: it answers which tenant an access key was issued for."""
    from pipeline.lake import STATE_SESSIONS

    stored = Lake(str(lake)).read_all(STATE_SESSIONS, athena.TABLES["sessions"].schema)
    expected = sorted(
        (r["access_key_id"], r["tag"], r["value"], _day(r["started"])) for r in stored.to_pylist()
    )
    got = con.execute('SELECT access_key_id, tag, value, "date" FROM sessions').fetchall()
    assert sorted(got) == expected
    assert (SESSION, "tenant_id", "t0001", "2026-11-16") in expected


# --- the query each notification prints ----------------------------------------------------------


def _printed_query(text: str) -> str:
    """The Athena SQL in a notification's text, as an analyst copies it."""
    lines = text.splitlines()
    start = lines.index("  Athena (the snapshot's query):") + 1
    sql = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        sql.append(line[4:])
    return "\n".join(sql)


def test_each_notification_s_query_returns_exactly_its_snapshot_s_events(
    con: Any, lake: Path
) -> None:
    store = Lake(str(lake))
    outbox = store.read_all(OUTBOX, schema.OUTBOX).to_pylist()
    incidents = {
        i["incident_id"]: i for i in store.read_all(INCIDENT_STATE, schema.INCIDENTS).to_pylist()
    }
    assert outbox
    for row in outbox:
        sql = _printed_query(row["text"])
        assert "FROM tenantwatch.events" in sql
        got = con.execute(athena.duckdb_sql(sql)).fetchall()
        manifest = Path(incidents[row["incident_id"]]["snapshot_uri"])
        snap = pq.read_table(manifest.parent / "events.parquet").to_pylist()
        assert len(snap) > 1
        assert sorted((r[0], r[-1]) for r in got) == sorted(
            (e["event_time"], e["event_id"]) for e in snap
        )
        assert [r[0] for r in got] == sorted(r[0] for r in got)  # ORDER BY event_time
        # The lake holds events of the story's address on its tenants before and after its
        # span: the query's time bounds leave them out.
        span = (snap[0]["event_time"], snap[-1]["event_time"])
        around = [
            e
            for e in _events(lake)
            if e["source_ip"] == "203.0.113.9" and not span[0] <= e["event_time"] <= span[1]
        ]
        assert {e["event_time"] < span[0] for e in around} == {True, False}
