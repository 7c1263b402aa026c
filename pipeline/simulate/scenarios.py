"""The attack day's injected scenarios and the labels of the negatives seen in baseline traffic.

Each scenario writes its events through the same builders as the baseline (so nothing but its
behaviour sets it apart) and returns its labels with the ids of the events that show it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

from pipeline.simulate import apigateway as ag
from pipeline.simulate import ids
from pipeline.simulate import scenarios_access_pattern as access_pattern
from pipeline.simulate import scenarios_authorizer_cache as authorizer_cache
from pipeline.simulate import scenarios_residency as residency
from pipeline.simulate import scenarios_token_replay as replay
from pipeline.simulate.labels import Evidence, Recorder, label
from pipeline.simulate.traffic import Traffic
from pipeline.simulate.world import CLI_UA, LAMBDA_UA, World, public_ip, tid

Label = dict[str, Any]
SCRIPT_UA = "python-requests/2.32.3"
CURL_UA = "curl/8.7.1"
SHARED_CLIENT_ID = "cli-reportly-partner-app"  # one third-party reporting app, many tenants


class Scenarios:
    def __init__(self, traffic: Traffic, base: int) -> None:
        self.tr = traffic
        self.world: World = traffic.world
        self.ct = traffic.ct
        self.api = traffic.api
        self.base = base  # 00:00 UTC of the attack day
        self.acct = self.world.spec.account
        self.st = self.world.scenario_tenants
        self.style = self.world.style

    def run(self, names: tuple[str, ...]) -> list[Label]:
        registry: dict[str, Callable[[random.Random], list[Label]]] = {
            "s3_prefix_cross_tenant": self.s3_prefix_cross_tenant,
            "authorizer_cache_reuse": self.authorizer_cache_reuse,
            "token_tenant_mismatch": self.token_tenant_mismatch,
            "tenant_enumeration": self.tenant_enumeration,
            "credential_stuffing": self.credential_stuffing,
            "break_glass": self.break_glass,
            "residency_copied_outside": partial(residency.residency, self),
            "cache_busting": partial(authorizer_cache.cache_busting, self),
            "cache_flush_deploy": partial(authorizer_cache.cache_flush_deploy, self),
            "token_replay": lambda rng: replay.scenario(self, rng),
            "access_finance_export": lambda rng: access_pattern.run(self, rng),
        }
        out: list[Label] = []
        for name in names:
            out += registry[name](ids.stream(self.world.spec.seed, "scenario", name))
        return out

    # 1 ------------------------------------------------------------------------------------------
    def s3_prefix_cross_tenant(self, rng: random.Random) -> list[Label]:
        a, b = self.st["s3_a"], self.st["s3_b"]
        user = self.world.by_id[a].users[0]
        ts = self.base + 14 * 3600 + 600 + rng.randrange(600)
        _, ident = self.style.user_creds(self.ct, rng, ts, user, analytics=True)
        ev = Evidence()
        ts += rng.randrange(60, 180)
        ip = user.home_ip
        for prefix in ("", "invoices/"):
            ts += rng.randrange(2, 8)
            ev.add(self.ct.s3_list(rng, ts, ident, ip, CLI_UA, b, prefix), ts)
        for i in range(12):
            ts += rng.randrange(1, 4)
            rel = f"invoices/2026-{10 + i % 2:02d}/inv-{rng.randrange(10**6):06d}.pdf"
            ev.add(self.ct.s3_object(rng, ts, ident, ip, CLI_UA, "GetObject", b, rel), ts)
        return [
            label(
                "attack-s3-prefix-cross-tenant",
                "attack",
                "s3_prefix_cross_tenant",
                "cross_tenant_access",
                "critical",
                ident["arn"],
                a,
                [b],
                ev,
                self.style.describe("s3", a=a, b=b, ip=ip),
            )
        ]

    # 2 ------------------------------------------------------------------------------------------
    def authorizer_cache_reuse(self, rng: random.Random) -> list[Label]:
        a, b, c = self.st["cache_a"], self.st["cache_b"], self.st["cache_c"]
        u1 = self.world.by_id[a].users[0]
        u2 = self.world.by_id[c].users[-1]
        t = (self.base + 10 * 3600 + 1200 + rng.randrange(300)) * 1000
        s1 = self.api.session(rng, t, u1.id, a, (), u1.office_ip, u1.browser, SHARED_CLIENT_ID)
        self.api.request(rng, t, s1, "GET", ag.REPORTS, a)  # the Allow that gets cached
        ip2 = public_ip(rng)
        s2 = self.api.session(rng, t, u2.id, c, (), ip2, SCRIPT_UA, SHARED_CLIENT_ID)
        s2.cache = s1.cache  # one API Gateway cache, keyed only by the shared client id
        ev = Evidence()
        reports_ident = None
        for _ in range(6):
            t += rng.randrange(15_000, 45_000)
            r = self.api.request(rng, t, s2, "GET", ag.REPORTS, b)
            ev.add(r.request_id, t // 1000)
            ts = t // 1000
            if reports_ident is None:
                reports_ident = self.style.reports_creds(self.ct, rng, ts, u1)
            # The backend trusts the path for the data and the context for the session.
            ev.add(
                self.ct.s3_list(
                    rng, ts, reports_ident, self.tr.lambda_ip, LAMBDA_UA, b, "exports/"
                ),
                ts,
            )
        # The session as "<role>/<session name>", for the description.
        session = "/".join(str(reports_ident["arn"]).split("/")[1:]) if reports_ident else ""
        return [
            label(
                "attack-authorizer-cache-reuse",
                "attack",
                "authorizer_cache_reuse",
                "cross_tenant_access",
                "critical",
                u1.id,
                a,
                [b],
                ev,
                f"/reports caches authorizer results by the X-Client-Id header only. {u1.id} "
                f"({a}) was allowed through a shared reporting app; within the 300 s TTL a "
                f"user of {c} ({u2.id}, {ip2}, {SCRIPT_UA}) read {b}'s reports under the cached "
                f"Allow: access logs show principal {u1.id}, tenant {a}, path {b}, status 200, "
                "authorizerLatency '-'. "
                + self.style.describe("cache_tail", session=session, a=a, b=b),
            )
        ]

    # 3 ------------------------------------------------------------------------------------------
    def token_tenant_mismatch(self, rng: random.Random) -> list[Label]:
        a, b = self.st["mismatch_a"], self.st["mismatch_b"]
        user = self.world.by_id[a].users[-1]
        t = (self.base + 16 * 3600 + 2400 + rng.randrange(300)) * 1000
        client = self.world.by_id[a].client_id
        sess = self.api.session(rng, t, user.id, a, (), user.office_ip, user.browser, client)
        ev = Evidence()
        for i in range(6):
            t += rng.randrange(370_000, 420_000)  # past the cache TTL: the authorizer runs again
            item = f"inv-{rng.randrange(10**6):06d}" if i % 2 else None
            route = ag.INVOICE if item else ag.INVOICES
            r = self.api.request(rng, t, sess, "GET", route, b, item)
            ev.add(r.request_id, t // 1000)
            if i == 2:  # an impatient retry inside the TTL: denied from the cache
                r = self.api.request(rng, t + 12_000, sess, "GET", route, b, item)
                ev.add(r.request_id, t // 1000 + 12)
        return [
            label(
                "attack-token-tenant-mismatch",
                "attack",
                "token_tenant_mismatch",
                "cross_tenant_access",
                "high",
                user.id,
                a,
                [b],
                ev,
                f"{user.id}'s token claims tenant {a} but was used on {b}'s invoices; the "
                "authorizer denied each attempt (decision Deny, tenant_claim vs requested_tenant) "
                "and the access log shows 403.",
            )
        ]

    # 4 ------------------------------------------------------------------------------------------
    def tenant_enumeration(self, rng: random.Random) -> list[Label]:
        own = self.st["enum"]
        user = self.world.by_id[own].users[0]
        ip = user.home_ip
        t = (self.base + 20 * 3600 + 300 + rng.randrange(300)) * 1000
        client = self.world.by_id[own].client_id
        sess = self.api.session(rng, t, user.id, own, (), ip, SCRIPT_UA, client)
        ev = Evidence()
        walked = [tid(i) for i in range(1, min(self.world.spec.tenants, 40) + 1)]
        for tenant in walked:
            for _ in range(rng.choice((1, 1, 2))):
                t += rng.randrange(2000, 9000)
                r = self.api.request(rng, t, sess, "GET", ag.INVOICES, tenant)
                ev.add(r.request_id, t // 1000)
        return [
            label(
                "attack-tenant-enumeration",
                "attack",
                "tenant_enumeration",
                "tenant_switching",
                "high",
                user.id,
                own,
                [x for x in walked if x != own],
                ev,
                f"{user.id} ({own}) walked tenant ids {walked[0]}..{walked[-1]} in order from "
                f"{ip} with a script, one or two requests each; all but its own were denied.",
            )
        ]

    # 5 ------------------------------------------------------------------------------------------
    def credential_stuffing(self, rng: random.Random) -> list[Label]:
        target = self.st["stuffed"]
        t = (self.base + 3 * 3600 + 900 + rng.randrange(600)) * 1000
        ips = [public_ip(rng) for _ in range(40)]
        ev1 = Evidence()
        end = t + 20 * 60_000
        while t < end:
            t += rng.randrange(4000, 14_000)
            anon = self.api.session(
                rng, t, "-", target, (), rng.choice(ips), rng.choice((SCRIPT_UA, CURL_UA)), "-"
            )
            r = self.api.request(rng, t, anon, "POST", ag.LOGIN, target, status=401)
            ev1.add(r.request_id, t // 1000)
        # One address trying an expired token and passwords against tenant after tenant.
        ip = public_ip(rng)
        t = (self.base + 7 * 3600 + 1800 + rng.randrange(600)) * 1000
        tenants = [tid(i) for i in range(1, self.world.spec.tenants + 1)]
        tenants = rng.sample(tenants, min(25, len(tenants)))
        ev2 = Evidence()
        stale = self.api.session(
            rng, t - 7_200_000, "usr-unknown", tenants[0], (), ip, CURL_UA, "-"
        )
        for tenant in sorted(tenants):
            t += rng.randrange(5000, 40_000)
            r = self.api.request(rng, t, stale, "GET", ag.INVOICES, tenant)
            ev2.add(r.request_id, t // 1000)
            anon = self.api.session(rng, t, "-", tenant, (), ip, CURL_UA, "-")
            for _ in range(rng.randrange(1, 3)):
                t += rng.randrange(1000, 5000)
                r = self.api.request(rng, t, anon, "POST", ag.LOGIN, tenant, status=401)
                ev2.add(r.request_id, t // 1000)
        return [
            label(
                "attack-credential-stuffing-tenant",
                "attack",
                "credential_stuffing",
                "authz_failure_spike",
                "high",
                None,
                None,
                [target],
                ev1,
                self.style.describe("stuffing", target=target, n=len(ips)),
            ),
            label(
                "attack-credential-stuffing-ip",
                "attack",
                "credential_stuffing",
                "authz_failure_spike",
                "high",
                ip,
                None,
                sorted(tenants),
                ev2,
                f"{ip} failed (401 expired token, 401 bad password) against {len(tenants)} "
                "tenants in 15-20 minutes: a spike in one address's failures across tenants.",
            ),
        ]

    # 6 ------------------------------------------------------------------------------------------
    def break_glass(self, rng: random.Random) -> list[Label]:
        sso = self.world.roles["AWSReservedSSO_ReadOnlyAccess_0c4d6e8f1a2b3c4d"]
        ip = self.world.operator_ips[2]
        out = []
        ticket = self.style.ticket
        cases = (
            ("dana", ticket, self.world.ticket_tenant, 11 * 3600 + 1800),
            ("erik", None, self.st["erik_target"], 22 * 3600 + 2400),
        )
        for person, held, tenant, at in cases:
            ts = self.base + at + rng.randrange(300)
            caller = self.ct.assumed(
                sso, f"{person}@acme-saas.example", ids.access_key(rng), ts - 900, mfa=True
            )
            ident = self.style.support_creds(
                self.ct, rng, ts, caller, person, held, tenant, ip, CLI_UA
            )
            ev = Evidence()
            ts += rng.randrange(30, 90)
            ev.add(self.ct.s3_list(rng, ts, ident, ip, CLI_UA, tenant, "invoices/"), ts)
            for _ in range(4):
                ts += rng.randrange(3, 20)
                rel = f"invoices/2026-11/inv-{rng.randrange(10**6):06d}.pdf"
                ev.add(self.ct.s3_object(rng, ts, ident, ip, CLI_UA, "GetObject", tenant, rel), ts)
            ts += rng.randrange(3, 20)
            ev.add(self.ct.dynamodb(rng, ts, ident, ip, CLI_UA, "Query", tenant, None), ts)
            arn = str(ident["arn"])
            if person == "dana":
                out.append(
                    label(
                        "negative-break-glass-ticketed",
                        "negative",
                        "break_glass",
                        "cross_tenant_access",
                        "low",
                        arn,
                        None,
                        [tenant],
                        ev,
                        f"Support engineer dana used support-break-glass under open ticket "
                        f"{ticket} for {tenant}: recorded at low severity, not paged.",
                    )
                )
            else:
                out.append(
                    label(
                        "attack-break-glass-no-ticket",
                        "attack",
                        "break_glass",
                        "cross_tenant_access",
                        "high",
                        arn,
                        None,
                        [tenant],
                        ev,
                        self.style.describe("no_ticket", tenant=tenant),
                    )
                )
        return out


def negatives(world: World, rec: Recorder) -> list[Label]:
    """Labels for legitimate cross-tenant and bursty behaviour in the attack day's traffic."""
    acct = world.spec.account
    out = []
    for c in world.consultants:
        out.append(
            label(
                f"negative-consultant-{c.id.rsplit('-', 1)[-1]}",
                "negative",
                "consultant_multi_tenant",
                "cross_tenant_access",
                "none",
                c.id,
                c.tenant,
                list(c.acts_on),
                rec.get(f"consultant:{c.id}"),
                world.style.describe(
                    "consultant", name=c.id, home=c.tenant, clients=", ".join(c.acts_on)
                ),
            )
        )
    out.append(
        label(
            "negative-parent-company",
            "negative",
            "parent_company",
            "cross_tenant_access",
            "none",
            None,
            world.parent,
            list(world.children),
            rec.get("parent_company"),
            f"Users of {world.parent} act on its subsidiaries {', '.join(world.children)} "
            "(declared organisation).",
        )
    )
    for job in ("saas-nightly-export", "saas-billing-aggregator"):
        out.append(
            label(
                f"negative-{job}",
                "negative",
                "background_jobs",
                "cross_tenant_access",
                "none",
                f"arn:aws:sts::{acct}:assumed-role/{job}/{job}",
                None,
                [t.id for t in world.tenants],
                rec.get(f"background:{job}"),
                world.style.describe("job", job=job),
            )
        )
    surge = world.scenario_tenants["surge"]
    out.append(
        label(
            "negative-monday-surge",
            "negative",
            "monday_surge",
            "authz_failure_spike",
            "none",
            None,
            surge,
            [surge],
            rec.get("monday_surge"),
            f"{surge}'s traffic triples on the attack day's (Monday) morning, local "
            "07:00-13:00, with its ordinary share of errors and denials.",
        )
    )
    return out
