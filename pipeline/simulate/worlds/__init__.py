"""The simulated SaaS in three layouts, so that nothing is tuned to one way of encoding tenants.

- ``pooled``: one account, one bucket, one table; tenant ids in keys, paths and session tags.
- ``silo``: an AWS account per tenant (same resources in each, so the account is the tenant);
  the SaaS's platform account reaches into them through cross-account roles; an organisation
  trail; a registry maps accounts to tenants; the API names the account in its paths.
- ``bridge``: one shared account with a bucket, a table and a role per tenant, all with opaque
  names that only the SaaS's registry resolves; tenants as subdomains of the API.

The business is the same in all three (tenants, users, relationships, traffic, attacks); only
the names in the logs differ. Each world also writes the ``tenantwatch.toml`` that describes it.
"""

from __future__ import annotations

from pipeline.simulate.world import World
from pipeline.simulate.worlds.base import Style


def style_for(world: World) -> Style:
    from pipeline.simulate.worlds.bridge import Bridge
    from pipeline.simulate.worlds.pooled import Pooled
    from pipeline.simulate.worlds.silo import Silo

    styles: dict[str, type[Style]] = {"pooled": Pooled, "silo": Silo, "bridge": Bridge}
    return styles[world.spec.world](world)


__all__ = ["Style", "style_for"]
