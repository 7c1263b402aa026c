"""Small, readable log records for tests, shaped like the real thing (see sample_logs/)."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
from pathlib import Path
from typing import Any

ACCOUNT = "111122223333"
_ids = itertools.count(1)


def ct(
    event_name: str = "GetObject",
    *,
    time: str = "2026-11-16T10:00:00Z",
    session: str = "usr-aaaa",
    role: str = "tenant-scoped-access",
    key_id: str = "ASIAEXAMPLE0000001",
    bucket: str = "acme-saas-tenant-data",
    key: str | None = "tenants/t0001/invoices/1.pdf",
    error: str | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A CloudTrail record of an assumed-role session acting on S3."""
    rec: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": f"AROAEXAMPLE:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
            "accountId": ACCOUNT,
            "accessKeyId": key_id,
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
                    "userName": role,
                },
                "attributes": {"creationDate": time, "mfaAuthenticated": "false"},
            },
        },
        "eventTime": time,
        "eventSource": "s3.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-sdk-python/1.35",
        "requestParameters": {"bucketName": bucket, **({"key": key} if key else {})},
        "responseElements": None,
        "requestID": f"REQ{next(_ids):012d}",
        "eventID": event_id or f"00000000-0000-4000-8000-{next(_ids):012d}",
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": False,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Data",
    }
    if error:
        rec["errorCode"] = error
        rec["errorMessage"] = "Access Denied"
    rec.update(extra)
    return rec


def assume_role(
    *,
    tenant: str = "t0001",
    session: str = "usr-aaaa",
    new_key_id: str = "ASIAEXAMPLE0000001",
    time: str = "2026-11-16T09:59:00Z",
    role: str = "tenant-scoped-access",
) -> dict[str, Any]:
    """The token vendor assuming the tenant role with a tenant_id session tag."""
    rec = ct(
        "AssumeRole",
        time=time,
        session="vendor",
        role="tenant-token-vendor",
        key_id="ASIAVENDOR00000000",
        key=None,
    )
    rec["eventSource"] = "sts.amazonaws.com"
    rec["requestParameters"] = {
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
        "roleSessionName": session,
        "durationSeconds": 3600,
        "tags": [{"key": "tenant_id", "value": tenant}],
    }
    rec["responseElements"] = {
        "credentials": {
            "accessKeyId": new_key_id,
            "sessionToken": "IQoJb3JpZ2luX2VjSECRETSESSIONTOKENVALUE0123456789",
            "expiration": "Nov 16, 2026, 10:59:00 AM",
        },
        "assumedRoleUser": {
            "assumedRoleId": f"AROAEXAMPLE:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        },
    }
    rec["resources"] = [{"ARN": f"arn:aws:iam::{ACCOUNT}:role/{role}", "type": "AWS::IAM::Role"}]
    return rec


def identity(account: str, role: str, key: str, session: str = "s") -> dict[str, Any]:
    """The ``userIdentity`` of a session of ``role`` in ``account`` (access key ``key``)."""
    return {
        "type": "AssumedRole",
        "principalId": f"AROAEXAMPLE:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
        "accountId": account,
        "accessKeyId": key,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "arn": f"arn:aws:iam::{account}:role/{role}",
                "accountId": account,
                "userName": role,
            }
        },
    }


def assume(caller: dict[str, Any], into: str, role: str, new_key: str, time: str) -> dict[str, Any]:
    """An AssumeRole by ``caller`` of ``role`` in account ``into``, as the caller's account
    logs it."""
    rec = ct("AssumeRole", time=time, key=None, userIdentity=caller)
    rec.update(
        eventSource="sts.amazonaws.com",
        recipientAccountId=caller["accountId"],
        requestParameters={"roleArn": f"arn:aws:iam::{into}:role/{role}", "roleSessionName": "s"},
        responseElements={
            "credentials": {"accessKeyId": new_key, "expiration": "Nov 16, 2026, 11:59:00 AM"}
        },
    )
    return rec


