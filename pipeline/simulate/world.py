"""The simulated SaaS: tenants, users, roles and the relationships that make cross-tenant access
legitimate. The named structure (tenant ids, roles, relationship tenants) is the same for every
seed; the seed only shapes sizes, time zones, user ids, addresses and traffic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from pipeline.simulate import ids
from pipeline.simulate.spec import SimulationSpec

if TYPE_CHECKING:
    from pipeline.simulate.worlds.base import Style

BUCKET = "acme-saas-tenant-data"
TABLE = "tenant-data"
API_ID = "a1b2c3d4e5"
STAGE = "prod"
AUTHORIZER = "tenant-authorizer"
TRAIL = "management-and-data-events"
CACHE_TTL_S = 300
SESSION_S = 3600
# Offsets in minutes and how common each is among tenants.
TIME_ZONES = ((-480, 20), (-300, 30), (0, 15), (60, 20), (330, 8), (540, 7))
# Where the default world's relationship tenants sit (tenants >= 50); smaller worlds spread them.
_CANONICAL_SLOTS = (10, 11, 12, 13, 20, 21, 22, 30, 31, 49)
CONSULTANTS = ("ext-consultant-ana", "ext-consultant-ben")
SUPPORT_STAFF = ("dana", "erik")
TICKET = "SUP-4821"

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
)
CLI_UA = (
    "aws-cli/2.18.7 md/awscrt#0.22.0 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.12.6 "
    "md/pyimpl#CPython cfg/retry-mode#standard md/installer#source md/prompt#off "
    "md/command#s3.cp"
)
LAMBDA_UA = (
    "Boto3/1.35.36 md/Botocore#1.35.36 ua/2.0 os/linux#5.10.227-239.884.amzn2.x86_64 "
    "md/arch#x86_64 lang/python#3.12.7 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 "
    "cfg/retry-mode#legacy Botocore/1.35.36"
)
# First octets of ordinary public unicast space (no private, CGNAT, multicast or test nets).
_PUBLIC_OCTETS: tuple[int, ...] = (
    24, 31, 37, 45, 62, 66, 71, 73, 76, 81, 86, 89, 92, 98, 104, 108, 135, 141,
    151, 154, 174, 176, 178, 185, 188, 193, 194, 195, 203, 212, 213, 217,
)  # fmt: skip


@dataclass(frozen=True)
class User:
    id: str  # usr-3f9a1c2e, or a consultant's name
    tenant: str  # the tenant its token claims and its STS session is tagged with
    office_ip: str
    home_ip: str
    browser: str
    admin: bool
    acts_on: tuple[str, ...]  # tenants it legitimately works on (its own first)


@dataclass(frozen=True)
class Tenant:
    id: str
    tz_minutes: int
    users: tuple[User, ...]
    client_id: str  # X-Client-Id of the tenant's reporting integration (the mis-keyed cache)


@dataclass(frozen=True)
class Role:
    name: str
    arn: str
    role_id: str  # AROA...

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


@dataclass
class World:
    spec: SimulationSpec
    tenants: tuple[Tenant, ...]
    parent: str
    children: tuple[str, ...]
    consultant_tenants: dict[str, tuple[str, ...]]
    consultant_home: str
    consultants: tuple[User, ...]
    ticket_tenant: str
    roles: dict[str, Role]
    lambda_ips: tuple[str, ...]  # NAT addresses of the backend Lambdas
    operator_ips: tuple[str, ...]
    scenario_tenants: dict[str, str] = field(default_factory=dict)
    # Each configured tenant's AWS regions (``pipeline.simulate.regions``).
    regions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_id: dict[str, Tenant] = field(default_factory=dict)
    style: Style = field(init=False)  # how this world encodes tenants in its logs
    _roles_elsewhere: dict[tuple[str, str], Role] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {t.id: t for t in self.tenants}

    def role_arn(self, name: str) -> str:
        return self.roles[name].arn

    def role_in(self, name: str, account: str, path: str = "") -> Role:
        """A role of the application outside the SaaS's own account list (in a tenant's account,
        or one per tenant); its id comes from a stream of its own, so adding one never shifts
        the rest of the world."""
        if account == self.spec.account and name in self.roles:
            return self.roles[name]
        got = self._roles_elsewhere.get((name, account))
        if got is None:
            rng = ids.stream(self.spec.seed, "role", name, account)
            arn = f"arn:aws:iam::{account}:role/{path}{name}"
            got = self._roles_elsewhere[(name, account)] = Role(name, arn, ids.role_id(rng))
        return got

    @property
    def ticket_expires(self) -> datetime:
        # The ticket closes at midnight after the attack day.
        nxt = self.spec.attack_day + timedelta(days=1)
        return datetime.combine(nxt, time(0, 0), tzinfo=UTC)


def tid(i: int) -> str:
    return f"t{i:04d}"


def slots(n: int) -> tuple[int, ...]:
    """Tenant numbers for (parent, 3 children, 3 + 2 consultant clients, consultant home)."""
    if n >= 50:
        return _CANONICAL_SLOTS
    # Evenly spread and distinct because the step (n - 1) / 9 is at least 1 for n >= 10.
    return tuple(1 + round(i * (n - 1) / 9) for i in range(10))


def public_ip(rng: random.Random) -> str:
    first = rng.choice(_PUBLIC_OCTETS)
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _sizes(rng: random.Random, n: int) -> list[int]:
    # Zipf-like: a few big tenants, a long tail of small ones (2-40 users).
    ranks = list(range(1, n + 1))
    rng.shuffle(ranks)
    return [max(2, min(40, round(40 / r**0.9))) for r in ranks]


def build(spec: SimulationSpec) -> World:
    rng = ids.stream(spec.seed, "world")
    n = spec.tenants
    s = slots(n)
    parent, children = tid(s[0]), tuple(tid(i) for i in s[1:4])
    consultant_tenants = {
        CONSULTANTS[0]: tuple(tid(i) for i in s[4:7]),
        CONSULTANTS[1]: tuple(tid(i) for i in s[7:9]),
    }
    home = tid(s[9])
    zones = [z for z, _ in TIME_ZONES]
    weights = [w for _, w in TIME_ZONES]
    sizes = _sizes(rng, n)
    tenants = []
    for i in range(1, n + 1):
        t = tid(i)
        office = public_ip(rng).rsplit(".", 1)[0]
        users = []
        for j in range(sizes[i - 1]):
            acts_on = (t, *children) if t == parent else (t,)
            users.append(
                User(
                    id=f"usr-{ids.hex_id(rng, 8)}",
                    tenant=t,
                    office_ip=f"{office}.{rng.randrange(2, 254)}",
                    home_ip=public_ip(rng),
                    browser=rng.choice(BROWSERS),
                    admin=j == 0 or rng.random() < 0.1,
                    acts_on=acts_on,
                )
            )
        # The parent and its subsidiaries share an office time zone (one company).
        tz = rng.choices(zones, weights)[0]
        tenants.append(Tenant(t, tz, tuple(users), f"cli-{ids.hex_id(rng, 12)}"))
    parent_tz = tenants[s[0] - 1].tz_minutes
    for c in children:
        k = int(c[1:]) - 1
        tenants[k] = Tenant(c, parent_tz, tenants[k].users, tenants[k].client_id)
    consultants = tuple(
        User(name, home, public_ip(rng), public_ip(rng), rng.choice(BROWSERS), False, ts)
        for name, ts in consultant_tenants.items()
    )
    acct = spec.account
    role_names = (
        "tenant-token-vendor",
        "tenant-scoped-access",
        "tenant-analytics",
        "tenant-reports",
        "reports-service",
        "tenant-api-backend",
        "saas-nightly-export",
        "saas-billing-aggregator",
        "support-break-glass",
        "AWSReservedSSO_AdministratorAccess_5f3c2a1b9d8e7f60",
        "AWSReservedSSO_ReadOnlyAccess_0c4d6e8f1a2b3c4d",
        "github-actions-deploy",
        "DatadogIntegrationRole",
    )
    roles = {}
    for name in role_names:
        path = "aws-reserved/sso.amazonaws.com/" if name.startswith("AWSReservedSSO") else ""
        roles[name] = Role(name, f"arn:aws:iam::{acct}:role/{path}{name}", ids.role_id(rng))
    world = World(
        spec=spec,
        tenants=tuple(tenants),
        parent=parent,
        children=children,
        consultant_tenants=consultant_tenants,
        consultant_home=home,
        consultants=consultants,
        ticket_tenant=consultant_tenants[CONSULTANTS[1]][-1],
        roles=roles,
        lambda_ips=(public_ip(rng), public_ip(rng)),
        operator_ips=(public_ip(rng), public_ip(rng), public_ip(rng)),
    )
    world.scenario_tenants = _pick_scenario_tenants(world)
    from pipeline.simulate.worlds import style_for  # the worlds import this module

    world.style = style_for(world)
    from pipeline.simulate.regions import tenant_regions

    world.regions = tenant_regions(world)
    return world


def _pick_scenario_tenants(world: World) -> dict[str, str]:
    """Ordinary tenants (no relationship) for each scenario role, fixed by the tenant count."""
    n = world.spec.tenants
    taken = {int(t[1:]) for t in (world.parent, *world.children, world.consultant_home)}
    taken |= {int(t[1:]) for ts in world.consultant_tenants.values() for t in ts}
    free = [tid(i) for i in range(1, n + 1) if i not in taken]
    roles = (
        "s3_a", "s3_b", "cache_a", "cache_b", "cache_c", "mismatch_a", "mismatch_b",
        "enum", "stuffed", "erik_target", "surge",
    )  # fmt: skip
    if len(free) >= len(roles):
        step = len(free) / len(roles)
        picked = [free[int(i * step)] for i in range(len(roles))]
    else:
        # Tiny worlds: reuse tenants; distinct roles only need A != B within one scenario.
        picked = [free[i % len(free)] if free else tid(1 + i % n) for i in range(len(roles))]
        picked[1] = picked[0] if n < 2 else tid(1 + int(picked[0][1:]) % n)
    out = dict(zip(roles, picked, strict=True))
    for a, b in (("s3_a", "s3_b"), ("cache_a", "cache_b"), ("mismatch_a", "mismatch_b")):
        if out[a] == out[b]:
            out[b] = tid(1 + int(out[a][1:]) % n)
    # The benign cases' tenants come from those left, so adding a benign case never moves an
    # attack to another tenant.
    left = [t for t in free if t not in out.values()] or free or [tid(1)]
    for i, benign in enumerate(("cached_deny", "new_hire")):
        out[benign] = left[(2 * i + 1) * len(left) // 4]
    return out
