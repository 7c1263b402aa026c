"""The attack day's access-pattern cases (scenario ``access_finance_export``): a user exporting
finance data it never touches, and the look-alikes that must not page (``access_pattern``).

- ``finance_export`` (attack): a user of an ordinary tenant, whose work is the API and its
  reports, takes its own session's credentials to the AWS CLI and lists and downloads dozens of
  its OWN tenant's invoices: a prefix neither it nor any colleague under the same role ever read.
  Nothing crosses a tenant, so only the user's habits give it away.
- ``access_new_project`` (negative): another user starts a new project, a new prefix of its
  tenant's bucket holding no classified data: new to it and its peers, recorded at low.
- ``access_peer_work`` (negative): a user opens invoice after invoice and their attachments
  through the API, work its colleagues do every day, though it may never have.
- ``access_yesterdays_work`` (negative): a user runs its reports and invoice lists again, as on
  the days before; only the date in the exports' keys is new.

The cases take the busiest ordinary tenants (no relationship; others' scenarios' first and last
users avoided) and write through the same builders as the baseline, so every world spells its
buckets, keys and paths its own way (``World.style``).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pipeline.simulate import apigateway as ag
from pipeline.simulate import clock, ids
from pipeline.simulate.labels import Evidence, label
from pipeline.simulate.world import CLI_UA, LAMBDA_UA, Tenant, User

if TYPE_CHECKING:
    from pipeline.simulate.scenarios import Scenarios

Label = dict[str, Any]
DETECTOR = "access_pattern"


def _tenants(sc: Scenarios) -> list[Tenant]:
    """Ordinary tenants of three users or more, those no other scenario uses first, then the
    busiest (most users) first."""
    w = sc.world
    related = {w.parent, *w.children, w.consultant_home, w.ticket_tenant}
    related |= {t for ts in w.consultant_tenants.values() for t in ts}
    used = set(sc.st.values())
    ordinary = [t for t in w.tenants if t.id not in related] or list(w.tenants)
    big = [t for t in ordinary if len(t.users) >= 3] or ordinary
    return sorted(big, key=lambda t: (t.id in used, -len(t.users), t.id))


def _pick(sc: Scenarios, i: int) -> tuple[Tenant, User]:
    """The ``i``-th case's tenant and user: its second user (the first and the last are other
    scenarios'), a regular of the tenant."""
    tenants = _tenants(sc)
    tenant = tenants[i % len(tenants)]
    users = tenant.users
    return tenant, users[1 + (i // len(tenants)) % max(1, len(users) - 2)]


def run(sc: Scenarios, rng: random.Random) -> list[Label]:
    """The attack (from ``rng``) and its look-alikes, each from a random stream of its own, so
    that a case changed never moves another."""
    out = finance_export(sc, rng)
    for case in (new_project, peer_work, yesterdays_work):
        out += case(sc, ids.stream(sc.world.spec.seed, "scenario", DETECTOR, case.__name__))
    return out


def finance_export(sc: Scenarios, rng: random.Random) -> list[Label]:
    tenant, user = _pick(sc, 0)
    ts = sc.base + 13 * 3600 + 900 + rng.randrange(900)
    ev = Evidence()
    _, ident = sc.style.user_creds(sc.ct, rng, ts, user)
    ip = user.office_ip
    ts += rng.randrange(60, 240)
    for prefix in ("invoices/", "billing/"):
        ts += rng.randrange(2, 8)
        ev.add(sc.ct.s3_list(rng, ts, ident, ip, CLI_UA, tenant.id, prefix), ts)
    for i in range(40):
        ts += rng.randrange(1, 4)
        folder = f"invoices/2026-{9 + i % 3:02d}" if i % 4 else "billing/statements"
        rel = f"{folder}/inv-{rng.randrange(10**6):06d}.pdf"
        ev.add(sc.ct.s3_object(rng, ts, ident, ip, CLI_UA, "GetObject", tenant.id, rel), ts)
    return [
        label(
            "attack-access-pattern-finance-export",
            "attack",
            "access_finance_export",
            DETECTOR,
            "high",
            str(ident["arn"]),
            tenant.id,
            [tenant.id],
            ev,
            f"{user.id} of {tenant.id}, whose work is the API and its reports, used its own "
            f"session's credentials with the AWS CLI from {ip} to list and download 40 of its "
            "own tenant's invoices and billing statements: a prefix neither it nor any "
            "colleague under the same role ever read (financial data).",
        )
    ]


def new_project(sc: Scenarios, rng: random.Random) -> list[Label]:
    tenant, user = _pick(sc, 1)
    ts = sc.base + 10 * 3600 + 600 + rng.randrange(900)
    ev = Evidence()
    _, ident = sc.style.user_creds(sc.ct, rng, ts, user)
    ip = user.office_ip
    ts += rng.randrange(30, 120)
    ev.add(sc.ct.s3_list(rng, ts, ident, ip, CLI_UA, tenant.id, "projects/"), ts)
    for i in range(30):
        ts += rng.randrange(5, 40)
        name = "PutObject" if i % 3 else "GetObject"
        rel = f"projects/warehouse-move/plan-{rng.randrange(100):02d}.xlsx"
        ev.add(sc.ct.s3_object(rng, ts, ident, ip, CLI_UA, name, tenant.id, rel), ts)
    return [
        label(
            "negative-access-new-project",
            "negative",
            "access_new_project",
            DETECTOR,
            "none",
            str(ident["arn"]),
            tenant.id,
            [tenant.id],
            ev,
            f"{user.id} of {tenant.id} starts a new project under projects/ of its tenant's "
            "data: new to it and its colleagues, but no classified data (recorded at low, "
            "not paged).",
        )
    ]


def peer_work(sc: Scenarios, rng: random.Random) -> list[Label]:
    tenant, user = _pick(sc, 2)
    t = (sc.base + 15 * 3600 + 300 + rng.randrange(900)) * 1000
    ev = Evidence()
    _, ident = sc.style.user_creds(sc.ct, rng, t // 1000, user)
    sess = sc.api.session(
        rng, t, user.id, tenant.id, (), user.office_ip, user.browser, tenant.client_id
    )
    for _ in range(20):
        t += rng.randrange(8000, 40_000)
        item = f"inv-{rng.randrange(10**6):06d}"
        r = sc.api.request(rng, t, sess, "GET", ag.INVOICE, tenant.id, item)
        ts = t // 1000
        ev.add(r.request_id, ts)
        acting, _ = sc.style.acting_as(sc.ct, rng, ts, ident, user, tenant.id)
        sk = f"INVOICE#{item}"
        lam = sc.tr.lambda_ip
        ev.add(sc.ct.dynamodb(rng, ts, acting, lam, LAMBDA_UA, "GetItem", tenant.id, sk), ts)
        t += rng.randrange(2000, 9000)
        r = sc.api.request(rng, t, sess, "GET", ag.ATTACHMENT, tenant.id, item)
        ts = t // 1000
        ev.add(r.request_id, ts)
        rel = f"attachments/{item}/scan-{rng.randrange(10):d}.pdf"
        ev.add(
            sc.ct.s3_object(
                rng,
                ts + 1,
                acting,
                user.office_ip,
                user.browser,
                "GetObject",
                tenant.id,
                rel,
                presigned=True,
            ),
            ts + 1,
        )
    return [
        label(
            "negative-access-peer-work",
            "negative",
            "access_peer_work",
            DETECTOR,
            "none",
            user.id,
            tenant.id,
            [tenant.id],
            ev,
            f"{user.id} of {tenant.id} opens 20 invoices and their attachments one after "
            "another: perhaps new to it, but what its colleagues do every day.",
        )
    ]


def yesterdays_work(sc: Scenarios, rng: random.Random) -> list[Label]:
    tenant, user = _pick(sc, 3)
    t = (sc.base + 9 * 3600 + 1200 + rng.randrange(900)) * 1000
    ev = Evidence()
    _, ident = sc.style.user_creds(sc.ct, rng, t // 1000, user)
    sess = sc.api.session(
        rng, t, user.id, tenant.id, (), user.office_ip, user.browser, tenant.client_id
    )
    reports = None
    lam = sc.tr.lambda_ip
    for i in range(24):
        t += rng.randrange(20_000, 90_000)
        ts = t // 1000
        if i % 2:
            r = sc.api.request(rng, t, sess, "GET", ag.INVOICES, tenant.id)
            ev.add(r.request_id, ts)
            acting, _ = sc.style.acting_as(sc.ct, rng, ts, ident, user, tenant.id)
            sk = f"INVOICE#{rng.randrange(10**6):06d}"
            ev.add(sc.ct.dynamodb(rng, ts, acting, lam, LAMBDA_UA, "Query", tenant.id, sk), ts)
            continue
        r = sc.api.request(rng, t, sess, "GET", ag.REPORTS, tenant.id)
        ev.add(r.request_id, ts)
        if reports is None:
            reports = sc.style.reports_creds(sc.ct, rng, ts, user)
        ev.add(sc.ct.s3_list(rng, ts, reports, lam, LAMBDA_UA, tenant.id, "exports/"), ts)
        rel = f"exports/{clock.iso(ts)[:10]}/report-{rng.randrange(100):02d}.csv.gz"
        ev.add(
            sc.ct.s3_object(rng, ts + 1, reports, lam, LAMBDA_UA, "GetObject", tenant.id, rel),
            ts + 1,
        )
    return [
        label(
            "negative-access-yesterdays-work",
            "negative",
            "access_yesterdays_work",
            DETECTOR,
            "none",
            user.id,
            tenant.id,
            [tenant.id],
            ev,
            f"{user.id} of {tenant.id} runs its reports and invoice lists as on the days "
            "before; only the date in the exports' keys is new.",
        )
    ]
