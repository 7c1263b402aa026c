"""tenant_switching: one actor touches more tenants, or other tenants, than it ever did.

Threat
------
Someone walks tenant ids to find which ones answer (enumeration), a stolen token or session is
tried against tenant after tenant, or a script harvests data across tenants through a hole that
lets some requests through. Each request alone may look small; the spread across tenants is the
signal.

Signal
------
Per actor - principal, session (access key or token fingerprint) and source address - and per
hour: distinct target tenants, tenants never seen for this actor in its baseline ("new terms"),
tenant switches in time order, requests per tenant, the share denied, and how sequential the
tenant ids are in the order first touched. Only tenants the actor has no reason to touch count
as *foreign*: its own tenant, tenants a relationship grants it, and service roles are excluded.

A session is born without history, so it is judged against its principal's (the
``actor_principal`` of its events in the window) as well as its own: a tenant is new for a
session only if neither the session nor its principal touched it in the baseline, and its
"busiest hour" is the larger of the two. A fresh session of a user who habitually works across
several tenants is then as ordinary as the user; a stolen session taken to tenants its
principal never touched is still new there. Principals and addresses are judged on their own.

- Rules, for the clear cases: *enumeration* (``enum_min_tenants`` foreign, mostly new tenants,
  few requests each, sequential or mostly denied): high; *new tenants* (``new_tenants_min``
  never-seen foreign tenants in an hour): medium.
- The rest: a scikit-learn IsolationForest fitted on the actor population's history of
  actor-hours scores the actor-hours that touch at least ``min_foreign`` foreign tenants, at
  least one of them new or more than the actor's busiest hour; an anomaly score at or above
  ``threshold`` is a medium finding.

One finding per actor per window; a session's or address's finding whose events lie mostly inside
a principal's is folded into it. The evidence names the features that made the hour unusual
(robust z against the population), the rule that fired and the model's score.

Data needed
-----------
All three sources; ``event_time``, ``actor_principal``, ``actor_session``, ``source_ip``,
``actor_tenant``, ``target_tenant``, ``outcome``; 14 days of history.

Known false positives
---------------------
- A new integration or support tool that legitimately works across tenants: declare it as a
  ``service_role`` or ``consultant`` relationship.
- Shared egress addresses (a corporate proxy, a NAT gateway) carrying several tenants' users:
  the address finding is folded away when a principal explains it; otherwise add the address to
  ``exclude_ips``.
- An admin of a newly created organisation (children not yet configured).
- AWS services acting for themselves (``delivery.logs.amazonaws.com`` delivering into every
  tenant's prefix) are left out like service roles (``include_service_principals``).
- A session with no ``actor_principal`` (or whose principal is new) has no history to inherit:
  every foreign tenant it touches is new. A principal's history counts for its sessions only
  where it has a target tenant and is not a service role, and its busiest hour only with the
  ``principal`` kind on; the model's population keeps sessions' own history (a session-hour's
  "new" there is relative to the session's earlier hours).

Runbook
-------
1. Read the finding: the actor (principal, session or address), its tenant, how many tenants it
   touched, how many were new, the share denied and the features named as unusual.
2. ``rule: enumeration`` with nearly everything denied: a probe. Check in the findings of
   ``cross_tenant_access`` whether any of these requests succeeded - a success is a breach,
   escalate to critical and follow that runbook.
3. Pull the evidence events by ``event_ids`` from the lake; note the user agent (a script or a
   browser?) and whether the tenants were walked in id order.
4. If the actor is a known tool or partner, add the relationship to ``tenantwatch.toml`` and
   close as a false positive.
5. Contain: revoke the token or session (the authorizer's deny list; IAM revoke sessions), block
   the source address in the WAF, and tell the actor's tenant admin.
6. Scope: query the lake for the same address and token over the last 30 days; attach the
   result and keep the forensic snapshot.
"""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import SCORED, Detector, DetectorSettings, Severity, period
from detectors.evidence import (
    HOUR_US,
    any_of,
    describe_hours,
    epoch_us,
    fold,
    request_keys,
    text,
)
from detectors.rules import ROLE_SESSION_NAME, Rules

