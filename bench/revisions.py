"""Ingest speed of two checkouts of tenantwatch on the same input, in alternating rounds.

    .venv/bin/python bench/revisions.py --before ../other-checkout [--records 200000] [--rounds 5]

What a change costs: ``--before`` is another checkout (``git worktree add ../before <rev>``, then
``make -C ../before test`` or any target that builds its ``.venv``), and "after" is this one.
Both ingest the ingest benchmark's CloudTrail input (``bench/ingest.py``'s cached simulator
logs, with the pooled world's configuration beside them, so tenant resolution is part of the
work) with ``--workers 1``, one after the other, round after round; the table shows medians of
CPU time (user + sys, from ``os.wait4``: the number to compare on a busy machine), wall time and
records per CPU-second, and checks that both lakes hold the same number of events with a tenant.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import dataset  # noqa: E402  (the repository root is on the path only from here)


def run(tree: Path, config: Path, trail: Path, lake: Path) -> tuple[float, float, dict]:
    shutil.rmtree(lake, ignore_errors=True)
    cmd = [str(tree / ".venv/bin/tenantwatch"), "--config", str(config), "ingest", str(trail)]
    cmd += ["--lake", str(lake), "--workers", "1", "--json"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{tree}: exit code {os.waitstatus_to_exitcode(status)}")
    return usage.ru_utime + usage.ru_stime, time.perf_counter() - started, json.loads(out)


def resolved(lake: Path) -> tuple[int, int]:
    """Events with an actor tenant, and with a target tenant."""
    import pyarrow.dataset as ds

    table = ds.dataset(lake / "events", format="parquet", partitioning="hive").to_table(
        columns=["actor_tenant", "target_tenant"]
    )
    return (
        table.num_rows - table["actor_tenant"].null_count,
        table.num_rows - table["target_tenant"].null_count,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the other checkout")
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", type=Path, default=Path("/tmp/tenantwatch-bench"))
    args = ap.parse_args(argv)
    trail, n = dataset(args.data, args.records)
    config = trail.parents[2] / "tenantwatch.toml"
    trees = {"before": args.before.resolve(), "after": ROOT}
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    tenants: dict[str, tuple[int, int]] = {}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            lake = args.data / "out" / f"revisions-{name}"
            cpu, wall, summary = run(tree, config, trail, lake)
            got[name].append((cpu, wall))
            tenants[name] = resolved(lake)
            assert summary["records_in"] == n, summary
    print(f"ingest, {n:,} CloudTrail records, --workers 1, {args.rounds} alternating rounds")
    print(f"{'checkout':<50} {'CPU s':>7} {'wall s':>7} {'rec/CPU-s':>10} {'tenants':>17}")
    base = statistics.median(c for c, _ in got["before"])
    for name, tree in trees.items():
        cpu = statistics.median(c for c, _ in got[name])
        wall = statistics.median(w for _, w in got[name])
        actor, target = tenants[name]
        label = f"{name}: {tree}"[:50]
        print(
            f"{label:<50} {cpu:7.2f} {wall:7.2f} {n / cpu:10,.0f} {actor:>8,}/{target:<8,}"
            + ("" if name == "before" else f"  CPU {cpu / base - 1:+.1%}")
        )


if __name__ == "__main__":
    main()
