"""A reference Lambda authorizer (API Gateway REST, REQUEST type) that obeys tenantwatch's
containment table: what ``tenantwatch contain`` and automatic containment write takes effect on
the SaaS's API within the cache's TTL.

For each request it finds the subjects tenantwatch can contain:

- the **tenant** the request is for: the request path's ``tenant`` group
  (``TENANTWATCH_AUTHORIZER_TENANT_PATH``, default ``^/tenants/(?P<tenant>[^/]+)``), else a header
  (``TENANTWATCH_AUTHORIZER_TENANT_HEADER``); and the tenant the token claims
  (``TENANTWATCH_AUTHORIZER_TENANT_CLAIM``, default ``tenant_id``);
- the **principal**, a claim of the token (``TENANTWATCH_AUTHORIZER_PRINCIPAL_CLAIM``, default
  ``sub``);
- the **token**, by its fingerprint: ``sha256:`` and the first 16 hex digits of the SHA-256 of
  the bearer token (the digest ``pipeline.ingest.fingerprint`` gives a token found in a log;
  never the token itself);
- the source **address** API Gateway saw.

It reads each subject's entries (``<kind>#<value>``, one Query each) through an in-memory cache
(``TENANTWATCH_AUTHORIZER_CACHE_SECONDS``, default 30: an entry takes effect within that, and a
warm function makes at most one read per subject and period), and ignores an entry whose
``expires`` has passed, whether or not DynamoDB's TTL has deleted it yet. Then:

- an entry in mode ``suspend``: Deny;
- an entry in mode ``read-only``: Allow for GET, HEAD and OPTIONS, Deny for any other method;
- none: Allow.

The policy names this request's method and resource only, so a policy API Gateway caches for an
identity never allows more than the request it was made for. Its context names the containment
(``containmentId``, ``containmentMode``) when one applied.

**Fail mode.** When the table cannot be read (missing, refused, unreachable) and no earlier read
of the subject is in the cache (one is used, however old, and said so), the authorizer follows
``TENANTWATCH_AUTHORIZER_FAIL_MODE``: ``allow`` (the default) logs the error and decides as if
nothing were contained, so an outage of the containment table does not take the SaaS down with
it; ``deny`` refuses every request it cannot check, for a SaaS that prefers an outage to serving
a contained subject.

**Identity is the SaaS's own.** The token is verified by the SaaS's code:
``TENANTWATCH_AUTHORIZER_VERIFIER`` names it as ``module:function``, called with the bearer token
and returning its claims (a mapping), or None for a token it refuses (Deny). Without a verifier
every request is denied: a reference that allowed unverified tokens would be an open door. Which
tenants a token may act on is also the verifier's (or the API's) to decide; this authorizer only
takes away.

Each decision is logged as one JSON line in the fields tenantwatch reads from authorizer logs
(``[sources.authorizer]``'s defaults: ``decision``, ``reason``, ``principal_id``,
``token_fingerprint``, ``tenant_claim``, ``requested_tenant``, ``source_ip``, ``method_arn``),
so that its log group can be one of tenantwatch's sources.
"""

from __future__ import annotations

import hashlib
import importlib
import ipaddress
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "tenantwatch-authorizer"))

READS = ("GET", "HEAD", "OPTIONS")
FAIL_MODES = ("allow", "deny")
_BEARER = re.compile(r"(?i)^\s*bearer\s+(?P<token>\S+)\s*$")

Verifier = Callable[[str], Mapping[str, Any] | None]


def token_fingerprint(token: str) -> str:
    """``sha256:<16 hex>``: the same digest tenantwatch's ingest gives a token it finds in a log
    (``pipeline.ingest.fingerprint``, whose ``redacted:`` prefix marks where it replaced one)."""
    data = token.encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True)
class Settings:
    """The authorizer's environment, read once per cold start."""

    table: str
    cache_seconds: float = 30.0
    fail_mode: str = "allow"
    tenant_path: re.Pattern[str] | None = None
    tenant_header: str = ""
    tenant_claim: str = "tenant_id"
    principal_claim: str = "sub"
    verifier: str = ""

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Settings:
        p = "TENANTWATCH_AUTHORIZER_"
        fail = env.get(f"{p}FAIL_MODE", "allow").strip().lower() or "allow"
        if fail not in FAIL_MODES:
            raise ValueError(f"{p}FAIL_MODE: expected allow or deny, got {fail!r}")
        path = env.get(f"{p}TENANT_PATH", r"^/tenants/(?P<tenant>[^/]+)")
        pattern = re.compile(path) if path else None
        if pattern is not None and "tenant" not in pattern.groupindex:
            raise ValueError(f"{p}TENANT_PATH: the pattern needs a (?P<tenant>...) group")
        return cls(
            table=env.get("TENANTWATCH_CONTAINMENT_TABLE", "").strip(),
            cache_seconds=float(env.get(f"{p}CACHE_SECONDS", "30") or 30),
            fail_mode=fail,
            tenant_path=pattern,
            tenant_header=env.get(f"{p}TENANT_HEADER", "").strip(),
            tenant_claim=env.get(f"{p}TENANT_CLAIM", "tenant_id").strip(),
            principal_claim=env.get(f"{p}PRINCIPAL_CLAIM", "sub").strip() or "sub",
            verifier=env.get(f"{p}VERIFIER", "").strip(),
        )


