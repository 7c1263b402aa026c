"""silo: an AWS account per tenant, so the account is the only tenant signal.

- Each tenant's account holds the same stack: a bucket (a CloudFormation-generated name without
  the tenant in it: S3 names are global, so they differ, but nothing maps them to tenants), a
  DynamoDB table ``items`` and the application's roles ``app-user``, ``app-analytics`` and
  ``app-reports``. Keys and paths inside carry no tenant id.
- The SaaS's platform account (``spec.account``) runs the API, the authorizer and the token
  vendor, which assumes ``app-user`` in the tenant's account for each login: a cross-account
  ``AssumeRole``, delivered to both accounts (the tenant's copy names the platform caller as an
  ``AWSAccount``). Background jobs assume ``platform-export`` / ``platform-billing`` in every
  tenant account; support assumes ``support-break-glass`` in one, with the change request as the
  session tag ``change_request``.
- Partners (consultants) assume ``partner-access`` in their clients' accounts from their own
  tenant's session; the parent company reads its subsidiaries' tables across accounts.
- CloudTrail is an organisation trail: ``AWSLogs/<org id>/<account>/CloudTrail/...``.
- The API names the account in its paths (``/v1/accounts/<account>/invoices``); the authorizer's
  token carries it as ``claims.account``. Access-log and authorizer fields have their own names.
- ``registry/accounts.csv`` maps accounts to tenant ids (the SaaS's account vending records).
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

from pipeline.simulate import clock, ids
from pipeline.simulate.operators import DATADOG_ACCOUNT
from pipeline.simulate.regions import residency_toml
from pipeline.simulate.world import LAMBDA_UA, STAGE, Role, User, World
from pipeline.simulate.worlds.base import (
    CLASSIFICATION_TOML,
    Style,
    expires_text,
    relationships_toml,
)

if TYPE_CHECKING:
    from pipeline.simulate.cloudtrail import CloudTrail, Identity
    from pipeline.simulate.writer import Invocation

REGISTRY = "registry/accounts.csv"
JOB_ROLES = {
    "saas-nightly-export": "platform-export",
    "saas-billing-aggregator": "platform-billing",
}
_TENANT = re.compile(r"\bt\d{4}\b")


class Silo(Style):
    name = "silo"
    ticket = "CHG-4821"
    function_name = "account-authorizer"
    ops_bucket = "acme-saas-platform-artifacts"
    ops_table = "platform-config"

    def __init__(self, world: World) -> None:
        super().__init__(world)
        rng = ids.stream(self.spec.seed, "silo-accounts")
        taken = {self.platform, DATADOG_ACCOUNT}
        self.account: dict[str, str] = {}
        self.buckets: dict[str, str] = {}
        for t in world.tenants:
            acct = f"{rng.randrange(10**11, 10**12)}"
            while acct in taken:
                acct = f"{rng.randrange(10**11, 10**12)}"
            taken.add(acct)
            self.account[t.id] = acct
            self.buckets[t.id] = f"tenant-stack-appdatabucket-{ids.alnum(rng, 12).lower()}"
        self.tenant_of = {a: t for t, a in self.account.items()}
        self.org = "o-" + ids.alnum(rng, 10).lower()
        self._hops: dict[tuple[str, str], tuple[Identity, list[str]]] = {}
        self._issued: dict[str, int] = {}  # partners' sessions: access key id -> issued at

    # --- accounts -------------------------------------------------------------------------------

    def accounts(self) -> tuple[str, ...]:
        return (self.platform, *sorted(self.tenant_of))

    def in_org(self, account: str | None) -> bool:
        return account == self.platform or account in self.tenant_of

    def account_of(self, tenant: str) -> str:
        return self.account[tenant]

    def role_target(self, role: Role) -> str | None:
        return self.tenant_of.get(role.account)

    def trail_prefix(self, account: str) -> str:
        return f"AWSLogs/{self.org}/{account}/"

    def ct_file_stream(self, slot: int, account: str) -> tuple[object, ...]:
        return ("ct-file", slot, account)

    def digest_stream(self, account: str) -> tuple[object, ...]:
        return ("digest", account)

    def slot_seconds(self, account: str, busy_default: int) -> int:
        # A tenant's account is quiet next to the platform's: its files cover an hour.
        return busy_default if account == self.platform else 3600

    # --- data -----------------------------------------------------------------------------------

    def bucket(self, tenant: str) -> str:
        return self.buckets[tenant]

    def object_key(self, tenant: str, rel: str) -> str:
        return rel

    def table(self, tenant: str) -> str:
        return "items"

    def item_key(self, tenant: str, sk: str | None) -> dict[str, Any]:
        return {"pk": {"S": "INVOICES" if sk is None else sk}}

    # --- identities -----------------------------------------------------------------------------

    def _assume(
        self,
        ct: CloudTrail,
        rng: random.Random,
        ts: int,
        caller: Identity,
        role: Role,
        session: str,
        tenant: str | None,
        tags: dict[str, str] | None = None,
        ip: str | None = None,
        ua: str = LAMBDA_UA,
        mfa: bool = False,
    ) -> tuple[list[str], Identity]:
        ip = ip or self.world.lambda_ips[0]
        eids, akid = ct.assume_role(rng, ts, caller, ip, ua, role, session, tags=tags)
        return eids, ct.assumed(role, session, akid, ts, mfa=mfa, tenant=tenant)

    def user_creds(
        self, ct: CloudTrail, rng: random.Random, ts: int, user: User, analytics: bool = False
    ) -> tuple[list[str], Identity]:
        vendor = ct.function_identity(rng, "tenant-token-vendor", ts)
        name = "app-analytics" if analytics else "app-user"
        role = self.world.role_in(name, self.account[user.tenant])
        eids, ident = self._assume(ct, rng, ts, vendor, role, user.id, user.tenant)
        if user.id in self.world.consultant_tenants:
            self._issued[str(ident["accessKeyId"])] = ts
        return eids, ident

    def reports_creds(self, ct: CloudTrail, rng: random.Random, ts: int, user: User) -> Identity:
        caller = ct.function_identity(rng, "reports-service", ts)
        role = self.world.role_in("app-reports", self.account[user.tenant])
        return self._assume(ct, rng, ts, caller, role, user.id, user.tenant)[1]

    def acting_as(
        self, ct: CloudTrail, rng: random.Random, ts: int, ident: Identity, user: User, tenant: str
    ) -> tuple[Identity, list[str]]:
        # A partner works in a client's account through the client's partner-access role.
        if tenant == user.tenant or user.id not in self.world.consultant_tenants:
            return ident, []
        key = (str(ident["accessKeyId"]), tenant)
        got = self._hops.get(key)
        if got is not None:
            return got[0], []
        role = self.world.role_in("partner-access", self.account[tenant])
        # Never before the session it hops from was issued (a request may be logged a second
        # ahead of that AssumeRole).
        ts = max(ts, self._issued.get(key[0], ts))
        eids, hop = self._assume(ct, rng, ts, ident, role, user.id, user.tenant)
        self._hops[key] = (hop, eids)
        return hop, eids

    def job_creds(
        self,
        ct: CloudTrail,
        rng: random.Random,
        ts: int,
        job: str,
        fn_ident: Identity,
        tenant: str,
    ) -> tuple[Identity, list[str]]:
        role = self.world.role_in(JOB_ROLES[job], self.account[tenant])
        eids, ident = self._assume(ct, rng, ts, fn_ident, role, job, None)
        return ident, eids

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
        role = self.world.role_in("support-break-glass", self.account[tenant])
        tags = {"change_request": ticket} if ticket else None
        return self._assume(ct, rng, ts, caller, role, person, None, tags, ip, ua, mfa=True)[1]

    # --- API --------------------------------------------------------------------------------

    def domain(self, tenant: str) -> str:
        return "api.acme-saas.example"

    def route(self, template: str) -> str:
        return template.replace("/tenants/{tenantId}", "/v1/accounts/{accountId}")

    def path(self, template: str, tenant: str, item: str) -> str:
        path = self.route(template).replace("{accountId}", self.account[tenant])
        return f"/{STAGE}{path.replace('{id}', item)}"

    def arn_path(self, template: str, tenant: str) -> str:
        return (
            self.route(template).replace("{accountId}", self.account[tenant]).replace("{id}", "*")
        )

    def _acct(self, tenant: str) -> str:
        return self.account.get(tenant, "-")

    def access_log(self, msg: dict[str, str], tenant: str) -> dict[str, Any]:
        # A custom access-log format: $context variables under the SaaS's own names.
        return {
            "rid": msg["requestId"],
            "xrid": msg["extendedRequestId"],
            "src": msg["ip"],
            "epoch_ms": int(msg["requestTimeEpoch"]),
            "when": msg["requestTime"],
            "verb": msg["httpMethod"],
            "route": msg["resourcePath"],
            "uri": msg["path"],
            "code": int(msg["status"]),
            "proto": msg["protocol"],
            "resp_bytes": int(msg["responseLength"]),
            "latency_ms": int(msg["responseLatency"]),
            "agent": msg["userAgent"],
            "api": msg["apiId"],
            "stage": msg["stage"],
            "host": msg["domainName"],
            "principal": msg["authorizerPrincipalId"],
            "account": self._acct(msg["authorizerTenantId"]),
            "auth_error": msg["authorizerError"],
            "auth_latency": msg["authorizerLatency"],
            "auth_status": msg["authorizerStatus"],
        }

    def authorizer_fields(self, fields: dict[str, Any], tenant: str) -> dict[str, Any]:
        claim = fields["tenant_claim"]
        principal = fields["principal_id"]
        reason = _TENANT.sub(lambda m: self._acct(m.group(0)), fields["reason"])
        return {
            "invocation_id": fields["function_request_id"],
            "trace": fields["xray_trace_id"],
            "verdict": str(fields["decision"]).upper(),
            "why": reason.replace("tenant claim", "account claim").replace(
                "requested tenant", "path account"
            ),
            "sub": principal,
            "token_sha": fields["token_fingerprint"],
            # An expired token's claims are not trusted, so none are logged.
            "claims": None if claim == "-" else {"account": self._acct(claim), "sub": principal},
            "path_account": self._acct(tenant),
            "cache_key": fields["cache_key"],
            "route_arn": fields["method_arn"],
            "apigw_request_id": fields["request_id"],
        }

    def authorizer_line(self, inv: Invocation, first: bool, function_arn: str) -> dict[str, Any]:
        return {
            "level": "INFO" if inv.fields["verdict"] == "ALLOW" else "WARN",
            "ts": clock.iso_ms(inv.ts_ms + 2),
            "logger": "authz",
            "msg": "decision",
            "fn": self.function_name,
            "cold": first,
            **inv.fields,
        }

    # --- files ----------------------------------------------------------------------------------

    def files(self) -> dict[str, str]:
        rows = "".join(f"{a},{t}\n" for t, a in sorted(self.account.items()))
        services = "|".join(
            ("tenant-token-vendor", "reports-service", *JOB_ROLES, *JOB_ROLES.values())
        )
        approvers = '["ops-lead@acme-saas.example", "sec-oncall@acme-saas.example"]'
        rels = relationships_toml(
            self.world,
            # The platform's roles, and the platform's account as a tenant account sees it.
            service=f"^(?:arn:aws:sts::\\d{{12}}:assumed-role/({services})/"
            f"|aws-account:{self.platform}(?:/|$))",
            break_glass="^arn:aws:sts::\\d{12}:assumed-role/support-break-glass/",
            tickets='ticket_tag = "change_request"\n'
            f'tickets = [{{ id = "{self.ticket}", tenants = ["{self.world.ticket_tenant}"], '
            f"expires = {expires_text(self.world)}, approvers = {approvers} }}]\n",
        )
        return {
            "tenantwatch.toml": CONFIG.format(registry=REGISTRY, relationships=rels)
            + residency_toml(self.world)
            + CLASSIFICATION_TOML,
            REGISTRY: "account_id,tenant_id\n" + rows,
        }

    def describe(self, key: str, **kw: Any) -> str:
        text = _DESCRIPTIONS.get(key)
        if text is None:
            return super().describe(key, **kw)
        accounts = {f"acct_{k}": self.account[v] for k, v in kw.items() if v in self.account}
        return text.format(**kw, **accounts)


_DESCRIPTIONS = {
    "s3": "A user of {a} got app-analytics credentials in {a}'s account ({acct_a}); {b}'s bucket "
    "policy lets any app-analytics role of the organisation read it, so the user listed and read "
    "the bucket of {b}'s account ({acct_b}) with the AWS CLI from {ip}.",
    "cache_tail": "The backend's S3 reads appear in CloudTrail as {session} in {a}'s account "
    "({acct_a}) on the bucket of {b}'s account ({acct_b}).",
    "stuffing": "About 20 minutes of failed logins (401 on POST /v1/accounts/{acct_target}/session)"
    " from {n} addresses: a spike in {target}'s authorization failures.",
    "no_ticket": "Support engineer erik assumed support-break-glass in {tenant}'s account "
    "({acct_tenant}) without a change_request tag and read its data.",
    "consultant": "{name} (home tenant {home}) works for its declared clients {clients} through "
    "their accounts' partner-access role: API principal {name}; CloudTrail session name {name}.",
    "job": "{job} reaches every tenant's account through a cross-account role on schedule "
    "(declared service role).",
}

CONFIG = """\
# Written by `tenantwatch simulate --world silo`: how this SaaS puts tenants in its logs.
# Each tenant has an AWS account of its own; the platform account reaches into them through
# cross-account roles. The account is the only tenant signal, mapped by the registry below.

