"""bridge: one shared account, a bucket, a table and a role per tenant, all with opaque names.

- Tenant ``tNNNN`` has bucket ``bkt-<hex>``, table ``tbl-<hex>`` and role ``tenants/tr-<hex>``;
  keys inside carry no tenant id. Only the SaaS's registry (``registry/tenants.json``, written
  beside the logs) says which name is whose.
- The token vendor assumes the user's tenant role (no session tags); the reports service reads
  through ``reports-reader`` with the tenant's slug in the session name
  (``brisk-falcon.usr-3f9a1c2e``). Background jobs and support run in the same account.
- Tenants reach the API on their own subdomain (``<slug>.app.acme-saas.example``, an HTTP API on
  ``$default``); paths carry no tenant. The authorizer's token names the tenant as ``org``.
- Support names the ticket of the SaaS's ticket system (``INC0048211``) in the session name; the
  ticket system's export is ``tickets.csv`` (id, tenants, expires, approvers).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.simulate import clock, ids
from pipeline.simulate.regions import residency_toml
from pipeline.simulate.world import LAMBDA_UA, User, World
from pipeline.simulate.worlds.base import (
    CLASSIFICATION_TOML,
    Style,
    expires_text,
    hex_names,
    relationships_toml,
)

if TYPE_CHECKING:
    from pipeline.simulate.cloudtrail import CloudTrail, Identity
    from pipeline.simulate.writer import Invocation

REGISTRY = "registry/tenants.json"
TICKETS = "tickets.csv"
APEX = "app.acme-saas.example"
ROUTES = {
    "/tenants/{tenantId}/session": "/api/v2/session",
    "/tenants/{tenantId}/invoices": "/api/v2/invoices",
    "/tenants/{tenantId}/invoices/{id}": "/api/v2/invoices/{id}",
    "/tenants/{tenantId}/users": "/api/v2/users",
    "/tenants/{tenantId}/reports": "/api/v2/reports",
    "/tenants/{tenantId}/attachments/{id}": "/api/v2/attachments/{id}",
}
_ADJECTIVES = (
    "amber", "bold", "brisk", "calm", "clear", "coral", "crisp", "deep", "eager", "fair",
    "fleet", "golden", "grand", "green", "hardy", "keen", "lively", "lucky", "mellow", "noble",
    "north", "proud", "quick", "quiet", "rapid", "royal", "silver", "sharp", "solid", "south",
    "steady", "still", "sunny", "swift", "true", "vivid", "warm", "wise", "young", "zesty",
)  # fmt: skip
_NOUNS = (
    "anchor", "arbor", "aspen", "beacon", "birch", "canyon", "cedar", "comet", "delta", "ember",
    "falcon", "fjord", "forge", "glade", "harbor", "heron", "island", "juniper", "lagoon",
    "lantern", "maple", "meadow", "mesa", "orbit", "otter", "pine", "prairie", "quarry", "raven",
    "reef", "ridge", "river", "summit", "thistle", "tundra", "valley", "willow", "wren", "yarrow",
    "zephyr",
)  # fmt: skip


class Bridge(Style):
    name = "bridge"
    ticket = "INC0048211"
    function_name = "edge-authorizer"
    api_id = "q7k2m9x4p1"
    stage = "$default"
    ops_bucket = "acme-saas-platform-artifacts"
    ops_table = "platform-config"

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.buckets = hex_names(world, "bridge-buckets", "bkt-")
        self.tables = hex_names(world, "bridge-tables", "tbl-")
        self.roles = hex_names(world, "bridge-roles", "tr-")
        rng = ids.stream(self.spec.seed, "bridge-slugs")
        pairs = [f"{a}-{n}" for a in _ADJECTIVES for n in _NOUNS]
        picked = rng.sample(pairs, min(len(pairs), len(world.tenants)))
        picked += [f"tenant-{i}" for i in range(len(picked), len(world.tenants))]
        self.slug = {t.id: s for t, s in zip(world.tenants, picked, strict=True)}

    # --- data -----------------------------------------------------------------------------------

    def bucket(self, tenant: str) -> str:
        return self.buckets[tenant]

    def object_key(self, tenant: str, rel: str) -> str:
        return rel

    def table(self, tenant: str) -> str:
        return self.tables[tenant]

    def item_key(self, tenant: str, sk: str | None) -> dict[str, Any]:
        return {"pk": {"S": "INVOICES" if sk is None else sk}}

    # --- identities -----------------------------------------------------------------------------

    def user_creds(
        self, ct: CloudTrail, rng: random.Random, ts: int, user: User, analytics: bool = False
    ) -> tuple[list[str], Identity]:
        w = self.world
        role = w.role_in(self.roles[user.tenant], self.platform, path="tenants/")
        vendor = ct.function_identity(rng, "tenant-token-vendor", ts)
        eids, akid = ct.assume_role(rng, ts, vendor, w.lambda_ips[0], LAMBDA_UA, role, user.id)
        return eids, ct.assumed(role, user.id, akid, ts, tenant=user.tenant)

    def reports_creds(self, ct: CloudTrail, rng: random.Random, ts: int, user: User) -> Identity:
        session = f"{self.slug[user.tenant]}.{user.id}"[:64]
        role = self.world.role_in("reports-reader", self.platform)
        caller = ct.function_identity(rng, "reports-service", ts)
        _, akid = ct.assume_role(
            rng, ts, caller, self.world.lambda_ips[0], LAMBDA_UA, role, session
        )
        return ct.assumed(role, session, akid, ts, tenant=user.tenant)

    # --- API --------------------------------------------------------------------------------

    def domain(self, tenant: str) -> str:
        return f"{self.slug[tenant]}.{APEX}"

    def route(self, template: str) -> str:
        return ROUTES[template]

    def path(self, template: str, tenant: str, item: str) -> str:
        return ROUTES[template].replace("{id}", item)

    def arn_path(self, template: str, tenant: str) -> str:
        return ROUTES[template].replace("{id}", "*")

    def access_log(self, msg: dict[str, str], tenant: str) -> dict[str, Any]:
        # An HTTP API's custom format; dotted names are literal keys, as the format wrote them.
        return {
            "rid": msg["requestId"],
            "t": int(msg["requestTimeEpoch"]),
            "ip": msg["ip"],
            "m": msg["httpMethod"],
            "p": msg["path"],
            "rk": f"{msg['httpMethod']} {msg['resourcePath']}",
            "code": int(msg["status"]),
            "len": int(msg["responseLength"]),
            "lat": int(msg["responseLatency"]),
            "ua": msg["userAgent"],
            "api": msg["apiId"],
            "stage": msg["stage"],
            "host": msg["domainName"],
            "auth.principal": msg["authorizerPrincipalId"],
            "auth.org": msg["authorizerTenantId"],
            "auth.err": msg["authorizerError"],
            "auth.lat": msg["authorizerLatency"],
        }

    def authorizer_fields(self, fields: dict[str, Any], tenant: str) -> dict[str, Any]:
        reason = str(fields["reason"]).replace("tenant claim", "org claim")
        return {
            "aws_request_id": fields["function_request_id"],
            "api_request_id": fields["request_id"],
            "effect": str(fields["decision"]).lower(),
            "detail": reason.replace("requested tenant", "host tenant").replace("path", "host"),
            "route": fields["method_arn"],
            "user": fields["principal_id"],
            "token_hash": fields["token_fingerprint"],
            "org": fields["tenant_claim"],
            "host": self.domain(tenant),
            "cache_key": fields["cache_key"],
        }

    def authorizer_line(self, inv: Invocation, first: bool, function_arn: str) -> dict[str, Any]:
        return {
            "time": clock.iso_ms(inv.ts_ms + 2),
            "severity": "info" if inv.fields["effect"] == "allow" else "warn",
            "event": "authz.decision",
            "fn": self.function_name,
            "cold": first,
            **inv.fields,
        }

    # --- files ----------------------------------------------------------------------------------

    def files(self) -> dict[str, str]:
        registry = [
            {
                "tenant_id": t,
                "slug": self.slug[t],
                "role": self.roles[t],
                "bucket": self.buckets[t],
                "table": self.tables[t],
            }
            for t in sorted(self.slug)
        ]
        acct = self.platform
        rels = relationships_toml(
            self.world,
            service=f"^arn:aws:sts::{acct}:assumed-role/saas-(nightly-export|billing-aggregator)/",
            break_glass=f"^arn:aws:sts::{acct}:assumed-role/support-break-glass/",
            tickets="ticket_pattern = '^(?P<ticket>INC\\d{7})\\.'\n"
            f'tickets_file = "{TICKETS}"\n',
        )
        return {
            "tenantwatch.toml": CONFIG.format(registry=REGISTRY, apex=APEX, relationships=rels)
            + residency_toml(self.world)
            + CLASSIFICATION_TOML,
            REGISTRY: orjson.dumps(registry, option=orjson.OPT_INDENT_2).decode() + "\n",
            TICKETS: self._tickets(),
        }

    def _tickets(self) -> str:
        """The ticket system's export: the attack day's ticket, an older closed one and one for
        another tenant (tenants ``;``-separated, as a spreadsheet export writes a list)."""
        w = self.world
        expires = expires_text(w)
        st = w.scenario_tenants
        earlier = w.spec.start.isoformat()
        approvers = "ops-lead@acme-saas.example;sec-oncall@acme-saas.example"
        rows = [
            ("INC0047730", f"{st['s3_a']};{st['s3_b']}", f"{earlier}T18:00:00Z", approvers),
            (self.ticket, w.ticket_tenant, expires, approvers),
            ("INC0048305", st["surge"], expires, "ops-lead@acme-saas.example"),
        ]
        return "id,tenants,expires,approvers\n" + "".join(",".join(r) + "\n" for r in rows)

    def describe(self, key: str, **kw: Any) -> str:
        text = _DESCRIPTIONS.get(key)
        if text is None:
            return super().describe(key, **kw)
        names = {f"bucket_{k}": self.buckets[v] for k, v in kw.items() if v in self.buckets}
        hosts = {f"host_{k}": self.domain(v) for k, v in kw.items() if v in self.slug}
        return text.format(**kw, **names, **hosts)


_DESCRIPTIONS = {
    "s3": "A user of {a} works under {a}'s tenant role, whose policy grants s3:GetObject on "
    "bkt-* rather than its own bucket; the user listed and read {b}'s bucket ({bucket_b}) with "
    "the AWS CLI from {ip}.",
    "cache_tail": "The backend's S3 reads appear in CloudTrail as {session} on {b}'s bucket "
    "({bucket_b}).",
    "stuffing": "About 20 minutes of failed logins (401 on POST /api/v2/session at "
    "{host_target}) from {n} addresses: a spike in {target}'s authorization failures.",
}

CONFIG = """\
# Written by `tenantwatch simulate --world bridge`: how this SaaS puts tenants in its logs.
# One shared account; each tenant has its own bucket, table and role with opaque names that
# only the registry below resolves, and its own subdomain of the API.

