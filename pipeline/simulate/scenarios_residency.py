"""The attack day's residency scenarios (``residency`` detector): a tenant pinned to eu-west-1
whose data is copied to and read in us-east-1, and its look-alike, a tenant with two EU regions
using both, which must not page.

Both go through the world's own builders and ``Style`` (the tenant's user logs in and gets its
credentials as every user does), so they are right in every world. The tenants are
``regions.roles``': the pinned one has only eu-west-1 and financial data, the other eu-west-1
and eu-central-1.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pipeline.simulate import regions
from pipeline.simulate.labels import Evidence, label
from pipeline.simulate.world import CLI_UA

if TYPE_CHECKING:
    from pipeline.simulate.scenarios import Scenarios

Label = dict[str, Any]
OUTSIDE = "us-east-1"


def residency(sc: Scenarios, rng: random.Random) -> list[Label]:
    """The scenario ``residency_copied_outside``: the attack, and its look-alike the same day."""
    return copied_outside(sc, rng) + two_regions(sc, rng)


def copied_outside(sc: Scenarios, rng: random.Random) -> list[Label]:
    """A user of the pinned tenant runs a migration script that reads the tenant's invoices
    from the eu-west-1 table and writes them into the table's us-east-1 replica (a global table
    replica someone added there), then reads some back there to check the copy."""
    tenant = regions.roles(sc.world)[regions.PINNED]
    users = sc.world.by_id[tenant].users
    user = users[1] if len(users) > 1 else users[0]
    ts = sc.base + 18 * 3600 + 600 + rng.randrange(600)
    _, ident = sc.style.user_creds(sc.ct, rng, ts, user)
    ip = user.home_ip
    ev = Evidence()
    ts += rng.randrange(30, 90)
    acting, _ = sc.style.acting_as(sc.ct, rng, ts, ident, user, tenant)
    items = [f"INVOICE#inv-{rng.randrange(10**6):06d}" for _ in range(10)]
    # Read where the data lives (in its region: nothing to report yet) ...
    sc.ct.dynamodb(rng, ts, acting, ip, CLI_UA, "Query", tenant, None, region=regions.EU)
    for sk in items:  # ... and write every item into the us-east-1 replica.
        ts += rng.randrange(1, 4)
        ev.add(
            sc.ct.dynamodb(rng, ts, acting, ip, CLI_UA, "PutItem", tenant, sk, region=OUTSIDE),
            ts,
        )
    for sk in items[:4]:  # The check reads the copies back in us-east-1.
        ts += rng.randrange(2, 6)
        ev.add(
            sc.ct.dynamodb(rng, ts, acting, ip, CLI_UA, "GetItem", tenant, sk, region=OUTSIDE),
            ts,
        )
    return [
        label(
            "attack-residency-copied-outside",
            "attack",
            "residency_copied_outside",
            "residency",
            "high",
            str(acting["arn"]),
            tenant,
            [tenant],
            ev,
            f"{tenant} is pinned to {regions.EU} (financial data). One of its users ({user.id}, "
            f"{ip}, AWS CLI) copied {len(items)} of its invoices into the table's {OUTSIDE} "
            f"replica (PutItem, awsRegion {OUTSIDE}) and read 4 of them back there.",
        )
    ]


def two_regions(sc: Scenarios, rng: random.Random) -> list[Label]:
    """A tenant with eu-west-1 and eu-central-1 works in both within the hour: writes and reads
    of its own data in each of its regions, which is what its configuration allows."""
    tenant = regions.roles(sc.world)[regions.TWO_REGIONS]
    user = sc.world.by_id[tenant].users[0]
    ts = sc.base + 13 * 3600 + 1200 + rng.randrange(600)
    _, ident = sc.style.user_creds(sc.ct, rng, ts, user)
    ip = user.office_ip
    ev = Evidence()
    ts += rng.randrange(30, 90)
    acting, _ = sc.style.acting_as(sc.ct, rng, ts, ident, user, tenant)
    for i in range(12):
        ts += rng.randrange(2, 20)
        where = (regions.EU, regions.EU_2)[i % 2]
        sk = f"INVOICE#inv-{rng.randrange(10**6):06d}"
        name = ("PutItem", "GetItem", "Query")[i % 3]
        key = None if name == "Query" else sk
        ev.add(sc.ct.dynamodb(rng, ts, acting, ip, CLI_UA, name, tenant, key, region=where), ts)
    return [
        label(
            "negative-residency-two-regions",
            "negative",
            "residency_copied_outside",
            "residency",
            "none",
            str(acting["arn"]),
            tenant,
            [tenant],
            ev,
            f"{tenant}'s data may live in {regions.EU} and {regions.EU_2}; one of its users wrote "
            "and read its items in both within minutes: inside its regions, not reported.",
        )
    ]