# The API's access-log format and the authorizer's log lines use their own field names.
[sources.apigateway]
request_id = "rid"
time = ["epoch_ms", "when"]
status = "code"
path = "uri"
http_method = "verb"
route = "route"
api_id = "api"
stage = "stage"
domain = "host"
principal = "principal"
tenant_claim = "account"
error = "auth_error"
source_ip = "src"
user_agent = "agent"

[sources.authorizer]
event_id = "invocation_id"
time = "ts"
decision = "verdict"
reason = "why"
method_arn = "route_arn"
principal = "sub"
token_fingerprint = "token_sha"
tenant_claim = "claims.account"
requested_tenant = "path_account"
request_id = "apigw_request_id"
function = "fn"

# The SaaS's account vending records: which account belongs to which tenant.
[[tenancy.lookup]]
name = "accounts"
file = "{registry}"
key = "account_id"
tenant = "tenant_id"

# The actor's tenant, in order of trust.
# The application's own roles in a tenant's account act for that tenant.
[[tenancy.actor]]
kind = "field"
source = "cloudtrail"
path = "userIdentity.accountId"
lookup = "accounts"
[tenancy.actor.when]
"userIdentity.sessionContext.sessionIssuer.userName" = ["app-user", "app-analytics", "app-reports"]

# The resource owner's copy of a cross-account call names the caller's account only.
[[tenancy.actor]]
kind = "field"
source = "cloudtrail"
path = "userIdentity.accountId"
lookup = "accounts"
when = {{ "userIdentity.type" = ["AWSAccount"] }}

# A role assumed from another account (a partner's partner-access session) acts for whoever
# assumed it; the platform's own roles in tenant accounts resolve to no tenant.
[[tenancy.actor]]
kind = "session_origin"

# The token's account claim, in access logs and in the authorizer's lines.
[[tenancy.actor]]
kind = "field"
source = "apigateway"
path = "account"
lookup = "accounts"

[[tenancy.actor]]
kind = "field"
source = "authorizer"
path = "claims.account"
lookup = "accounts"

# The target's tenant: the account that owns the resource.
[[tenancy.target]]
kind = "field"
source = "cloudtrail"
path = "resources[*].accountId"
lookup = "accounts"

[[tenancy.target]]
kind = "field"
source = "cloudtrail"
path = "recipientAccountId"
lookup = "accounts"

[[tenancy.target]]
kind = "api_path"
pattern = '^/v1/accounts/(?P<tenant>\\d{{12}})(?:/|$)'
lookup = "accounts"

# Relationships that make cross-tenant access legitimate.

{relationships}"""
