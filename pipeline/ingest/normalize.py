"""One decoded record -> one normalized row (DESIGN.md "Normalized events").

Each ``*_row`` function returns a tuple in ``ROW_FIELDS`` order: the event columns that need no
configuration, then ``h_*`` hint columns (role session name, S3 key, API path, token claim ...)
from which ``tenancy`` resolves tenants, vectorised, with the configured strategies. Time stays
text here and is parsed per batch (``timeparse``). A record that cannot become a row raises
``Unusable`` with a stable reason code; the caller quarantines it.

Logs are hostile input: every value is read defensively (``_s`` turns whatever JSON type a vendor
put there into a string or None) and nothing here interprets a value as a path or markup.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

ROW_FIELDS = (
    "event_id",
    "event_time",
    "source",
    "event_kind",
    "service",
    "action",
    "actor_principal",
    "actor_type",
    "actor_session",
    "resource",
    "outcome",
    "error_code",
    "status_code",
    "source_ip",
    "user_agent",
    "account_id",
    "region",
    "request_id",
    "raw",
    # hints for tenant resolution; never stored
    "h_role_name",
    "h_session_name",
    "h_role_arn",
    "h_source_identity",
    "h_claim",
    "h_s3_bucket",
    "h_s3_key",
    "h_ddb_table",
    "h_ddb_key",
    "h_api_path",
    "h_host",
    "h_arns",
    "h_headers",
)
HINT_FIELDS = tuple(f for f in ROW_FIELDS if f.startswith("h_"))

ASSUME_ROLE_EVENTS = frozenset({"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"})
_EVENT_KINDS = {
    "AwsApiCall": "api_call",
    "AwsConsoleSignIn": "console_signin",
    "AwsServiceEvent": "service_event",
    "AwsCloudTrailInsight": "insight",
    "AwsConsoleAction": "console_action",
    "AwsVpceEvent": "vpce_event",
}
_DENIED = re.compile(r"(?i)accessdenied|unauthori[sz]ed|forbidden|notauthori[sz]ed|not_authorized")
_ASSUMED = re.compile(r"^arn:[\w-]+:sts::[^:]*:assumed-role/([^/]+)/(.+)$")
_S3_ARN = re.compile(r"^arn:[\w-]+:s3:::([^/]+)(?:/(.*))?$")


class Unusable(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _s(value: Any) -> str | None:
    """Any JSON scalar as a string; None for null, "" and the access-log placeholder "-"."""
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object, also when a vendor stored it as a JSON string."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.startswith("{"):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def synthetic_id(raw: bytes) -> str:
    """A stable id for records that lack one: the same bytes give the same id (so re-delivered
    copies dedup), different bytes differ."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def _first_string_value(attrs: Any) -> str | None:
    """The first string in a DynamoDB attribute map: {"pk": {"S": "TENANT#t1"}} -> "TENANT#t1"."""
    if isinstance(attrs, dict):
        for v in attrs.values():
            if isinstance(v, dict):
                s = v.get("S")
                if isinstance(s, str):
                    return s
            elif isinstance(v, str):
                return v
    return None


# --- CloudTrail ------------------------------------------------------------------------------


