"""What a world decides: where each tenant's data lives and how every log names it.

A ``Style`` answers the questions the builders ask (which account owns a tenant's bucket, what
the object key, the table, the item key, the API path and host look like, which fields the API
and authorizer logs use) and runs the few steps whose shape differs between worlds (how a user's
credentials are vended, how a background job or support reaches a tenant's data). This base is
the single-account layout that ``pooled`` uses unchanged; ``silo`` and ``bridge`` override what
they encode differently. Tenant ids (``t0001``...) are the SaaS's own everywhere: a world only
changes how its logs point at them.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pipeline.simulate import ids
from pipeline.simulate.world import (
    API_ID,
    AUTHORIZER,
    LAMBDA_UA,
    STAGE,
    TICKET,
    Role,
    User,
    World,
)

if TYPE_CHECKING:
    from pipeline.simulate.cloudtrail import CloudTrail, Identity
    from pipeline.simulate.writer import Invocation

POOLED_BUCKET = "acme-saas-tenant-data"
POOLED_TABLE = "tenant-data"


class Style:
    name = "pooled"
    # The support ticket of the attack day (``break_glass``) in this world's ticket system.
    ticket = TICKET

    def __init__(self, world: World) -> None:
        self.world = world
        self.spec = world.spec
        self.platform = world.spec.account

    # --- accounts and CloudTrail delivery ------------------------------------------------------

    def accounts(self) -> tuple[str, ...]:
        """The accounts whose events the trail delivers (one digest chain each)."""
        return (self.platform,)

    def in_org(self, account: str | None) -> bool:
        return account == self.platform

    def account_of(self, tenant: str) -> str:
        """The account that owns the tenant's data."""
        return self.platform

    def role_target(self, role: Role) -> str | None:
        """The tenant whose resource a role is, when assuming it acts on that tenant."""
        return None

    def trail_prefix(self, account: str) -> str:
        return f"AWSLogs/{account}/"

    def ct_file_stream(self, slot: int, account: str) -> tuple[object, ...]:
        return ("ct-file", slot)

    def digest_stream(self, account: str) -> tuple[object, ...]:
        return ("digest",)

    def slot_seconds(self, account: str, busy_default: int) -> int:
        return busy_default

    # --- data ---------------------------------------------------------------------------------

    def bucket(self, tenant: str) -> str:
        return POOLED_BUCKET

    def object_key(self, tenant: str, rel: str) -> str:
        return f"tenants/{tenant}/{rel}"

    def table(self, tenant: str) -> str:
        return POOLED_TABLE

    def item_key(self, tenant: str, sk: str | None) -> dict[str, Any]:
        """The primary key CloudTrail logs; ``sk`` None: a Query (partition key only)."""
        key: dict[str, Any] = {"pk": {"S": f"TENANT#{tenant}"}}
        if sk is not None:
            key["sk"] = {"S": sk}
        return key

    # What operators look at in the console (resources of the platform, not of a tenant).
    ops_bucket = POOLED_BUCKET
    ops_table = POOLED_TABLE

    # --- how identities reach tenant data -----------------------------------------------------

    def user_creds(
        self, ct: CloudTrail, rng: random.Random, ts: int, user: User, analytics: bool = False
    ) -> tuple[list[str], Identity]:
        """The token vendor's AssumeRole for a user: its event ids and the session's identity."""
        w = self.world
        role = w.roles["tenant-analytics" if analytics else "tenant-scoped-access"]
        vendor = ct.function_identity(rng, "tenant-token-vendor", ts)
        eids, akid = ct.assume_role(
            rng,
            ts,
            vendor,
            w.lambda_ips[0],
            LAMBDA_UA,
            role,
            user.id,
            tags={"tenant_id": user.tenant},
        )
        return eids, ct.assumed(role, user.id, akid, ts, tenant=user.tenant)

    def reports_creds(self, ct: CloudTrail, rng: random.Random, ts: int, user: User) -> Identity:
        """The reports service's session for a user's request (its tenant from the context)."""
        session = f"tenant-{user.tenant}-{user.id}"[:64]
        role = self.world.roles["tenant-reports"]
        caller = ct.function_identity(rng, "reports-service", ts)
        _, akid = ct.assume_role(
            rng, ts, caller, self.world.lambda_ips[0], LAMBDA_UA, role, session
        )
        return ct.assumed(role, session, akid, ts, tenant=user.tenant)

    def acting_as(
        self, ct: CloudTrail, rng: random.Random, ts: int, ident: Identity, user: User, tenant: str
    ) -> tuple[Identity, list[str]]:
        """The identity a user's session acts with on ``tenant``'s data (and the events of
        getting it): the session itself unless the world needs a hop into another account."""
        return ident, []

    def job_creds(
        self,
        ct: CloudTrail,
        rng: random.Random,
        ts: int,
        job: str,
        fn_ident: Identity,
        tenant: str,
    ) -> tuple[Identity, list[str]]:
        """A background job's identity on one tenant's data: its function's own session."""
        return fn_ident, []

    def support_creds(
        self,
        ct: CloudTrail,
        rng: random.Random,
        ts: int,
        caller: Identity,
        person: str,
        ticket: str | None,
        tenant: str,
        ip: str,
        ua: str,
    ) -> Identity:
        """Support assumes the break-glass role; the ticket goes in the session name."""
        role = self.world.roles["support-break-glass"]
        session = f"{ticket}.{person}" if ticket else person
        _, akid = ct.assume_role(rng, ts, caller, ip, ua, role, session)
        return ct.assumed(role, session, akid, ts, mfa=True)

    # --- API Gateway and the authorizer -------------------------------------------------------

    function_name = AUTHORIZER
    api_id = API_ID
    stage = STAGE

    def domain(self, tenant: str) -> str:
        from pipeline.simulate.regions import api_of  # the tenant's regional API

        return "{}.execute-api.{}.amazonaws.com".format(*api_of(self.world, tenant))

    def route(self, template: str) -> str:
        """The route as this API declares it, from the route's pooled spelling."""
        return template

    def path(self, template: str, tenant: str, item: str) -> str:
        """The request path as logged (stage included)."""
        return f"/{self.stage}{template.replace('{tenantId}', tenant).replace('{id}', item)}"

    def arn_path(self, template: str, tenant: str) -> str:
        """The resource path of the authorizer's method ARN (no stage, item as ``*``)."""
        return template.replace("{tenantId}", tenant).replace("{id}", "*")

    def access_log(self, msg: dict[str, str], tenant: str) -> dict[str, Any]:
        """An access-log line from the REST API's standard fields (pooled names them so)."""
        return msg

    def authorizer_fields(self, fields: dict[str, Any], tenant: str) -> dict[str, Any]:
        return fields

    def authorizer_line(self, inv: Invocation, first: bool, function_arn: str) -> dict[str, Any]:
        """The authorizer's log line for one decision (Powertools Logger's default keys)."""
        from pipeline.simulate import clock

        f = inv.fields
        return {
            "level": "INFO" if f["decision"] == "Allow" else "WARNING",
            "location": "lambda_handler:71",
            "message": "authorization decision",
            "timestamp": clock.powertools(inv.ts_ms + 2),
            "service": AUTHORIZER,
            "cold_start": first,
            "function_name": AUTHORIZER,
            "function_memory_size": 256,
            "function_arn": function_arn,
            **f,
        }

    # --- what the world writes beside its logs --------------------------------------------------

    def files(self) -> dict[str, str]:
        """Relative path -> text: ``tenantwatch.toml`` and any registry or ticket export."""
        raise NotImplementedError

    def describe(self, key: str, **kw: Any) -> str:
        return DESCRIPTIONS[key].format(**kw)


