"""Benchmarks, each beside its peers, printed as tables. A benchmark prints; it never asserts.

    .venv/bin/python bench/run.py [--only NAME] [--records N] [--events N] [--data DIR]
                                  [--attacks N] [--bursts N] [--spark-sizes N [N ...]]
                                  [--spark-engines ENGINE [ENGINE ...]]

``BENCHMARKS`` is the registry: a name and a function taking the parsed options. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import detect, ingest, latency, rules_bench, spark, tenancy  # noqa: E402  (the repository root is on the path only from here)

BENCHMARKS: dict[str, Callable[[argparse.Namespace], None]] = {
    "ingest": ingest.main,
    "detect": detect.main,
    "tenancy": tenancy.main,
    "latency": latency.main,
    "sigma": rules_bench.main,
    "spark": spark.main,
}
EVENTS = 10_000_000


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="repeatable")
    ap.add_argument(
        "--records",
        type=int,
        default=500_000,
        help="CloudTrail records to ingest (default 500,000: the size bench/README.md quotes)",
    )
    ap.add_argument(
        "--events",
        type=int,
        default=None,
        help="events in the detect and tenancy benchmarks' lakes (default 10,000,000); "
        "spark: that one size, unless --spark-sizes",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="ingest: rounds of tenantwatch and DuckDB, alternating; the table shows medians",
    )
    ap.add_argument(
        "--attacks",
        type=int,
        default=50,
        help="latency: objects with a cross-tenant access put one at a time (default 50)",
    )
    ap.add_argument(
        "--bursts",
        type=int,
        default=5,
        help="latency: denial bursts paged by the schedule, per schedule mode (default 5)",
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=Path("/tmp/tenantwatch-bench"),
        help="where generated inputs are cached, keyed by their parameters",
    )
    ap.add_argument(
        "--spark-sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="spark: the lake sizes in events, each run on both engines (unless --spark-engines) "
        f"(default: --events if given, else {', '.join(f'{n:,}' for n in spark.SIZES)})",
    )
    ap.add_argument(
        "--spark-engines",
        nargs="+",
        choices=spark.ENGINES,
        metavar="ENGINE",
        help="spark: only these engines (local, spark; default both), e.g. to run again a size "
        "whose Spark run failed",
    )
    ap.add_argument(
        "--spark-detectors",
        nargs="+",
        metavar="ID",
        help="spark: only these detectors (default: every one the configuration enables)",
    )
    ap.add_argument(
        "--spark-conf",
        action="append",
        metavar="KEY=VALUE",
        help="spark: a setting of the session (repeatable), e.g. spark.driver.memory=4g",
    )
    args = ap.parse_args(argv)
    # spark runs at --events only when it is given: make bench keeps its default size small.
    args.events_given = args.events is not None
    args.events = EVENTS if args.events is None else args.events
    for name in args.only or list(BENCHMARKS):
        BENCHMARKS[name](args)


if __name__ == "__main__":
    main()
