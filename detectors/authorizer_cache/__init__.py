"""authorizer_cache: API Gateway's authorizer cache busted by fresh tokens, or serving a decision to
someone it was not made for.

Threat
------
API Gateway keeps a Lambda authorizer's result for its TTL (300 s by default) under the route's
cache key, built from its identity sources (the token, a header). Two ways an attacker uses it:

- **Cache busting**: a flood of fresh tokens (minted with a stolen key, or one token with a
  varied, ignored part) makes every request a new cache key: the authorizer runs each time,
  probed for what it accepts, its cost and latency run up for everyone.
- **Collision**: a cache key that does not carry the tenant (an ``X-Client-Id`` shared by a
  reporting app's users, a key without the path) makes API Gateway hand one caller's Allow,
  principal and tenant context to another caller, or to another tenant's path.

Signal
------
Which requests were answered from the cache is told in one place for every detector
(``detectors.evidence.cache_answers``): an access-log request that names an authorizer principal
and has no authorizer decision of its own, joined by request id (its ``authorizerLatency`` is
``-``). Requests are grouped by API and stage (``service``), route (``action``) and path tenant.

- **Miss surge** (per API, route and tenant, hourly buckets, also shifted by half an hour): the
  authorizer's invocations, each a miss, against the group's own history (robust z as in
  ``authz_failure_spike``: median and MAD of the same hour of the day when the history covers
  ``daily_min_days``, else of every hour), and the miss share against the usual share of the
  route and of the tenant. A bucket pages when its invocations reach the floor
  (``min_invocations``), their z reaches ``threshold``, its miss share lies ``min_share_rise``
  above the larger usual share, and at least ``min_fresh_share`` of its decisions are for fresh
  tokens: tokens with no decision in the ``token_memory_s`` before. The last test is what sets
  busting apart from a cache flush (a deploy, ``FlushStageAuthorizersCache``): a flush makes the
  authorizer decide again for the tokens already in use, every route and tenant at once, each
  once; busting brings tokens nobody has used. High when the invocations reach
  ``high_invocations`` and z twice the threshold; with no history, ``severity_no_history``.
- **Collision** (per principal): a successful request answered from the cache is linked to the
  decision API Gateway most likely served it from: the latest decision for the same principal
  on the same API and stage (each has a cache of its own) within ``cache_ttl_s`` made for the
  same client (address and user agent), else for any client.
  It is a collision when the request's path tenant differs from the tenant the decision was made
  for and no relationship (``detectors.rules``) lets the principal's tenant act on it
  (``severity_cross``), or when the decision was made for another client: another address and
  another user agent (``severity_client``), only one of them (``severity_client_partial``,
  recorded). The access log names no token, so the hit's token cannot be compared; the
  decision's token fingerprint is in the evidence (never a token).
- **Route** (per API and route, once per window): the same cached decision seen for two tenants
  in cross-tenant collisions: the route's cache key cannot carry the tenant (``severity_route``).

Without the authorizer's log (no decision in the window, or none for an API's requests) no
hit is told from a miss: the API is skipped and named in the detect summary (``skipped``). A
request or decision without a path tenant is compared by client only; its evidence says so.

Data needed
-----------
API Gateway access logs and the Lambda authorizer's log (its decisions with the request id).
``event_time``, ``source``, ``service``, ``action``, ``actor_principal``, ``actor_session``,
``actor_tenant``, ``target_tenant``, ``outcome``, ``status_code``, ``source_ip``,
``user_agent``, ``request_id``. 14 days of history of the API's requests and decisions.

Known false positives
---------------------
- A client that mints a new token for every call (machine-to-machine credentials fetched per
  request): every request is a fresh-token miss. Its history makes it usual; a new integration
  pages once, and is fixed by caching its token or suppressed by route and tenant.
- A load test against one tenant with generated tokens.
- A mobile user whose address changes while its token is cached is another address, not another
  user agent: recorded at ``severity_client_partial``, not paged.
- A deploy or cache flush raises every route's misses together with tokens already in use: the
  fresh-token share keeps it quiet; a flush during a login storm (every user logging in again
  after a forced sign-out) may page the busiest route of a big tenant.

Runbook
-------
1. Read the finding's kind in the evidence (``kind``): ``surge``, ``collision`` or ``route``,
   and its group: the API and stage, route, tenant, principal.
2. Surge: look at ``top_tokens`` and ``source_ips``: one address with hundreds of token
   fingerprints is a script. Check for a deploy or an authorizer change at ``first_seen``
   (CloudTrail ``CreateDeployment``, ``UpdateAuthorizer``, ``FlushStageAuthorizersCache``): a
   flush that every route shows is not an attack. Otherwise rate-limit or block the addresses
   (WAF), and if the tokens are valid ones the SaaS did not issue, rotate the token signing key.
3. Collision: the evidence names the decision (its request id, client, tenant and token
   fingerprint) and the requests served from it (``served``). Pull both from the lake by
   ``request_ids``. A request on another tenant's path that succeeded is a cross-tenant read:
   run ``tenantwatch impact <incident>`` for what was read and whose.
4. Contain: ``tenantwatch contain <incident> --principal <principal>`` (or ``--address``) so the
   reference authorizer refuses it; flush the stage's authorizer cache
   (``aws apigateway flush-stage-authorizers-cache``) so no cached Allow outlives it.
5. Route: fix the cache key. Put the token and the path's tenant in the authorizer's identity
   sources (or turn caching off for the route) and scope the returned policy to the tenant;
   deploy, then watch the route's findings stop. Record the route, principals, addresses and
   tenants on the incident.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa

from detectors.authorizer_cache import history
from detectors.authorizer_cache.requests import SEP, fresh, key, requests
from detectors.base import SCORED, Detector, DetectorSettings, Partition, Severity, period
from detectors.evidence import HOUR_US, describe_hours, most, text
from detectors.rules import Rules

_HALF = HOUR_US // 2


class Settings(DetectorSettings, frozen=True, forbid_unknown_fields=True, kw_only=True):
    min_invocations: int = 30  # authorizer decisions in an hour before a route and tenant can page
    threshold: float = 5.0  # robust z of the hour's decisions against the group's history
    mad_floor: float = 1.0
    daily_min_days: int = 7
    min_share_rise: float = 0.25  # miss share above the route's and the tenant's usual share
    min_fresh_share: float = 0.8  # of the hour's decisions, for tokens with none just before
    token_memory_s: int = 3600  # how long before a decision a token's earlier one makes it known
    high_invocations: int = 200
    # API Gateway's authorizer result TTL (its default): how long a decision can be served.
    cache_ttl_s: int = 300
    severity: Severity = "medium"  # a miss surge
    severity_high: Severity = "high"
    severity_no_history: Severity = "medium"
    severity_cross: Severity = "critical"  # a cached Allow served on another tenant's path
    severity_client: Severity = "medium"  # ... to another address and user agent
    severity_client_partial: Severity = "low"  # ... another address or user agent (recorded)
    severity_route: Severity = "high"  # a route whose cache key cannot carry the tenant


class AuthorizerCache(Detector[Settings]):
    id = "authorizer_cache"
    title = "Authorizer cache busted or misused"
    severity = "medium"
    sources = ("apigateway", "authorizer")
    columns = (
        "event_id",
        "event_time",
        "source",
        "service",
        "action",
        "actor_principal",
        "actor_session",
        "actor_tenant",
        "target_tenant",
        "outcome",
        "status_code",
        "source_ip",
        "user_agent",
        "request_id",
    )
    baseline_columns = (
        "event_time",
        "source",
        "service",
        "action",
        "actor_principal",
        "actor_session",
        "target_tenant",
        "status_code",
        "request_id",
    )
    group_by = ("kind", "service", "route", "tenant", "principal")
    partitions = ()
    """The window whole, its history in parts (``TwoStep``, ``history``). Whether a request was
    answered from the cache is told by the authorizer line of the same request, which shares
    only the request id with it; a surge compares its route and tenant with the usual miss
    share of the route across tenants and of the tenant across routes, a fresh token is one
    with no decision anywhere in the hour before, a collision links a principal's requests
    whatever their route, and a route's finding gathers the collisions of every principal: no
    key is shared by everything one finding reads. Its ``skipped`` (an API whose authorizer
    log is missing) is also a statement about the whole window. The 14 days of history are
    only counted: summed over parts by request id."""
    lookback = timedelta(days=14)
    dedup_period = timedelta(hours=6)
    summary_schema = history.SUMMARY
    summary_merge = history.MERGE
    # What the last window scored could not be judged, part -> why (the detect summary lists it).
    skipped: dict[str, str]

    def fit(self, baseline: pd.DataFrame) -> Self:
        """``summarize`` the whole history, then ``learn`` and ``absorb``: the steps a runner
        on many machines takes over parts of it (``TwoStep``)."""
        p0, p1 = period(baseline)
        span = (p0, p1) if p0 is not None and p1 is not None else None
        self.learn(history.SUMMARY.empty_table(), span)
        self.absorb(self.summarize(0, baseline, None, span))
        return self

    # --- the fit in parts (``detectors.base.TwoStep``) ----------------------------------------

    def summary_passes(self) -> tuple[Partition, ...]:
        """One pass, by request id: an access-log line and its decision stay together."""
        return (Partition(("request_id",)),)

    def sample_size(self) -> int:
        return 0  # nothing is sampled: every summary row is state

    def summarize(
        self,
        index: int,
        baseline: pd.DataFrame | pa.Table,
        window: pd.DataFrame | pa.Table | None,
        span: tuple[datetime, datetime] | None,
    ) -> pa.Table:
        """The counts of a part of the history (``history.summarize``); the window plays no
        part."""
        memory = self.settings.token_memory_s * 1_000_000
        return history.summarize(baseline, self.sources, history.Span.of(span), memory)

    def learn(self, sample: pa.Table, span: tuple[datetime, datetime] | None) -> None:
        """The history's span; there is no model to fit."""
        self.skipped = {}
        self.rules_ = Rules.of(self.relationships)
        self.span_ = history.Span.of(span)
        self.first_hour_, self.hours_ = self.span_.first_hour, self.span_.hours
        self.absorb(history.SUMMARY.empty_table())

    def absorb(self, state: pa.Table) -> None:
        """Take in the counts of every part (``history.absorb``)."""
        learnt = history.absorb(state, self.span_)
        self.counts_, self.shares_, self.tokens_ = learnt.counts, learnt.shares, learnt.tokens

    # --- miss surges --------------------------------------------------------------------------

    def _level(self, group: str, abs_hour: int) -> tuple[float, float]:
        s = self.settings
        if self.hours_ == 0:
            return 0.0, s.mad_floor
        history = np.zeros(self.hours_)
        if group in self.counts_.index.get_level_values(0):
            have = self.counts_.xs(group, level=0)
            history[have.index.to_numpy(dtype=np.int64)] = have.to_numpy()
        hours = np.arange(self.hours_) + self.first_hour_
        daily = self.hours_ >= s.daily_min_days * 24
        sample = history[(hours - abs_hour) % 24 == 0] if daily else history
        level = float(np.median(sample))
        mad = float(np.median(np.abs(sample - level)))
        mad_all = float(np.median(np.abs(history - np.median(history))))
        return level, max(mad, mad_all, float(np.sqrt(level)), s.mad_floor)

    def _usual_share(self, service: str, route: str, tenant: str | None) -> float:
        route_share = self.shares_["route"].get(service + SEP + route, 0.0)
        tenant_share = self.shares_["tenant"].get(service + SEP + str(tenant), 0.0)
        return max(route_share, tenant_share)

    def _surges(self, window: pd.DataFrame, req: pd.DataFrame) -> list[dict[str, Any]]:
        s = self.settings
        fresh_ = fresh(req, self.tokens_, s.token_memory_s * 1_000_000)
        keys = key(req)
        best: dict[str, dict[str, Any]] = {}
        for phase in (0, _HALF):
            bucket = (req["t"] - phase) // HOUR_US
            g = pd.DataFrame(
                {"key": keys, "bucket": bucket, "miss": req["miss"], "fresh": fresh_ & req["miss"]}
            ).groupby(["key", "bucket"])
            sizes, misses, fresh_n = g.size(), g["miss"].sum(), g["fresh"].sum()
            for (k, b), m in misses[misses >= s.min_invocations].items():
                service, route, tenant = k.split(SEP)
                stats = [self._level(k, int(b))]
                if phase:
                    stats.append(self._level(k, int(b) + 1))
                level, spread = max(stats)
                z = 0.6745 * (m - level) / spread
                n = int(sizes[(k, b)])
                share, usual = m / n, self._usual_share(service, route, tenant)
                fresh_share = float(fresh_n[(k, b)]) / m
                if (
                    z < s.threshold
                    or share < usual + s.min_share_rise
                    or fresh_share < s.min_fresh_share
                ):
                    continue
                mine = req.index[(keys == k).to_numpy() & (bucket == b).to_numpy()]
                rows = mine.union(pd.Index(req.loc[mine, "decision"][lambda d: d >= 0]))
                found = best.setdefault(k, {"rows": rows, "peak": None})
                found["rows"] = found["rows"].union(rows)
                peak = (z, int(m), n, share, usual, fresh_share, level, spread)
                if found["peak"] is None or peak > found["peak"]:
                    found["peak"] = peak
        out = []
        for k, found in best.items():
            service, route, tenant = k.split(SEP)
            z, m, n, share, usual, fresh_share, level, spread = found["peak"]
            if self.hours_ == 0:
                sev, usual_text = s.severity_no_history, "no history"
            else:
                high = m >= s.high_invocations and z >= 2 * s.threshold
                sev = s.severity_high if high else s.severity
                usual_text = f"usually {level:.0f}/h"
            rows = np.asarray(found["rows"], dtype=np.int64)
            tokens = text(window.loc[rows, "actor_session"]).dropna()
            tenant_v = None if tenant == "-" else tenant
            out.append(
                {
                    "key": f"surge|{k.replace(SEP, '|')}",
                    "score": z,
                    "threshold": s.threshold,
                    "severity": sev,
                    "actor": None,
                    "actor_tenant": None,
                    "tenants": [tenant_v] if tenant_v else [],
                    "baseline": self._baseline_text(level, spread, usual),
                    "rows": rows,
                    "details": {
                        "kind": "surge",
                        "api": service,
                        "route": route,
                        "tenant": tenant_v or "unknown: the path names no tenant",
                        "peak_invocations": m,
                        "peak_requests": n,
                        "miss_share": round(share, 3),
                        "usual_miss_share": round(usual, 3),
                        "fresh_token_share": round(fresh_share, 3),
                        "distinct_tokens": int(tokens.nunique()),
                        "top_tokens": most(tokens, 5),
                        "top_principals": most(text(window.loc[rows, "actor_principal"]), 5),
                    },
                    "title": f"Authorizer cache busted on {route} for tenant "
                    f"{tenant_v or 'unknown'}: {m} authorizer runs in an hour, "
                    f"{share:.0%} of requests missed the cache ({usual_text}, "
                    f"{fresh_share:.0%} fresh tokens)",
                }
            )
        return out

    def _baseline_text(self, level: float, spread: float, usual: float) -> str:
        floor = f"floor {self.settings.min_invocations}/h"
        if not self.hours_:
            return f"no history before the window: baseline unknown; {floor} (authorizer runs)"
        return (
            f"median {level:.1f}/h, spread {spread:.1f} over {describe_hours(self.hours_)}; usual "
            f"miss share {usual:.0%} (route, tenant); {floor} (authorizer runs)"
        )

    # --- collisions -------------------------------------------------------------------------

    def _links(self, req: pd.DataFrame) -> pd.DataFrame:
        """Each successful cache hit with the decision it was most likely served from: the
        latest one within the TTL for the same principal and client, else for the principal,
        on the same API and stage (each stage has its own cache)."""
        ttl = self.settings.cache_ttl_s * 1_000_000
        hits = req[~req["miss"] & req["ok"] & req["principal"].notna()]
        decs = req[req["miss"] & req["principal"].notna()]
        if hits.empty or decs.empty:
            return pd.DataFrame()
        left = hits.reset_index(names="hit").sort_values("t", kind="stable")
        right = decs.reset_index(names="dec")[["t", "service", "principal", "ip", "ua", "dec"]]
        right = right.sort_values("t", kind="stable")
        same = pd.merge_asof(
            left,
            right,
            on="t",
            by=["service", "principal", "ip", "ua"],
            direction="backward",
            tolerance=ttl,
        )
        anyone = pd.merge_asof(
            left[["t", "service", "principal", "hit"]],
            right.drop(columns=["ip", "ua"]),
            on="t",
            by=["service", "principal"],
            direction="backward",
            tolerance=ttl,
        )
        link = same.set_index("hit")["dec"].fillna(
            anyone.set_index("hit")["dec"].reindex(same["hit"].to_numpy())
        )
        link = link.dropna().astype(np.int64)
        out = req.loc[link.index, ["principal", "tenant", "actor_tenant", "ip", "ua", "route"]]
        d = req.loc[link.to_numpy()]
        out["dec"] = link.to_numpy()
        out["dec_tenant"] = d["tenant"].to_numpy()
        out["other_ip"] = (d["ip"].to_numpy() != out["ip"].to_numpy()) & (d["ip"] != "").to_numpy()
        out["other_ua"] = (d["ua"].to_numpy() != out["ua"].to_numpy()) & (d["ua"] != "").to_numpy()
        return out

    def _collisions(self, window: pd.DataFrame, req: pd.DataFrame) -> list[dict[str, Any]]:
        s = self.settings
        links = self._links(req)
        if links.empty:
            return []
        explained = self.rules_.explained(window.loc[links.index]).to_numpy(dtype=bool)
        known = links["tenant"].notna() & links["dec_tenant"].notna()
        cross = known & (links["tenant"] != links["dec_tenant"]) & ~explained
        both = links["other_ip"] & links["other_ua"]
        either = links["other_ip"] | links["other_ua"]
        links["kind"] = np.select(
            [cross, both, either], ["cross", "client", "client_partial"], default=""
        )
        links = links[links["kind"] != ""]
        sev = {
            "cross": s.severity_cross,
            "client": s.severity_client,
            "client_partial": s.severity_client_partial,
        }
        rank = {"cross": 0, "client": 1, "client_partial": 2}
        out = []
        for principal, g in links.groupby("principal", sort=True):
            kind = min(g["kind"], key=rank.__getitem__)
            decs = req.loc[np.unique(g["dec"].to_numpy())]
            # The decisions in time order (then request id), not in the order rows came in.
            rid = text(window.loc[decs.index, "request_id"]).fillna("")
            decs = decs.iloc[np.lexsort((rid.to_numpy(dtype=str), decs["t"].to_numpy()))]
            auth = decs["decision"][lambda x: x >= 0].to_numpy()
            rows = np.unique(np.concatenate([g.index, decs.index, auth]).astype(np.int64))
            tenants = sorted(set(g["tenant"].dropna()) | set(decs["tenant"].dropna()))
            served = sorted(set(g["tenant"].dropna()))
            unknown = int((~known[g.index]).sum())
            details = {
                "kind": "collision",
                "collision": kind,
                "principal": principal,
                "decisions": [
                    {
                        "request_id": str(window.at[i, "request_id"]),
                        "tenant": None if pd.isna(d.tenant) else d.tenant,
                        "source_ip": d.ip,
                        "user_agent": d.ua,
                        "token_fingerprint": d.token,
                        "route": d.route,
                    }
                    for i, d in decs.head(5).iterrows()
                ],
                "served": {
                    "requests": len(g),
                    "tenants": served,
                    "source_ips": sorted(set(g["ip"]))[:5],
                    "user_agents": sorted(set(g["ua"]))[:3],
                    "routes": sorted(set(g["route"])),
                },
                "tenant_unknown": unknown,
            }
            if unknown:
                details["tenant_note"] = (
                    f"{unknown} served request(s) or their decision name no tenant: compared by "
                    "client only"
                )
            if kind == "cross":
                dec_t = sorted(set(decs["tenant"].dropna()) - set(served)) or ["?"]
                title = (
                    f"Cached authorizer decision for {principal} ({', '.join(dec_t)}) served on "
                    f"tenant {', '.join(served)}'s path: {len(g)} request(s) from "
                    f"{', '.join(sorted(set(g['ip']))[:3])}"
                )
            else:
                title = (
                    f"Cached authorizer decision for {principal} served to another client: "
                    f"{len(g)} request(s) from {', '.join(sorted(set(g['ip']))[:3])}"
                )
            out.append(
                {
                    "key": f"collision|{principal}",
                    "score": float(len(g)),
                    "threshold": 1.0,
                    "severity": sev[kind],
                    "actor": principal,
                    "actor_tenant": g["actor_tenant"].dropna().mode().iloc[0]
                    if g["actor_tenant"].notna().any()
                    else None,
                    "tenants": tenants,
                    "baseline": f"a cached decision is served to its own client and tenant for "
                    f"{s.cache_ttl_s} s",
                    "rows": rows,
                    "details": details,
                    "title": title,
                }
            )
        cross = links[links["kind"] == "cross"]
        if len(cross):
            self._route(cross, req, out)
        return out

    def _route(self, cross: pd.DataFrame, req: pd.DataFrame, out: list[dict[str, Any]]) -> None:
        """One finding per API and route whose cached decisions served two tenants."""
        service = req.loc[cross.index, "service"]
        for (svc, route), g in cross.groupby([service, cross["route"]], sort=True):
            decs = np.unique(g["dec"].to_numpy())
            tenants = sorted(set(g["tenant"].dropna()) | set(req.loc[decs, "tenant"].dropna()))
            rows = np.unique(np.concatenate([g.index, decs]).astype(np.int64))
            out.append(
                {
                    "key": f"route|{svc}|{route}",
                    "score": float(len(tenants)),
                    "threshold": 2.0,
                    "severity": self.settings.severity_route,
                    "actor": None,
                    "actor_tenant": None,
                    "tenants": tenants,
                    "baseline": "a route's cached decision serves one tenant",
                    "rows": rows,
                    "details": {
                        "kind": "route",
                        "api": svc,
                        "route": route,
                        "decisions": len(decs),
                        "served_requests": len(g),
                        "principals": sorted(set(g["principal"]))[:5],
                    },
                    "title": f"Authorizer cache key of {route} ({svc}) cannot carry the tenant: "
                    f"one cached decision served {', '.join(tenants)}",
                }
            )

    # --- both ---------------------------------------------------------------------------------

    def score(self, window: pd.DataFrame) -> pd.DataFrame:
        self.skipped = {}
        req = requests(window)
        if req is None:
            if (text(window["source"]) == "apigateway").any():
                self.skipped["*"] = (
                    "no authorizer decision in the window: the authorizer's log is not "
                    "ingested, so cache hits cannot be told from misses"
                )
            return pd.DataFrame([], columns=list(SCORED))
        for svc, g in req.groupby("service", sort=True):
            if not g["miss"].any():
                self.skipped[str(svc)] = (
                    f"{len(g)} requests name an authorizer principal and none has a decision "
                    "in the authorizer's log (not ingested for this API): cache share not told"
                )
        if self.skipped:
            req = req[~req["service"].isin(list(self.skipped))]
        found = self._surges(window, req) + self._collisions(window, req)
        return pd.DataFrame(found, columns=list(SCORED))