DESCRIPTIONS = {
    "s3": "A user of {a} got tenant-analytics credentials (session tag tenant_id={a}); "
    "the role's policy lacks the tenant condition, so the user listed and read "
    "{b}'s prefix with the AWS CLI from {ip}.",
    "cache_tail": "The backend's S3 reads appear in CloudTrail as {session} on "
    "tenants/{b}/exports/.",
    "stuffing": "About 20 minutes of failed logins (401 on POST /tenants/{target}/session) from "
    "{n} addresses: a spike in {target}'s authorization failures.",
    "no_ticket": "Support engineer erik used support-break-glass with no ticket in the "
    "session name and read {tenant}'s data.",
    "consultant": "{name} (home tenant claim {home}) works for its declared clients {clients}: "
    "API principalId {name}; CloudTrail session name {name}.",
    "job": "{job} touches every tenant on schedule (declared service role).",
}


# Which data is which kind (every world keeps invoices and billing statements under those names)
# and what the access_pattern detector makes of each kind an actor newly touches.
CLASSIFICATION_TOML = """
# Kinds of data: named in customer notices, and what weighs a new access pattern.
[[classification]]
pattern = '/invoices/|/billing/'
class = "financial"

[detectors.access_pattern]
classes = { financial = "high" }
"""


def relationships_toml(world: World, service: str, break_glass: str, tickets: str) -> str:
    """The ``[[relationships]]`` of the simulated business, in any world's terms: ``service``
    and ``break_glass`` are principal patterns, ``tickets`` the rest of the break-glass table."""

    def lst(xs: tuple[str, ...]) -> str:
        return "[" + ", ".join(f'"{x}"' for x in xs) + "]"

    parts = [
        f'[[relationships]]\nkind = "organisation"\nparent = "{world.parent}"\n'
        f"children = {lst(world.children)}\n",
    ]
    for name, ts in world.consultant_tenants.items():
        parts.append(
            f'[[relationships]]\nkind = "consultant"\nprincipal = "{name}"\ntenants = {lst(ts)}\n'
        )
    parts.append(f"[[relationships]]\nkind = \"service_role\"\nprincipal_pattern = '{service}'\n")
    parts.append(
        f"[[relationships]]\nkind = \"break_glass\"\nprincipal_pattern = '{break_glass}'\n{tickets}"
    )
    return "\n".join(parts)


def expires_text(world: World) -> str:
    return world.ticket_expires.strftime("%Y-%m-%dT%H:%M:%SZ")


def tenant_ids(world: World) -> list[str]:
    return [t.id for t in world.tenants]


def hex_names(world: World, purpose: str, prefix: str, n: int = 8) -> dict[str, str]:
    """An opaque, distinct name per tenant (``bkt-3f9a1c2e``), from a stream of its own."""
    rng = ids.stream(world.spec.seed, purpose)
    out: dict[str, str] = {}
    seen: set[str] = set()
    for t in tenant_ids(world):
        name = f"{prefix}{ids.hex_id(rng, n)}"
        while name in seen:
            name = f"{prefix}{ids.hex_id(rng, n)}"
        seen.add(name)
        out[t] = name
    return out
