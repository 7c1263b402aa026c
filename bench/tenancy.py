"""Tenancy report benchmark: ``tenantwatch tenancy report`` over a whole lake, beside DuckDB SQL
computing the same groups over the same Parquet.

The lake is synthetic (``--events`` events over 7 days, one file per source and hour), written
with the lake's own layout and schema and cached under ``--data``; a quarter of the actors and a
sixth of the targets are left without a tenant, with values that repeat (roles, API users,
authorizer paths) and values that never do (S3 object keys), so every part of the report has
work to do. Each peer runs in its own process (``bench.ingest.measure``).

    python -m bench.tenancy run PEER LAKE     # one peer, prints {"records": N, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.detect import table
from bench.ingest import measure

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 3, 1, tzinfo=UTC)
HOURS = 7 * 24
ACCOUNT = "111122223333"
TENANTS = 1_000
_CT_ACTIONS = ["GetObject", "PutObject", "ListObjects", "Query", "GetItem", "PutItem", "Decrypt"]
_CT_SERVICES = ["s3", "s3", "s3", "dynamodb", "dynamodb", "dynamodb", "kms"]
_API_ROUTES = ["GET /tenants/{tenantId}/invoices", "GET /tenants/{tenantId}/users", "POST /login"]


def write_lake(lake_root: Path, events: int, seed: int = 7) -> int:
    """Generate and write the lake; the number of events written."""
    import numpy as np
    import pyarrow as pa

    from pipeline import schema
    from pipeline.lake import Lake, event_partition

    lake = Lake(str(lake_root))
    tenants = np.array([f"t{i:04d}" for i in range(TENANTS)], dtype=object)
    roles = np.array([f"{ACCOUNT}:assumed-role/app-{i:02d}/" for i in range(20)], dtype=object)
    written = 0
    for hour in range(HOURS):
        r = np.random.default_rng([seed, hour])
        n = events // HOURS
        t0 = START + timedelta(hours=hour)
        src = r.choice(3, n, p=[0.6, 0.3, 0.1])
        tenant = tenants[r.integers(0, TENANTS, n)]
        act = r.integers(0, len(_CT_ACTIONS), n)
        user = np.char.add("usr-", r.integers(0, 50_000, n).astype(str)).astype(object)
        session = np.char.add("s", r.integers(0, 200_000, n).astype(str)).astype(object)
        arn = "arn:aws:sts::" + roles[r.integers(0, 20, n)] + session
        unique = np.char.add(f"{hour:03d}-", np.arange(n).astype(str)).astype(object)
        ct_resource = np.where(
            act < 3,
            "s3://data-"
            + r.integers(0, 5, n).astype(str).astype(object)
            + "/"
            + tenant
            + "/"
            + unique,
            np.where(
                act < 6, "dynamodb:table-a/TENANT#" + tenant, "arn:aws:kms:eu-west-1:1:key/k1"
            ),
        )
        path = (
            "/prod/tenants/"
            + tenant
            + "/invoices/"
            + r.integers(0, 999, n).astype(str).astype(object)
        )
        is_ct, is_api = src == 0, src == 1
        actor_known = r.random(n) >= 0.25
        target_known = r.random(n) >= 0.15
        cols = {
            "event_id": np.char.add(f"ev-{hour}-", np.arange(n).astype(str)).astype(object),
            "event_time": pa.array(
                int(t0.timestamp() * 1e6) + np.sort(r.integers(0, 3_600_000_000, n)),
                pa.timestamp("us", tz="UTC"),
            ),
            "source": np.array(schema.SOURCES, dtype=object)[src],
            "service": np.where(
                is_ct,
                np.array(_CT_SERVICES, dtype=object)[act] + ".amazonaws.com",
                np.where(is_api, "execute-api:api/prod", "lambda:authorizer"),
            ),
            "action": np.where(
                is_ct,
                np.array(_CT_ACTIONS, dtype=object)[act],
                np.where(
                    is_api,
                    np.array(_API_ROUTES, dtype=object)[act % 3],
                    "authorize GET /tenants/" + tenant + "/invoices",
                ),
            ),
            "actor_principal": np.where(is_ct, arn, user),
            "actor_session": np.where(is_ct, "ASIA" + session, None),
            "source_ip": "10.0." + (r.integers(0, 60_000, n) // 256).astype(str).astype(object),
            "actor_tenant": np.where(actor_known, tenant, None),
            "actor_tenant_source": np.where(
                actor_known, np.where(is_ct, "session_tag", "authorizer_context"), None
            ),
            "target_tenant": np.where(target_known, tenant, None),
            "target_tenant_source": np.where(
                target_known, np.where(is_ct, "s3_key", "api_path"), None
            ),
            "tenant_conflict": np.where(r.random(n) < 0.005, "actor:session_tag=a,x=b", None),
            "resource": np.where(is_ct, ct_resource, path),
            "outcome": np.full(n, "success", dtype=object),
        }
        arrays = [
            pa.array(cols[f.name], f.type)
            if f.name in cols and not isinstance(cols[f.name], pa.Array)
            else cols.get(f.name, pa.nulls(n, f.type))
            for f in schema.EVENTS
        ]
        t = pa.Table.from_arrays(arrays, schema=schema.EVENTS)
        date, hh = t0.strftime("%Y-%m-%d"), t0.strftime("%H")
        for k, source in enumerate(schema.SOURCES):
            part = t.filter(pa.array(src == k))
            lake.write_table(f"{event_partition(source, date, hh)}/part-bench{seed}.parquet", part)
        written += n
    return written


def dataset(data: Path, events: int) -> tuple[Path, int]:
    """(lake root, events in it), generated in a child process if not cached."""
    lake = data / f"tenancy-lake-e{events}-s7"
    done = lake / "bench-summary.json"
    if not done.exists():
        import shutil
        import subprocess

        shutil.rmtree(lake, ignore_errors=True)
        print(f"generating a {events:,}-event lake in {lake} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "bench.tenancy", "generate", str(lake), str(events)]
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        done.write_text(out.stdout)
    return lake, int(json.loads(done.read_text())["events"])


# --- the peers ------------------------------------------------------------------------------------


def run_tenantwatch(lake: str, sample: int) -> dict[str, object]:
    from pipeline.config import Config
    from pipeline.tenancy_report import build

    report = build(lake, Config(), sample=sample)
    return {
        "records": report.events,
        "actions": len(report.actions),
        "unresolved_actors": report.unresolved_actors[0].value,
    }


# The same groups as pipeline/tenancy_report.py, in SQL.
_ACTIONS = """
    SELECT source, service, action, actor_tenant_source, target_tenant_source, count(*),
           count(actor_tenant), count(target_tenant), count(tenant_conflict)
    FROM events GROUP BY ALL
