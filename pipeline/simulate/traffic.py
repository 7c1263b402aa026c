"""Baseline traffic: tenants' users, consultants, background jobs and operators, day by day.

Rhythm: sessions start at a rate that follows each tenant's local working day (09-17 with a
lunch dip, a little evening work, quiet nights and weekends), in proportion to its users. A
session is a login, the token vendor's AssumeRole, then requests with exponential gaps; one in
twenty is a burst (about 30 requests in a minute). Ordinary errors are sprinkled in at the rates
real services show (a few per cent), and so are the small denials a detector must tolerate.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from pipeline.simulate import apigateway as ag
from pipeline.simulate import clock, ids
from pipeline.simulate.apigateway import Api, ApiSession
from pipeline.simulate.cloudtrail import CloudTrail, Identity
from pipeline.simulate.labels import Recorder
from pipeline.simulate.world import CLI_UA, LAMBDA_UA, SESSION_S, Tenant, User, World

# Relative session starts per local hour on a weekday; weekends run at WEEKEND of that.
HOURLY = (
    0.02, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.25, 0.75, 1.0, 1.0, 0.9,
    0.45, 0.75, 1.0, 1.0, 0.85, 0.55, 0.25, 0.12, 0.08, 0.06, 0.04, 0.03,
)  # fmt: skip
WEEKEND = 0.12
EVENTS_PER_SESSION = 19.0  # measured average (API + CloudTrail); calibrates the session rate
SURGE_FACTOR = 3.0  # the surge tenant's Monday morning (local 07-12): its traffic triples
SURGE_HOURS = range(7, 13)

# (weight, method, route, backend action)
ROUTES = (
    (30, "GET", ag.INVOICES, "Query"),
    (24, "GET", ag.INVOICE, "GetItem"),
    (7, "POST", ag.INVOICES, "PutItem"),
    (5, "PUT", ag.INVOICE, "UpdateItem"),
    (9, "GET", ag.USERS, None),
    (2, "POST", ag.USERS, None),
    (8, "GET", ag.REPORTS, "reports"),
    (10, "GET", ag.ATTACHMENT, "attachment"),
)
_ROUTE_W = [r[0] for r in ROUTES]
_THROTTLE = ("ThrottlingException", "Rate of requests exceeds the allowed throughput.")
_NO_KEY = ("NoSuchKey", "The specified key does not exist.")
_S3_DENIED = ("AccessDenied", "Access Denied")
_CONDITION = ("ConditionalCheckFailedException", "The conditional request failed")


@dataclass(frozen=True)
class Plan:
    """Session rate constant and the day's calendar, fixed before any traffic is drawn."""

    k: float
    start: date
    attack_day: date
    surge_tenant: str


def plan(world: World) -> Plan:
    spec = world.spec
    total = 0.0
    for d in range(spec.days):
        day = spec.start + timedelta(days=d)
        total += float(_weights(world, day).sum())
    k = spec.events_per_day * spec.days / (EVENTS_PER_SESSION * max(total, 1e-9))
    return Plan(k, spec.start, spec.attack_day, world.scenario_tenants["surge"])