def access_log(
    *,
    tenant_path: str = "t0001",
    claim: str | None = "t0001",
    status: int = 200,
    principal: str = "usr-aaaa",
    request_id: str | None = None,
    when: str = "16/Nov/2026:10:00:00 +0000",
) -> dict[str, Any]:
    """An API Gateway REST access-log message (numbers as strings, '-' for empty)."""
    return {
        "requestId": request_id or f"req-{next(_ids):08d}",
        "ip": "203.0.113.9",
        "caller": "-",
        "user": "-",
        "requestTime": when,
        "httpMethod": "GET",
        "resourcePath": "/tenants/{tenantId}/invoices",
        "path": f"/prod/tenants/{tenant_path}/invoices",
        "status": str(status),
        "protocol": "HTTP/1.1",
        "responseLength": "123",
        "userAgent": "Mozilla/5.0",
        "apiId": "a1b2c3d4e5",
        "stage": "prod",
        "authorizerPrincipalId": principal,
        "authorizerError": "-",
        "authorizerLatency": "12",
        "authorizerStatus": "200",
        "authorizerTenantId": claim or "-",
    }


def authorizer_log(
    *,
    decision: str = "Deny",
    claim: str = "t0001",
    requested: str = "t0002",
    principal: str = "usr-aaaa",
) -> dict[str, Any]:
    """A Powertools Logger line from the Lambda authorizer."""
    return {
        "level": "INFO",
        "location": "handler:42",
        "message": "authorization decision",
        "timestamp": "2026-11-16 10:00:00,123+0000",
        "service": "tenant-authorizer",
        "cold_start": False,
        "function_name": "tenant-authorizer",
        "function_request_id": f"fn-{next(_ids):08d}",
        "decision": decision,
        "principal_id": principal,
        "token_fingerprint": "sha256:0123456789abcdef",
        "tenant_claim": claim,
        "requested_tenant": requested,
        "reason": "tenant claim does not match path" if decision == "Deny" else "ok",
        "method_arn": (
            f"arn:aws:execute-api:us-east-1:{ACCOUNT}:a1b2c3d4e5/prod/GET/tenants/{requested}/invoices"
        ),
        "request_id": f"req-{next(_ids):08d}",
    }


def delivery_file(path: Path, records: list[dict[str, Any]], *, compress: bool = True) -> Path:
    """A CloudTrail S3 delivery file: {"Records": [...]}, gzipped."""
    body = json.dumps({"Records": records}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(body, mtime=0) if compress else body)
    return path


def lines_file(path: Path, objs: list[dict[str, Any]], *, cwl_export: bool = False) -> Path:
    """JSON lines; with cwl_export, each prefixed by a timestamp as CloudWatch Logs exports do."""
    prefix = "2026-11-16T10:00:00.000Z " if cwl_export else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{prefix}{json.dumps(o)}\n" for o in objs))
    return path


def cwl_subscription(
    objs: list[dict[str, Any]],
    *,
    log_group: str = "/aws/lambda/tenant-authorizer",
    timestamp_ms: int = 1763287200000,
) -> dict[str, Any]:
    """A CloudWatch Logs subscription payload as Lambda receives it (base64 of gzip), its log
    events ``timestamp_ms`` onwards, a second apart."""
    payload = {
        "messageType": "DATA_MESSAGE",
        "owner": ACCOUNT,
        "logGroup": log_group,
        "logStream": "2026/11/16/[$LATEST]abc",
        "subscriptionFilters": ["tw"],
        "logEvents": [
            {
                "id": f"{timestamp_ms + 1000 * i:056d}",
                "timestamp": timestamp_ms + 1000 * i,
                "message": json.dumps(o),
            }
            for i, o in enumerate(objs)
        ],
    }
    return cwl_encoded(payload)


def cwl_encoded(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` as CloudWatch Logs hands it to Lambda: ``awslogs.data``, base64 of gzip."""
    data = base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()
    return {"awslogs": {"data": data}}


def nested(depth: int) -> dict[str, Any]:
    """A JSON object nested ``depth`` levels deep: {"a": {"a": ... 1}}."""
    value: dict[str, Any] = {"a": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def gzip_cut(whole: bytes, at: int) -> bytes:
    """A gzip stream of ``whole`` that ends (no trailer) a little after its first ``at`` bytes:
    they are flushed to a byte boundary first, so a reader gets them back whole, and then
    the stream breaks off a few bytes into the rest (too few to hold another record)."""
    import zlib

    z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = z.compress(whole[:at]) + z.flush(zlib.Z_FULL_FLUSH)
    tail = z.compress(whole[at:]) + z.flush()
    return head + tail[:8]
