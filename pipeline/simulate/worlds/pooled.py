"""pooled: every tenant in one account, one bucket and one table, tenant ids in the data.

The layout ``pipeline.simulate``'s docstring describes: session tags (``tenant_id``) set when the
token vendor assumes ``tenant-scoped-access``, ``tenants/<id>/`` S3 prefixes, ``TENANT#<id>``
DynamoDB partition keys, ``/tenants/{id}`` API paths and the REST API's standard access-log and
Powertools field names. Everything is the base ``Style``; this module adds its configuration.
"""

from __future__ import annotations

from pipeline.simulate.regions import residency_toml
from pipeline.simulate.worlds.base import (
    CLASSIFICATION_TOML,
    Style,
    expires_text,
    relationships_toml,
)

# The break-glass ticket's two approvers (the relationship's default ``approvals_required``) and
# why support was let in.
APPROVERS = '["ops-lead@acme-saas.example", "sec-oncall@acme-saas.example"]'
JUSTIFICATION = "Customer asked support to restore deleted invoices"

CONFIG = """\
# Written by `tenantwatch simulate` (world "pooled"): how this SaaS puts tenants in its logs.
# Every tenant shares one account, one S3 bucket and one DynamoDB table; tenant ids are in the
# data itself (key prefixes, partition keys, API paths) and in a session tag.

# The access-log and authorizer-log fields, as the REST API's access-log format and Powertools
# Logger name them. The token's tenant claim in access logs comes from the authorizer_context
# strategy's key below (authorizerTenantId).
[sources.apigateway]
request_id = "requestId"
time = ["requestTimeEpoch", "requestTime"]
status = "status"
path = "path"
http_method = "httpMethod"
route = "resourcePath"
api_id = "apiId"
stage = "stage"
domain = "domainName"
principal = "authorizerPrincipalId"
error = "authorizerError"
source_ip = "ip"
user_agent = "userAgent"

[sources.authorizer]
event_id = ["function_request_id", "request_id"]
time = "timestamp"
decision = "decision"
reason = "reason"
method_arn = "method_arn"
principal = "principal_id"
token_fingerprint = "token_fingerprint"
tenant_claim = "tenant_claim"
requested_tenant = "requested_tenant"
request_id = "request_id"
function = "function_name"

[tenancy]
session_ttl_hours = 12.0

# The actor's tenant, in order of trust.
# The token vendor tags each user's session (tenant_id) when it assumes tenant-scoped-access or
# tenant-analytics; later calls are joined to the tag by access key id.
[[tenancy.actor]]
kind = "session_tag"
key = "tenant_id"

# The reports service names the tenant in the session name of tenant-reports.
[[tenancy.actor]]
kind = "role_session_name"
pattern = '^tenant-(?P<tenant>t\\d{{4}})-'
roles = ["tenant-reports"]

# The authorizer's context (access logs) and the token's tenant claim (authorizer logs).
[[tenancy.actor]]
kind = "authorizer_context"
key = "tenantId"

# The target's tenant: the data names it.
[[tenancy.target]]
kind = "s3_key"
pattern = '^tenants/(?P<tenant>[^/]+)/'

[[tenancy.target]]
kind = "dynamodb_key"
pattern = '^TENANT#(?P<tenant>[^#]+)'

[[tenancy.target]]
kind = "api_path"
pattern = '^/tenants/(?P<tenant>[^/]+)'

# Relationships that make cross-tenant access legitimate.

{relationships}"""


class Pooled(Style):
    name = "pooled"

    def files(self) -> dict[str, str]:
        acct = self.platform
        rels = relationships_toml(
            self.world,
            service=f"^arn:aws:sts::{acct}:assumed-role/saas-(nightly-export|billing-aggregator)/",
            break_glass=f"^arn:aws:sts::{acct}:assumed-role/support-break-glass/",
            tickets="ticket_pattern = '(?P<ticket>[A-Z]+-\\d+)'\n"
            f'tickets = [{{ id = "{self.ticket}", tenants = ["{self.world.ticket_tenant}"], '
            f"expires = {expires_text(self.world)}, approvers = {APPROVERS}, "
            f'justification = "{JUSTIFICATION}" }}]\n',
        )
        return {
            "tenantwatch.toml": CONFIG.format(relationships=rels)
            + residency_toml(self.world)
            + CLASSIFICATION_TOML
        }
