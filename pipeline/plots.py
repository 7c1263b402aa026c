"""Pictures for analysts: each helper takes DataFrames from ``pipeline.notebook`` (or a detector's
plot method) and returns a matplotlib ``Figure``; nothing is shown or saved here.

- ``tenant_timeline``: which tenant an actor touched and when, allowed or denied, with the
  incident's span shaded;
- ``denials_vs_baseline``: one group's denials per hour against the band that
  ``authz_failure_spike`` compared each hour with (``AuthzFailureSpike.hourly``);
- ``switching_features``: the actor-hours of a window in the tenant-switching feature space,
  over the population the model was fitted on, flagged hours highlighted
  (``TenantSwitching.hours`` and ``.population``);
- ``threshold_curves``: precision and recall of each detector as a setting moves (tuning).

matplotlib is imported when a helper is called, never with this module. Artists carry labels
(``gid`` where a legend label would be noise) so tests and notebooks can find them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

OUTCOME_STYLE = {  # outcome -> (marker, colour, legend label)
    "success": ("o", "#2a9d4b", "allowed"),
    "denied": ("x", "#d62728", "denied"),
    "error": ("s", "#8c8c8c", "error"),
}
NO_TENANT = "(no tenant)"
SPAN_COLOR = "#f4a261"


def _naive_utc(values: Any) -> Any:
    """tz-aware times -> naive UTC datetime64 (matplotlib's date axis has no zones)."""
    import pandas as pd

    ts = pd.to_datetime(pd.Series(values), utc=True)
    return ts.dt.tz_localize(None).to_numpy()


def _date_axis(ax: Axes) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kw: Any) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def tenant_timeline(
    events: pd.DataFrame,
    *,
    span: tuple[datetime, datetime] | None = None,
    own_tenant: str | None = None,
    title: str | None = None,
    max_tenants: int = 60,
) -> Figure:
    """One row per target tenant (the actor's own first, then in the order first touched), one
    mark per event: allowed, denied or error. ``span`` (an incident's first and last seen) is
    shaded; ``own_tenant`` (default: the actor's most common tenant) is banded. Needs
    ``event_time``, ``target_tenant``, ``outcome`` (and ``actor_tenant`` for the default)."""
    import pandas as pd

    ev = events.sort_values("event_time", kind="stable")
    target = ev["target_tenant"].astype(object).where(ev["target_tenant"].notna(), NO_TENANT)
    if own_tenant is None and "actor_tenant" in ev and ev["actor_tenant"].notna().any():
        own_tenant = str(ev["actor_tenant"].astype(object).dropna().mode().iloc[0])
    order = list(dict.fromkeys(target))
    if own_tenant in order:
        order.remove(own_tenant)
        order.insert(0, own_tenant)
    hidden = order[max_tenants:]
    order = order[:max_tenants]
    row = {t: i for i, t in enumerate(order)}

    fig, axes = _figure(10, 1.4 + 0.19 * max(len(order), 3))
    ax = axes[0][0]
    if own_tenant in row:
        ax.axhspan(-0.5, 0.5, color="#dbe9f6", zorder=0, gid="own_tenant")
    if span is not None:
        t0, t1 = _naive_utc(list(span))
        ax.axvspan(t0, t1, color=SPAN_COLOR, alpha=0.25, zorder=0, label="incident span")
    when = pd.Series(_naive_utc(ev["event_time"]), index=ev.index)
    keep = target.isin(row)
    outcome = ev["outcome"].astype(object)
    for name, (marker, color, label) in OUTCOME_STYLE.items():
        mine = keep & (outcome == name)
        if mine.any():
            ax.scatter(
                when[mine],
                target[mine].map(row),
                marker=marker,
                color=color,
                s=28,
                linewidths=1.2,
                label=f"{label} ({int(mine.sum())})",
                gid=name,
                zorder=3,
            )
    ax.set_yticks(range(len(order)), [f"{t} (own)" if t == own_tenant else t for t in order])
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.set_ylabel("target tenant")
    ax.set_xlabel("time (UTC)")
    _date_axis(ax)
    ax.grid(axis="x", alpha=0.3)
    more = f" (+{len(hidden)} tenants not shown)" if hidden else ""
    ax.set_title((title or "Tenants touched over time") + more, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def denials_vs_baseline(
    hourly: pd.DataFrame,
    *,
    title: str | None = None,
    history_hours: int | None = 72,
    threshold: float | None = None,
) -> Figure:
    """Denials per hour for one group or several (a ``value`` column: one panel each), from
    ``AuthzFailureSpike.hourly``: the last ``history_hours`` of history in grey, the window's
    hours in blue (red where they page), the band level ± threshold robust-z spreads, the
    median, and the line at which an hour pages (the z threshold or the ``min_count`` floor,
    whichever is higher)."""
    import numpy as np
    import pandas as pd

    groups = list(dict.fromkeys(hourly["value"])) if "value" in hourly else [None]
    fig, axes = _figure(11, 0.6 + 2.6 * len(groups), nrows=len(groups), sharex=True)
    width = 1 / 24 * 0.9  # an hour, in days
    for ax, group in zip((a[0] for a in axes), groups, strict=True):
        h = hourly if group is None else hourly[hourly["value"] == group]
        hist, win = h[h["part"] == "history"], h[h["part"] == "window"]
        if history_hours is not None and len(win):
            hist = hist[hist["hour"] >= win["hour"].min() - pd.Timedelta(hours=history_hours)]
        x_hist, x_win = _naive_utc(hist["hour"]), _naive_utc(win["hour"])
        ax.bar(x_hist, hist["count"], width, align="edge", color="#b0b0b0", label="history")
        flagged = win["flagged"].fillna(False).to_numpy(dtype=bool)
        ax.bar(
            x_win[~flagged],
            win["count"].to_numpy()[~flagged],
            width,
            align="edge",
            color="#4c78a8",
            label="window",
        )
        if flagged.any():
            ax.bar(
                x_win[flagged],
                win["count"].to_numpy()[flagged],
                width,
                align="edge",
                color="#d62728",
                label="pages",
            )
        if len(win):
            # Step lines over each hour: repeat the last value so the final hour is drawn too.
            edges = np.append(x_win, x_win[-1] + np.timedelta64(1, "h"))

            def step(col: str, w: pd.DataFrame = win) -> Any:
                v = w[col].to_numpy(dtype=float)
                return np.append(v, v[-1])

            level, alert_at = step("level"), step("alert_at")
            if threshold is not None:
                half = threshold * step("spread") / 0.6745
            else:  # the z band is what lies under alert_at before the floor lifted it
                half = np.maximum(alert_at - level, 0)
            ax.fill_between(
                edges,
                np.maximum(level - half, 0),
                level + half,
                step="post",
                color="#4c78a8",
                alpha=0.15,
                label="baseline band",
            )
            ax.step(edges, level, where="post", color="#1f3b5a", lw=1.2, label="median")
            ax.step(
                edges, alert_at, where="post", color="#d62728", lw=1.2, ls="--", label="pages at"
            )
        ax.set_ylabel("denials / hour")
        default = "Denials per hour" if group is None else f"Denials per hour: {group}"
        ax.set_title(title or default, loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _date_axis(ax)
        ax.grid(axis="y", alpha=0.3)
    axes[-1][0].set_xlabel("hour (UTC)")
    return fig


def switching_features(
    hours: pd.DataFrame,
    population: pd.DataFrame | None = None,
    *,
    threshold: float | None = None,
    x: str = "tenants",
    y: str = "new_tenants",
    label: int = 5,
    title: str | None = None,
) -> Figure:
    """The tenant-switching feature space: left ``x`` against ``y``, right ``x`` against the
    IsolationForest score (with ``threshold``). Grey: the history's actor-hours the model was
    fitted on; blue: the window's; red: the hours that were flagged, the ``label`` highest
    named. Counts are on a log(1 + n) scale (as the model sees them)."""
    import numpy as np

    fig, axes = _figure(12, 4.8, ncols=2)
    left, right = axes[0]
    flagged = np.asarray(hours["flagged"].fillna(False), dtype=bool)
    rng = np.random.default_rng(0)  # jitter integer counts a little so that piles show

    def jitter(v: Any, scale: float) -> Any:
        arr = np.asarray(v, dtype=float)
        return arr + rng.uniform(-scale, scale, len(arr))

    panels = ((left, y, 0.15), (right, "model_score", 0.0))
    for ax, col, scale in panels:
        if population is not None and len(population):
            ax.scatter(
                jitter(population[x], 0.15),
                jitter(population[col], scale),
                s=6,
                color="#b0b0b0",
                alpha=0.5,
                label=f"history ({len(population)} actor-hours)",
                gid="population",
            )
        calm = hours[~flagged]
        ax.scatter(
            jitter(calm[x], 0.15),
            jitter(calm[col], scale),
            s=10,
            color="#4c78a8",
            alpha=0.6,
            label=f"window ({len(calm)})",
            gid="window",
        )
        hot = hours[flagged]
        ax.scatter(
            hot[x],
            hot[col],
            s=60,
            facecolors="none",
            edgecolors="#d62728",
            linewidths=1.6,
            label=f"flagged ({len(hot)})",
            gid="flagged",
            zorder=4,
        )
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel(f"{x} in the hour")
        ax.grid(alpha=0.3)
    # One note per point: a principal and its address often sit on the same spot.
    top = hours[flagged].sort_values("score", ascending=False).head(label)
    notes: dict[tuple[float, float], list[str]] = {}
    for r in top.itertuples(index=False):
        point = (float(getattr(r, x)), float(getattr(r, y)))
        notes.setdefault(point, []).append(f"{r.actor_kind} {_short(r.actor)}")
    for (px, py), names in notes.items():
        left.annotate(
            "\n".join(names),
            (px, py),
            xytext=(-9, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=8,
            color="#8b1a1a",
        )
    left.set_yscale("symlog", linthresh=1)
    left.set_ylabel(f"{y} in the hour")
    left.set_title(title or "Tenant switching: actor-hours", loc="left")
    if threshold is not None:
        right.axhline(threshold, color="#d62728", ls="--", lw=1.2, label=f"threshold {threshold}")
    right.set_ylabel("IsolationForest anomaly score")
    right.set_title("Model score (a rule hit pages at any score)", loc="left")
    right.legend(loc="lower right", fontsize=8)
    return fig


def threshold_curves(metrics: pd.DataFrame, chosen: dict[str, Any] | None = None) -> Figure:
    """Precision and recall of each detector as one setting moves: ``metrics`` has
    ``detector``, ``setting``, ``value``, ``precision``, ``recall`` and optionally ``current``
    (the configured value); ``chosen`` maps a detector to the value picked."""
    detectors = list(dict.fromkeys(metrics["detector"]))
    fig, axes = _figure(4.2 * max(len(detectors), 1), 3.6, ncols=max(len(detectors), 1))
    for ax, det in zip(axes[0], detectors, strict=False):
        m = metrics[metrics["detector"] == det].sort_values("value")
        ax.plot(m["value"], m["recall"], "o-", color="#2a9d4b", label="recall", gid="recall")
        ax.plot(
            m["value"], m["precision"], "s--", color="#4c78a8", label="precision", gid="precision"
        )
        if "current" in m and m["current"].notna().any():
            ax.axvline(m["current"].iloc[0], color="#8c8c8c", lw=1, ls=":", label="current")
        if chosen and det in chosen:
            ax.axvline(chosen[det], color="#d62728", lw=1.4, label="chosen", gid="chosen")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(str(m["setting"].iloc[0]))
        ax.set_title(det, loc="left")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share")
    axes[0][-1].legend(loc="lower left", fontsize=8)
    return fig


def _short(actor: Any, n: int = 28) -> str:
    s = str(actor)
    s = s.split(":assumed-role/", 1)[1] if ":assumed-role/" in s else s
    return s if len(s) <= n else s[: n - 1] + "…"


def figure_data(fig: Figure, gid: str) -> list[Sequence[float]]:
    """The offsets of the scatter collections with ``gid`` (for tests and quick checks)."""
    import numpy as np

    out = []
    for ax in fig.axes:
        for c in ax.collections:
            if c.get_gid() == gid:
                out.append(np.asarray(c.get_offsets()).tolist())
    return out