# --- the table, through a cache ------------------------------------------------------------------


class TableUnreadable(Exception):
    """The containment table could not be read (the message says why)."""


@dataclass
class Containments:
    """Each subject's entries, read with one Query and kept ``ttl`` seconds. ``clock`` is
    monotonic seconds (tests pass their own)."""

    table: str
    ttl: float
    client: Callable[[], Any]
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, list[dict[str, Any]]]] = field(default_factory=dict)

    def entries(self, subject: str) -> tuple[list[dict[str, Any]], str | None]:
        """The subject's items, and a warning when they come from an earlier read because the
        table cannot be read now; ``TableUnreadable`` when there is no earlier read."""
        now = self.clock()
        cached = self._cache.get(subject)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1], None
        try:
            items = self._query(subject)
        except TableUnreadable as exc:
            if cached is None:
                raise
            return cached[1], f"using entries read {now - cached[0]:.0f}s ago: {exc}"
        self._cache[subject] = (now, items)
        return items, None

    def _query(self, subject: str) -> list[dict[str, Any]]:
        if not self.table:
            raise TableUnreadable("TENANTWATCH_CONTAINMENT_TABLE is not set")
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "subject = :s",
            "ExpressionAttributeValues": {":s": {"S": subject}},
        }
        items: list[dict[str, Any]] = []
        try:
            while True:
                page = self.client().query(**kwargs)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return items
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:  # botocore's errors, the network's, the service's
            raise TableUnreadable(f"{type(exc).__name__}: {exc}") from exc


def _new_client() -> Any:
    import boto3
    from botocore.config import Config

    # An authorizer answers within API Gateway's wait: short timeouts, one retry.
    cfg = Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard", "max_attempts": 2})
    return boto3.client("dynamodb", config=cfg)


# --- the decision --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the decision needs of a request."""

    method: str
    method_arn: str
    principal: str
    token_fingerprint: str
    requested_tenant: str | None
    tenant_claim: str | None
    source_ip: str | None

    def subjects(self) -> list[str]:
        """The containment table keys this request falls under, in a fixed order."""
        out = []
        for tenant in (self.requested_tenant, self.tenant_claim):
            if tenant and f"tenant#{tenant}" not in out:
                out.append(f"tenant#{tenant}")
        out.append(f"principal#{self.principal}")
        out.append(f"token#{self.token_fingerprint}")
        if self.source_ip:
            out.append(f"address#{self.source_ip}")
        return out


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str
    containment_id: str | None = None
    mode: str | None = None


def _expires_at(item: Mapping[str, Any]) -> float:
    try:
        return float(item["expires_at"]["N"])
    except (KeyError, TypeError, ValueError):
        pass
    from datetime import datetime

    try:
        text = str(item["expires"]["S"]).replace("Z", "+00:00")
        return datetime.fromisoformat(text).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0  # an entry without a readable expiry is taken as expired


def decide(
    request: Request,
    containments: Containments,
    fail_mode: str,
    now: float | None = None,
) -> tuple[Decision, list[str]]:
    """The decision for ``request``, and the warnings to log (reads that failed)."""
    wall = time.time() if now is None else now
    warnings: list[str] = []
    unchecked = False
    strongest: tuple[str, str, str] | None = None  # mode, containment id, subject
    for subject in request.subjects():
        try:
            items, warning = containments.entries(subject)
        except TableUnreadable as exc:
            warnings.append(f"containment table unreadable for {subject}: {exc}")
            if fail_mode == "deny":
                return Decision(
                    False, "containment could not be checked (fail mode deny)"
                ), warnings
            unchecked = True
            continue
        if warning:
            warnings.append(f"{subject}: {warning}")
        for item in items:
            if _expires_at(item) <= wall:
                continue  # past its expiry, even if DynamoDB has not deleted it yet
            mode = str(item.get("mode", {}).get("S", ""))
            cid = str(item.get("containment_id", {}).get("S", ""))
            if mode == "suspend":
                return Decision(False, f"suspended ({subject})", cid, mode), warnings
            if mode == "read-only" and strongest is None:
                strongest = (mode, cid, subject)
    if strongest is not None:
        mode, cid, subject = strongest
        if request.method.upper() in READS:
            return Decision(True, f"read-only ({subject}): a read", cid, mode), warnings
        return Decision(
            False, f"read-only ({subject}): {request.method} refused", cid, mode
        ), warnings
    if unchecked:
        return Decision(True, "containment could not be checked (fail mode allow)"), warnings
    return Decision(True, "not contained"), warnings


