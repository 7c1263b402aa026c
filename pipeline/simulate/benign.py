"""Ordinary days that a detector counting denials carelessly takes for attacks: labelled negatives.

- ``cached_deny``: two users of one tenant open a page that needs a role they lack. The
  authorizer denies it (``insufficient_role``) and API Gateway caches the Deny for the token
  (300 s), so each user's next clicks are 403s with ``authorizerLatency`` ``-`` and no authorizer
  log line: 3 decisions become about 30 denials in one hour, in one tenant.
- ``new_hire``: a new employee of a tenant, first seen two days before the attack day: a few
  sessions a day, now and then a mistyped password, and admin pages the authorizer refuses
  (a cached Deny and the clicks after it).
- ``log_delivery``: CloudWatch Logs' delivery to S3 (``delivery.logs.amazonaws.com``) lost its
  permission on a few tenants' log-export prefixes: a ``PutObject`` ``AccessDenied`` every half
  minute from the attack day's morning on, thousands of them.

Each case draws from its own random stream, so the rest of the world's traffic is the same with
or without it. The surge tenant's Monday morning (``traffic``) is the fourth such case.
"""

from __future__ import annotations

import random
from typing import Any

from pipeline.simulate import apigateway as ag
from pipeline.simulate import clock, ids
from pipeline.simulate.apigateway import ApiSession
from pipeline.simulate.labels import Evidence, label
from pipeline.simulate.traffic import Traffic
from pipeline.simulate.world import CACHE_TTL_S, Tenant, User

LOG_DELIVERY = "delivery.logs.amazonaws.com"
_DENIED = ("AccessDenied", "Access Denied")
NEW_HIRE_DAYS = 3  # the new employee's first days, the attack day the last of them
# What a user clicks while the refusal is cached (every one a 403 from the cache).
_CLICKS = (
    ("GET", ag.INVOICES),
    ("GET", ag.INVOICE),
    ("GET", ag.USERS),
    ("POST", ag.USERS),
    ("GET", ag.ATTACHMENT),
)
_WORK = (("GET", ag.INVOICES), ("GET", ag.INVOICE), ("GET", ag.USERS))


def _local(base: int, tenant: Tenant, seconds: int) -> int:
    """The UTC epoch of ``seconds`` after local midnight of the UTC day starting at ``base``."""
    return base + (seconds - tenant.tz_minutes * 60) % clock.DAY