"""
_ACTORS = """
    SELECT source, value, count(*), count(target_tenant), min(who), max(who) FROM (
        SELECT source, target_tenant, coalesce(actor_principal, actor_session, source_ip) AS who,
               regexp_replace(regexp_replace(who,
                   '^(arn:[^:]*:sts::[^:]*:assumed-role/[^/]+/).+$', '\\1*'),
                   '^(AROA[A-Z0-9]+:).+$', '\\1*') AS value
        FROM events WHERE actor_tenant IS NULL AND who IS NOT NULL
    ) GROUP BY ALL
"""
_RESOURCES = """
    SELECT source, value, count(*), count(actor_tenant), min(resource), max(resource) FROM (
        SELECT source, actor_tenant, resource,
               regexp_replace(regexp_replace(regexp_replace(resource,
                   '^(s3://[^/]+/).+$', '\\1*'), '^(dynamodb:[^/]+/).+$', '\\1*'),
                   '^(arn:[^:]*:[^:]*:[^:]*:[^:]*:[^/:]+[/:]).+$', '\\1*') AS v0,
               CASE WHEN v0 LIKE '/%' THEN regexp_replace(v0, '/[^/]*[0-9][^/]*', '/{}', 'g')
                    ELSE v0 END AS value
        FROM events WHERE target_tenant IS NULL AND resource IS NOT NULL
    ) GROUP BY ALL
"""


def run_duckdb(lake: str, threads: int) -> dict[str, object]:
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    # The path is the benchmark's own, never input: no injection to fear.
    view = f"CREATE VIEW events AS SELECT * FROM read_parquet('{lake}/events/**/*.parquet')"  # noqa: S608
    con.execute(view)
    out = {
        name: len(con.execute(q).fetchall())
        for name, q in (("actions", _ACTIONS), ("actors", _ACTORS), ("resources", _RESOURCES))
    }
    (n,) = con.execute("SELECT count(*) FROM events").fetchone() or (0,)
    return {"records": int(n), **out}


# --- the benchmark --------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> None:
    lake, n = dataset(args.data, args.events)
    here = [sys.executable, "-m", "bench.tenancy", "run"]
    rows = []
    for label, peer in (
        ("duckdb: the same groups", "duckdb"),
        ("duckdb: the same groups, 1 thread", "duckdb-1"),
        ("tenantwatch tenancy report", "tenantwatch"),
        ("tenantwatch tenancy report --sample 0", "tenantwatch-0"),
    ):
        r = measure(label, [*here, peer, str(lake)], n)
        rows.append(r)
        print(f"  {label}: {r.wall_s:.1f} s, {r.rss_mb:,.0f} MB", file=sys.stderr, flush=True)
    fastest = min(rows[:2], key=lambda r: r.wall_s)
    print(f"\ntenancy report: {n:,} events over {HOURS // 24} days, {os.cpu_count()} CPUs\n")
    print(table([(r, fastest) for r in rows]))


def _child(argv: list[str]) -> None:
    if argv[0] == "generate":
        started = time.perf_counter()
        n = write_lake(Path(argv[1]), int(argv[2]))
        print(json.dumps({"events": n, "seconds": round(time.perf_counter() - started, 1)}))
        return
    peer, lake = argv[1], argv[2]
    if peer.startswith("duckdb"):
        result = run_duckdb(lake, int(peer.partition("-")[2] or 0))
    else:
        sample = peer.partition("-")[2]
        result = run_tenantwatch(lake, int(sample) if sample else 20_000)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _child(sys.argv[1:])
