"""Detect benchmark: each detector over one hour plus 14 days of baseline, beside DuckDB SQL
computing the same per-group aggregations over the same Parquet.

The lake is synthetic (``--events`` events for 1,000 tenants over 14 days and the window hour),
written with the lake's own layout and schema and cached under ``--data``. It is generated with
numpy one hour at a time, not by the simulator, which would take an hour for 10 million events.
Each peer runs in its own process; wall time, CPU time and peak RSS come from ``os.wait4``
(``bench.ingest.measure``).

    python -m bench.detect run PEER LAKE SINCE     # one peer, prints {"records": N, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.ingest import Result, measure

ROOT = Path(__file__).resolve().parent.parent
TENANTS = 1_000
DAYS = 14
# The window: the hour after 14 days of history. A fixed date keeps the cache key stable.
SINCE = datetime(2026, 3, 15, 12, tzinfo=UTC)
START = SINCE - timedelta(days=DAYS)
HOURS = DAYS * 24 + 1
DETECTORS = ("tenant_switching", "authz_failure_spike", "cross_tenant_access")
ACCOUNT = "111122223333"
_ACTIONS = [
    "GetObject",
    "PutObject",
    "Query",
    "GetItem",
    "PutItem",
    "GET /tenants/{tenantId}/invoices",
    "GET /tenants/{tenantId}/users",
    "POST /tenants/{tenantId}/reports",
    "GET /tenants/{tenantId}/settings",
    "DeleteObject",
]
_AGENTS = ["Mozilla/5.0", "aws-sdk-python/1.34", "aws-cli/2.15", "okhttp/4.12", "curl/8.4"]


# --- the synthetic lake ---------------------------------------------------------------------------


class Population:
    """Who acts: principals with a home tenant, a home address and a skewed activity (a few
    busy, most quiet); 2% work habitually across a handful of client tenants; a few service
    roles (declared in tenantwatch.toml) touch every tenant."""

    def __init__(self, rng: object, tenants: int = TENANTS) -> None:
        import numpy as np

        r: np.random.Generator = rng  # type: ignore[assignment]
        n = 30 * tenants  # 30,000 principals for 1,000 tenants
        size = 1.0 / np.arange(1, tenants + 1) ** 0.8  # a few big tenants, a long tail
        self.n = n
        self.tenant = r.choice(tenants, n, p=size / size.sum())
        self.weight = r.lognormal(0.0, 1.6, n)
        self.weight /= self.weight.sum()
        # Addresses: most users their own; a tenant's office NAT shared by a third of its users.
        self.ip = np.where(r.random(n) < 0.33, n + self.tenant, np.arange(n))
        self.multi = r.random(n) < 0.02
        self.clients = r.choice(tenants, (n, 5))
        self.names = np.array(
            [f"arn:aws:sts::{ACCOUNT}:assumed-role/tenant-app/u{i:05d}" for i in range(n)]
        )
        self.ips = np.array(
            [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n + tenants)]
        )
        self.tenants = np.array([f"t{i + 1:04d}" for i in range(tenants)])


def hour_table(
    pop: Population, hour: int, per_hour: int, seed: int, start: datetime = START
) -> dict[str, object]:
    """One hour of events as columns (numpy), before the anomalies: the ``hour``-th after
    ``start``."""
    import numpy as np

    r = np.random.default_rng([seed, hour])
    t0 = start + timedelta(hours=hour)
    # Daily rhythm: twice as busy at 15:00 UTC as at 03:00.
    n = int(per_hour * (1 + 0.33 * np.sin((t0.hour - 9) / 24 * 2 * np.pi)))
    p = r.choice(pop.n, n, p=pop.weight)
    own = pop.tenant[p]
    target = np.where(
        pop.multi[p] & (r.random(n) < 0.6), pop.clients[p, r.integers(0, 5, n)], own
    ).astype(np.int64)
    target_name = pop.tenants[target].astype(object)
    target_name[r.random(n) < 0.08] = None  # account-level calls name no tenant
    source = r.choice(3, n, p=[0.45, 0.4, 0.15])
    u = r.random(n)
    outcome = np.where(u < 0.02, 1, np.where(u < 0.025, 2, 0))
    principal = pop.names[p].astype(object)
    # Background jobs: a service role touching every tenant (explained by tenantwatch.toml).
    jobs = r.random(n) < 0.01
    principal[jobs] = f"arn:aws:sts::{ACCOUNT}:assumed-role/saas-nightly-export/job"
    target_name[jobs] = pop.tenants[r.integers(0, len(pop.tenants), int(jobs.sum()))]
    day = (t0 - start).days
    return {
        "t": np.sort(r.integers(0, 3_600_000_000, n)),
        "source": source,
        "principal": principal,
        "session": np.char.add(f"ASIA{day:03d}", p.astype(str)).astype(object),
        "actor_tenant": pop.tenants[own].astype(object),
        "target_tenant": target_name,
        "outcome": outcome,
        "ip": pop.ips[pop.ip[p]].astype(object),
        "action": r.integers(0, len(_ACTIONS), n),
        "agent": r.integers(0, len(_AGENTS), n),
    }


def anomalies(pop: Population) -> list[dict[str, object]]:
    """What the window hides: tenant ids tried in order, a stolen session spreading to new tenants,
    a denial burst against one tenant, and a success in a foreign tenant."""
    rows: list[dict[str, object]] = []
    evil = f"arn:aws:sts::{ACCOUNT}:assumed-role/tenant-app/u99999"
    for i in range(40):  # enumeration: t0100..t0139 in order, 2 requests each, denied
        for k in range(2):
            rows.append(
                dict(m=i * 60 + k, src=1, p=evil, s="ASIAEVIL", at="t0007", tt=f"t{100 + i:04d}")
                | dict(o=1, ip="203.0.113.7")
            )
    stolen = str(pop.names[int(pop.weight.argmax())])
    for i in range(8):  # a busy user's session on 8 tenants it never touched
        for k in range(10):
            rows.append(
                dict(m=600 + i * 240 + k * 20, src=0, p=stolen, s="ASIASTOLEN", at="t0500")
                | dict(tt=f"t{900 + i:04d}", o=0, ip="198.51.100.23")
            )
    for k in range(300):  # credential stuffing against one tenant's API
        rows.append(
            dict(m=1800 + k * 3, src=1, p=None, s=None, at=None, tt="t0042", o=1, ip="192.0.2.66")
        )
    return rows


def write_lake(
    lake_root: Path,
    events: int,
    seed: int = 7,
    *,
    tenants: int = TENANTS,
    hours: int = HOURS,
    start: datetime = START,
) -> int:
    """Generate and write the lake; the number of events written."""
    return sum(write_hours(lake_root, events, seed, tenants=tenants, hours=hours, start=start))


def write_hours(
    lake_root: Path,
    events: int,
    seed: int = 7,
    *,
    tenants: int = TENANTS,
    hours: int = HOURS,
    start: datetime = START,
) -> list[int]:
    """Generate and write a lake of about ``events`` events for ``tenants`` tenants over
    ``hours`` hours from ``start``, the anomalies in the last hour; the events written in each
    hour. The defaults are the detect benchmark's lake (14 days and the window hour)."""
    import numpy as np
    import pyarrow as pa

    from pipeline import schema
    from pipeline.lake import Lake, event_partition

    rng = np.random.default_rng(seed)
    pop = Population(rng, tenants)
    lake = Lake(str(lake_root))
    per_hour = events / hours
    sources = np.array(schema.SOURCES, dtype=object)
    outcomes = np.array(schema.OUTCOMES, dtype=object)
    actions, agents = np.array(_ACTIONS, dtype=object), np.array(_AGENTS, dtype=object)
    written: list[int] = []
    for hour in range(hours):
        c = hour_table(pop, hour, int(per_hour), seed, start)
        if hour == hours - 1:
            extra = anomalies(pop)
            c = _append(c, extra)
        t0 = start + timedelta(hours=hour)
        base_us = int(t0.timestamp() * 1_000_000)
        n = len(c["t"])  # type: ignore[arg-type]
        ids = np.char.add(f"ev-{hour:04d}-", np.arange(n).astype(str)).astype(object)
        src = sources[c["source"]]
        outcome = outcomes[c["outcome"]]
        denied = outcome == "denied"
        is_ct = src == "cloudtrail"
        cols: dict[str, object] = {
            "event_id": ids,
            "event_time": pa.array(np.asarray(c["t"]) + base_us, pa.timestamp("us", tz="UTC")),
            "source": src,
            "event_kind": np.where(is_ct, "api_call", "access_log").astype(object),
            "service": np.where(is_ct, "s3.amazonaws.com", "execute-api:api/prod").astype(object),
            "action": actions[c["action"]],
            "actor_principal": c["principal"],
            "actor_type": np.where(is_ct, "AssumedRole", "token").astype(object),
            "actor_session": c["session"],
            "actor_tenant": c["actor_tenant"],
            "actor_tenant_source": np.full(n, "session_tag", dtype=object),
            "target_tenant": c["target_tenant"],
            "target_tenant_source": np.full(n, "s3_bucket", dtype=object),
            "outcome": outcome,
            "error_code": np.where(denied & is_ct, "AccessDenied", None),
            "status_code": pa.array(
                np.where(is_ct, 0, np.where(denied, 403, 200)), pa.int32(), mask=is_ct
            ),
            "source_ip": c["ip"],
            "user_agent": agents[c["agent"]],
            "account_id": np.full(n, ACCOUNT, dtype=object),
            "region": np.full(n, "eu-west-1", dtype=object),
            "request_id": np.where(is_ct, None, ids),
        }
        # Every other column of the schema (resource, raw, tickets, ...: added as the schema
        # grows) is null, as in events that carry none.
        arrays = [
            pa.nulls(n, f.type)
            if (v := cols.get(f.name)) is None
            else v
            if isinstance(v, pa.Array)
            else pa.array(v, f.type)
            for f in schema.EVENTS
        ]
        table = pa.Table.from_arrays(arrays, schema=schema.EVENTS)
        date, hh = t0.strftime("%Y-%m-%d"), t0.strftime("%H")
        for k, source in enumerate(schema.SOURCES):
            part = table.filter(pa.array(np.asarray(c["source"]) == k))
            if part.num_rows:
                rel = f"{event_partition(source, date, hh)}/part-bench{seed}.parquet"
                lake.write_table(rel, part)
        written.append(n)
    return written