# --- the handler ---------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _settings() -> Settings:
    if "settings" not in _STATE:
        _STATE["settings"] = Settings.from_environ(os.environ)
    settings: Settings = _STATE["settings"]
    return settings


def containments() -> Containments:
    """This process's reader of the table (and its cache), made on first use."""
    if "containments" not in _STATE:
        settings = _settings()

        def client() -> Any:
            if "client" not in _STATE:
                _STATE["client"] = _new_client()
            return _STATE["client"]

        _STATE["containments"] = Containments(settings.table, settings.cache_seconds, client)
    containments: Containments = _STATE["containments"]
    return containments


def set_clock(wall: Callable[[], float] | None) -> None:
    """Judge expiries by ``wall`` (epoch seconds) instead of ``time.time`` (tests move time past
    an expiry rather than wait for it)."""
    _STATE["wall"] = wall


def _now() -> float:
    wall: Callable[[], float] | None = _STATE.get("wall")
    return wall() if wall is not None else time.time()


def set_verifier(verify: Verifier | None) -> None:
    """Use ``verify`` to check tokens (instead of ``TENANTWATCH_AUTHORIZER_VERIFIER``)."""
    _STATE["verifier"] = verify


def _verifier(settings: Settings) -> Verifier | None:
    if "verifier" not in _STATE:
        verify = None
        if settings.verifier:
            module, _, name = settings.verifier.partition(":")
            verify = getattr(importlib.import_module(module), name)
        _STATE["verifier"] = verify
    verifier: Verifier | None = _STATE["verifier"]
    return verifier


def _address(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _response(
    event: APIGatewayAuthorizerRequestEvent, principal: str, decision: Decision, tenant: str | None
) -> dict[str, Any]:
    arn = event.parsed_arn
    context: dict[str, Any] = {}
    if tenant:
        context["tenantId"] = tenant
    if decision.containment_id:
        context["containmentId"] = decision.containment_id
        context["containmentMode"] = decision.mode
    policy = APIGatewayAuthorizerResponse(
        principal_id=principal or "unknown",
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context=context or None,
        partition=arn.partition,
    )
    method = arn.http_method or "*"
    resource = arn.resource or "*"
    if decision.allow:
        policy.allow_route(method, resource)
    else:
        policy.deny_route(method, resource)
    return policy.asdict()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway's REQUEST authorizer entry point."""
    ev = APIGatewayAuthorizerRequestEvent(event)
    settings = _settings()
    headers = ev.headers  # case-insensitive
    header = headers.get("Authorization") or ""
    m = _BEARER.match(header)
    token = m["token"] if m else ""
    fingerprint = token_fingerprint(token) if token else None
    source_ip = _address(ev.request_context.identity.source_ip)
    requested = None
    if settings.tenant_path is not None and ev.path:
        found = settings.tenant_path.search(ev.path)
        requested = found["tenant"] if found else None
    if requested is None and settings.tenant_header:
        requested = _text(headers.get(settings.tenant_header))
    log: dict[str, Any] = {
        "method_arn": ev.method_arn,
        "token_fingerprint": fingerprint,
        "requested_tenant": requested,
        "source_ip": source_ip,
        "request_id": ev.request_context.request_id,
        "user_agent": ev.request_context.identity.user_agent,
    }
    verify = _verifier(settings)
    claims = verify(token) if (verify is not None and token) else None
    if claims is None:
        why = "no token verifier configured" if verify is None else "token refused"
        if not token:
            why = "no bearer token"
        logger.info("authorizer decision", extra={**log, "decision": "Deny", "reason": why})
        return _response(ev, "unknown", Decision(False, why), None)
    principal = _text(claims.get(settings.principal_claim)) or ""
    tenant_claim = _text(claims.get(settings.tenant_claim)) if settings.tenant_claim else None
    log.update(principal_id=principal or None, tenant_claim=tenant_claim)
    if not principal:
        why = f"the token has no {settings.principal_claim!r} claim"
        logger.info("authorizer decision", extra={**log, "decision": "Deny", "reason": why})
        return _response(ev, "unknown", Decision(False, why), tenant_claim)
    assert fingerprint is not None
    request = Request(
        method=ev.http_method,
        method_arn=ev.method_arn,
        principal=principal,
        token_fingerprint=fingerprint,
        requested_tenant=requested,
        tenant_claim=tenant_claim,
        source_ip=source_ip,
    )
    decision, warnings = decide(request, containments(), settings.fail_mode, _now())
    for w in warnings:
        logger.error(w, extra={"request_id": log["request_id"]})
    logger.info(
        "authorizer decision",
        extra={
            **log,
            "decision": "Allow" if decision.allow else "Deny",
            "reason": decision.reason,
            "containment_id": decision.containment_id,
        },
    )
    return _response(ev, principal, decision, tenant_claim)
