"""The attack day's token replay and its look-alikes: the scenario ``token_replay``.

Like ``break_glass``, one scenario gives its attack and the labelled negatives that look like it,
on the same day:

- the attack: a user's bearer token is stolen and replayed from another machine (another
  address, a script's user agent) while its owner keeps working with it; the thief goes on past
  the token's expiry, when the owner has logged in again. API Gateway caches authorizer results
  by token, so owner and thief share one cache: the authorizer runs for whichever of them asks
  first once the cached result is five minutes old, and its decisions alternate between them.
- ``negative-token-network-change``: a user on a phone walks out of the office: the same
  token, the same user agent, first from the office address and then from a mobile carrier's,
  one after the other, never back.
- ``negative-token-office-nat``: a user with two browser tabs on one token and a phone with a
  token of its own, all behind the office's NAT at the same time: interleaved, but one client
  per token.

Each writes through ``Api`` (the baseline's builder), so every world's ``Style`` spells its paths,
hosts and authorizer fields; the tenants are ordinary ones no other scenario uses.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pipeline.simulate import apigateway as ag
from pipeline.simulate.labels import Evidence, label
from pipeline.simulate.world import BROWSERS, SESSION_S, Tenant, public_ip

if TYPE_CHECKING:
    from pipeline.simulate.scenarios import Scenarios

SCRIPT_UA = "python-requests/2.32.3"
PHONE_UA = BROWSERS[-1]  # mobile Safari
_READS = (ag.INVOICES, ag.INVOICE, ag.USERS)


def _tenants(sc: Scenarios, n: int) -> list[Tenant]:
    """``n`` ordinary tenants (no relationship, no other scenario's), spread over the world."""
    w = sc.world
    taken = {w.parent, *w.children, w.consultant_home, *sc.st.values()}
    taken |= {t for ts in w.consultant_tenants.values() for t in ts}
    free = [t for t in w.tenants if t.id not in taken] or list(w.tenants)
    return [free[(2 * i + 1) * len(free) // (2 * n) % len(free)] for i in range(n)]


def _read(rng: random.Random) -> tuple[str, str | None]:
    route = rng.choice(_READS)
    return route, (f"inv-{rng.randrange(10**6):06d}" if "{id}" in route else None)


def scenario(sc: Scenarios, rng: random.Random) -> list[dict[str, Any]]:
    """The attack and its two look-alikes, in that order."""
    return token_replay(sc, rng) + token_network_change(sc, rng) + token_office_nat(sc, rng)


def token_replay(sc: Scenarios, rng: random.Random) -> list[dict[str, Any]]:
    tenant = _tenants(sc, 3)[0]
    user = tenant.users[0]
    api = sc.api
    t0 = (sc.base + 13 * 3600 + 600 + rng.randrange(600)) * 1000
    owner = api.session(
        rng, t0, user.id, tenant.id, (), user.office_ip, user.browser, tenant.client_id
    )
    thief_ip = public_ip(rng)
    thief = api.session(rng, t0, user.id, tenant.id, (), thief_ip, SCRIPT_UA, tenant.client_id)
    thief.token_fp, thief.expires_ms, thief.cache = owner.token_fp, owner.expires_ms, owner.cache
    ev = Evidence()
    api.request(rng, t0, owner, "POST", ag.LOGIN, tenant.id)
    # The owner works through the hour; the thief starts ten minutes in and, with a script,
    # asks for something every half minute to two minutes, on past the expiry.
    plan: list[tuple[int, str]] = []
    t = t0
    while t < owner.expires_ms - 60_000:
        t += rng.randrange(40_000, 150_000)
        plan.append((t, "owner"))
    t = t0 + 600_000 + rng.randrange(60_000)
    while t < owner.expires_ms + 12 * 60_000:
        t += rng.randrange(30_000, 120_000)
        plan.append((t, "thief"))
    for ts, who in sorted(plan):
        route, item = _read(rng)
        if who == "owner":
            api.request(rng, ts, owner, "GET", route, tenant.id, item)
            continue
        r = api.request(rng, ts, thief, "GET", route, tenant.id, item)
        ev.add(r.request_id, ts // 1000)
    # The owner's tab meets the expiry and logs in again: a new token, nothing replayed.
    t = owner.expires_ms + rng.randrange(5_000, 60_000)
    fresh = api.session(rng, t, user.id, tenant.id, (), user.office_ip, user.browser, "-")
    api.request(rng, t, fresh, "POST", ag.LOGIN, tenant.id)
    for _ in range(4):
        t += rng.randrange(40_000, 150_000)
        route, item = _read(rng)
        api.request(rng, t, fresh, "GET", route, tenant.id, item)
    return [
        label(
            "attack-token-replay",
            "attack",
            "token_replay",
            "token_replay",
            "high",
            owner.token_fp,
            tenant.id,
            [tenant.id],
            ev,
            f"{user.id}'s token ({owner.token_fp}, tenant {tenant.id}) was replayed from "
            f"{thief_ip} with {SCRIPT_UA} while {user.id} used it from {user.office_ip}: the "
            "authorizer's decisions for that fingerprint alternate between the two clients, "
            "allowed; the replay went on past the token's expiry (401, 'token expired').",
        )
    ]


def token_network_change(sc: Scenarios, rng: random.Random) -> list[dict[str, Any]]:
    tenant = _tenants(sc, 3)[1]
    user = tenant.users[0]
    api = sc.api
    t = (sc.base + 9 * 3600 + 1200 + rng.randrange(600)) * 1000
    sess = api.session(rng, t, user.id, tenant.id, (), user.office_ip, PHONE_UA, "-")
    ev = Evidence()
    r = api.request(rng, t, sess, "POST", ag.LOGIN, tenant.id)
    ev.add(r.request_id, t // 1000)
    carrier = public_ip(rng)
    end = t + SESSION_S * 1000 - 120_000
    half = t + (end - t) // 2
    while t < end:
        t += rng.randrange(60_000, 200_000)
        if t >= end:
            break
        sess.ip = user.office_ip if t < half else carrier
        route, item = _read(rng)
        r = api.request(rng, t, sess, "GET", route, tenant.id, item)
        ev.add(r.request_id, t // 1000)
    return [
        label(
            "negative-token-network-change",
            "negative",
            "token_replay",
            "token_replay",
            "none",
            sess.token_fp,
            tenant.id,
            [tenant.id],
            ev,
            f"{user.id} ({tenant.id}) on a phone left the office: one token and user agent, from "
            f"{user.office_ip} and then from {carrier}, one after the other.",
        )
    ]


def token_office_nat(sc: Scenarios, rng: random.Random) -> list[dict[str, Any]]:
    tenant = _tenants(sc, 3)[2]
    user = tenant.users[0]
    api = sc.api
    t = (sc.base + 15 * 3600 + 300 + rng.randrange(600)) * 1000
    ip = user.office_ip
    laptop = api.session(rng, t, user.id, tenant.id, (), ip, user.browser, "-")
    phone = api.session(rng, t + 30_000, user.id, tenant.id, (), ip, PHONE_UA, "-")
    ev = Evidence()
    for ts, sess in ((t, laptop), (t + 30_000, phone)):
        r = api.request(rng, ts, sess, "POST", ag.LOGIN, tenant.id)
        ev.add(r.request_id, ts // 1000)
    end = t + 50 * 60_000
    t += 60_000
    while t < end:
        t += rng.randrange(20_000, 90_000)
        # Two tabs of the laptop (one token) and the phone (its own), turn about.
        sess = laptop if rng.random() < 0.65 else phone
        route, item = _read(rng)
        r = api.request(rng, t, sess, "GET", route, tenant.id, item)
        ev.add(r.request_id, t // 1000)
    return [
        label(
            "negative-token-office-nat",
            "negative",
            "token_replay",
            "token_replay",
            "none",
            user.id,
            tenant.id,
            [tenant.id],
            ev,
            f"{user.id} ({tenant.id}) worked in two browser tabs on one token and on a phone with "
            f"its own, all from the office NAT {ip} at once: one client per token.",
        )
    ]


__all__ = ["scenario", "token_network_change", "token_office_nat", "token_replay"]