# The HTTP API's access-log format and the authorizer's log lines use their own field names
# ("auth.org" is one key with a dot in it, as the format wrote it).
[sources.apigateway]
request_id = "rid"
time = "t"
status = "code"
path = "p"
http_method = "m"
route = "rk"
api_id = "api"
stage = "stage"
domain = "host"
principal = "auth.principal"
tenant_claim = "auth.org"
error = "auth.err"
source_ip = "ip"
user_agent = "ua"

[sources.authorizer]
event_id = "aws_request_id"
time = "time"
decision = "effect"
reason = "detail"
method_arn = "route"
principal = "user"
token_fingerprint = "token_hash"
tenant_claim = "org"
request_id = "api_request_id"
function = "fn"

# The SaaS's tenant registry: one entry per tenant with its slug, role, bucket and table.
[[tenancy.lookup]]
name = "roles"
file = "{registry}"
key = "role"
tenant = "tenant_id"

[[tenancy.lookup]]
name = "slugs"
file = "{registry}"
key = "slug"
tenant = "tenant_id"

[[tenancy.lookup]]
name = "buckets"
file = "{registry}"
key = "bucket"
tenant = "tenant_id"

[[tenancy.lookup]]
name = "tables"
file = "{registry}"
key = "table"
tenant = "tenant_id"

