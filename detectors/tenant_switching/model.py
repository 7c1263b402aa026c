"""tenant_switching's model: an IsolationForest over the population's actor-hours.

``history`` samples the actor-hours of the baseline the model is fitted on (and each actor's
busiest hour), ``fit`` fits it and measures each feature's spread (median and MAD, for naming the
features that made an hour unusual: ``unusual``), ``anomaly`` scores actor-hours (0.5 is
ordinary, near 1 is unusual).

The sample is the ``max_train_rows`` actor-hours of smallest ``ranks``: a hash of the actor's
kind and name, the hour and ``random_state``, so an actor-hour's rank is its own, whatever the
order the events came in and whichever part of the history it was computed in. Any split of the
history by actor, each part's smallest ranks put together, gives the same sample (and ``fit``
takes it in order of rank): what lets the Spark runner summarize the history on many machines.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import numpy as np
import pandas as pd

from detectors.tenant_switching.features import FEATURES, actor_hours, over_previous_max

SLICE = 1_000_000  # history events per slice of actors (bounds the features' scratch space)
MIN_TRAIN_ROWS = 50  # fewer actor-hours of history: no model


Spread = dict[str, tuple[float, float]]  # feature -> (median, MAD) over the population


def warm_up(first: int, last: int) -> int:
    """The first hour of history to train on, of the hours [first, last): without a day of
    history everything is "new", so the first day is skipped when there are two more."""
    return first + 24 if last - first > 49 else first


def history(
    ev: pd.DataFrame, kind: str, *, random_state: int, max_train_rows: int, start: int
) -> tuple[pd.DataFrame, pd.Series]:
    """One kind's history (``features.events``): a sample of at most ``max_train_rows`` of its
    actor-hours from hour ``start`` on (``actor``, ``hour``, FEATURES and ``rank``, the key the
    sample was drawn by, ``ranks``) and each actor's busiest hour.

    Works through the events a slice of actors at a time (no actor is split, so every
    feature is as over the whole): the scratch space is a slice's, not 14 days'."""
    parts, busiest = [], []
    for lo, hi in _actor_slices(ev["actor"].cat.codes.to_numpy(), SLICE):
        feat = actor_hours(ev.iloc[lo:hi], None)
        most = feat.groupby("actor", observed=True)["tenants"].max()
        busiest.append(pd.Series(most.to_numpy(), index=most.index.astype(str)))
        use = np.flatnonzero(feat["hour"].to_numpy() >= start)
        # Compared with the actor's busiest hour *before* this one, as the window will be
        # (``actor_hours`` returns the hours sorted by actor, then hour).
        over = over_previous_max(
            feat["actor"].cat.codes.to_numpy()[use], feat["tenants"].to_numpy()[use]
        )
        actors = feat["actor"].to_numpy()[use]
        hours = feat["hour"].to_numpy()[use]
        rank = ranks(
            feat["actor"].cat.categories,
            feat["actor"].cat.codes.to_numpy()[use],
            hours,
            kind,
            random_state,
        )
        pick = smallest(rank, max_train_rows)
        rows = feat.iloc[use[pick]][list(FEATURES[:-1])].reset_index(drop=True)
        parts.append(
            rows.assign(
                actor=actors[pick].astype(str),
                hour=hours[pick],
                over_own_max=over[pick],
                rank=rank[pick],
            )
        )
        del feat
    rows = pd.concat(parts, ignore_index=True)
    return rows.iloc[smallest(rows["rank"].to_numpy(), max_train_rows)], pd.concat(busiest)


def ranks(
    names: pd.Index, codes: np.ndarray, hours: np.ndarray, kind: str, random_state: int
) -> np.ndarray:
    """Per actor-hour (the actor's code into ``names``, its hour), a number in [0, 1) that is
    a hash of the kind, the actor's name, the hour and ``random_state``: the same on any
    machine, in any order."""
    seeds = np.array(
        [
            int.from_bytes(
                hashlib.blake2b(
                    f"{random_state}\x1f{kind}\x1f{n}".encode(), digest_size=8
                ).digest(),
                "little",
            )
            for n in names.astype(str)
        ]
        or [0],
        dtype=np.uint64,
    )
    x = seeds[codes] ^ (hours.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    # splitmix64's finalizer: every bit of the seed and the hour reaches every bit of the rank.
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return np.asarray((x >> np.uint64(11)).astype(np.float64) * 2.0**-53)


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
