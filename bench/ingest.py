"""Ingest benchmark: ``tenantwatch ingest`` beside DuckDB and the pandas way, on the same files.

Inputs are simulator CloudTrail delivery files (``tenantwatch simulate``), generated once per size
and cached. Each peer runs in its own process; its wall time, CPU time (user + sys, its worker
processes included) and peak RSS come from ``os.wait4``, so no peer measures itself.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Simulator CloudTrail records per unit of events_per_day x days (measured: ~0.60).
_CT_PER_EVENT = 0.55
_DAYS = 15
PANDAS_RECORDS = 100_000  # json_normalize needs ~11 GB per million records


@dataclass
class Result:
    peer: str
    records: int
    wall_s: float
    cpu_s: float
    rss_mb: float
    note: str = ""
    scale: float = 1.0  # > 1: measured on a subset, wall and CPU scaled to the full input
    cpu_split: tuple[float, float] = (0.0, 0.0)  # tenantwatch's cpu_s: main process, workers


def dataset(data: Path, records: int) -> tuple[Path, int]:
    """(folder of CloudTrail delivery files, their record count), generated if not cached.

    The simulator runs in a child process: this one must stay small, because a child starts
    from a copy of it and Linux counts that copy in the child's peak RSS.
    """
    events_per_day = math.ceil(records / _DAYS / _CT_PER_EVENT)
    while True:
        # "pooled": the world, whose tenantwatch.toml (beside the logs) the runs read.
        folder = data / f"sim-e{events_per_day}-d{_DAYS}-s7-pooled"
        done = folder / "bench-summary.json"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            print(f"generating simulator logs in {folder} ...", file=sys.stderr, flush=True)
            code = (
                "import json, sys; from pathlib import Path;"
                "from pipeline.simulate import SimulationSpec, simulate;"
                "spec = SimulationSpec(events_per_day=int(sys.argv[2]), days=int(sys.argv[3]));"
                "print(json.dumps(simulate(Path(sys.argv[1]), spec)))"
            )
            cmd = [sys.executable, "-c", code, str(folder), str(events_per_day), str(_DAYS)]
            summary = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
            done.write_text(summary.stdout)
        n = int(json.loads(done.read_text())["cloudtrail_records"])
        if n >= records:
            (trail,) = folder.glob("AWSLogs/*/CloudTrail")
            return trail, n
        events_per_day = math.ceil(events_per_day * records / n * 1.02)


def measure(
    peer: str, cmd: list[str], records: int, scale: float = 1.0, env: dict[str, str] | None = None
) -> Result:
    started = time.perf_counter()
    environ = {**os.environ, **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=environ)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{peer}: exit code {proc.returncode}")
    try:
        reported = json.loads(output)
    except json.JSONDecodeError:
        reported = json.loads(output.strip().splitlines()[-1])
    n = int(reported.get("records", reported.get("records_in", 0)))
    note = "" if n == records else f"{n:,} records"
    cpu = usage.ru_utime + usage.ru_stime
    split = reported.get("cpu_s", {})
    return Result(
        peer,
        n,
        wall * scale,
        cpu * scale,
        usage.ru_maxrss / 1024,
        note,
        scale,
        (split.get("main", 0.0), split.get("workers", 0.0)),
    )


def measure_pair(peer: str, cmds: list[list[str]], records: int) -> Result:
    """Two commands started together: wall time until both end, CPU time and records summed,
    the larger peak RSS."""
    started = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.DEVNULL) for c in cmds]
    ended = [os.wait4(proc.pid, 0) for proc in procs]
    wall = time.perf_counter() - started
    codes = [os.waitstatus_to_exitcode(status) for _, status, _ in ended]
    if any(codes):
        raise SystemExit(f"{peer}: exit codes {codes}")
    cpu = sum(usage.ru_utime + usage.ru_stime for _, _, usage in ended)
    rss = max(usage.ru_maxrss / 1024 for _, _, usage in ended)
    return Result(peer, records * len(cmds), wall, cpu, rss)


def median(runs: list[Result]) -> Result:
    """The median wall and CPU time of a peer's rounds (and its highest peak RSS), the spread of
    its CPU time in the note."""
    cpu = sorted(r.cpu_s for r in runs)
    out = replace(
        runs[0],
        wall_s=statistics.median(r.wall_s for r in runs),
        cpu_s=statistics.median(cpu),
        rss_mb=max(r.rss_mb for r in runs),
    )
    if len(runs) > 1:
        out.note = f"median of {len(runs)}, CPU s {cpu[0]:.1f}-{cpu[-1]:.1f}"
    return out


def main(args: argparse.Namespace) -> None:
    trail, n = dataset(args.data, args.records)
    files = sum(1 for _ in trail.rglob("*.json.gz"))
    size = sum(p.stat().st_size for p in trail.rglob("*.json.gz"))
    work = args.data / "out"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tw = str(BIN / "tenantwatch")
    peer = [sys.executable, "-m", "bench.peers"]
    # The peers whose ratios matter are measured in alternating rounds (this machine's speed
    # drifts 10-15 % within minutes, more than the differences measured): median per peer.
    # "Side by side" is what two cores give two processes that share nothing: two `--workers 1`
    # runs at once, each on all the input. Its speed-up is the most `--workers 2` could reach
    # on this machine (cores that share caches, memory and a host).
    names = ("tenantwatch --workers 1", "tenantwatch --workers 2", "duckdb, 1 thread")
    pair = "2 x --workers 1, side by side"
    close: dict[str, list[Result]] = {name: [] for name in (*names, pair)}

    # The simulated world's own configuration: tenant resolution is part of the work measured.
    config = ["--config", str(trail.parents[2] / "tenantwatch.toml")]

    def ingest_cmd(lake: str, workers: int) -> list[str]:
        """The ingest command into ``work/lake``, emptied first (every run starts a new lake)."""
        shutil.rmtree(work / lake, ignore_errors=True)
        lake_path = str(work / lake)
        return [tw, *config, "ingest", str(trail), "--lake", lake_path, "--workers", str(workers)]

    for _ in range(max(1, args.rounds)):
        for workers in (1, 2):
            cmd = [*ingest_cmd(f"lake-w{workers}", workers), "--json"]
            close[names[workers - 1]].append(measure(names[workers - 1], cmd, n))
        cmds = [ingest_cmd("lake-a", 1), ingest_cmd("lake-b", 1)]
        close[pair].append(measure_pair(pair, cmds, n))
        cmd = [*peer, "duckdb", str(trail), str(work / "d.parquet")]
        close[names[2]].append(measure(names[2], cmd, n))
    one, two, duck, both = (median(close[name]) for name in (*names, pair))

    def keeps_up(runs: list[Result]) -> str:
        """How many workers the main process could keep busy: its planning goes on beside the
        workers, batch after batch, so past (workers' CPU / its own) more workers would wait."""
        main = statistics.median(r.cpu_split[0] for r in runs)
        rest = statistics.median(r.cpu_split[1] for r in runs)
        if not main:  # a summary without cpu_s
            return ""
        return f"main process {main:.2f} CPU-s, enough for {rest / main:.1f} workers"

    def speedup(runs: list[Result], work_done: int) -> str:
        """Wall-time speed-up over `--workers 1` for the same work, per round and median."""
        rounds = [
            work_done * a.wall_s / b.wall_s for a, b in zip(close[names[0]], runs, strict=True)
        ]
        listed = ", ".join(f"{x:.2f}" for x in sorted(rounds))
        return f"{statistics.median(rounds):.2f}x (rounds {listed})"

    two.note = "; ".join(
        filter(
            None, [two.note, f"speed-up {speedup(close[names[1]], 1)}", keeps_up(close[names[1]])]
        )
    )
    most = f"the most for 2 processes: speed-up {speedup(close[pair], 2)}"
    both.note = "; ".join(filter(None, [both.note, most]))
    results = [one, two, both]
    # What the compiled decoder (pipeline/ingest/_ctscan.c) buys: the same run with the Python one.
    cmd = [*ingest_cmd("lake-py", 1), "--json"]
    python_decoder = measure("tenantwatch, Python decoder", cmd, n, env={"TENANTWATCH_NATIVE": "0"})
    python_decoder.note = "TENANTWATCH_NATIVE=0, --workers 1"
    results.append(python_decoder)
    results.append(duck)
    cmd = [*peer, "duckdb-fields", str(trail), str(work / "f.parquet")]
    results.append(measure("duckdb, fields only (no raw)", cmd, n))
    subset = min(n, PANDAS_RECORDS)
    cmd = [*peer, "pandas", str(trail), str(work / "p.parquet"), str(subset)]
    pandas = measure("pandas json_normalize", cmd, subset)
    pandas.scale = n / pandas.records
    pandas.wall_s, pandas.cpu_s = pandas.wall_s * pandas.scale, pandas.cpu_s * pandas.scale
    pandas.note = f"measured on {pandas.records:,}, times x{pandas.scale:.1f}"
    pandas.records = n
    results.append(pandas)
    shutil.rmtree(work, ignore_errors=True)
    print(
        f"\ningest: {n:,} simulator CloudTrail records in {files:,} files "
        f"({size / 1e6:,.0f} MB gzip), {os.cpu_count()} CPUs\n"
    )
    print(table(results, duck, pandas))


def table(results: list[Result], base: Result, slow: Result) -> str:
    base_rate = base.records / base.cpu_s
    slow_rate = slow.records / slow.cpu_s
    head = (
        "peer",
        "records",
        "wall s",
        "rec/s wall",
        "CPU s",
        "rec/CPU-s",
        "peak RSS MB",
        "x duckdb/CPU-s",
        "x pandas/CPU-s",
        "note",
    )
    rows = [head]
    for r in results:
        rate = r.records / r.cpu_s
        rows.append(
            (
                r.peer,
                f"{r.records:,}",
                f"{r.wall_s:,.1f}",
                f"{r.records / r.wall_s:,.0f}",
                f"{r.cpu_s:,.1f}",
                f"{rate:,.0f}",
                f"{r.rss_mb:,.0f}",
                f"{rate / base_rate:.2f}",
                f"{rate / slow_rate:.1f}",
                r.note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for k, row in enumerate(rows):
        cells = [
            c.ljust(w) if i in (0, len(head) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
