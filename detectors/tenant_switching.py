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

import re
from datetime import timedelta
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from detectors.base import (
    HOUR_US,
    SCORED,
    Detector,
    DetectorSettings,
    Severity,
    any_of,
    describe_hours,
    epoch_us,
    fold,
    match,
    request_keys,
    text,
)
from detectors.cross_tenant_access import consultant_allowed
from pipeline.config import Consultant, Organisation, Reseller, ServiceRole

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
_SEP = "\x1f"


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
    severity_enumeration: Severity = "high"
    severity_new_tenants: Severity = "medium"
    severity_model: Severity = "medium"


class TenantSwitching(Detector):
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
    group_by = ("actor_kind", "actor")
    lookback = timedelta(days=14)
    dedup_period = timedelta(hours=24)
    Settings: ClassVar[type[DetectorSettings]] = Settings

    # --- features ------------------------------------------------------------------------------

    def _explained(self, frame: pd.DataFrame) -> pd.Series:
        """Events the actor has a reason for: its own tenant, a granted one, a service role."""
        actor_t, target = text(frame["actor_tenant"]), text(frame["target_tenant"])
        ok = actor_t == target
        pairs: set[str] = set()
        consultants: list[Consultant] = []
        service: list[str] = []
        for rel in self.relationships:
            if isinstance(rel, Organisation):
                pairs |= {f"{rel.parent}{_SEP}{c}" for c in rel.children}
            elif isinstance(rel, Reseller):
                pairs |= {f"{rel.reseller}{_SEP}{c}" for c in rel.clients}
            elif isinstance(rel, Consultant):
                consultants.append(rel)
            elif isinstance(rel, ServiceRole):
                service.append(rel.principal_pattern)
        ok |= (actor_t.fillna("") + _SEP + target.fillna("")).isin(pairs)
        session = match(frame["actor_principal"], r"assumed-role/[^/]+/(?P<s>.+)$", "s")
        ok |= consultant_allowed(text(frame["actor_principal"]), session, target, consultants)
        return ok | match(frame["actor_principal"], any_of(service))

    def _events(self, frame: pd.DataFrame, kind: str) -> pd.DataFrame:
        """One kind's events with a target tenant: actor, tenant, time, denied, foreign.

        Works on categorical codes: a 14-day history is millions of rows but only thousands of
        distinct actors and tenants, so strings are handled once per distinct value."""
        s: Settings = self.settings  # type: ignore[assignment]
        col = ACTOR_KINDS[kind]
        service = match(frame["actor_principal"], any_of(self._service_patterns()))
        keep = frame["target_tenant"].notna() & frame[col].notna() & ~service
        if kind == "ip" and s.exclude_ips:
            keep &= ~match(
                frame["source_ip"], any_of([rf"^{re.escape(ip)}$" for ip in s.exclude_ips])
            )
        f = frame[keep]
        # "Explained" depends only on (principal, actor tenant, target): decide it per combination.
        who = ["actor_principal", "actor_tenant", "target_tenant"]
        combos = f[who].astype("category")
        combo_id = combos.groupby(who, observed=True, dropna=False, sort=False).ngroup()
        distinct = combos.assign(_id=combo_id.to_numpy()).drop_duplicates("_id").set_index("_id")
        explained = self._explained(distinct.reset_index(drop=True))
        foreign = ~explained.to_numpy()[combo_id.to_numpy()] if len(f) else np.zeros(0, bool)
        ev = pd.DataFrame(
            {
                "actor": f[col].astype("category").cat.remove_unused_categories(),
                "tenant": f["target_tenant"].astype("category").cat.remove_unused_categories(),
                "t": epoch_us(f["event_time"]),
                "denied": (f["outcome"] == "denied").to_numpy(),
                "foreign": foreign,
            },
            index=f.index,
        )
        ev["hour"] = ev["t"] // HOUR_US
        order = np.lexsort((ev["t"].to_numpy(), ev["actor"].cat.codes.to_numpy()))
        return ev.iloc[order]

    def _service_patterns(self) -> list[str]:
        return [r.principal_pattern for r in self.relationships if isinstance(r, ServiceRole)]

    @staticmethod
    def _features(ev: pd.DataFrame, seen: pd.MultiIndex | None) -> pd.DataFrame:
        """Per (actor, hour): FEATURES plus ``foreign`` and ``foreign_new``. ``seen`` is the
        (actor, tenant) pairs of the history; None means "new" is relative to earlier hours
        of ``ev`` itself (the history's own training rows)."""
        # Integer codes, never the strings: a categorical's values are slow to materialise.
        actor, tenant = ev["actor"].cat.codes.to_numpy(), ev["tenant"].cat.codes.to_numpy()
        hour = ev["hour"].to_numpy()
        same = (actor == np.roll(actor, 1)) & (hour == np.roll(hour, 1))
        changed = tenant != np.roll(tenant, 1)
        if len(same):
            same[0] = False
        ev = ev.assign(switch=same & changed)
        keys = ["actor", "hour"]
        g = ev.groupby(keys, observed=True, sort=True)
        out = pd.DataFrame(
            {
                "requests": g.size(),
                "switches": g["switch"].sum(),
                "denied_ratio": g["denied"].mean(),
            }
        )
        pairs = (
            ev.groupby(["actor", "hour", "tenant"], observed=True, sort=False)
            .agg(first_t=("t", "min"), foreign=("foreign", "max"))
            .reset_index()
            .sort_values(["actor", "hour", "first_t"], kind="stable")
        )
        if seen is None:
            first_hour = pairs.groupby(["actor", "tenant"], observed=True)["hour"].transform("min")
            pairs["new"] = (pairs["hour"] == first_hour).to_numpy()
        else:
            known = pd.MultiIndex.from_arrays(
                [pairs["actor"].astype(str), pairs["tenant"].astype(str)]
            )
            pairs["new"] = ~known.isin(seen)
        # The tenant id's trailing number, computed once per distinct tenant.
        cats = pairs["tenant"].cat.categories.astype(str)
        per_cat = pd.to_numeric(cats.str.extract(r"(\d+)$")[0], errors="coerce").to_numpy()
        num = pd.Series(
            np.append(per_cat, np.nan)[pairs["tenant"].cat.codes.to_numpy()], index=pairs.index
        )
        prev_same = (pairs["actor"] == pairs["actor"].shift()) & (
            pairs["hour"] == pairs["hour"].shift()
        )
        pairs["seq"] = prev_same & ((num - num.shift()).abs() == 1)
        pairs["foreign_new"] = pairs["foreign"] & pairs["new"]
        pg = pairs.groupby(keys, observed=True, sort=True)
        out["tenants"] = pg.size()
        out["new_tenants"] = pg["new"].sum()
        out["foreign"] = pg["foreign"].sum()
        out["foreign_new"] = pg["foreign_new"].sum()
        out["sequential_ratio"] = pg["seq"].sum() / (out["tenants"] - 1).clip(lower=1)
        out["requests_per_tenant"] = out["requests"] / out["tenants"]
        return out.reset_index()

    @staticmethod
    def _matrix(feat: pd.DataFrame) -> np.ndarray:
        cols = []
        for name in FEATURES:
            x = feat[name].to_numpy(dtype=np.float64)
            cols.append(x if name.endswith("ratio") else np.log1p(x))
        return np.column_stack(cols)

    # --- life cycle ----------------------------------------------------------------------------

    def fit(self, baseline: pd.DataFrame) -> Self:
        from sklearn.ensemble import IsolationForest

        s: Settings = self.settings  # type: ignore[assignment]
        bad = sorted(set(s.actor_kinds) - set(ACTOR_KINDS))
        if bad:
            raise ValueError(f"{self.id}: unknown actor kind {bad[0]!r}")
        p0, p1 = baseline.attrs.get("period", (None, None))
        self.history_hours_ = (
            (pd.Timestamp(p1) - pd.Timestamp(p0)) / pd.Timedelta(hours=1) if p0 and p1 else 0.0
        )
        self.seen_: dict[str, pd.MultiIndex] = {}
        self.own_max_: dict[str, pd.Series] = {}
        train = []
        for kind in s.actor_kinds:
            ev = self._events(baseline, kind)
            pairs = ev[["actor", "tenant"]].drop_duplicates()
            self.seen_[kind] = pd.MultiIndex.from_arrays(
                [pairs["actor"].astype(str), pairs["tenant"].astype(str)]
            )
            if ev.empty:
                self.own_max_[kind] = pd.Series(dtype=np.float64)
                continue
            feat = self._features(ev, None)
            busiest_ever = feat.groupby("actor", observed=True)["tenants"].max()
            self.own_max_[kind] = pd.Series(
                busiest_ever.to_numpy(), index=busiest_ever.index.astype(str)
            )
            # Without a day of history everything is "new"; skip the warm-up day if we can.
            first = feat["hour"].min()
            if feat["hour"].max() - first > 48:
                feat = feat[feat["hour"] >= first + 24]
            # Compared with the actor's busiest hour *before* this one, as the window will be.
            feat = feat.sort_values(["actor", "hour"], kind="stable")
            busiest = feat.groupby("actor", observed=True)["tenants"].cummax()
            prev_max = busiest.groupby(feat["actor"], observed=True).shift().fillna(0)
            feat["over_own_max"] = (feat["tenants"] - prev_max).clip(lower=0)
            train.append(feat)
        rows = pd.concat(train, ignore_index=True) if train else pd.DataFrame()
        self.model_: Any = None
        self.population_: dict[str, tuple[float, float]] = {}
        if len(rows) >= 50:
            if len(rows) > s.max_train_rows:
                rows = rows.sample(s.max_train_rows, random_state=s.random_state)
            x = self._matrix(rows)
            self.model_ = IsolationForest(
                n_estimators=s.n_estimators, random_state=s.random_state
            ).fit(x)
            for name in FEATURES:
                v = rows[name].to_numpy(dtype=np.float64)
                med = float(np.median(v))
                self.population_[name] = (med, float(np.median(np.abs(v - med))))
        return self

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        s: Settings = self.settings  # type: ignore[assignment]
        found: list[dict[str, Any]] = []
        for rank, kind in enumerate(s.actor_kinds):
            ev = self._events(window, kind)
            if ev.empty:
                continue
            feat = self._features(ev, self.seen_.get(kind))
            feat["actor"] = feat["actor"].astype(str)
            own = feat["actor"].map(self.own_max_.get(kind, pd.Series(dtype=np.float64)))
            feat["over_own_max"] = (feat["tenants"] - own.fillna(0)).clip(lower=0)
            # Switching among tenants it already knew, no more of them than before, is habit.
            gate = (feat["foreign"] >= s.min_foreign) & (
                (feat["foreign_new"] >= 1) | (feat["over_own_max"] >= 1)
            )
            feat = feat[gate].reset_index(drop=True)
            if feat.empty:
                continue
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
            model = (
                -self.model_.score_samples(self._matrix(feat))
                if self.model_ is not None
                else np.ones(len(feat))  # no population history: any foreign spread is unusual
            )
            feat["model_score"] = model
            feat["rule"] = np.select([enum, new], ["enumeration", "new_tenants"], default="")
            feat["severity"] = np.select(
                [enum, new], [s.severity_enumeration, s.severity_new_tenants], s.severity_model
            )
            feat["score"] = np.where(feat["rule"] != "", np.maximum(model, 1.0), model)
            hot = feat[feat["score"] >= s.threshold]
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
        s: Settings = self.settings  # type: ignore[assignment]
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
        s: Settings = self.settings  # type: ignore[assignment]
        found.sort(key=lambda f: (-len(f["rows"]), f["rank"], f["key"]))
        kept = fold(found, request_keys(window), s.overlap)
        return pd.DataFrame(kept, columns=list(SCORED))
