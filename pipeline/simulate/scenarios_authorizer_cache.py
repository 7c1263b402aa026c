"""The attack day's authorizer-cache scenarios: a cache-busting flood of fresh tokens, and its
look-alike, a deploy that flushes the stage's authorizer cache.

Both write through the same builders as the baseline (``Api.session``, ``Api.request``,
``Traffic.login``, ``CloudTrail.management``), so each world's style spells their routes, paths
and fields. The collision (a cached decision served to another tenant) is ``authorizer_cache_reuse``
in ``pipeline.simulate.scenarios``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pipeline.simulate import apigateway as ag
from pipeline.simulate import ids
from pipeline.simulate.labels import Evidence, label
from pipeline.simulate.world import public_ip

if TYPE_CHECKING:
    from pipeline.simulate.scenarios import Scenarios

Label = dict[str, Any]
SCRIPT_UA = "python-httpx/0.27.2"
DEPLOY_UA = "aws-cli/2.18.7 md/command#apigateway.create-deployment"
# What users do in the minutes after the flush (pooled spelling; the style spells each world's).
_WORK = (
    ("GET", ag.INVOICES),
    ("GET", ag.INVOICE),
    ("GET", ag.USERS),
    ("GET", ag.REPORTS),
    ("GET", ag.ATTACHMENT),
)


def _quiet_tenant(sc: Scenarios, rng: random.Random) -> str:
    """A tenant no other scenario, benign case or relationship uses (in tiny worlds, one that at
    least no tenant-level label names), so the surge is the only story on it."""
    w = sc.world
    related = {w.parent, *w.children, w.consultant_home}
    related |= {t for ts in w.consultant_tenants.values() for t in ts}
    used = set(sc.st.values())
    free = [t.id for t in w.tenants if t.id not in used | related]
    if not free:
        free = [t.id for t in w.tenants if t.id not in {sc.st["surge"], sc.st["stuffed"]}]
    return rng.choice(free)


def cache_busting(sc: Scenarios, rng: random.Random) -> list[Label]:
    """One user's valid token re-sent with a varied, unverified part (a new cache key each time)
    from a script: every request runs the authorizer, about 350 in 20 minutes on one route."""
    tenant = _quiet_tenant(sc, rng)
    user = sc.world.by_id[tenant].users[0]
    client = sc.world.by_id[tenant].client_id
    ip = public_ip(rng)
    t = (sc.base + 5 * 3600 + 600 + rng.randrange(900)) * 1000
    end = t + 20 * 60_000
    ev = Evidence()
    while t < end:
        t += rng.randrange(1500, 5000)
        fresh = sc.api.session(rng, t, user.id, tenant, (), ip, SCRIPT_UA, client)
        r = sc.api.request(rng, t, fresh, "GET", ag.INVOICES, tenant)
        ev.add(r.request_id, t // 1000)
    return [
        label(
            "attack-authorizer-cache-busting",
            "attack",
            "cache_busting",
            "authorizer_cache",
            "high",
            None,
            None,
            [tenant],
            ev,
            f"A script at {ip} re-sent {user.id}'s token ({tenant}) with a varied part, a new "
            f"authorizer cache key per request: {len(ev.ids)} requests on "
            f"{sc.style.route(ag.INVOICES)} in 20 minutes, each running the authorizer "
            "(every one a fresh token fingerprint, none served from the cache).",
        )
    ]


def cache_flush_deploy(sc: Scenarios, rng: random.Random) -> list[Label]:
    """A stage deploy at about 19:00 UTC flushes the authorizer cache: the users working then (a
    few per tenant, logged in minutes before) each get one decision again on their next request,
    every route and tenant at once, for the tokens they already had."""
    w = sc.world
    at = sc.base + 19 * 3600 + rng.randrange(1800)  # an hour no other scenario acts in
    role = w.roles["github-actions-deploy"]
    ident = sc.ct.assumed(role, "GitHubActions", ids.access_key(rng), at - 60)
    ip = f"4.{rng.randrange(148, 156)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    stage = {"restApiId": sc.style.api_id, "stageName": sc.style.stage}
    for i, name in enumerate(("CreateDeployment", "FlushStageAuthorizersCache")):
        sc.ct.management(
            rng, at + i, ident, ip, DEPLOY_UA, "apigateway.amazonaws.com", name, stage,
            read_only=False,
        )  # fmt: skip
    ev = Evidence()
    tenants = []
    for tenant in w.tenants:
        tenants.append(tenant.id)
        for user in tenant.users[: 1 + len(tenant.users) // 6]:
            start = (at - rng.randrange(300, 2400)) * 1000
            sess, _, _ = sc.tr.login(rng, start, user, user.office_ip, user.browser, None)
            t = start + rng.randrange(2000, 20_000)
            while t < at * 1000:  # working before the deploy: decisions, then cache hits
                method, route = rng.choice(_WORK)
                item = f"inv-{rng.randrange(10**6):06d}" if "{id}" in route else None
                sc.api.request(rng, t, sess, method, route, tenant.id, item)
                t += rng.randrange(20_000, 240_000)
            sess.cache.clear()  # the flush: nothing cached survives the deploy
            t = at * 1000 + rng.randrange(2000, 120_000)
            for _ in range(rng.randrange(2, 6)):
                method, route = rng.choice(_WORK)
                item = f"inv-{rng.randrange(10**6):06d}" if "{id}" in route else None
                r = sc.api.request(rng, t, sess, method, route, tenant.id, item)
                ev.add(r.request_id, t // 1000)
                t += rng.randrange(3000, 60_000)
    return [
        label(
            "negative-authorizer-cache-flush-deploy",
            "negative",
            "cache_flush_deploy",
            "authorizer_cache",
            "none",
            None,
            None,
            tenants,
            ev,
            f"A stage deploy (CreateDeployment, FlushStageAuthorizersCache) at "
            f"{at % 86400 // 3600:02d}:{at % 3600 // 60:02d} UTC flushed the authorizer cache: "
            "every route's and tenant's misses rose together for a few minutes, for tokens "
            "already in use.",
        )
    ]