def cloudtrail_row(rec: dict[str, Any], raw: bytes) -> tuple[Any, ...]:
    ident = _obj(rec.get("userIdentity"))
    time_text = _s(rec.get("eventTime")) or _s(rec.get("@timestamp"))
    if time_text is None:
        raise Unusable("missing_event_time", "no eventTime (nor @timestamp)")
    event_id = _s(rec.get("eventID")) or synthetic_id(raw)
    event_name = _s(rec.get("eventName"))
    source = _s(rec.get("eventSource"))
    insight = rec.get("insightDetails")
    if isinstance(insight, dict) and event_name is None:
        # Insights events name the API they are about inside insightDetails.
        source = _s(insight.get("eventSource"))
        state = _s(insight.get("state"))
        name = _s(insight.get("eventName"))
        event_name = f"{name} ({state})" if name and state else name
    if event_name is None and source is None:
        raise Unusable("missing_event_name", "neither eventName nor eventSource")

    arn = _s(ident.get("arn"))
    itype = _s(ident.get("type"))
    principal = arn or _s(ident.get("invokedBy")) or _s(ident.get("principalId"))
    if principal is None and itype is not None:
        principal = f"{itype}:{_s(ident.get('accountId')) or 'unknown'}"
    session = _obj(ident.get("sessionContext"))
    issuer = _obj(session.get("sessionIssuer"))
    role_name = session_name = None
    if arn:
        m = _ASSUMED.match(arn)
        if m:
            role_name, session_name = m.group(1), m.group(2)
    role_arn = _s(issuer.get("arn"))

    error_code = _s(rec.get("errorCode"))
    response = _obj(rec.get("responseElements"))
    if error_code is None:
        login = response.get("ConsoleLogin")
        outcome = "denied" if login == "Failure" else "success"
        if login == "Failure":
            error_code = "ConsoleLoginFailure"
    else:
        outcome = "denied" if _DENIED.search(error_code) else "error"

    params = _obj(rec.get("requestParameters"))
    bucket = _s(params.get("bucketName"))
    key = params.get("key")
    s3_key = _s(key) if isinstance(key, str) else _s(params.get("prefix"))
    ddb_table = _s(params.get("tableName"))
    ddb_key = None
    if ddb_table is not None:
        ddb_key = _first_string_value(params.get("key")) or _first_string_value(
            params.get("expressionAttributeValues")
        )
    arns: list[str] = []
    resources = rec.get("resources")
    if isinstance(resources, list):
        for r in resources:
            if isinstance(r, dict):
                a = _s(r.get("ARN") or r.get("arn"))
                if a:
                    arns.append(a)
                    if bucket is None:
                        m3 = _S3_ARN.match(a)
                        if m3:
                            bucket = m3.group(1)
                            s3_key = s3_key or m3.group(2)
    if bucket is not None:
        resource: str | None = f"s3://{bucket}/{s3_key}" if s3_key else f"s3://{bucket}"
    elif ddb_table is not None:
        resource = f"dynamodb:{ddb_table}/{ddb_key}" if ddb_key else f"dynamodb:{ddb_table}"
    else:
        resource = arns[0] if arns else None

    network = _obj(rec.get("network"))
    http = _obj(rec.get("http"))
    client = _obj(network.get("client"))
    event_type = _s(rec.get("eventType"))
    return (
        event_id,
        time_text,
        "cloudtrail",
        _EVENT_KINDS.get(event_type or "", (event_type or "unknown").lower()),
        source,
        event_name,
        principal,
        itype,
        _s(ident.get("accessKeyId")),
        resource,
        outcome,
        error_code,
        None,
        _s(rec.get("sourceIPAddress")) or _s(client.get("ip")),
        _s(rec.get("userAgent")) or _s(http.get("useragent")),
        _s(rec.get("recipientAccountId")) or _s(ident.get("accountId")),
        _s(rec.get("awsRegion")),
        _s(rec.get("requestID")) or _s(http.get("request_id")),
        raw,
        role_name,
        session_name,
        role_arn,
        _s(session.get("sourceIdentity")) or _s(rec.get("sourceIdentity")),
        None,
        bucket,
        s3_key,
        ddb_table,
        ddb_key,
        None,
        None,
        " ".join(arns) if arns else None,
        None,
    )


def assumed_session(rec: dict[str, Any]) -> tuple[str, dict[str, str], str | None] | None:
    """For a successful AssumeRole*: (new access key id, session tags, expiration text)."""
    if rec.get("eventName") not in ASSUME_ROLE_EVENTS or rec.get("errorCode"):
        return None
    creds = _obj(rec.get("responseElements")).get("credentials")
    key_id = _s(creds.get("accessKeyId")) if isinstance(creds, dict) else None
    if key_id is None:
        return None
    params = _obj(rec.get("requestParameters"))
    tags: dict[str, str] = {}
    raw_tags = params.get("tags")
    if isinstance(raw_tags, list):
        for t in raw_tags:
            if isinstance(t, dict):
                k, v = _s(t.get("key") or t.get("Key")), _s(t.get("value") or t.get("Value"))
                if k and v:
                    tags[k] = v
    principal_tags = params.get("principalTags")
    if isinstance(principal_tags, dict):
        for k, v in principal_tags.items():
            if _s(v):
                tags.setdefault(str(k), str(_s(v)))
    return key_id, tags, _s(creds.get("expiration")) if isinstance(creds, dict) else None


# --- API Gateway access logs -----------------------------------------------------------------