class Benign:
    def __init__(self, traffic: Traffic) -> None:
        self.tr = traffic
        self.world = traffic.world
        self.api = traffic.api
        self.ct = traffic.ct
        spec = self.world.spec
        self.seed = spec.seed
        self.days = spec.days
        self.attack = clock.day_start(spec.attack_day)
        st = self.world.scenario_tenants
        self.cached_tenant = self.world.by_id[st["cached_deny"]]
        self.hire_tenant = self.world.by_id[st["new_hire"]]
        rng = ids.stream(self.seed, "benign", "new_hire", "who")
        first = self.hire_tenant.users[0]
        self.hire = User(
            id=f"usr-{ids.hex_id(rng, 8)}",
            tenant=self.hire_tenant.id,
            office_ip=f"{first.office_ip.rsplit('.', 1)[0]}.{rng.randrange(2, 254)}",
            home_ip=first.home_ip,
            browser=first.browser,
            admin=False,
            acts_on=(self.hire_tenant.id,),
        )
        ids_all = [t.id for t in self.world.tenants]
        rng = ids.stream(self.seed, "benign", "log_delivery", "tenants")
        self.export_tenants = sorted(rng.sample(ids_all, min(4, len(ids_all))))
        self.ev = {"cached_deny": Evidence(), "new_hire": Evidence(), "log_delivery": Evidence()}

    def day(self, d: int) -> None:
        """The cases' events of simulated day ``d`` (call after the day's ordinary traffic)."""
        base = clock.day_start(self.world.spec.start) + d * clock.DAY
        if d >= self.days - NEW_HIRE_DAYS:
            self.new_hire(ids.stream(self.seed, "benign", "new_hire", d), base)
        if d == self.days - 1:
            self.cached_deny(ids.stream(self.seed, "benign", "cached_deny"), base)
            self.log_delivery(ids.stream(self.seed, "benign", "log_delivery"), base)

    def _add(self, case: str, event_ids: str | list[str], ts: int) -> None:
        if self.attack <= ts < self.attack + clock.DAY:  # labels cover the attack day
            self.ev[case].add(event_ids, ts)

    # --- the cases ----------------------------------------------------------------------------

    def _refused(
        self, rng: random.Random, t_ms: int, sess: ApiSession, user: User, clicks: int, case: str
    ) -> int:
        """The admin page the authorizer refuses, then ``clicks`` requests inside the cache TTL
        (each a 403 served from the cached Deny); returns the time of the last."""
        tenant = user.tenant
        r = self.api.request(
            rng, t_ms, sess, "POST", ag.USERS, tenant, status=201, role_denied=True
        )
        self._add(case, r.request_id, t_ms // 1000)
        deadline = t_ms + (CACHE_TTL_S - 5) * 1000
        for _ in range(clicks):
            t_ms = min(t_ms + rng.randrange(6_000, 24_000), deadline)
            method, route = rng.choice(_CLICKS)
            item = f"inv-{rng.randrange(10**6):06d}" if "{id}" in route else None
            r = self.api.request(rng, t_ms, sess, method, route, tenant, item)
            self._add(case, r.request_id, t_ms // 1000)
        return t_ms

    def cached_deny(self, rng: random.Random, base: int) -> None:
        tenant = self.cached_tenant
        first, second = tenant.users[-1], tenant.users[-2 if len(tenant.users) > 1 else 0]
        t0 = _local(base, tenant, 10 * 3600 + rng.randrange(1200)) * 1000
        later = t0 + rng.randrange(300_000, 900_000)
        for user, rounds, start in ((first, 2, t0), (second, 1, later)):
            sess, _, _ = self.tr.login(rng, start, user, user.office_ip, user.browser, None)
            t = start + rng.randrange(3000, 20_000)
            for i in range(rounds):
                clicks = rng.randrange(8, 11) if i == 0 else rng.randrange(4, 7)
                t = self._refused(rng, t, sess, user, clicks, "cached_deny")
                # Tries again once the cached Deny has expired: a second decision.
                t += CACHE_TTL_S * 1000 + rng.randrange(20_000, 90_000)

    def new_hire(self, rng: random.Random, base: int) -> None:
        user, tenant = self.hire, self.hire_tenant
        for _ in range(rng.randrange(3, 5)):
            start = _local(base, tenant, 9 * 3600 + rng.randrange(8 * 3600)) * 1000
            ip = user.office_ip
            sess, _, _ = self.tr.login(rng, start, user, ip, user.browser, None)
            t = start + rng.randrange(2000, 15_000)
            if rng.random() < 0.6:
                # Opens the invite page first (a fresh token, nothing cached): refused, and the
                # clicks after it are refused from the cache until the Deny expires.
                t = self._refused(rng, t, sess, user, rng.randrange(3, 8), "new_hire")
                t += CACHE_TTL_S * 1000 + rng.randrange(5_000, 60_000)
            for _ in range(rng.randrange(3, 9)):
                t += rng.randrange(20_000, 120_000)
                method, route = rng.choice(_WORK)
                item = f"inv-{rng.randrange(10**6):06d}" if "{id}" in route else None
                r = self.api.request(rng, t, sess, method, route, tenant.id, item)
                self._add("new_hire", r.request_id, t // 1000)

    def log_delivery(self, rng: random.Random, base: int) -> None:
        ident: dict[str, Any] = {"type": "AWSService", "invokedBy": LOG_DELIVERY}
        ts = base + 6 * 3600 + rng.randrange(1800)
        n = 0
        while ts < base + clock.DAY:
            tenant = self.export_tenants[n % len(self.export_tenants)]
            rel = f"exports/logs/{clock.iso(ts)[:10]}/api-{n:06d}.log.gz"
            eids = self.ct.s3_object(
                rng, ts, ident, LOG_DELIVERY, LOG_DELIVERY, "PutObject", tenant, rel, error=_DENIED
            )
            self._add("log_delivery", eids, ts)
            ts += rng.randrange(20, 40)
            n += 1

    # --- labels -------------------------------------------------------------------------------

    def labels(self) -> list[dict[str, Any]]:
        c, h = self.cached_tenant.id, self.hire_tenant.id
        n = len(self.ev["log_delivery"].ids)
        return [
            label(
                "negative-cached-deny",
                "negative",
                "cached_deny",
                "authz_failure_spike",
                "none",
                None,
                c,
                [c],
                self.ev["cached_deny"],
                f"Two users of {c} opened the invite page without the tenant-admin role: the "
                "authorizer denied it (insufficient_role) and API Gateway cached each Deny for "
                f"{CACHE_TTL_S} s, so their next clicks were 403s with authorizerLatency '-': "
                "3 decisions, about 30 denials in one hour, two actors.",
            ),
            label(
                "negative-new-hire",
                "negative",
                "new_hire",
                "authz_failure_spike",
                "none",
                self.hire.id,
                h,
                [h],
                self.ev["new_hire"],
                f"{self.hire.id}, a new employee of {h}, first seen {NEW_HIRE_DAYS - 1} days "
                "before: a few sessions a day and, now and then, the invite page the authorizer "
                "refuses (a cached Deny and the clicks after it).",
            ),
            label(
                "negative-log-delivery",
                "negative",
                "log_delivery",
                "authz_failure_spike",
                "none",
                LOG_DELIVERY,
                None,
                list(self.export_tenants),
                self.ev["log_delivery"],
                f"{LOG_DELIVERY} lost its permission on the log-export prefixes of "
                f"{', '.join(self.export_tenants)}: {n} PutObject AccessDenied in the day. "
                "Pipeline health (ServicePrincipalDenials), not an attack.",
            ),
        ]
