"""Spark benchmark: a day's detection, with its 14 days of history, over a month of 2,000
tenants, on Spark ``local[2]`` (``run_detect_spark``) beside the local runner (``run_detect``),
at one or more lake sizes.

The lake is the detect benchmark's generator (``bench.detect.write_hours``) run for 30 days
(April 2026) and 2,000 tenants, ``--spark-sizes`` events (default ``SIZES``; ``--events N``
alone: that size), cached under ``--data``. The window is the month's last day, what
``tenantwatch detect`` detects by default (the lake's latest day), against the 14 days before
it (the windowed detectors' lookback). Every detector the pooled world's configuration enables
runs (``--spark-detectors``: only these).

Each run is a process of its own, started afresh: interpreter, imports, the Spark session (for
Spark) and the run. Wall time and the driver's peak RSS come from ``os.wait4``; Spark's driver
starts the JVM, which starts the Python workers that run the tasks, so the tree is sampled too
(``bench.proctree``): the JVM's peak, the workers' peak together and the largest one's, and the
tree's CPU time.

    python -m bench.spark generate LAKE EVENTS            # the lake; prints its summary
    python -m bench.spark run ENGINE LAKE [DETECTOR ...]  # one run; prints what it did
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import proctree

ROOT = Path(__file__).resolve().parent.parent
TENANTS = 2_000
DAYS = 30
MONTH = datetime(2026, 4, 1, tzinfo=UTC)  # April: 30 days; a fixed date keeps the cache key
SINCE = MONTH + timedelta(days=DAYS - 1)  # the window: the month's last day
UNTIL = SINCE + timedelta(days=1)
HISTORY = timedelta(days=14)  # the windowed detectors' lookback
# make bench's sizes (minutes): two, so that what the larger adds, fixed costs left out, is
# measured. The full run: --spark-sizes 10000000 25000000 50000000.
SIZES = (250_000, 1_000_000)
MASTER = "local[2]"
CORES = 2
ENGINES = ("local", "spark")
SAMPLE_S = 0.2


# --- the lake -------------------------------------------------------------------------------------


def dataset(data: Path, events: int) -> tuple[Path, dict[str, int]]:
    """(lake root, its summary: events, window and history events), generated in a child
    process if not cached (this process must stay small: a measured child starts from a copy
    of it)."""
    lake = data / f"spark-lake-e{events}-t{TENANTS}-d{DAYS}-s7"
    done = lake / "bench-summary.json"
    if not done.exists():
        shutil.rmtree(lake, ignore_errors=True)
        print(f"generating a {events:,}-event month in {lake} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "bench.spark", "generate", str(lake), str(events)]
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        done.write_text(out.stdout)
    return lake, json.loads(done.read_text())


def generate(lake: Path, events: int) -> dict[str, object]:
    """Write the month; its summary (per day, and the events of the window and its history)."""
    from bench.detect import write_hours

    started = time.perf_counter()
    hours = write_hours(lake, events, tenants=TENANTS, hours=DAYS * 24, start=MONTH)
    days = [sum(hours[d * 24 : (d + 1) * 24]) for d in range(DAYS)]
    first = (SINCE - HISTORY - MONTH).days
    return {
        "events": sum(days),
        "tenants": TENANTS,
        "days": days,
        "window": days[-1],
        "history": sum(days[first:-1]),
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- one run (a child process) --------------------------------------------------------------------


def run(engine: str, lake: str, only: Sequence[str], conf: dict[str, str]) -> dict[str, object]:
    """One engine's detection of the window; what it did, for the parent."""
    import detectors
    from detectors.base import two_step
    from pipeline.config import load_config

    # The pooled world's configuration: these events are shaped like its logs.
    cfg = load_config(ROOT / "sample_logs" / "tenantwatch.toml")
    chosen = tuple(only) or None
    session_s = 0.0
    started = time.perf_counter()
    if engine == "local":
        from pipeline.detect import run_detect

        res = run_detect(lake, cfg, SINCE, UNTIL, only=chosen, write=False)
    else:
        from pipeline.spark_detect import local_session, run_detect_spark

        # The workers import this checkout, as the driver does.
        env = {"spark.executorEnv.PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
        session = local_session(MASTER, {**env, **conf})
        session.sparkContext.setLogLevel("ERROR")
        session_s = time.perf_counter() - started
        try:
            res = run_detect_spark(lake, cfg, SINCE, UNTIL, only=chosen, write=False, spark=session)
        finally:
            session.stop()
    run_s = time.perf_counter() - started - session_s
    counts = res.summary["detectors"]
    # A detector that runs whole (no partitions) is one task on Spark: its window and history
    # in one Python worker; a two-step one scores its whole window in one task.
    largest = ("", 0)
    for det_id, det in detectors.from_config(cfg, chosen).items():
        if det_id not in counts or det.partitions:
            continue
        c = counts[det_id]
        held = c["window_events"] + (0 if two_step(det) else c["baseline_events"])
        largest = max(largest, (det_id, held), key=lambda x: x[1])
    return {
        "engine": engine,
        "findings": res.findings.num_rows,
        "failed": res.summary["failed"],
        "detectors": counts,
        "session_s": round(session_s, 2),
        "run_s": round(run_s, 2),
        "largest_task": {"detector": largest[0], "events": largest[1]},
        # The Python driver's own peak: wait4's figure would count the JVM it reaped.
        "driver_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One engine at one size: what the parent measured and what the run reported."""

    size: int
    engine: str
    records: int  # events in the window and its history
    wall_s: float
    cpu_s: float  # the process tree's
    rusage_mb: float  # os.wait4's ru_maxrss
    jvm_mb: float = 0.0
    workers_mb: float = 0.0  # the workers' PSS together, at its peak
    worker_mb: float = 0.0  # the largest worker's peak RSS
    workers: int = 0
    # What the run reported.
    own_mb: float = 0.0  # the driver process's own peak RSS (getrusage)
    findings: int = 0
    failed: list[str] = field(default_factory=list)
    session_s: float = 0.0
    task: tuple[str, int] = ("", 0)  # the largest task: detector, events
    error: str = ""  # the run did not end well: how, and where its log is

    @property
    def driver_mb(self) -> float:
        """The driver process's own peak RSS: wait4's for the local runner (a process that
        starts none), the process's own for Spark's (wait4's counts the JVM it reaped)."""
        return self.own_mb if self.engine == "spark" and self.own_mb else self.rusage_mb


def measure(
    size: int,
    engine: str,
    lake: Path,
    records: int,
    only: Sequence[str],
    conf: dict[str, str],
    logs: Path,
) -> Run:
    """Run one engine in a process of its own, its tree sampled; its stderr into ``logs``. A
    run that fails is a row too (``error``), with what was measured until it ended: a long run
    of several sizes still prints the others."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{engine}-e{size}.log"
    cmd = [sys.executable, "-m", "bench.spark", "run", engine, str(lake), *only]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    started = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, env=env)
        sampler = proctree.Sampler(proc.pid, SAMPLE_S) if proctree.available() else None
        if sampler:
            sampler.start()
        assert proc.stdout is not None
        output = proc.stdout.read()
        # Ended, not yet reaped: its final CPU time can still be read.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        if sampler:
            sampler.stop()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    r = Run(size, engine, records, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
    if code:  # -9: killed, as the kernel's OOM killer does
        r.error = f"exit code {code}, log {log}"
    else:
        report = json.loads(output.strip().splitlines()[-1])
        r.own_mb, r.findings = float(report["driver_mb"]), int(report["findings"])
        r.failed, r.session_s = sorted(report["failed"]), float(report["session_s"])
        r.task = (str(report["largest_task"]["detector"]), int(report["largest_task"]["events"]))
    if sampler:
        r.cpu_s = sampler.cpu_s()
        r.jvm_mb = sampler.peak_mb("java")
        workers = sampler.workers()
        r.workers = len(workers)
        r.worker_mb = max((p.peak_mb for p in workers), default=0.0)
        r.workers_mb = sampler.workers_peak_mb
        _wait_for(sampler)
    return r


def _wait_for(sampler: proctree.Sampler, seconds: float = 60.0) -> None:
    """Let what outlived the run (a JVM shutting down) end before the next run starts."""
    deadline = time.monotonic() + seconds
    while sampler.still_running() and time.monotonic() < deadline:
        time.sleep(0.2)


# --- the benchmark --------------------------------------------------------------------------------


def missing() -> str | None:
    """Why Spark cannot run here, or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install 'tenantwatch[spark]')"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no Java (Spark 3.5 needs Java 17)"
    return None


def sizes(args: argparse.Namespace) -> list[int]:
    """``--spark-sizes``; else ``--events`` if given; else ``SIZES``."""
    if getattr(args, "spark_sizes", None):
        return list(args.spark_sizes)
    if getattr(args, "events_given", False):
        return [args.events]
    return list(SIZES)


def main(args: argparse.Namespace) -> None:
    why = missing()
    if why:
        print(f"\nspark: not run: {why}")
        return
    only = tuple(getattr(args, "spark_detectors", None) or ())
    pairs = [c.split("=", 1) for c in getattr(args, "spark_conf", None) or ()]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit("--spark-conf: KEY=VALUE")
    conf = dict(pairs)
    runs = []
    for n in sizes(args):
        lake, summary = dataset(args.data, n)
        records = summary["window"] + summary["history"]
        for engine in getattr(args, "spark_engines", None) or ENGINES:
            r = measure(n, engine, lake, records, only, conf, args.data / "spark-logs")
            runs.append(r)
            # Each run whole as it ends: a run of several sizes stopped before its table keeps
            # the figures of those it ran.
            print(
                f"  {n:,} events, {engine}: {r.wall_s:.1f} s, {r.cpu_s:.1f} CPU s, "
                f"{r.records:,} events read, driver {r.driver_mb:,.0f} MB, "
                f"JVM {r.jvm_mb:,.0f} MB, workers {r.workers_mb:,.0f} MB, "
                f"largest worker {r.worker_mb:,.0f} MB, {r.findings:,} findings, "
                f"largest task {r.task[0] or '-'} ({r.task[1]:,} events) {r.error}",
                file=sys.stderr,
                flush=True,
            )
    what = ", ".join(only) if only else "every detector of sample_logs/tenantwatch.toml"
    print(
        f"\nspark: a month ({DAYS} days) of {TENANTS:,} tenants; window {SINCE:%Y-%m-%d} (a day) "
        f"+ {HISTORY.days} days of history; {what}; Spark {MASTER}; {os.cpu_count()} CPUs\n"
    )
    print(table(runs))
    print()
    print("\n".join(sizing(runs)))


def table(runs: Sequence[Run]) -> str:
    head = (
        "lake events",
        "engine",
        "events read",
        "wall s",
        "events/s",
        "CPU s",
        "events/CPU-s",
        "driver MB",
        "JVM MB",
        "workers MB",
        "largest worker MB",
        "findings",
        "note",
    )
    local = {r.size: r for r in runs if r.engine == "local"}
    out = [head]
    for r in runs:
        note = []
        base = local.get(r.size)
        if r.engine == "spark":
            if base is not None and not base.error:
                note.append(f"{r.wall_s / base.wall_s:.2f}x local's wall")
            note.append(f"session start {r.session_s:.1f} s")
            note.append(f"{r.workers} Python worker processes")
        if r.failed:
            note.append(f"failed: {', '.join(r.failed)}")
        if r.error:
            note = [f"did not end: {r.error}"]
        spark = r.engine == "spark"
        out.append(
            (
                f"{r.size:,}",
                "spark " + MASTER if spark else "local (run_detect)",
                f"{r.records:,}",
                f"{r.wall_s:,.1f}",
                "" if r.error else f"{r.records / r.wall_s:,.0f}",
                f"{r.cpu_s:,.1f}",
                f"{r.records / r.cpu_s:,.0f}" if r.cpu_s and not r.error else "",
                f"{r.driver_mb:,.0f}",
                f"{r.jvm_mb:,.0f}" if spark else "",
                f"{r.workers_mb:,.0f}" if spark else "",
                f"{r.worker_mb:,.0f}" if spark else "",
                "" if r.error else f"{r.findings:,}",
                "; ".join(note),
            )
        )
    widths = [max(len(row[i]) for row in out) for i in range(len(head))]
    lines = []
    for k, row in enumerate(out):
        cells = [
            c.ljust(w) if i in (1, len(head) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def sizing(runs: Sequence[Run]) -> list[str]:
    """The figures bench/README.md's sizing of a Glue job starts from: per Spark run, its rates
    and its largest task; between two sizes, what the larger one added (its fixed costs, the
    JVM's and the workers' start among them, left out)."""
    out = []
    ended = [r for r in runs if not r.error]
    spark = sorted((r for r in ended if r.engine == "spark"), key=lambda r: r.records)
    for r in spark:
        detector, held = r.task
        per = f": {r.worker_mb / held * 1e6:,.0f} MB per million" if held else ""
        out.append(
            f"{r.size:,} events, spark: {r.records / r.wall_s / CORES:,.0f} events/s per core "
            f"({CORES} cores, wall), {r.records / r.cpu_s:,.0f} events per CPU-s of the tree; "
            f"largest task: {detector or 'none'}, {held:,} events in one worker; largest "
            f"worker {r.worker_mb:,.0f} MB{per} (a worker's fixed memory included)"
        )
    for engine in ENGINES:
        mine = sorted((r for r in ended if r.engine == engine), key=lambda r: r.records)
        for a, b in itertools.pairwise(mine):
            more = b.records - a.records
            if more <= 0:
                continue
            cpu = b.cpu_s - a.cpu_s
            rate = f"{more / cpu:,.0f} events per CPU-s" if cpu > 0 else "no more CPU time"
            line = (
                f"{a.size:,} -> {b.size:,} events, {engine}: {cpu:+,.1f} CPU-s for {more:,} "
                f"more events read: {rate}"
            )
            held = b.task[1] - a.task[1]
            if engine == "spark" and held > 0:
                grew = b.worker_mb - a.worker_mb
                line += (
                    f"; the largest worker {grew:+,.0f} MB for {held:,} more events in its "
                    f"task: {grew / held * 1e6:,.0f} MB per million"
                )
            out.append(line)
    return out


def _child(argv: list[str]) -> None:
    if argv[0] == "generate":
        print(json.dumps(generate(Path(argv[1]), int(argv[2]))))
        return
    ap = argparse.ArgumentParser(prog="bench.spark run")
    ap.add_argument("engine", choices=ENGINES)
    ap.add_argument("lake")
    ap.add_argument("detectors", nargs="*")
    ap.add_argument("--conf", action="append", default=[])
    a = ap.parse_args(argv[1:])
    conf = dict(c.split("=", 1) for c in a.conf)
    print(json.dumps(run(a.engine, a.lake, a.detectors, conf), default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _child(sys.argv[1:])