def _append(c: dict[str, object], rows: list[dict[str, object]]) -> dict[str, object]:
    import numpy as np

    extra = {
        "t": np.array([int(r["m"]) * 1_000_000 for r in rows]),  # type: ignore[call-overload]
        "source": np.array([r["src"] for r in rows]),
        "principal": np.array([r["p"] for r in rows], dtype=object),
        "session": np.array([r["s"] for r in rows], dtype=object),
        "actor_tenant": np.array([r["at"] for r in rows], dtype=object),
        "target_tenant": np.array([r["tt"] for r in rows], dtype=object),
        "outcome": np.array([r["o"] for r in rows]),
        "ip": np.array([r["ip"] for r in rows], dtype=object),
        "action": np.full(len(rows), 6),
        "agent": np.full(len(rows), 4),
    }
    out = {k: np.concatenate([np.asarray(v), extra[k]]) for k, v in c.items()}
    order = np.argsort(out["t"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def dataset(data: Path, events: int) -> tuple[Path, int]:
    """(lake root, events in it), generated in a child process if not cached (this process
    must stay small: a measured child starts from a copy of it)."""
    lake = data / f"detect-lake-e{events}-t{TENANTS}-d{DAYS}-s7"
    done = lake / "bench-summary.json"
    if not done.exists():
        import shutil
        import subprocess

        shutil.rmtree(lake, ignore_errors=True)
        print(f"generating a {events:,}-event lake in {lake} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "bench.detect", "generate", str(lake), str(events)]
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        done.write_text(out.stdout)
    return lake, int(json.loads(done.read_text())["events"])


# --- the peers ------------------------------------------------------------------------------------


def run_tenantwatch(lake: str, detector: str) -> dict[str, object]:
    from pipeline.config import load_config
    from pipeline.detect import run_detect

    # The pooled world's configuration: these events are shaped like its logs.
    cfg = load_config(ROOT / "sample_logs" / "tenantwatch.toml")
    res = run_detect(lake, cfg, SINCE, SINCE + timedelta(hours=1), only=(detector,), write=False)
    if res.summary["failed"]:
        raise SystemExit(f"{detector} failed: {res.summary['failed']}")
    counts = res.summary["detectors"][detector]
    return {
        "records": counts["window_events"] + counts["baseline_events"],
        "findings": res.findings.num_rows,
        "titles": res.findings["title"].to_pylist(),
    }


_EVENTS = """
    CREATE VIEW events AS
    SELECT * FROM read_parquet('{lake}/events/**/*.parquet', hive_partitioning = true)
    WHERE event_time >= TIMESTAMPTZ '{start}' AND event_time < TIMESTAMPTZ '{end}'
      AND date >= '{start_date}'
"""

# Per actor-hour: requests, distinct tenants, new tenants (never seen for this actor earlier in
# the history, or in the history at all for the window), denied share; the actor's busiest hour.
_SWITCHING = """
    WITH ev AS (
        SELECT {actor} AS actor, target_tenant AS t, outcome,
               epoch_us(event_time) // 3600000000 AS h
        FROM events WHERE {actor} IS NOT NULL AND target_tenant IS NOT NULL
    ),
    hist_ev AS (SELECT * FROM ev WHERE h < {since_h}),
    first_seen AS (SELECT actor, t, min(h) AS h FROM hist_ev GROUP BY ALL),
    hist AS (
        SELECT actor, h, count(*) AS requests, count(DISTINCT t) AS tenants,
               avg((outcome = 'denied')::INT) AS denied_ratio
        FROM hist_ev GROUP BY ALL
    ),
    hist_new AS (SELECT actor, h, count(*) AS new_tenants FROM first_seen GROUP BY ALL),
    own AS (SELECT actor, max(tenants) AS own_max FROM hist GROUP BY actor),
    win AS (
        SELECT e.actor, e.h, count(*) AS requests, count(DISTINCT e.t) AS tenants,
               count(DISTINCT e.t) FILTER (WHERE f.actor IS NULL) AS new_tenants,
               avg((e.outcome = 'denied')::INT) AS denied_ratio
        FROM ev e LEFT JOIN first_seen f ON e.actor = f.actor AND e.t = f.t
        WHERE e.h >= {since_h} GROUP BY ALL
    )
    SELECT (SELECT count(*) FROM hist LEFT JOIN hist_new USING (actor, h)),
           (SELECT count(*) FROM win LEFT JOIN own USING (actor)
            WHERE win.tenants > coalesce(own.own_max, 0) OR win.new_tenants > 0)
"""

# Per group and hour: denials; for the groups denied in the window, the median and MAD of their
# hourly history (quiet hours count as zeros) and the same hour of the week.
_SPIKE = """
    WITH d AS (
        SELECT {group} AS g, epoch_us(event_time) // 3600000000 - {first_h} AS i
        FROM events
        WHERE outcome = 'denied' AND source IN ('cloudtrail', 'apigateway') AND {group} IS NOT NULL
    ),
    counts AS (SELECT g, i, count(*) AS n FROM d GROUP BY ALL),
    win AS (SELECT g, n FROM counts WHERE i = {hours}),
    grid AS (
        SELECT win.g, r.i, coalesce(c.n, 0) AS n
        FROM win CROSS JOIN range(0, {hours}) r(i)
        LEFT JOIN counts c ON c.g = win.g AND c.i = r.i
    ),
    med AS (
        SELECT g, median(n) AS level, median(n) FILTER (WHERE ({hours} - i) % 168 = 0) AS week
        FROM grid GROUP BY g
    ),
    mad AS (SELECT grid.g, median(abs(n - level)) AS mad FROM grid JOIN med USING (g) GROUP BY 1)
    SELECT count(*), count(*) FILTER (WHERE win.n >= 20 AND win.n > med.level + 5 * mad.mad)
    FROM win JOIN med USING (g) JOIN mad USING (g)
"""
_GROUPS = {
    "tenant": "coalesce(target_tenant, actor_tenant)",
    "actor": "actor_principal",
    "ip": "source_ip",
}


def run_duckdb(lake: str, what: str, threads: int) -> dict[str, object]:
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    start, end = SINCE - timedelta(days=DAYS), SINCE + timedelta(hours=1)
    # Paths and fragments are the benchmark's own, never input: no injection to fear.
    con.execute(
        _EVENTS.format(lake=lake, start=start, end=end, start_date=start.strftime("%Y-%m-%d"))
    )
    since_h = int(SINCE.timestamp()) // 3600
    first_h = since_h - DAYS * 24
    out: dict[str, object] = {}
    if what == "switching":
        for kind in ("actor_principal", "actor_session", "source_ip"):
            row = con.execute(_SWITCHING.format(actor=kind, since_h=since_h)).fetchone()
            out[kind] = list(row) if row else None
    else:
        for dim, expr in _GROUPS.items():
            row = con.execute(_SPIKE.format(group=expr, first_h=first_h, hours=DAYS * 24))
            out[dim] = list(row.fetchone() or ())
    (n,) = con.execute("SELECT count(*) FROM events").fetchone() or (0,)
    return {"records": int(n), **out}


# --- the benchmark --------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> None:
    lake, n = dataset(args.data, args.events)
    here = [sys.executable, "-m", "bench.detect", "run"]
    rows: list[tuple[str, Result, str]] = []
    peers = [
        ("duckdb: switching aggregation", "duckdb-switching", "peer of tenant_switching"),
        ("duckdb: switching, 1 thread", "duckdb-switching-1", "peer of tenant_switching"),
        ("duckdb: spike aggregation", "duckdb-spike", "peer of authz_failure_spike"),
        ("duckdb: spike, 1 thread", "duckdb-spike-1", "peer of authz_failure_spike"),
    ] + [(d, d, "") for d in DETECTORS]
    for label, peer, note in peers:
        r = measure(label, [*here, peer, str(lake)], n)
        r.note = note
        rows.append((peer, r, note))
        print(f"  {label}: {r.wall_s:.1f} s, {r.rss_mb:,.0f} MB", file=sys.stderr, flush=True)
    by = {peer: r for peer, r, _ in rows}
    # Against the faster DuckDB run of the same aggregation (on a busy or small machine, more
    # threads are not always faster).
    switching = min(by["duckdb-switching"], by["duckdb-switching-1"], key=lambda r: r.wall_s)
    spike = min(by["duckdb-spike"], by["duckdb-spike-1"], key=lambda r: r.wall_s)
    base = {
        "duckdb-switching": switching,
        "duckdb-switching-1": switching,
        "tenant_switching": switching,
        "duckdb-spike": spike,
        "duckdb-spike-1": spike,
        "authz_failure_spike": spike,
    }
    print(
        f"\ndetect: {n:,} events, {TENANTS:,} tenants, window {SINCE:%Y-%m-%d %H:00} + 1 h, "
        f"{DAYS} days of baseline, {os.cpu_count()} CPUs\n"
    )
    print(table([(r, base.get(peer)) for peer, r, _ in rows]))


def table(rows: list[tuple[Result, Result | None]]) -> str:
    head = ("peer", "wall s", "CPU s", "peak RSS MB", "x fastest duckdb", "note")
    out = [head]
    for r, b in rows:
        ratio = f"{r.wall_s / b.wall_s:.2f}" if b is not None else ""
        out.append(
            (r.peer, f"{r.wall_s:,.1f}", f"{r.cpu_s:,.1f}", f"{r.rss_mb:,.0f}", ratio, r.note)
        )
    widths = [max(len(row[i]) for row in out) for i in range(len(head))]
    lines = []
    for k, row in enumerate(out):
        cells = [
            c.ljust(w) if i in (0, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _child(argv: list[str]) -> None:
    if argv[0] == "generate":
        started = time.perf_counter()
        n = write_lake(Path(argv[1]), int(argv[2]))
        print(json.dumps({"events": n, "seconds": round(time.perf_counter() - started, 1)}))
        return
    peer, lake = argv[1], argv[2]
    if peer.startswith("duckdb-"):
        what, _, threads = peer.removeprefix("duckdb-").partition("-")
        result = run_duckdb(lake, what, int(threads or 0))
    else:
        result = run_tenantwatch(lake, peer)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _child(sys.argv[1:])
