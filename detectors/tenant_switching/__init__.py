"""tenant_switching: one actor touches more tenants, or other tenants, than it ever did.

Threat
------
Someone tries tenant id after tenant id to find which ones answer (enumeration), a stolen token
or session is tried against tenant after tenant, or a script harvests data across tenants
through a hole that lets some requests through. Each request alone may look small; the spread
across tenants is the signal.

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

The model is fitted on at most ``max_train_rows`` of the history's actor-hours: those of smallest
rank, a hash of the actor, its kind, the hour and ``random_state`` (``model.ranks``), taken in
order of rank. The sample is thus the same however the history is read or split, which is what
lets a runner on many machines fit it (``TwoStep``): each part of the history, split by actor,
is summarized where it is read (its actor-hours of smallest rank, and for the window's actors
the tenants they touched and their busiest hour), the model is fitted once on the smallest
ranks of all parts, and the window is scored with it whole (a session's or address's finding is
folded into its principal's, and a session is judged against its principal's history: no key is
shared by all three kinds).

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
   browser?) and whether the tenants were tried in id order.
4. If the actor is a known tool or partner, add the relationship to ``tenantwatch.toml`` and
   close as a false positive.
5. Contain: revoke the token or session (the authorizer's deny list; IAM revoke sessions), block
   the source address in the WAF, and tell the actor's tenant admin.
6. Scope: query the lake for the same address and token over the last 30 days; attach the
   result and keep the forensic snapshot.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detectors.base import SCORED, Detector, DetectorSettings, Partition, Severity, period
from detectors.evidence import HOUR_US, describe_hours, fold, request_keys, text
from detectors.rules import Rules
from detectors.tenant_switching import features, model
from detectors.tenant_switching.features import ACTOR_KINDS, FEATURES


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    actor_kinds: tuple[str, ...] = ("principal", "session", "ip")
    min_foreign: int = 3  # foreign tenants in an hour before the model is asked
    enum_min_tenants: int = 8
    enum_max_requests_per_tenant: float = 4.0
    enum_min_ratio: float = 0.5  # sequential or denied share that makes it enumeration
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


# What ``summarize`` returns, one row per (kind, actor, and one of): a tenant the actor touched in
# the history (``tenant``), its busiest hour's tenants (``busiest``), or an actor-hour that is a
# candidate for the model's sample (``hour``, FEATURES and ``rank``). ``kind`` is the actor kind,
# or OWNER: principals' tenants summarized for sessions alone.
OWNER = "principal of a session"
SUMMARY = pa.schema(
    [
        ("kind", pa.string()),
        ("actor", pa.string()),
        ("tenant", pa.string()),
        ("busiest", pa.float64()),
        ("hour", pa.int64()),
        *[(name, pa.float64()) for name in FEATURES],
        ("rank", pa.float64()),
    ]
)


def _summary(kind: str, **columns: Any) -> pa.Table:
    n = len(columns["actor"])
    arrays = [
        pa.array(columns[f.name], f.type, from_pandas=True)
        if f.name in columns
        else pa.array(np.repeat(kind, n), f.type)
        if f.name == "kind"
        else pa.nulls(n, f.type)
        for f in SUMMARY
    ]
    return pa.Table.from_arrays(arrays, schema=SUMMARY)


# Beside this module: ``features`` (events -> actor-hours) and ``model`` (the IsolationForest over
# the population's actor-hours). Here: which actor-hours are findings (the rules, then the model's
# score) and what a finding says.
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
    fit_arrow = True  # 14 days of events stay Arrow codes: see features.events
    group_by = ("actor_kind", "actor")
    partitions = ()
    """Whole, in two steps (``TwoStep``): the model learns from the whole population, and a
    session's or address's finding is folded into its principal's. Its history, the 14 days
    that make it costly, is summarized per actor (``summary_passes``)."""
    lookback = timedelta(days=14)
    dedup_period = timedelta(hours=24)
    summary_schema = SUMMARY

    # --- life cycle ----------------------------------------------------------------------------

    def fit(self, baseline: pd.DataFrame | pa.Table) -> Self:
        """``summarize`` the whole history, a pass at a time, then ``learn`` and ``absorb``: the
        steps a runner on many machines takes over parts of it (``TwoStep``)."""
        p0, p1 = period(baseline)
        span = (p0, p1) if p0 is not None and p1 is not None else None
        parts = [self.summarize(i, baseline, None, span) for i in range(len(self.summary_passes()))]
        summary = pa.concat_tables(parts)
        sampled = pc.is_valid(summary["rank"])
        self.learn(summary.filter(sampled), span)
        self.absorb(summary.filter(pc.invert(sampled)))
        return self

    # --- the fit in parts (``detectors.base.TwoStep``) ----------------------------------------

    def _passes(self) -> list[tuple[str, bool]]:
        """(actor kind, whether its actor-hours are summarized) per pass: each kind, and, for
        sessions judged against a principal kind that is off, the principals' tenants alone."""
        s = self.settings
        bad = sorted(set(s.actor_kinds) - set(ACTOR_KINDS))
        if bad:
            raise ValueError(f"{self.id}: unknown actor kind {bad[0]!r}")
        passes = [(kind, True) for kind in s.actor_kinds]
        if "session" in s.actor_kinds and "principal" not in s.actor_kinds:
            passes.append(("principal", False))
        return passes

    def summary_passes(self) -> tuple[Partition, ...]:
        """One pass per actor kind, keyed on its column: an actor's actor-hours, tenants and
        busiest hour depend on its own events only."""
        return tuple(Partition((ACTOR_KINDS[kind],)) for kind, _ in self._passes())

    def sample_size(self) -> int:
        return self.settings.max_train_rows

    def summarize(
        self,
        index: int,
        baseline: pd.DataFrame | pa.Table,
        window: pd.DataFrame | pa.Table | None,
        span: tuple[datetime, datetime] | None,
    ) -> pa.Table:
        """The ``SUMMARY`` of pass ``index`` over ``baseline`` (a part of the history, whole
        actors): its actor-hours of smallest rank (at most ``max_train_rows``, ``rank`` set)
        and, for the actors of ``window`` (every actor without one), the tenants each touched
        (``tenant``) and its busiest hour (``busiest``). ``span``: the history's [first,
        start), which places the warm-up day (None: the events' own first and last hour)."""
        s = self.settings
        kind, hours = self._passes()[index]
        name = kind if hours else OWNER
        ev = self._events(baseline, kind, positions=False)
        wanted: set[str] | None = None
        if window is not None:
            found = self._events(window, kind, positions=False) if len(window) else None
            wanted = set(found["actor"].astype(str)) if found is not None else set()
        pairs = features.pairs(ev)
        actor = pairs.get_level_values(0).to_numpy(dtype=object)
        keep = pd.Index(actor).isin(list(wanted)) if wanted is not None else slice(None)
        parts = [
            _summary(name, actor=actor[keep], tenant=pairs.get_level_values(1)[keep].to_numpy())
        ]
        if hours and not ev.empty:
            if span is not None:
                first = int(pd.Timestamp(span[0]).floor("h").value // 1000 // HOUR_US)
                last = -(-int(pd.Timestamp(span[1]).value // 1000) // HOUR_US)
            else:
                first, last = int(ev["hour"].min()), int(ev["hour"].max()) + 1
            rows, busiest = model.history(
                ev,
                kind,
                random_state=s.random_state,
                max_train_rows=s.max_train_rows,
                start=model.warm_up(first, last),
            )
            if wanted is not None:
                busiest = busiest[busiest.index.isin(list(wanted))]
            parts.append(_summary(name, actor=busiest.index.to_numpy(), busiest=busiest.to_numpy()))
            parts.append(
                _summary(
                    name,
                    actor=rows["actor"].to_numpy(),
                    hour=rows["hour"].to_numpy(),
                    rank=rows["rank"].to_numpy(),
                    **{f: rows[f].to_numpy() for f in FEATURES},
                )
            )
        return pa.concat_tables(parts)

    def learn(self, sample: pa.Table, span: tuple[datetime, datetime] | None) -> None:
        """Fit the model on the ``max_train_rows`` actor-hours of ``sample`` of smallest rank,
        in order of rank (``SUMMARY`` rows with ``rank``, of any parts)."""
        s = self.settings
        self._passes()  # checks the kinds
        self.history_hours_ = (
            (pd.Timestamp(span[1]) - pd.Timestamp(span[0])) / pd.Timedelta(hours=1)
            if span is not None
            else 0.0
        )
        order = [(c, "ascending") for c in ("rank", "kind", "actor", "hour")]
        rows = sample.sort_by(order).slice(0, s.max_train_rows).to_pandas()
        self.model_: Any
        self.population_: model.Spread
        self.model_, self.population_ = model.fit(
            rows, n_estimators=s.n_estimators, random_state=s.random_state
        )
        self.train_ = pd.DataFrame(columns=list(FEATURES), dtype=np.float64)
        if self.model_ is not None:
            self.train_ = rows[list(FEATURES)].astype(np.float64).reset_index(drop=True)

    def absorb(self, state: pa.Table) -> None:
        """Take in the tenants and busiest hours of ``state`` (``SUMMARY`` rows without rank):
        every actor whose window hours will be scored must be there."""
        frame = state.to_pandas()
        self.seen_: dict[str, pd.MultiIndex] = {}
        self.own_max_: dict[str, pd.Series] = {}
        for kind in [*self.settings.actor_kinds, OWNER]:
            mine = frame[frame["kind"] == kind]
            pairs = mine[mine["tenant"].notna()]
            seen = pd.MultiIndex.from_arrays(
                [pairs["actor"].to_numpy(dtype=object), pairs["tenant"].to_numpy(dtype=object)]
            )
            most = mine[mine["busiest"].notna()]
            if kind != OWNER:
                self.seen_[kind] = seen
                self.own_max_[kind] = pd.Series(
                    most["busiest"].to_numpy(dtype=np.float64),
                    index=pd.Index(most["actor"].to_numpy(dtype=object)),
                )
        # A session's tenants are judged against its principal's history as well: the
        # principal kind's pairs, or (principal off) the same pairs summarized for that alone.
        self.owners_: pd.MultiIndex | None = None
        if "session" in self.settings.actor_kinds and "principal" not in self.settings.actor_kinds:
            owned = frame[(frame["kind"] == OWNER) & frame["tenant"].notna()]
            self.owners_ = pd.MultiIndex.from_arrays(
                [owned["actor"].to_numpy(dtype=object), owned["tenant"].to_numpy(dtype=object)]
            )

    def _events(
        self, frame: pd.DataFrame | pa.Table, kind: str, positions: bool = True
    ) -> pd.DataFrame:
        s = self.settings
        return features.events(
            frame,
            kind,
            Rules.of(self.relationships),
            aws_services=not s.include_service_principals,
            exclude_ips=s.exclude_ips,
            positions=positions,
        )

    # --- which actor-hours are findings --------------------------------------------------------

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
        feat = features.actor_hours(ev, self.seen_.get(kind), owners)
        feat["actor"] = feat["actor"].astype(str)
        own = feat["actor"].map(self.own_max_.get(kind, pd.Series(dtype=np.float64)))
        if kind == "session" and "principal" in self.own_max_:
            # Nor more tenants than its principal's busiest hour: a fresh session has no past.
            mine = feat["actor"].map(features.principal_of(ev)).map(self.own_max_["principal"])
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
        scores = np.full(len(feat), np.nan)
        if ask.any():
            scores[ask] = (
                model.anomaly(self.model_, feat[ask])
                if self.model_ is not None
                else 1.0  # no population history: any foreign spread is unusual
            )
        feat["model_score"] = scores
        feat["rule"] = np.select([enum, new], ["enumeration", "new_tenants"], default="")
        feat["severity"] = np.select(
            [enum, new], [s.severity_enumeration, s.severity_new_tenants], s.severity_model
        )
        feat["score"] = np.where(feat["rule"] != "", np.maximum(scores, 1.0), scores)
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
        return rows.assign(model_score=model.anomaly(self.model_, rows))

    # --- findings ------------------------------------------------------------------------------

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
        unusual = model.unusual(top, self.population_)
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
