"""Sigma benchmark: every rule of the pack (``rules/``) over one hour of the detect benchmark's
lake, beside one DuckDB scan of the same hour.

The hour is the detect benchmark's window (``bench.detect``: ``--events`` events for 1,000 tenants
over 14 days, so about ``events / 337`` in the hour). That lake leaves ``raw`` empty, which would
make every JSON field free; here each event gets the record it would have come from (about 450
bytes of CloudTrail JSON, or an access-log line), written as one Parquet file. The peer reads that
file once with DuckDB, every column, with one condition on ``raw``: the floor under any rule that
reads the original record. tenantwatch's side is the ``sigma`` detector as a run uses it: the pack
compiled, the window read from the Parquet file, every rule's query, the findings.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def window_with_records(lake: Path) -> pa.Table:
    """The detect benchmark's window hour, each event with the record it came from in ``raw``."""
    from bench.detect import SINCE
    from pipeline.lake import Lake, read_events

    table = read_events(Lake(str(lake)), SINCE, SINCE + timedelta(hours=1))
    rows = table.select(
        [
            "event_id",
            "event_time",
            "source",
            "service",
            "action",
            "actor_principal",
            "actor_type",
            "target_tenant",
            "source_ip",
            "user_agent",
            "account_id",
            "region",
            "error_code",
        ]
    ).to_pylist()
    raw = []
    for r in rows:
        if r["source"] == "cloudtrail":
            rec: dict[str, Any] = {
                "eventVersion": "1.09",
                "userIdentity": {
                    "type": r["actor_type"],
                    "arn": r["actor_principal"],
                    "accountId": r["account_id"],
                    "accessKeyId": "ASIA-fingerprint-0123456789abcdef",
                },
                "eventTime": r["event_time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "eventSource": r["service"],
                "eventName": r["action"],
                "awsRegion": r["region"],
                "sourceIPAddress": r["source_ip"],
                "userAgent": r["user_agent"],
                "requestParameters": {
                    "bucketName": "acme-saas-tenant-data",
                    "key": f"tenants/{r['target_tenant']}/invoices/2026-03.pdf",
                },
                "eventID": r["event_id"],
                "eventType": "AwsApiCall",
                "recipientAccountId": r["account_id"],
            }
            if r["error_code"]:
                rec["errorCode"] = r["error_code"]
        else:
            rec = {
                "requestId": r["event_id"],
                "ip": r["source_ip"],
                "routeKey": r["action"],
                "status": 403 if r["error_code"] else 200,
                "authorizerTenantId": r["target_tenant"],
            }
        raw.append(json.dumps(rec, separators=(",", ":")))
    i = table.schema.get_field_index("raw")
    return table.set_column(i, "raw", pa.array(raw, pa.string()))


def run_sigma(path: Path) -> dict[str, Any]:
    """The pack over the hour in ``path``: seconds to compile, per rule and in all."""
    from detectors.base import to_frame
    from detectors.sigma import SigmaRules, _arrow
    from detectors.sigma.rules import load
    from detectors.sigma.view import connect

    t0 = time.perf_counter()
    rules = load([], pack=True)
    compiled = time.perf_counter() - t0
    totals = []
    for _ in range(2):  # the first in the process, then again (a warm function's run)
        t1 = time.perf_counter()
        window = pq.read_table(path)
        det = SigmaRules(rules=rules)
        found = det.detect(None, window)
        totals.append(time.perf_counter() - t1)
    # Each rule alone, on the connection the detector builds (the view included once).
    frame = to_frame(window)
    con = connect(_arrow(frame), None, derive=True)
    per_rule = []
    for r in rules.rules:
        t = time.perf_counter()
        n = con.execute(f"SELECT count(*) FROM ({r.sql})").fetchone()  # noqa: S608
        per_rule.append((r.title, r.kind, time.perf_counter() - t, int((n or (0,))[0])))
    con.close()
    return {
        "events": window.num_rows,
        "compile_s": compiled,
        "first_s": totals[0],
        "total_s": totals[1],
        "findings": found.num_rows,
        "failed": det.failures,
        "rules": per_rule,
    }


def run_duckdb(path: Path) -> tuple[float, int]:
    """One scan of the hour: every column read, one condition on the original record."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 1")
    t = time.perf_counter()
    (n,) = con.execute(
        "SELECT count(*) FROM (SELECT * FROM read_parquet(?) "
        "WHERE lower(json_extract_string(raw, '$.eventName')) = 'stoplogging')",
        [str(path)],
    ).fetchone() or (0,)
    return time.perf_counter() - t, int(n)


def main(args: argparse.Namespace) -> None:
    from bench.detect import SINCE, dataset

    lake, n = dataset(args.data, args.events)
    with tempfile.TemporaryDirectory(prefix="tenantwatch-bench-sigma-") as tmp:
        path = Path(tmp) / "hour.parquet"
        pq.write_table(window_with_records(lake), path)
        size_mb = path.stat().st_size / 1e6
        scan_s, _ = run_duckdb(path)
        res = run_sigma(path)
        scan2_s, _ = run_duckdb(path)  # again, now the file is in the page cache for both
    scan = min(scan_s, scan2_s)
    print(
        f"\nsigma: the pack ({len(res['rules'])} rules) over {res['events']:,} events "
        f"({SINCE:%Y-%m-%d %H:00} + 1 h of a {n:,}-event lake, {size_mb:.1f} MB of Parquet), "
        f"DuckDB with 1 thread, {os.cpu_count()} CPUs\n"
    )
    head = ("rule", "kind", "seconds", "matches")
    out = [head]
    for title, kind, secs, hits in res["rules"]:
        out.append((title[:70], kind, f"{secs:.3f}", f"{hits:,}"))
    per_rule = sum(s for _, _, s, _ in res["rules"])
    out.append(("all rules, one after another", "", f"{per_rule:.3f}", ""))
    out.append(("sigma detector: read, every rule, findings", "", f"{res['total_s']:.3f}", ""))
    out.append(("  the same, first in a new process", "", f"{res['first_s']:.3f}", ""))
    out.append(("compiling the pack (pySigma), once per run", "", f"{res['compile_s']:.3f}", ""))
    out.append(("duckdb: one scan of the hour, every column", "peer", f"{scan:.3f}", ""))
    widths = [max(len(r[i]) for r in out) for i in range(len(head))]
    for k, row in enumerate(out):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    if res["failed"]:
        print(f"\nrules that failed: {res['failed']}")