def _authorizer_value(rec: dict[str, Any], key: str) -> Any:
    """A context value as access-log formats commonly name it: authorizerTenantId,
    authorizer.tenantId or authorizer_tenantId (the name is whatever the format chose)."""
    for name in (f"authorizer{key[:1].upper()}{key[1:]}", f"authorizer.{key}", f"authorizer_{key}"):
        if name in rec:
            return rec[name]
    nested = rec.get("authorizer")
    return nested.get(key) if isinstance(nested, dict) else None


def access_log_row(
    rec: dict[str, Any], raw: bytes, claim_key: str, headers: tuple[str, ...] = ()
) -> tuple[Any, ...]:
    event_id = _s(rec.get("requestId"))
    if event_id is None:
        raise Unusable("missing_request_id", "access-log line without requestId")
    time_text = _s(rec.get("requestTimeEpoch")) or _s(rec.get("requestTime"))
    if time_text is None:
        raise Unusable("missing_event_time", "access-log line without requestTime")
    status_text = _s(rec.get("status"))
    try:
        status = int(status_text) if status_text is not None else None
    except ValueError:
        status = None
    if status is not None and not 100 <= status <= 599:
        status = None
    if status is None:
        outcome = "error"
    elif status in (401, 403):
        outcome = "denied"
    elif status < 400:
        outcome = "success"
    else:
        outcome = "error"
    api, stage = _s(rec.get("apiId")), _s(rec.get("stage"))
    path = _s(rec.get("path"))
    api_path = path
    if path and stage and path.startswith(f"/{stage}/"):
        api_path = path[len(stage) + 1 :]
    method = _s(rec.get("httpMethod"))
    route = _s(rec.get("resourcePath")) or _s(rec.get("routeKey"))
    principal = _s(_authorizer_value(rec, "principalId")) or _s(rec.get("user"))
    error_code = _s(_authorizer_value(rec, "error"))
    if error_code is None and status is not None and status >= 400:
        error_code = str(status)
    return (
        event_id,
        time_text,
        "apigateway",
        "access_log",
        f"execute-api:{api}/{stage}" if api else "execute-api",
        f"{method} {route}" if method and route and " " not in route else (route or method),
        principal,
        "token" if principal else None,
        None,
        path,
        outcome,
        error_code,
        status,
        _s(rec.get("ip")) or _s(rec.get("sourceIp")),
        _s(rec.get("userAgent")),
        _s(rec.get("accountId")),
        None,
        event_id,
        raw,
        None,
        None,
        None,
        None,
        _s(_authorizer_value(rec, claim_key)),
        None,
        None,
        None,
        None,
        api_path,
        _s(rec.get("domainName")),
        None,
        next((_s(rec[h]) for h in headers if _s(rec.get(h))), None),
    )


# --- Lambda authorizer logs (Powertools Logger JSON) -----------------------------------------

_METHOD_ARN = re.compile(
    r"^arn:[\w-]+:execute-api:([^:]*):([^:]*):([^/]+)/([^/]+)/([A-Z*]+)(/.*)?$"
)


def authorizer_row(rec: dict[str, Any], raw: bytes) -> tuple[Any, ...]:
    event_id = _s(rec.get("function_request_id")) or _s(rec.get("request_id"))
    event_id = event_id or synthetic_id(raw)
    time_text = _s(rec.get("timestamp"))
    if time_text is None:
        raise Unusable("missing_event_time", "authorizer log line without timestamp")
    decision = (_s(rec.get("decision")) or "").lower()
    method_arn = _s(rec.get("method_arn"))
    region = account = method = path = None
    if method_arn:
        m = _METHOD_ARN.match(method_arn)
        if m:
            region, account, _api, _stage, method, path = m.groups()
    function = _s(rec.get("function_name")) or _s(rec.get("service")) or "authorizer"
    return (
        event_id,
        time_text,
        "authorizer",
        "authorizer_decision",
        f"lambda:{function}",
        f"authorize {method} {path}" if method and path else "authorize",
        _s(rec.get("principal_id")),
        "token",
        _s(rec.get("token_fingerprint")),
        path or method_arn,
        "success" if decision == "allow" else "denied" if decision == "deny" else "error",
        None if decision == "allow" else (_s(rec.get("reason")) or decision or None),
        None,
        _s(rec.get("source_ip")),
        _s(rec.get("user_agent")),
        account,
        region,
        _s(rec.get("request_id")),
        raw,
        None,
        None,
        None,
        None,
        _s(rec.get("tenant_claim")),
        None,
        None,
        None,
        None,
        path,
        None,
        None,
        None,
    )
