"""Simulator throughput: writes ~1,000,000 CloudTrail records and prints records per second.

    .venv/bin/python bench/simulate_speed.py [--events-per-day N] [--days D] [--world W] [--out DIR]

A benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from pipeline.simulate import WORLDS, SimulationSpec, simulate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events-per-day", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=15)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--world", choices=WORLDS, default="pooled")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="tw-sim-bench-"))
    spec = SimulationSpec(
        tenants=args.tenants,
        days=args.days,
        events_per_day=args.events_per_day,
        world=args.world,
    )
    t0 = time.perf_counter()
    summary = simulate(out, spec)
    dt = time.perf_counter() - t0
    ct = summary["cloudtrail_records"]
    api = summary["apigateway_records"]
    print(f"cloudtrail records  {ct:>12,}")
    print(f"api requests        {api:>12,}")
    print(f"bytes written       {summary['bytes_written']:>12,}")
    print(f"elapsed             {dt:>12.1f} s")
    print(f"cloudtrail rec/s    {ct / dt:>12,.0f}")
    print(f"all records/s       {(ct + api) / dt:>12,.0f}")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
