"""tenant_switching's model: an IsolationForest over the population's actor-hours.

``history`` samples the actor-hours of the baseline the model is fitted on (and each actor's
busiest hour), ``fit`` fits it and measures each feature's spread (median and MAD, for naming the
features that made an hour unusual: ``unusual``), ``anomaly`` scores actor-hours (0.5 is
ordinary, near 1 is unusual).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from detectors.tenant_switching.features import FEATURES, actor_hours, over_previous_max

SLICE = 1_000_000  # history events per slice of actors (bounds the features' scratch space)
MIN_TRAIN_ROWS = 50  # fewer actor-hours of history: no model


Spread = dict[str, tuple[float, float]]  # feature -> (median, MAD) over the population


def history(
    ev: pd.DataFrame, k: int, *, random_state: int, max_train_rows: int
) -> tuple[pd.DataFrame, pd.Series]:
    """One kind's history (``features.events``, the ``k``-th kind): a sample of at most
    ``max_train_rows`` actor-hours (FEATURES and ``_rank``, the random key the sample was drawn
    by) and each actor's busiest hour.

    Works through the events a slice of actors at a time (no actor is split, so every
    feature is as over the whole): the scratch space is a slice's, not 14 days'."""
    hours = ev["hour"].to_numpy()
    first = int(hours.min())
    # Without a day of history everything is "new"; skip the warm-up day if we can.
    warm_up = first + 24 if int(hours.max()) - first > 48 else first
    rng = np.random.default_rng([random_state, k])  # one stream over the slices
    parts, busiest = [], []
    for lo, hi in _actor_slices(ev["actor"].cat.codes.to_numpy(), SLICE):
        feat = actor_hours(ev.iloc[lo:hi], None)
        most = feat.groupby("actor", observed=True)["tenants"].max()
        busiest.append(pd.Series(most.to_numpy(), index=most.index.astype(str)))
        use = np.flatnonzero(feat["hour"].to_numpy() >= warm_up)
        # Compared with the actor's busiest hour *before* this one, as the window will be
        # (``actor_hours`` returns the hours sorted by actor, then hour).
        over = over_previous_max(
            feat["actor"].cat.codes.to_numpy()[use], feat["tenants"].to_numpy()[use]
        )
        rank = rng.random(len(use))
        pick = smallest(rank, max_train_rows)
        rows = feat.iloc[use[pick]][list(FEATURES[:-1])]
        parts.append(rows.assign(over_own_max=over[pick], _rank=rank[pick]))
        del feat
    rows = pd.concat(parts, ignore_index=True)
    return rows.iloc[smallest(rows["_rank"].to_numpy(), max_train_rows)], pd.concat(busiest)


def matrix(feat: pd.DataFrame) -> np.ndarray:
    """The model's input: FEATURES as columns, counts on a log scale, ratios as they are."""
    cols = []
    for name in FEATURES:
        x = feat[name].to_numpy(dtype=np.float64)
        cols.append(x if name.endswith("ratio") else np.log1p(x))
    return np.column_stack(cols)


def fit(rows: pd.DataFrame, *, n_estimators: int, random_state: int) -> tuple[Any, Spread]:
    """The IsolationForest fitted on ``rows`` (actor-hours with FEATURES) and each feature's
    spread; (None, {}) with fewer than ``MIN_TRAIN_ROWS`` rows."""
    from sklearn.ensemble import IsolationForest

    if len(rows) < MIN_TRAIN_ROWS:
        return None, {}
    model = IsolationForest(n_estimators=n_estimators, random_state=random_state).fit(matrix(rows))
    spread: Spread = {}
    for name in FEATURES:
        v = rows[name].to_numpy(dtype=np.float64)
        med = float(np.median(v))
        spread[name] = (med, float(np.median(np.abs(v - med))))
    return model, spread


def anomaly(model: Any, feat: pd.DataFrame) -> np.ndarray:
    """The anomaly score of each actor-hour of ``feat`` (higher is more unusual)."""
    return np.asarray(-model.score_samples(matrix(feat)))


def unusual(values: pd.Series, spread: Spread) -> list[dict[str, Any]]:
    """The features of one actor-hour at least 3 robust z above the population's median, the
    most unusual first."""
    out: list[dict[str, Any]] = []
    for name in FEATURES:
        med, mad = spread.get(name, (0.0, 0.0))
        z = 0.6745 * (float(values[name]) - med) / max(mad, 0.5 if name.endswith("ratio") else 1)
        if z >= 3:
            out.append(
                {
                    "feature": name,
                    "value": round(float(values[name]), 3),
                    "population_median": round(med, 3),
                    "z": round(z, 1),
                }
            )
    out.sort(key=lambda u: -float(u["z"]))
    return out


def _actor_slices(actor: np.ndarray, size: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of about ``size`` rows of actor-sorted codes, cut between actors."""
    n = len(actor)
    starts = np.flatnonzero(np.r_[True, actor[1:] != actor[:-1]]) if n else np.zeros(0, int)
    at = np.searchsorted(starts, np.arange(size, n, size))  # the first actor starting after
    cuts = np.unique(starts[at[at < len(starts)]])
    edges = [0, *(int(c) for c in cuts if 0 < c < n), n]
    return [(lo, hi) for lo, hi in itertools.pairwise(edges) if hi > lo]


def smallest(rank: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` smallest ranks (all if fewer), in position order."""
    if len(rank) <= n:
        return np.arange(len(rank))
    return np.sort(np.argpartition(rank, n)[:n])
