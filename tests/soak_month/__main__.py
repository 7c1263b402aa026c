"""``python -m tests.soak_month``: the month-long soak of the schedule (``make soak-month``).

Prints each simulated day's row of the table as it goes, then the table and the checks; exits 1
if a check failed or the wall-time limit (or an interrupt, Ctrl-C) stopped the month. Each day
ends with a checkpoint in ``--workdir``: ``--resume`` plays a stopped month on from it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from tests.soak_month import MonthSpec, run, summary
from tests.soak_month.server import MotoProcess
from tests.soak_month.table import TABLE_HEAD


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C, or SIGTERM (a run in the background, where the shell ignores SIGINT for it), stops
    # the month and prints what it measured.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    p = argparse.ArgumentParser(prog="python -m tests.soak_month", description=__doc__)
    d = MonthSpec()
    p.add_argument("--days", type=int, default=d.days)
    p.add_argument("--events-per-day", type=int, default=d.events_per_day)
    p.add_argument("--tenants", type=int, default=d.tenants)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--late-share", type=float, default=d.late_share)
    p.add_argument("--twice-share", type=float, default=d.twice_share)
    p.add_argument("--notify-share", type=float, default=d.notify_share)
    p.add_argument("--tick-minutes", type=int, default=d.tick_minutes)
    p.add_argument(
        "--no-sliding",
        action="store_true",
        help="ticks detect a window only a lag after it ends (SlidingWindows=false)",
    )
    p.add_argument(
        "--max-minutes", type=float, default=None, help="stop playing after this much wall time"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the simulated logs and each day's checkpoint go (default: a temporary folder)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="play on from the last day's checkpoint in --workdir (a month stopped or killed), "
        "with the same options",
    )
    args = p.parse_args(argv)
    if args.resume and args.workdir is None:
        p.error("--resume needs the --workdir of the month to play on")
    spec = MonthSpec(
        days=args.days,
        events_per_day=args.events_per_day,
        tenants=args.tenants,
        seed=args.seed,
        late_share=args.late_share,
        twice_share=args.twice_share,
        notify_share=args.notify_share,
        tick_minutes=args.tick_minutes,
        sliding=not args.no_sliding,
        wall_limit_s=args.max_minutes * 60 if args.max_minutes else None,
    )
    with tempfile.TemporaryDirectory(prefix="tenantwatch-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        print(TABLE_HEAD, flush=True)  # then each day's row as it is played
        with MotoProcess() as endpoint:
            res = run(
                spec,
                workdir,
                endpoint,
                progress=lambda line: print(line, flush=True),
                resume=args.resume,
            )
    print()
    print(summary(res))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
