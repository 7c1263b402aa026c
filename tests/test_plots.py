"""Plot helpers (pipeline/plots.py): each figure has the artists and the data it should show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from matplotlib.dates import date2num
from matplotlib.figure import Figure

from detectors.authz_failure_spike import AuthzFailureSpike, Settings
from pipeline import plots
from tests.factories import T0, api, events


def _timeline_events() -> pd.DataFrame:
    rows = [
        {"event_time": T0 + timedelta(minutes=m), "target_tenant": t, "outcome": o}
        for m, t, o in [
            (0, "t0001", "success"),
            (5, "t0002", "denied"),
            (6, "t0003", "denied"),
            (7, "t0004", "success"),
            (9, None, "error"),
        ]
    ]
    return pd.DataFrame(rows).assign(actor_tenant="t0001")


def test_import_does_not_load_matplotlib_eagerly() -> None:
    import subprocess
    import sys

    code = "import sys, pipeline.plots, pipeline.notebook; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_timeline_has_one_mark_per_event_on_its_tenant_row() -> None:
    ev = _timeline_events()
    span = (T0 + timedelta(minutes=5), T0 + timedelta(minutes=7))
    fig = plots.tenant_timeline(ev, span=span, title="usr-a")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows == ["t0001 (own)", "t0002", "t0003", "t0004", plots.NO_TENANT]
    allowed, denied, errors = (plots.figure_data(fig, g)[0] for g in ("success", "denied", "error"))
    assert [y for _, y in allowed] == [0, 3]
    assert [y for _, y in denied] == [1, 2]
    assert [y for _, y in errors] == [4]
    # x is the event time on matplotlib's date axis
    assert allowed[0][0] == pytest.approx(date2num(T0.replace(tzinfo=None)))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["incident span", "allowed (2)", "denied (2)", "error (1)"]


def test_timeline_shades_the_incident_span_and_the_own_tenant() -> None:
    span = (T0 + timedelta(minutes=5), T0 + timedelta(minutes=7))
    fig = plots.tenant_timeline(_timeline_events(), span=span)
    ax = fig.axes[0]
    shaded = [p for p in ax.patches if p.get_label() == "incident span"]
    assert len(shaded) == 1
    x0, x1 = (date2num(t.replace(tzinfo=None)) for t in span)
    corners = shaded[0].get_patch_transform().transform(shaded[0].get_path().vertices)[:, 0]
    assert min(corners) == pytest.approx(x0) and max(corners) == pytest.approx(x1)
    assert [p.get_gid() for p in ax.patches].count("own_tenant") == 1


def test_timeline_caps_the_tenants_shown() -> None:
    ev = pd.DataFrame(
        {
            "event_time": [T0 + timedelta(seconds=i) for i in range(30)],
            "target_tenant": [f"t{i:04d}" for i in range(30)],
            "outcome": "denied",
        }
    )
    fig = plots.tenant_timeline(ev, max_tenants=10)
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 10
    assert "+20 tenants not shown" in ax.get_title(loc="left")
    assert len(plots.figure_data(fig, "denied")[0]) == 10


def _spike_hourly() -> pd.DataFrame:
    """A fitted spike detector's view of t0002: 1 denial every other hour for two weeks, then
    a window hour with 40 denials from 40 addresses (a tenant counts its failing callers)."""
    base = []
    for h in range(14 * 24):
        if h % 2 == 0:
            at = timedelta(hours=h - 14 * 24, minutes=3)
            base.append(api(at, actor_tenant="t0002", target_tenant="t0002", outcome="denied"))
    window = [
        api(
            60 * i,
            actor_principal=None,
            actor_tenant=None,
            target_tenant="t0002",
            outcome="denied",
            source_ip=f"192.0.2.{i}",
        )
        for i in range(40)
    ]
    det = AuthzFailureSpike(Settings())
    det.detect(
        events(base, prefix="b"),
        events(window),
        start=T0,
        end=T0 + timedelta(hours=3),
        baseline_start=T0 - timedelta(days=14),
    )
    frame = events(window).to_pandas()
    frame.attrs["period"] = (pd.Timestamp(T0), pd.Timestamp(T0 + timedelta(hours=3)))
    return det.hourly(frame, "tenant", "t0002")


def test_spike_detector_exposes_its_hourly_baseline() -> None:
    h = _spike_hourly()
    hist, win = h[h["part"] == "history"], h[h["part"] == "window"]
    assert len(hist) == 14 * 24 and hist["count"].sum() == 14 * 12
    assert list(win["count"]) == [40, 0, 0]
    assert list(win["flagged"]) == [True, False, False]
    # hour-of-week history (two weeks): the same hour twice; a tenant's floor is min_actors=10
    assert (win["samples"] == 2).all()
    assert (win["alert_at"] >= 10).all()


def test_denials_band_matches_the_detector() -> None:
    h = _spike_hourly()
    fig = plots.denials_vs_baseline(h, history_hours=24, threshold=5.0)
    ax = fig.axes[0]
    labels = {c.get_label() for c in ax.containers}
    assert labels == {"history", "window", "pages"}
    pages = next(c for c in ax.containers if c.get_label() == "pages")
    assert [b.get_height() for b in pages] == [40]
    history = next(c for c in ax.containers if c.get_label() == "history")
    assert len(history) == 24  # only the asked-for context
    win = h[h["part"] == "window"]
    line = next(ln for ln in ax.lines if ln.get_label() == "pages at")
    assert list(line.get_ydata()[:3]) == pytest.approx(list(win["alert_at"]))
    median = next(ln for ln in ax.lines if ln.get_label() == "median")
    assert list(median.get_ydata()[:3]) == pytest.approx(list(win["level"]))
    band = next(c for c in ax.collections if c.get_label() == "baseline band")
    top = band.get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(float((win["level"] + 5.0 * win["spread"] / 0.6745).max()))


def test_denials_one_panel_per_group() -> None:
    h = _spike_hourly()
    both = pd.concat([h.assign(value="t0002"), h.assign(value="t0003")])
    fig = plots.denials_vs_baseline(both)
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "Denials per hour: t0002",
        "Denials per hour: t0003",
    ]


def test_switching_features_highlights_the_flagged_hours() -> None:
    hours = pd.DataFrame(
        {
            "actor_kind": ["principal", "principal", "ip"],
            "actor": ["usr-a", "usr-b", "198.51.100.9"],
            "hour": [pd.Timestamp(T0)] * 3,
            "tenants": [1, 2, 30],
            "new_tenants": [0, 1, 29],
            "model_score": [0.4, 0.5, 0.8],
            "score": [0.4, 0.5, 1.0],
            "flagged": [False, False, True],
        }
    )
    population = pd.DataFrame({"tenants": [1, 1, 2], "new_tenants": [0, 0, 1]}).assign(
        model_score=[0.4, 0.41, 0.5]
    )
    fig = plots.switching_features(hours, population, threshold=0.62)
    left, right = fig.axes
    flagged = plots.figure_data(fig, "flagged")
    assert flagged[0] == [[30.0, 29.0]] and flagged[1] == [[30.0, 0.8]]
    assert [len(p) for p in plots.figure_data(fig, "window")] == [2, 2]
    assert [len(p) for p in plots.figure_data(fig, "population")] == [3, 3]
    assert [t.get_text() for t in left.texts] == ["ip 198.51.100.9"]
    threshold = next(ln for ln in right.lines if ln.get_label() == "threshold 0.62")
    assert list(threshold.get_ydata()) == [0.62, 0.62]


def test_threshold_curves() -> None:
    metrics = pd.DataFrame(
        {
            "detector": ["d"] * 3,
            "setting": ["threshold"] * 3,
            "value": [1.0, 2.0, 3.0],
            "current": [2.0] * 3,
            "recall": [1.0, 1.0, 0.5],
            "precision": [0.5, 1.0, 1.0],
        }
    )
    fig = plots.threshold_curves(metrics, {"d": 2.0})
    ax = fig.axes[0]
    lines = {ln.get_gid(): ln for ln in ax.lines if ln.get_gid()}
    assert list(lines["recall"].get_ydata()) == [1.0, 1.0, 0.5]
    assert list(lines["precision"].get_ydata()) == [0.5, 1.0, 1.0]
    assert list(lines["chosen"].get_xdata()) == [2.0, 2.0]


def test_times_with_zones_are_drawn_in_utc() -> None:
    berlin = datetime(2026, 11, 16, 11, 0, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    )
    ev = pd.DataFrame({"event_time": [berlin], "target_tenant": ["t1"], "outcome": ["success"]})
    fig = plots.tenant_timeline(ev)
    ((x, _),) = plots.figure_data(fig, "success")[0]
    assert x == pytest.approx(date2num(np.datetime64("2026-11-16T11:00")))
