"""API Gateway REST access logs and the Lambda authorizer's decisions, with its result cache.

The authorizer (``tenant-authorizer``) validates the bearer token, compares the token's tenant
claim (plus the grants of parent companies and consultants) with the path's tenant, and returns
a policy scoped to the tenants it allows, with context ``{"tenantId": <claim>}``. API Gateway
caches that result for 300 s under the route's cache key:

- well-configured routes: identity source ``Authorization``, so the cache key is the token;
- ``/tenants/{tenantId}/reports``: identity source ``X-Client-Id`` (the reporting integration's
  client id), so the key omits both token and tenant, and its Allow policy is written for
  ``GET/tenants/*/reports`` - the two mistakes that ``authorizer_cache_reuse`` exploits.

A cache hit reuses the cached principal, tenant and policy; the authorizer does not run, so it
logs nothing and the access log's ``authorizerLatency`` is ``-``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pipeline.simulate import clock, ids
from pipeline.simulate.regions import api_of
from pipeline.simulate.world import CACHE_TTL_S, World
from pipeline.simulate.writer import Invocation, Sink

# Routes are named here in the pooled API's spelling; each world's ``Style`` says how its own API
# spells them (``route``) and what a request's path and host look like (``path``, ``domain``).
LOGIN = "/tenants/{tenantId}/session"
INVOICES = "/tenants/{tenantId}/invoices"
INVOICE = "/tenants/{tenantId}/invoices/{id}"
USERS = "/tenants/{tenantId}/users"
REPORTS = "/tenants/{tenantId}/reports"
ATTACHMENT = "/tenants/{tenantId}/attachments/{id}"
CLIENT_KEYED = frozenset({REPORTS})
_BODY_LEN = {401: 26, 403: 82, 404: 35, 429: 31, 500: 36, 502: 36}


@dataclass
class CacheEntry:
    start_ms: int
    principal: str
    claim: str
    allowed: frozenset[str] | None  # None: the policy's resource is wildcarded over tenants


@dataclass
class ApiSession:
    """One login: a bearer token (only its fingerprint is ever written) and the caller's
    address. ``cache`` holds API Gateway's cached authorizer results for this caller's keys."""

    principal: str
    claim: str
    allowed: frozenset[str]  # tenants the authorizer allows: the claim plus any grants
    token_fp: str
    expires_ms: int
    ip: str
    ua: str
    client_id: str
    cache: dict[str, CacheEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    request_id: str
    status: int
    authorizer_ran: bool


class Api:
    def __init__(self, world: World, sink: Sink) -> None:
        self.world = world
        self.style = world.style
        self.sink = sink
        self.account = world.spec.account

    def arn_prefix(self, tenant: str) -> str:
        """The method ARNs' prefix on the regional API that serves ``tenant``."""
        api, region = api_of(self.world, tenant)
        return f"arn:aws:execute-api:{region}:{self.account}:{api}/{self.style.stage}"

    def session(
        self,
        rng: random.Random,
        ts_ms: int,
        principal: str,
        claim: str,
        allowed: tuple[str, ...],
        ip: str,
        ua: str,
        client_id: str,
        lifetime_s: int = 3600,
    ) -> ApiSession:
        return ApiSession(
            principal=principal,
            claim=claim,
            allowed=frozenset((claim, *allowed)),
            token_fp=ids.fingerprint(ids.alnum(rng, 40)),
            expires_ms=ts_ms + lifetime_s * 1000,
            ip=ip,
            ua=ua,
            client_id=client_id,
        )

    def request(
        self,
        rng: random.Random,
        ts_ms: int,
        sess: ApiSession,
        method: str,
        route: str,
        tenant: str,
        item: str | None = None,
        status: int = 200,
        role_denied: bool = False,
    ) -> Result:
        """One request; ``status`` is what the backend would answer if the authorizer lets it
        through; ``role_denied``: the route needs a role the caller lacks, so the authorizer
        denies it (``insufficient_role``), and API Gateway caches that Deny for the token like
        any result. Returns the request id and the status the caller really got."""
        request_id = ids.uuid4(rng)
        principal = claim = auth_error = auth_latency = auth_status = "-"
        ran = False
        if route != LOGIN:
            key = ids.fingerprint(sess.client_id) if route in CLIENT_KEYED else sess.token_fp
            entry = sess.cache.get(key)
            unauthorized = False
            if entry is not None and entry.start_ms <= ts_ms < entry.start_ms + CACHE_TTL_S * 1000:
                principal, claim = entry.principal, entry.claim
                ok = entry.allowed is None or tenant in entry.allowed
            else:
                ran = True
                auth_latency = str(rng.randrange(3, 40))
                ok = self._authorize(
                    rng, ts_ms, sess, key, method, route, tenant, request_id, role_denied
                )
                unauthorized = ts_ms >= sess.expires_ms
                if not unauthorized:
                    # An exception ("Unauthorized") is not cached and carries no context.
                    principal, claim = sess.principal, sess.claim
                    allowed: frozenset[str] | None = sess.allowed if ok else frozenset()
                    if ok and route in CLIENT_KEYED:
                        allowed = None
                    sess.cache[key] = CacheEntry(ts_ms, sess.principal, sess.claim, allowed)
            if unauthorized:
                auth_error, auth_status, status = "Unauthorized", "401", 401
            else:
                auth_status = "200" if ok else "403"
                if not ok:
                    status = 403
        if status == 200:
            length = rng.randrange(1200, 24_000) if item is None else rng.randrange(300, 2400)
        else:
            length = _BODY_LEN.get(status, 40)
        latency = rng.randrange(18, 260) if status in (200, 201) else rng.randrange(2, 30)
        s = ts_ms // 1000
        style = self.style
        message = {
            "requestId": request_id,
            "extendedRequestId": ids.extended_request_id(rng),
            "ip": sess.ip,
            "caller": "-",
            "user": "-",
            "requestTime": clock.clf(s),
            "requestTimeEpoch": str(ts_ms),
            "httpMethod": method,
            "resourcePath": style.route(route),
            "path": style.path(route, tenant, item or "0"),
            "status": str(status),
            "protocol": "HTTP/1.1",
            "responseLength": str(length),
            "responseLatency": str(latency),
            "userAgent": sess.ua,
            "apiId": api_of(self.world, tenant)[0],
            "stage": style.stage,
            "domainName": style.domain(tenant),
            "authorizerPrincipalId": principal,
            "authorizerError": auth_error,
            "authorizerLatency": auth_latency,
            "authorizerStatus": auth_status,
            "authorizerTenantId": claim,
        }
        # The actor is whoever the authorizer's context names (a cached one included).
        truth = (None if claim == "-" else claim, tenant)
        self.sink.apigateway(ts_ms, style.access_log(message, tenant), request_id, truth)
        return Result(request_id, status, ran)

    def _authorize(
        self,
        rng: random.Random,
        ts_ms: int,
        sess: ApiSession,
        cache_key: str,
        method: str,
        route: str,
        tenant: str,
        request_id: str,
        role_denied: bool = False,
    ) -> bool:
        expired = ts_ms >= sess.expires_ms
        ok = not expired and tenant in sess.allowed and not role_denied
        if expired:
            reason = "token expired"
        elif role_denied:
            reason = "insufficient_role: the route needs tenant-admin"
        elif not ok:
            reason = f"tenant claim {sess.claim} does not match requested tenant {tenant}"
        elif tenant == sess.claim:
            reason = "tenant claim matches path"
        else:
            reason = "delegated access grant"
        resource = self.style.arn_path(route, tenant)
        # Two execution environments per 4-hour block: each one's first run is cold.
        env = (ts_ms // 14_400_000) * 2 + rng.randrange(2)
        duration_ms = rng.uniform(1.5, 30.0)
        function_request_id = ids.uuid4(rng)
        inv = Invocation(
            ts_ms=ts_ms,
            env=env,
            duration_ms=duration_ms,
            function_request_id=function_request_id,
            fields={
                "function_request_id": function_request_id,
                "xray_trace_id": f"1-{ts_ms // 1000:08x}-{ids.hex_id(rng, 24)}",
                "decision": "Allow" if ok else "Deny",
                "principal_id": "-" if expired else sess.principal,
                "token_fingerprint": sess.token_fp,
                "tenant_claim": "-" if expired else sess.claim,
                "requested_tenant": tenant,
                "cache_key": cache_key,
                "reason": reason,
                "method_arn": f"{self.arn_prefix(tenant)}/{method}{resource}",
                "request_id": request_id,
            },
        )
        inv.fields = self.style.authorizer_fields(inv.fields, tenant)
        truth = (None if expired else sess.claim, tenant)
        self.sink.authorizer(inv, function_request_id, truth)
        return ok


__all__ = ["Api", "ApiSession", "Result"]