ACTOR_KINDS = {"principal": "actor_principal", "session": "actor_session", "ip": "source_ip"}
FEATURES = (
    "tenants",  # distinct tenants in the hour
    "new_tenants",  # tenants never seen for this actor before this hour
    "switches",  # changes of target tenant in time order
    "requests_per_tenant",
    "denied_ratio",
    "sequential_ratio",  # consecutive first-touched tenant ids that differ by one
    "over_own_max",  # tenants above this actor's busiest hour in its history
)
_SLICE = 1_000_000  # history events per slice of actors (bounds the features' scratch space)


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    actor_kinds: tuple[str, ...] = ("principal", "session", "ip")
    min_foreign: int = 3  # foreign tenants in an hour before the model is asked
    enum_min_tenants: int = 8
    enum_max_requests_per_tenant: float = 4.0
    enum_min_ratio: float = 0.5  # sequential or denied share that makes it a walk
    new_tenants_min: int = 5
    threshold: float = 0.62  # IsolationForest anomaly score (0.5 ~ ordinary)
    n_estimators: int = 200
    max_train_rows: int = 50_000
    random_state: int = 0
    overlap: float = 0.8
    exclude_ips: tuple[str, ...] = ()
    # AWS services acting for themselves (delivery.logs.amazonaws.com writing to every tenant's
    # prefix) are no actor; ``pipeline.health`` counts their denials.
    include_service_principals: bool = False
    severity_enumeration: Severity = "high"
    severity_new_tenants: Severity = "medium"
    severity_model: Severity = "medium"


