"""Where each simulated tenant's data lives: its AWS regions, and the regional API that serves it.

Most tenants are the home region's (``spec.region``); some are pinned to an EU region, some have
two regions (EU, or the home region and us-west-2), and a few are not given regions at all (the
configuration lists no regions for them, so the ``residency`` detector does not judge them). Two
tenants play the residency scenarios (``scenarios_residency``): one pinned to eu-west-1 with
financial data, one with eu-west-1 and eu-central-1.

A data event happens in the region of the tenant whose data it touches (an S3 bucket's or
DynamoDB table replica's ``awsRegion``); a tenant with two regions uses them by turns, hour by
hour. An API request goes to the regional API of its tenant's first region (requests are routed
by tenant), whose id is the world's API id in the home region and one derived from it elsewhere.
Nothing here draws from a random stream: a world's other traffic is the same as without regions.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.simulate.world import World

EU = "eu-west-1"
EU_2 = "eu-central-1"
US_2 = "us-west-2"
# The residency scenarios' tenants: a role name -> the tenant playing it (``roles``).
PINNED, TWO_REGIONS = "residency_pinned", "residency_two_regions"


def roles(world: World) -> dict[str, str]:
    """The tenants of the residency scenarios, chosen among those no other scenario plays (in a
    small world, among all), fixed by the tenant count."""
    taken = set(world.scenario_tenants.values())
    free = [t.id for t in world.tenants if t.id not in taken] or [t.id for t in world.tenants]
    pinned = free[len(free) // 3]
    two = free[(2 * len(free)) // 3]
    if two == pinned:
        two = next(t.id for t in world.tenants if t.id != pinned)
    return {PINNED: pinned, TWO_REGIONS: two}


def tenant_regions(world: World) -> dict[str, tuple[str, ...]]:
    """Each configured tenant's regions (a tenant left out has none configured; its data is in
    the home region)."""
    home = world.spec.region
    r = roles(world)
    others = [t.id for t in world.tenants if t.id not in r.values()]
    # Regions not known to the configuration: every tenth tenant (at least one).
    unknown = {t for t in others if int(t[1:]) % 10 == 0} or set(others[-1:])
    out: dict[str, tuple[str, ...]] = {}
    for t in others:
        if t not in unknown:
            out[t] = {1: (EU,), 3: (EU, EU_2), 5: (home, US_2)}.get(int(t[1:]) % 6, (home,))
    out[r[PINNED]] = (EU,)
    out[r[TWO_REGIONS]] = (EU, EU_2)
    return dict(sorted(out.items()))


def data_region(world: World, tenant: str | None, ts: int) -> str:
    """The region a data event on ``tenant``'s data happens in at ``ts`` (by turns, by hour)."""
    regions = world.regions.get(tenant or "") or (world.spec.region,)
    return regions[(ts // 3600) % len(regions)]


def api_of(world: World, tenant: str | None) -> tuple[str, str]:
    """(API id, region) of the regional API that serves ``tenant``'s requests."""
    return api_of_region(world, (world.regions.get(tenant or "") or (world.spec.region,))[0])


def api_regions(world: World) -> dict[str, str]:
    """Every regional API's id -> its region."""
    regions = {world.spec.region} | {rs[0] for rs in world.regions.values()}
    return dict(sorted(api_of_region(world, r) for r in regions))


def api_of_region(world: World, region: str) -> tuple[str, str]:
    """(API id, region) of the world's API in ``region``."""
    if region == world.spec.region:
        return world.style.api_id, region
    return hashlib.sha256(f"{world.style.api_id}/{region}".encode()).hexdigest()[:10], region


def residency_toml(world: World) -> str:
    """The configuration's ``[[tenants]]`` and ``[detectors.residency]`` for this world."""
    pinned = roles(world)[PINNED]
    parts = [
        "\n# Where each tenant's data may live and be processed (the residency detector judges"
        "\n# only the tenants listed). API Gateway access logs name no region: each regional API's"
        "\n# id is mapped to its region.",
        "[detectors.residency]",
        "api_regions = { "
        + ", ".join(f'"{a}" = "{r}"' for a, r in api_regions(world).items())
        + " }",
    ]
    for tenant, regions in sorted(world.regions.items()):
        klass = '\nclassification = "financial"' if tenant == pinned else ""
        parts.append(
            f'\n[[tenants]]\nid = "{tenant}"\nregions = ['
            + ", ".join(f'"{r}"' for r in regions)
            + f"]{klass}"
        )
    return "\n".join(parts) + "\n"