def _local_weights(day: date, tz_minutes: int) -> np.ndarray:
    """Weight of each UTC hour of ``day`` for a tenant in that time zone."""
    out = np.empty(24)
    base = clock.day_start(day)
    for h in range(24):
        local = base + h * 3600 + tz_minutes * 60
        weekday = (local // clock.DAY + 3) % 7  # 1970-01-01 was a Thursday (3)
        w = HOURLY[local // 3600 % 24]
        out[h] = w if weekday < 5 else w * WEEKEND
    return out


def _weights(world: World, day: date) -> np.ndarray:
    """(tenants x 24) expected session starts before scaling: users x hourly weight."""
    by_tz = {tz: _local_weights(day, tz) for tz in {t.tz_minutes for t in world.tenants}}
    users = np.array([len(t.users) for t in world.tenants], dtype=float)
    return users[:, None] * np.stack([by_tz[t.tz_minutes] for t in world.tenants])


class Traffic:
    def __init__(self, world: World, ct: CloudTrail, api: Api, rec: Recorder) -> None:
        self.world = world
        self.ct = ct
        self.api = api
        self.rec = rec
        self.plan = plan(world)
        self.style = world.style
        self.lambda_ip = world.lambda_ips[0]

    # --- one day ---------------------------------------------------------------------------

    def day(self, d: int) -> None:
        world, spec = self.world, self.world.spec
        day = spec.start + timedelta(days=d)
        rng = ids.stream(spec.seed, "day", d)
        nprng = np.random.default_rng([spec.seed, d])
        lam = _weights(world, day) * self.plan.k
        if day == self.plan.attack_day:
            surge = int(self.plan.surge_tenant[1:]) - 1
            tz = world.tenants[surge].tz_minutes
            for h in range(24):
                if (h + tz // 60) % 24 in SURGE_HOURS:
                    lam[surge, h] *= SURGE_FACTOR
        counts = nprng.poisson(lam)
        base = clock.day_start(day)
        for ti, h in zip(*np.nonzero(counts), strict=True):
            tenant = world.tenants[int(ti)]
            for _ in range(int(counts[ti, h])):
                user = self._pick_user(rng, tenant)
                t0 = base + int(h) * 3600 + rng.randrange(3600)
                label = None
                if tenant.id == world.parent:
                    label = "parent_company"
                elif tenant.id == self.plan.surge_tenant and day == self.plan.attack_day:
                    local_hour = (int(h) + tenant.tz_minutes // 60) % 24
                    label = "monday_surge" if local_hour in SURGE_HOURS else None
                self.user_session(rng, t0 * 1000 + rng.randrange(1000), user, label)
        self.consultants(rng, base, day)
        self.background(rng, base)
        self.operators(rng, base, day)

    @staticmethod
    def _pick_user(rng: random.Random, tenant: Tenant) -> User:
        # Some users work far more than others: the first few of a tenant carry most sessions.
        n = len(tenant.users)
        return tenant.users[min(n - 1, int(rng.paretovariate(1.2)) - 1)]

    # --- a user's session ----------------------------------------------------------------------

    def login(
        self, rng: random.Random, ts_ms: int, user: User, ip: str, ua: str, label: str | None
    ) -> tuple[ApiSession, Identity, int]:
        """POST /session (sometimes after a mistyped password), then the token vendor's
        AssumeRole: tenant tag on the call, the user id as the session name."""
        if rng.random() < 0.04:
            r = self.api.request(
                rng,
                ts_ms,
                self._anon(rng, ts_ms, user, ip, ua),
                "POST",
                ag.LOGIN,
                user.tenant,
                status=401,
            )
            self._mark(label, r.request_id, ts_ms)
            ts_ms += rng.randrange(4000, 30_000)
        client_id = self.world.by_id[user.tenant].client_id
        sess = self.api.session(
            rng,
            ts_ms,
            user.id,
            user.tenant,
            # Grants beyond the home tenant. A consultant's acts_on lists only clients (the
            # home tenant is not among them), so slicing off "the first" would drop a client.
            tuple(t for t in user.acts_on if t != user.tenant),
            ip,
            ua,
            client_id,
        )
        r = self.api.request(rng, ts_ms, sess, "POST", ag.LOGIN, user.tenant)
        self._mark(label, r.request_id, ts_ms)
        ts = ts_ms // 1000 + 1
        eids, ident = self.style.user_creds(self.ct, rng, ts, user)
        self._mark(label, eids, ts * 1000)
        return sess, ident, ts

    def _anon(self, rng: random.Random, ts_ms: int, user: User, ip: str, ua: str) -> ApiSession:
        return self.api.session(rng, ts_ms, "-", user.tenant, (), ip, ua, "-")

    def _mark(self, label: str | None, event_ids: str | Sequence[str], ts_ms: int) -> None:
        if label:
            self.rec(label, event_ids, ts_ms // 1000)

    def user_session(
        self,
        rng: random.Random,
        ts_ms: int,
        user: User,
        label: str | None = None,
        targets: tuple[str, ...] | None = None,
    ) -> None:
        ip = user.office_ip if rng.random() < 0.8 else user.home_ip
        ua = user.browser
        login_label = None if label == "parent_company" else label
        sess, ident, _ = self.login(rng, ts_ms, user, ip, ua, login_label)
        targets = targets or user.acts_on
        if rng.random() < 0.02 and user.admin:
            self.analytics_session(rng, ts_ms // 1000 + rng.randrange(30, 600), user, ip)
        burst = rng.random() < 0.05
        n = 30 if burst else 1 + int(rng.expovariate(1 / 8))
        reports_ident: Identity | None = None
        t = ts_ms + rng.randrange(800, 4000)
        for _ in range(n):
            t += int(rng.expovariate(1 / (2000 if burst else 75_000)))
            if t >= sess.expires_ms:
                if rng.random() < 0.5:
                    # The open tab keeps using the old token once: 401 from the authorizer.
                    r = self.api.request(rng, t, sess, "GET", ag.INVOICES, user.tenant)
                    self._mark(login_label, r.request_id, t)
                if rng.random() < 0.6:
                    break
                t += rng.randrange(2000, 20_000)
                sess, ident, _ = self.login(rng, t, user, ip, ua, login_label)
                reports_ident = None
            # Parent-company users spend a third of their time on subsidiaries.
            tenant = (
                targets[0] if len(targets) == 1 or rng.random() < 0.67 else rng.choice(targets[1:])
            )
            mark = label if tenant != user.tenant or label == "monday_surge" else None
            _, method, route, action = rng.choices(ROUTES, _ROUTE_W)[0]
            item = f"inv-{rng.randrange(10**6):06d}" if "{id}" in route else None
            status = self._backend_status(rng, method, route, action, user)
            r = self.api.request(rng, t, sess, method, route, tenant, item, status)
            self._mark(mark, r.request_id, t)
            if r.status >= 400 and r.status not in (500,):
                continue
            ts = t // 1000
            # The session itself, unless the world reaches another tenant's data through a role
            # of that tenant's (silo's partners).
            acting = ident
            items = action in ("Query", "GetItem", "PutItem", "UpdateItem")
            if items or (action == "attachment" and r.status == 200):
                acting, hop = self.style.acting_as(self.ct, rng, ts, ident, user, tenant)
                self._mark(mark, hop, ts * 1000)
            if action in ("Query", "GetItem", "PutItem", "UpdateItem"):
                err = None
                if r.status == 500:
                    err = _THROTTLE
                elif action in ("PutItem", "UpdateItem") and rng.random() < 0.02:
                    err = _CONDITION
                elif rng.random() < 0.01:
                    # Throttled, then retried by the SDK: the error and the success both show.
                    eid = self.ct.dynamodb(
                        rng,
                        ts,
                        acting,
                        self.lambda_ip,
                        LAMBDA_UA,
                        action,
                        tenant,
                        f"INVOICE#{item}",
                        _THROTTLE,
                    )
                    self._mark(mark, eid, ts * 1000)
                sk = f"INVOICE#{item}" if item else f"INVOICE#{rng.randrange(10**6):06d}"
                eid = self.ct.dynamodb(
                    rng, ts, acting, self.lambda_ip, LAMBDA_UA, action, tenant, sk, err
                )
                self._mark(mark, eid, ts * 1000)
            elif action == "reports" and r.status == 200:
                if reports_ident is None:
                    reports_ident = self.style.reports_creds(self.ct, rng, ts, user)
                eid = self.ct.s3_list(
                    rng, ts, reports_ident, self.lambda_ip, LAMBDA_UA, tenant, "exports/"
                )
                self._mark(mark, eid, ts * 1000)
                rel = f"exports/{clock.iso(ts)[:10]}/report-{rng.randrange(100):02d}.csv.gz"
                err = _NO_KEY if rng.random() < 0.02 else None
                eid = self.ct.s3_object(
                    rng,
                    ts + 1,
                    reports_ident,
                    self.lambda_ip,
                    LAMBDA_UA,
                    "GetObject",
                    tenant,
                    rel,
                    error=err,
                )
                self._mark(mark, eid, (ts + 1) * 1000)
            elif action == "attachment" and r.status == 200:
                # The API hands back a URL presigned with the user's session; the browser
                # fetches it straight from S3, from the user's own address.
                rel = f"attachments/{item}/scan-{rng.randrange(10):d}.pdf"
                roll = rng.random()
                err = _NO_KEY if roll < 0.015 else _S3_DENIED if roll < 0.02 else None
                ts2 = ts + rng.randrange(1, 3)
                eid = self.ct.s3_object(
                    rng, ts2, acting, ip, ua, "GetObject", tenant, rel, presigned=True, error=err
                )
                self._mark(mark, eid, ts2 * 1000)

    @staticmethod
    def _backend_status(
        rng: random.Random, method: str, route: str, action: str | None, user: User
    ) -> int:
        if route == ag.USERS and method == "POST" and not user.admin:
            return 403  # only tenant admins may invite users: a small, steady denial
        roll = rng.random()
        if roll < 0.004:
            return 429
        if roll < 0.007:
            return 500
        if route in (ag.INVOICE, ag.ATTACHMENT) and method == "GET" and roll < 0.02:
            return 404
        return 201 if method == "POST" else 200

    def analytics_session(self, rng: random.Random, ts: int, user: User, ip: str) -> None:
        """An admin pulls the tenant's analytics exports with the AWS CLI (vended creds)."""
        _, ident = self.style.user_creds(self.ct, rng, ts, user, analytics=True)
        ts += rng.randrange(20, 120)
        self.ct.s3_list(rng, ts, ident, ip, CLI_UA, user.tenant, "analytics/")
        for i in range(rng.randrange(1, 5)):
            self.ct.s3_object(
                rng,
                ts + 2 + i,
                ident,
                ip,
                CLI_UA,
                "GetObject",
                user.tenant,
                f"analytics/usage-2026-{i + 1:02d}.parquet",
            )

    # --- consultants --------------------------------------------------------------------------

    def consultants(self, rng: random.Random, base: int, day: date) -> None:
        if day.weekday() >= 5:
            return
        for c in self.world.consultants:
            for _ in range(rng.randrange(2, 4)):
                # Their office is in Europe (UTC+1): sessions start 08:00-16:00 local.
                t0 = base + (7 + rng.randrange(8)) * 3600 + rng.randrange(3600)
                client = rng.choice(c.acts_on)
                self.user_session(rng, t0 * 1000, c, f"consultant:{c.id}", targets=(client,))

    # --- background jobs ----------------------------------------------------------------------

    def background(self, rng: random.Random, base: int) -> None:
        world = self.world
        ip = world.lambda_ips[1]
        # Nightly export at 02:00 UTC: every tenant's invoices to exports/.
        style, job = self.style, "saas-nightly-export"
        label = f"background:{job}"
        ts = base + 2 * 3600 + rng.randrange(60)
        fn = self.ct.function_identity(rng, job, ts)
        for t in world.tenants:
            ts += rng.randrange(1, 4)
            ident, hop = style.job_creds(self.ct, rng, ts, job, fn, t.id)
            self.rec(label, hop, ts)
            eid = self.ct.s3_list(rng, ts, ident, ip, LAMBDA_UA, t.id, "invoices/")
            self.rec(label, eid, ts)
            rel = f"invoices/{clock.iso(ts)[:10]}/batch-{rng.randrange(50):02d}.json"
            eid = self.ct.s3_object(rng, ts + 1, ident, ip, LAMBDA_UA, "GetObject", t.id, rel)
            self.rec(label, eid, ts + 1)
            rel = f"exports/{clock.iso(ts)[:10]}/invoices.csv.gz"
            eid = self.ct.s3_object(rng, ts + 2, ident, ip, LAMBDA_UA, "PutObject", t.id, rel)
            self.rec(label, eid, ts + 2)
        # Billing aggregation every hour at about :05, one Query per tenant.
        job = "saas-billing-aggregator"
        label = f"background:{job}"
        for h in range(24):
            ts = base + h * 3600 + 300 + rng.randrange(30)
            fn = self.ct.function_identity(rng, job, ts)
            for t in world.tenants:
                ts += rng.randrange(0, 2)
                ident, hop = style.job_creds(self.ct, rng, ts, job, fn, t.id)
                self.rec(label, hop, ts)
                if rng.random() < 0.03:
                    # A sweep over every tenant trips the table's throughput now and then; the
                    # SDK backs off and the retry succeeds.
                    eid = self.ct.dynamodb(
                        rng, ts, ident, ip, LAMBDA_UA, "Query", t.id, None, _THROTTLE
                    )
                    self.rec(label, eid, ts)
                eid = self.ct.dynamodb(rng, ts, ident, ip, LAMBDA_UA, "Query", t.id, None)
                self.rec(label, eid, ts)

    # --- operators and AWS services -------------------------------------------------------------

    def operators(self, rng: random.Random, base: int, day: date) -> None:
        from pipeline.simulate.operators import Operators

        Operators(self.world, self.ct).day(rng, base, day)


__all__ = ["SESSION_S", "Plan", "Traffic", "plan"]