class TenantSwitching(Detector[Settings]):
    id = "tenant_switching"
    title = "Unusual tenant switching"
    severity = "medium"
    sources = ("cloudtrail", "apigateway", "authorizer")
    columns = (
        "event_id",
        "event_time",
        "source",
        "action",
        "actor_principal",
        "actor_session",
        "actor_tenant",
        "target_tenant",
        "outcome",
        "source_ip",
        "user_agent",
        "request_id",
    )
    baseline_columns = (
        "event_time",
        "source",
        "actor_principal",
        "actor_session",
        "actor_tenant",
        "target_tenant",
        "outcome",
        "source_ip",
    )
    fit_arrow = True  # 14 days of events stay Arrow codes: see _events
    group_by = ("actor_kind", "actor")
    lookback = timedelta(days=14)
    dedup_period = timedelta(hours=24)

    # --- features ------------------------------------------------------------------------------

    def _events(
        self, frame: pd.DataFrame | pa.Table, kind: str, positions: bool = True
    ) -> pd.DataFrame:
        """One kind's events with a target tenant, sorted by actor then time: actor, tenant
        (categoricals), hour, denied, foreign; the index is ``frame``'s if ``positions``.

        Works on categorical codes in numpy: a 14-day history is millions of rows but only
        thousands of distinct actors and tenants, so strings are handled once per distinct
        value, and no full-size copy of the frame is made. ``frame`` may be an Arrow table
        (the baseline, dictionary-encoded by the lake reader): then it never becomes pandas."""
        s = self.settings
        col = ACTOR_KINDS[kind]
        principal, principals = _codes(frame, "actor_principal")
        rules = Rules.of(self.relationships)
        service = rules.service_pattern(aws_services=not s.include_service_principals)
        keep = ~_hits(principals, service)[principal]
        del principal
        tenant, tenants = _codes(frame, "target_tenant")
        keep &= tenant >= 0
        actor, actors = _codes(frame, col)
        keep &= actor >= 0
        if kind == "ip" and s.exclude_ips:
            ips = any_of([rf"^{re.escape(ip)}$" for ip in s.exclude_ips])
            keep &= ~_hits(actors, ips)[actor]
        idx = np.flatnonzero(keep)
        del keep
        actor, tenant = actor[idx], tenant[idx]
        t = _epoch_us(frame)[idx]
        # Sorted by actor, then time: an actor-hour is then one run of rows (see _features).
        order = np.lexsort((t, actor))
        idx, actor, tenant, t = idx[order], actor[order], tenant[order], t[order]
        del order
        hour = (t // HOUR_US).astype(np.int32)  # hours since 1970 fit in 32 bits until 2215
        del t
        # "Explained" depends only on (principal, actor tenant, target): decide it per combination.
        principal, principals = _codes(frame, "actor_principal", idx)
        home, homes = _codes(frame, "actor_tenant", idx)
        combo = (principal + 1).astype(np.int64) * (len(homes) + 1) + home + 1
        combo *= len(tenants) + 1
        combo += tenant
        combo_id, distinct = pd.factorize(combo)
        del combo
        first = _first(combo_id, len(distinct))
        who = pd.DataFrame(
            {
                "actor_principal": pd.Categorical.from_codes(principal[first], principals),
                "actor_tenant": pd.Categorical.from_codes(home[first], homes),
                "target_tenant": pd.Categorical.from_codes(tenant[first], tenants),
            }
        )
        del home
        foreign = ~rules.explained(who, ROLE_SESSION_NAME).to_numpy(dtype=bool)[combo_id]
        del combo_id
        columns = {
            "actor": pd.Categorical.from_codes(actor, actors),
            "tenant": pd.Categorical.from_codes(tenant, tenants),
            "hour": hour,
            "denied": _is(frame, "outcome", "denied", idx),
            "foreign": foreign,
        }
        if kind == "session":  # a session is judged against its principal's history too
            columns["principal"] = pd.Categorical.from_codes(principal, principals)
        del principal
        return pd.DataFrame(
            columns,
            index=frame.index[idx] if positions and isinstance(frame, pd.DataFrame) else None,
        )

    @staticmethod
    def _features(
        ev: pd.DataFrame, seen: pd.MultiIndex | None, owners: pd.MultiIndex | None = None
    ) -> pd.DataFrame:
        """Per (actor, hour): FEATURES plus ``foreign`` and ``foreign_new``. ``seen`` is the
        (actor, tenant) pairs of the history; None means "new" is relative to earlier hours
        of ``ev`` itself (the history's own training rows). ``owners``, with a ``principal``
        column in ``ev`` (sessions), is the history's (principal, tenant) pairs: a tenant the
        session's principal (that of its first event in the actor-hour-tenant) already knew is
        not new either, so a fresh session inherits its principal's habits.

        ``ev`` is sorted by actor then time (``_events``), so each actor-hour is a run of rows
        and each (actor, hour, tenant) first appears in the order the tenants were touched:
        runs and ``pd.factorize`` (a hash, no sort) give every feature in numpy, in a few
        passes over the codes, for millions of events."""
        cols = ["actor", "hour", "requests", "switches", "denied_ratio", "tenants"]
        cols += ["new_tenants", "foreign", "foreign_new", "sequential_ratio"]
        cols += ["requests_per_tenant"]
        n = len(ev)
        if n == 0:
            return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in cols})
        actors = ev["actor"].cat.categories
        hour = ev["hour"].to_numpy()
        low = int(hour.min())
        span = int(hour.max()) - low + 1
        ah = ev["actor"].cat.codes.to_numpy().astype(np.int64)  # one value per actor-hour
        ah *= span
        ah += hour
        ah -= low
        if (ah[1:] < ah[:-1]).any():
            raise ValueError("tenant_switching: events must be sorted by actor, then time")
        step = ah[1:] != ah[:-1]
        start = np.flatnonzero(np.r_[True, step])
        requests = np.diff(np.r_[start, n])
        tenant = ev["tenant"].cat.codes.to_numpy()
        switch = np.r_[False, ~step & (tenant[1:] != tenant[:-1])]
        del step
        switches = np.add.reduceat(switch, start, dtype=np.int64)
        del switch
        denied = np.add.reduceat(ev["denied"].to_numpy(dtype=bool), start, dtype=np.int64)
        # Each (actor, hour, tenant) once, in the order first touched.
        width = len(ev["tenant"].cat.categories) + 1
        ah *= width
        ah += tenant
        triple_id, triples = pd.factorize(ah)
        del ah
        t_ah, t_tenant = triples // width, triples % width
        foreign = np.zeros(len(triples), dtype=bool)
        foreign[triple_id[ev["foreign"].to_numpy(dtype=bool)]] = True
        by_owner = seen is not None and owners is not None and "principal" in ev.columns
        first_row = _first(triple_id, len(triples)) if by_owner else None
        del triple_id
        t_actor = t_ah // span
        if seen is None:
            # New: the first hour this actor touched this tenant (triples are in time order).
            pair_id, pairs = pd.factorize(t_actor * width + t_tenant)
            new = _first(pair_id, len(pairs))[pair_id] == np.arange(len(triples))
        else:
            tenants = ev["tenant"].cat.categories.astype(str)
            known = pd.MultiIndex.from_arrays([actors.astype(str)[t_actor], tenants[t_tenant]])
            new = ~known.isin(seen)
            if first_row is not None:
                # Only the triples still new are looked up (a few per cent of them).
                ask = np.flatnonzero(new)
                owner = ev["principal"].cat.codes.to_numpy()[first_row[ask]]
                names = np.append(ev["principal"].cat.categories.astype(str), "").astype(object)
                pairs_p = pd.MultiIndex.from_arrays([names[owner], tenants[t_tenant[ask]]])
                new[ask[(owner >= 0) & pairs_p.isin(owners)]] = False
        # The tenant id's trailing number, computed once per distinct tenant.
        cats = ev["tenant"].cat.categories.astype(str)
        per_cat = pd.to_numeric(cats.str.extract(r"(\d+)$")[0], errors="coerce").to_numpy()
        num = np.append(per_cat.astype(np.float64), np.nan)[t_tenant]
        seq = np.r_[False, (t_ah[1:] == t_ah[:-1]) & (np.abs(num[1:] - num[:-1]) == 1)]
        t_start = np.flatnonzero(np.r_[True, t_ah[1:] != t_ah[:-1]])
        tenants_n = np.diff(np.r_[t_start, len(triples)])

        def per_hour(x: np.ndarray) -> np.ndarray:
            return np.add.reduceat(x, t_start, dtype=np.int64)

        out = pd.DataFrame(
            {
                "actor": pd.Categorical.from_codes(t_actor[t_start], actors),
                "hour": (t_ah[t_start] % span + low).astype(np.int64),
                "requests": requests.astype(np.int32),
                "switches": switches.astype(np.int32),
                "denied_ratio": denied / requests,
                "tenants": tenants_n.astype(np.int32),
                "new_tenants": per_hour(new).astype(np.int32),
                "foreign": per_hour(foreign).astype(np.int32),
                "foreign_new": per_hour(foreign & new).astype(np.int32),
                "sequential_ratio": per_hour(seq) / np.maximum(tenants_n - 1, 1),
                "requests_per_tenant": requests / tenants_n,
            }
        )
        return out

    @staticmethod
    def _seen(ev: pd.DataFrame) -> pd.MultiIndex:
        """The distinct (actor, tenant) pairs of ``ev``, as strings."""
        width = len(ev["tenant"].cat.categories) + 1
        actor = ev["actor"].cat.codes.to_numpy().astype(np.int64)
        tenant = ev["tenant"].cat.codes.to_numpy().astype(np.int64)
        _, pairs = pd.factorize(actor * width + tenant)
        return pd.MultiIndex.from_arrays(
            [
                ev["actor"].cat.categories.astype(str)[pairs // width],
                ev["tenant"].cat.categories.astype(str)[pairs % width],
            ]
        )

    @staticmethod
    def _matrix(feat: pd.DataFrame) -> np.ndarray:
        cols = []
        for name in FEATURES:
            x = feat[name].to_numpy(dtype=np.float64)
            cols.append(x if name.endswith("ratio") else np.log1p(x))
        return np.column_stack(cols)

    # --- life cycle ----------------------------------------------------------------------------

    def fit(self, baseline: pd.DataFrame | pa.Table) -> Self:
        from sklearn.ensemble import IsolationForest

        s = self.settings
        bad = sorted(set(s.actor_kinds) - set(ACTOR_KINDS))
        if bad:
            raise ValueError(f"{self.id}: unknown actor kind {bad[0]!r}")
        p0, p1 = period(baseline)
        self.history_hours_ = (
            (pd.Timestamp(p1) - pd.Timestamp(p0)) / pd.Timedelta(hours=1) if p0 and p1 else 0.0
        )
        self.seen_: dict[str, pd.MultiIndex] = {}
        self.own_max_: dict[str, pd.Series] = {}
        train, total = [], 0
        for k, kind in enumerate(s.actor_kinds):
            # One kind at a time, and only its actor-hours kept: the events of a 14-day history
            # are millions of rows, its actor-hours a few per cent of that.
            ev = self._events(baseline, kind, positions=False)
            self.seen_[kind] = self._seen(ev)
            if ev.empty:
                self.own_max_[kind] = pd.Series(dtype=np.float64)
                continue
            rows, self.own_max_[kind] = self._history(ev, k)
            del ev
            train.append(rows)
            total += len(rows)
        # A session's tenants are judged against its principal's history as well: the
        # principal kind's pairs, or (principal off) the same pairs computed for that alone.
        self.owners_: pd.MultiIndex | None = None
        if "session" in s.actor_kinds and "principal" not in s.actor_kinds:
            self.owners_ = self._seen(self._events(baseline, "principal", positions=False))
        rows = pd.concat(train, ignore_index=True) if train else pd.DataFrame()
        if total > s.max_train_rows:
            # The max_train_rows actor-hours of smallest rank over all kinds: a uniform sample.
            rows = rows.iloc[_smallest(rows["_rank"].to_numpy(), s.max_train_rows)]
        self.model_: Any = None
        self.population_: dict[str, tuple[float, float]] = {}
        self.train_ = pd.DataFrame(columns=list(FEATURES), dtype=np.float64)
        if len(rows) >= 50:
            self.train_ = rows[list(FEATURES)].astype(np.float64).reset_index(drop=True)
            x = self._matrix(rows)
            self.model_ = IsolationForest(
                n_estimators=s.n_estimators, random_state=s.random_state
            ).fit(x)
            for name in FEATURES:
                v = rows[name].to_numpy(dtype=np.float64)
                med = float(np.median(v))
                self.population_[name] = (med, float(np.median(np.abs(v - med))))
        return self

    def _history(self, ev: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.Series]:
        """One kind's history: a sample of at most ``max_train_rows`` actor-hours (FEATURES
        and ``_rank``, the random key the sample was drawn by) and each actor's busiest hour.

        Works through the events a slice of actors at a time (no actor is split, so every
        feature is as over the whole): the scratch space is a slice's, not 14 days'."""
        s = self.settings
        hours = ev["hour"].to_numpy()
        first = int(hours.min())
        # Without a day of history everything is "new"; skip the warm-up day if we can.
        warm_up = first + 24 if int(hours.max()) - first > 48 else first
        rng = np.random.default_rng([s.random_state, k])  # one stream over the slices
        parts, busiest = [], []
        for lo, hi in _actor_slices(ev["actor"].cat.codes.to_numpy(), _SLICE):
            feat = self._features(ev.iloc[lo:hi], None)
            most = feat.groupby("actor", observed=True)["tenants"].max()
            busiest.append(pd.Series(most.to_numpy(), index=most.index.astype(str)))
            use = np.flatnonzero(feat["hour"].to_numpy() >= warm_up)
            # Compared with the actor's busiest hour *before* this one, as the window will be
            # (``_features`` returns the hours sorted by actor, then hour).
            over = _over_previous_max(
                feat["actor"].cat.codes.to_numpy()[use], feat["tenants"].to_numpy()[use]
            )
            rank = rng.random(len(use))
            pick = _smallest(rank, s.max_train_rows)
            rows = feat.iloc[use[pick]][list(FEATURES[:-1])]
            parts.append(rows.assign(over_own_max=over[pick], _rank=rank[pick]))
            del feat
        rows = pd.concat(parts, ignore_index=True)
        return rows.iloc[_smallest(rows["_rank"].to_numpy(), s.max_train_rows)], pd.concat(busiest)

    def _scored(
        self, window: pd.DataFrame, kind: str, score_all: bool = False
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One actor kind's events and its actor-hours: FEATURES, ``foreign``, ``foreign_new``,
        ``gated`` (worth asking the model), ``model_score``, ``rule``, ``severity``, ``score``
        and ``flagged``. Only gated hours are scored unless ``score_all`` (for plots)."""
        s = self.settings
        ev = self._events(window, kind)
        if ev.empty:
            return ev, pd.DataFrame(columns=["actor", "hour", *FEATURES, "flagged"])
        owners = self.seen_.get("principal", self.owners_) if kind == "session" else None
        feat = self._features(ev, self.seen_.get(kind), owners)
        feat["actor"] = feat["actor"].astype(str)
        own = feat["actor"].map(self.own_max_.get(kind, pd.Series(dtype=np.float64)))
        if kind == "session" and "principal" in self.own_max_:
            # Nor more tenants than its principal's busiest hour: a fresh session has no past.
            mine = feat["actor"].map(_principal_of(ev)).map(self.own_max_["principal"])
            own = np.fmax(own, mine)
        feat["over_own_max"] = (feat["tenants"] - own.fillna(0)).clip(lower=0)
        # Switching among tenants it already knew, no more of them than before, is habit.
        feat["gated"] = (feat["foreign"] >= s.min_foreign) & (
            (feat["foreign_new"] >= 1) | (feat["over_own_max"] >= 1)
        )
        enum = (
            (feat["foreign"] >= s.enum_min_tenants)
            & (feat["foreign_new"] >= s.enum_min_tenants // 2)
            & (feat["requests_per_tenant"] <= s.enum_max_requests_per_tenant)
            & (
                (feat["sequential_ratio"] >= s.enum_min_ratio)
                | (feat["denied_ratio"] >= s.enum_min_ratio)
            )
        )
        new = feat["foreign_new"] >= s.new_tenants_min
        ask = np.ones(len(feat), bool) if score_all else feat["gated"].to_numpy()
        model = np.full(len(feat), np.nan)
        if ask.any():
            model[ask] = (
                -self.model_.score_samples(self._matrix(feat[ask]))
                if self.model_ is not None
                else 1.0  # no population history: any foreign spread is unusual
            )
        feat["model_score"] = model
        feat["rule"] = np.select([enum, new], ["enumeration", "new_tenants"], default="")
        feat["severity"] = np.select(
            [enum, new], [s.severity_enumeration, s.severity_new_tenants], s.severity_model
        )
        feat["score"] = np.where(feat["rule"] != "", np.maximum(model, 1.0), model)
        feat["flagged"] = feat["gated"] & (feat["score"] >= s.threshold)
        return ev, feat

    def hours(self, window: pd.DataFrame) -> pd.DataFrame:
        """Every actor-hour of the window as the detector sees it, for plots and notebooks
        (call after ``fit``): ``actor_kind``, ``actor``, ``hour`` (start, UTC), FEATURES,
        ``foreign``, ``foreign_new``, ``gated``, ``model_score`` (every hour, not only the
        gated ones), ``rule``, ``score`` and ``flagged`` (what ``score`` turns into findings,
        before a session's or address's finding is folded into its principal's)."""
        s = self.settings
        parts = []
        for kind in s.actor_kinds:
            _, feat = self._scored(window, kind, score_all=True)
            if len(feat):
                parts.append(feat.assign(actor_kind=kind))
        if not parts:
            cols = ["actor_kind", "actor", "hour", *FEATURES, "model_score", "score", "flagged"]
            return pd.DataFrame(columns=cols)
        out = pd.concat(parts, ignore_index=True)
        out["hour"] = pd.to_datetime(out["hour"].astype(np.int64) * HOUR_US, unit="us", utc=True)
        first = ["actor_kind", "actor", "hour"]
        return out[first + [c for c in out.columns if c not in first]]

    def population(self, n: int | None = 5000) -> pd.DataFrame:
        """The history's actor-hours the model was fitted on (at most ``n``, sampled), with
        FEATURES and ``model_score``: the cloud a window's hours are compared with."""
        s = self.settings
        rows = self.train_
        if n is not None and len(rows) > n:
            rows = rows.sample(n, random_state=s.random_state)
        rows = rows.reset_index(drop=True)
        if self.model_ is None or rows.empty:
            return rows.assign(model_score=np.nan)
        return rows.assign(model_score=-self.model_.score_samples(self._matrix(rows)))

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        s = self.settings
        found: list[dict[str, Any]] = []
        for rank, kind in enumerate(s.actor_kinds):
            ev, feat = self._scored(window, kind)
            hot = feat[feat["flagged"]] if len(feat) else feat
            if hot.empty:
                continue
            actor_col = ev["actor"].astype(str)
            for actor, hours in hot.groupby("actor", sort=True):
                top = hours.sort_values(["score", "hour"], ascending=[False, True]).iloc[0]
                mine = ev.index[(actor_col == actor) & ev["hour"].isin(hours["hour"])]
                found.append(self._group(window, kind, rank, actor, hours, top, mine))
        return self._fold(window, found)

    def _group(
        self,
        window: pd.DataFrame,
        kind: str,
        rank: int,
        actor: str,
        hours: pd.DataFrame,
        top: pd.Series,
        rows: pd.Index,
    ) -> dict[str, Any]:
        s = self.settings
        sub = window.loc[rows]
        actor_tenants = text(sub["actor_tenant"]).dropna()
        actor_tenant = actor_tenants.mode().iloc[0] if len(actor_tenants) else None
        tenants = sorted(set(text(sub["target_tenant"]).dropna()) - {actor_tenant})
        unusual: list[dict[str, Any]] = []
        for name in FEATURES:
            med, mad = self.population_.get(name, (0.0, 0.0))
            z = 0.6745 * (float(top[name]) - med) / max(mad, 0.5 if name.endswith("ratio") else 1)
            if z >= 3:
                unusual.append(
                    {
                        "feature": name,
                        "value": round(float(top[name]), 3),
                        "population_median": round(med, 3),
                        "z": round(z, 1),
                    }
                )
        unusual.sort(key=lambda u: -float(u["z"]))
        rule = str(top["rule"])
        how = f"rule {rule}" if rule else f"model score {top['model_score']:.2f}"
        return {
            "rank": rank,
            "key": f"{kind}|{actor}",
            "score": float(top["score"]),
            "threshold": s.threshold,
            "severity": str(hours.loc[hours["score"].idxmax(), "severity"]),
            "actor": actor,
            "actor_tenant": actor_tenant,
            "tenants": tenants,
            "baseline": f"IsolationForest over the actor population's hours "
            f"({describe_hours(self.history_hours_)}); this actor's busiest hour "
            f"{int(top['tenants'] - top['over_own_max'])} tenants",
            "rows": rows.to_numpy(),
            "details": {
                "actor_kind": kind,
                "rule": rule or None,
                "model_score": round(float(top["model_score"]), 3),
                "features": {name: round(float(top[name]), 3) for name in FEATURES},
                "foreign_tenants": int(top["foreign"]),
                "unusual_features": unusual,
                "also": [],
            },
            "title": f"Unusual tenant switching by {kind} {actor}: {int(top['tenants'])} "
            f"tenants in an hour, {int(top['foreign_new'])} new ({how})",
        }

    def _fold(self, window: pd.DataFrame, found: list[dict[str, Any]]) -> pd.DataFrame:
        s = self.settings
        found.sort(key=lambda f: (-len(f["rows"]), f["rank"], f["key"]))
        kept = fold(found, request_keys(window), s.overlap)
        return pd.DataFrame(kept, columns=list(SCORED))


def _principal_of(ev: pd.DataFrame) -> pd.Series:
    """A session's principal (that of its first event), by session name; ``ev`` sorted by
    actor."""
    actor = ev["actor"].cat.codes.to_numpy()
    start = np.flatnonzero(np.r_[True, actor[1:] != actor[:-1]])
    owner = ev["principal"].cat.codes.to_numpy()[start]
    names = np.full(len(ev["principal"].cat.categories) + 1, None, dtype=object)
    names[:-1] = ev["principal"].cat.categories.astype(str)
    return pd.Series(names[owner], index=ev["actor"].cat.categories.astype(str)[actor[start]])


def _codes(
    frame: pd.DataFrame | pa.Table, name: str, rows: np.ndarray | None = None
) -> tuple[np.ndarray, pd.Index]:
    """A column as int32 codes (-1 where missing), at ``rows`` if given, and its categories:
    from a pandas column (categorical or not) or an Arrow one (dictionary-encoded or not)."""
    if isinstance(frame, pd.DataFrame):
        values = frame[name]
        cat = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
        codes = cat.cat.codes.to_numpy()
        return (codes if rows is None else codes[rows]).astype(np.int32), cat.cat.categories
    col = frame.column(name)
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    if not _shared_dictionary(col):
        col = pa.table({name: col}).unify_dictionaries().column(0)
    if col.num_chunks == 0:
        return np.zeros(0, np.int32), pd.Index([], dtype=object)
    categories = pd.Index(col.chunk(0).dictionary.to_pandas(), dtype=object)
    parts = [pc.fill_null(c.indices, -1).to_numpy().astype(np.int32) for c in col.chunks]
    codes = np.concatenate(parts)
    del parts
    return codes if rows is None else codes[rows], categories


def _shared_dictionary(col: pa.ChunkedArray) -> bool:
    """Whether every chunk already uses the same dictionary (``read_baseline`` unifies them):
    unifying again would hash the whole dictionary once per chunk."""
    if col.num_chunks == 0:
        return True
    first = [b.address if b is not None else 0 for b in col.chunk(0).dictionary.buffers()]
    return all(
        [b.address if b is not None else 0 for b in c.dictionary.buffers()] == first
        for c in col.chunks
    )


def _epoch_us(frame: pd.DataFrame | pa.Table) -> np.ndarray:
    if isinstance(frame, pd.DataFrame):
        return epoch_us(frame["event_time"])
    col = frame.column("event_time").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.concatenate([c.to_numpy() for c in col.chunks]) if col.num_chunks else np.zeros(0)


def _is(frame: pd.DataFrame | pa.Table, name: str, value: str, rows: np.ndarray) -> np.ndarray:
    """Where the column equals ``value``, at ``rows``."""
    codes, categories = _codes(frame, name, rows)
    hit = np.append(categories.astype(object) == value, False)
    return hit[codes]


def _hits(categories: pd.Index, pattern: str | None) -> np.ndarray:
    """Regex ``search`` per category, one more False at the end (so code -1 reads False)."""
    if pattern is None:
        return np.zeros(len(categories) + 1, dtype=bool)
    rx = re.compile(pattern)
    return np.array([bool(rx.search(str(v))) for v in categories] + [False], dtype=bool)


def _first(ids: np.ndarray, n: int) -> np.ndarray:
    """For ``pd.factorize`` codes (numbered in order of appearance), where each first occurs."""
    seen_before = np.maximum.accumulate(np.r_[-1, ids[:-1]]) if len(ids) else ids
    first = np.flatnonzero(ids > seen_before)
    assert len(first) == n
    return first


def _over_previous_max(actor: np.ndarray, tenants: np.ndarray) -> np.ndarray:
    """Per row, tenants above the most its actor had in any earlier row (0 in its first row);
    rows sorted by actor. A running maximum over actor * big + tenants restarts per actor."""
    if len(actor) == 0:
        return np.zeros(0, dtype=np.int64)
    big = int(tenants.max()) + 1
    key = actor.astype(np.int64) * big + tenants
    running = np.maximum.accumulate(key) - actor.astype(np.int64) * big
    prev = np.r_[0, running[:-1]]
    prev[np.r_[True, actor[1:] != actor[:-1]]] = 0
    return np.clip(tenants - prev, 0, None)


def _actor_slices(actor: np.ndarray, size: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of about ``size`` rows of actor-sorted codes, cut between actors."""
    n = len(actor)
    starts = np.flatnonzero(np.r_[True, actor[1:] != actor[:-1]]) if n else np.zeros(0, int)
    at = np.searchsorted(starts, np.arange(size, n, size))  # the first actor starting after
    cuts = np.unique(starts[at[at < len(starts)]])
    edges = [0, *(int(c) for c in cuts if 0 < c < n), n]
    return [(lo, hi) for lo, hi in itertools.pairwise(edges) if hi > lo]


def _smallest(rank: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` smallest ranks (all if fewer), in position order."""
    if len(rank) <= n:
        return np.arange(len(rank))
    return np.sort(np.argpartition(rank, n)[:n])