# The actor's tenant, in order of trust.
# Each tenant's users work under the tenant's own role.
[[tenancy.actor]]
kind = "role_arn"
pattern = '^arn:aws:iam::\\d{{12}}:role/tenants/(?P<tenant>tr-[0-9a-f]{{8}})$'
lookup = "roles"

# The reports service names the tenant's slug in the session name of reports-reader.
[[tenancy.actor]]
kind = "role_session_name"
roles = ["reports-reader"]
pattern = '^(?P<tenant>[a-z0-9-]+)\\.'
lookup = "slugs"

# The token's org claim, in access logs and in the authorizer's lines.
[[tenancy.actor]]
kind = "field"
source = "apigateway"
path = "auth.org"

[[tenancy.actor]]
kind = "field"
source = "authorizer"
path = "org"

# The target's tenant: whose bucket, table or subdomain it is.
[[tenancy.target]]
kind = "s3_bucket"
lookup = "buckets"

[[tenancy.target]]
kind = "dynamodb_table"
lookup = "tables"

[[tenancy.target]]
kind = "subdomain"
pattern = '^(?P<tenant>[a-z0-9-]+)\\.app\\.acme-saas\\.example$'
lookup = "slugs"

[[tenancy.target]]
kind = "field"
source = "authorizer"
path = "host"
pattern = '^(?P<tenant>[a-z0-9-]+)\\.app\\.acme-saas\\.example$'
lookup = "slugs"

# Relationships that make cross-tenant access legitimate.

{relationships}"""
