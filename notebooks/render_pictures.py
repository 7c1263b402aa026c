"""Render the README's pictures from ``sample_logs/`` (``make pictures``).

    .venv/bin/python notebooks/render_pictures.py [--lake LAKE] [--logs DIR] [--out docs/img]

Builds a lake from the sample in a temporary folder unless ``--lake`` holds events, then draws
one picture per plot helper (``pipeline/plots.py``) from the attack day's incidents:

- ``tenant_timeline.png``: the enumeration incident's actor, its tenants over the day;
- ``denials_baseline.png``: the credential-stuffing tenant's denials against its baseline band;
- ``switching_features.png``: the tenant-switching feature space with the flagged actor-hours.

The PNGs carry no software version or date, so the same sample gives the same bytes on one
machine (fonts and the matplotlib version can still change pixels elsewhere).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import matplotlib  # noqa: E402
import pandas as pd  # noqa: E402

matplotlib.use("Agg")

from pipeline import notebook as tw  # noqa: E402
from pipeline import plots  # noqa: E402
from pipeline.config import Config  # noqa: E402

PNG = {"dpi": 110, "metadata": {"Software": None}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", default="")
    ap.add_argument("--logs", default=str(REPO / "sample_logs"))
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = tw.config(logs=args.logs)
    with tempfile.TemporaryDirectory(prefix="tenantwatch-pictures-") as tmp:
        draw(tw.ensure_lake(args.lake, args.logs, cfg, workdir=tmp), cfg, out)
    for name in ("tenant_timeline", "denials_baseline", "switching_features"):
        print(out / f"{name}.png")
    return 0


def draw(lake: str, cfg: Config, out: Path) -> None:

    # The timeline: the tenant-switching incident with the most tenants (the enumeration).
    incs = tw.incidents(lake, detector="tenant_switching", min_severity="high")
    inc = incs.assign(n=incs["tenants"].map(len)).sort_values("n", ascending=False).iloc[0]
    margin = pd.Timedelta(minutes=10)
    ev = tw.events(lake, inc["first_seen"] - margin, inc["last_seen"] + margin, actor=inc["actor"])
    fig = plots.tenant_timeline(
        ev,
        span=(inc["first_seen"], inc["last_seen"]),
        title=f"{inc['actor']} ({inc['actor_tenant']}): {inc['title'].split(':')[0]}",
    )
    fig.savefig(out / "tenant_timeline.png", **PNG)

    # The spike: the tenant with the largest authorization-failure finding.
    run = tw.run_detector(lake, "authz_failure_spike", cfg=cfg)
    found = run.findings[run.findings["dedup_key"].str.contains(":tenant|", regex=False)]
    tenant = found.iloc[0]["dedup_key"].rsplit("|", 1)[1]
    hourly = run.detector.hourly(run.window, "tenant", tenant)
    fig = plots.denials_vs_baseline(
        hourly,
        history_hours=48,
        threshold=run.detector.settings.threshold,
        title=f"Denials per hour for tenant {tenant} against its baseline",
    )
    fig.savefig(out / "denials_baseline.png", **PNG)

    # The feature space of the attack day.
    run = tw.run_detector(lake, "tenant_switching", cfg=cfg)
    det = run.detector
    fig = plots.switching_features(
        det.hours(run.window),
        det.population(3000),
        threshold=det.settings.threshold,
        title=f"Tenant switching, {run.since:%Y-%m-%d}: actor-hours",
    )
    fig.savefig(out / "switching_features.png", **PNG)


if __name__ == "__main__":
    raise SystemExit(main())
