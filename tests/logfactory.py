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


# --- Amazon Security Lake: CloudTrail as OCSF Parquet ----------------------------------------

_OCSF_CLASS = {"ConsoleLogin": 3002, "CreateUser": 3001, "DeleteUser": 3001}


def ocsf_row(rec: dict[str, Any], *, keep_raw: bool = False) -> dict[str, Any]:
    """The OCSF 1.1 row Security Lake writes for the CloudTrail record ``rec`` (API Activity,
    Authentication or Account Change), mapped field by field as AWS maps them; what has no
    OCSF place goes to ``unmapped`` (dotted paths, values as text). ``keep_raw``: the record's
    JSON text in ``raw_data`` too."""
    from datetime import UTC, datetime

    rest = json.loads(json.dumps(rec))
    ident = rest.pop("userIdentity", None) or {}
    context = ident.pop("sessionContext", None) or {}
    issuer = context.pop("sessionIssuer", None) or {}
    attributes = context.pop("attributes", None) or {}

    def ms(text: str) -> int:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)

    created = attributes.pop("creationDate", None)
    mfa = attributes.pop("mfaAuthenticated", None)
    unmapped: dict[str, str] = {}
    for prefix, left in (
        (
            "userIdentity.sessionContext.sessionIssuer.",
            {k: v for k, v in issuer.items() if k != "arn"},
        ),
        ("userIdentity.sessionContext.attributes.", attributes),
        ("userIdentity.sessionContext.", context),
        ("userIdentity.", {k: v for k, v in ident.items() if k not in _IDENTITY_MAPPED}),
    ):
        for k, v in left.items():
            unmapped[prefix + k] = v if isinstance(v, str) else json.dumps(v)
    error, message = rest.pop("errorCode", None), rest.pop("errorMessage", None)
    request, response = rest.pop("requestParameters", None), rest.pop("responseElements", None)
    source_ip = rest.pop("sourceIPAddress", None)
    resources = rest.pop("resources", None)
    name = rest.pop("eventName")
    row = {
        "class_uid": _OCSF_CLASS.get(name, 6003),
        "metadata": {
            "product": {
                "name": "CloudTrail",
                "vendor_name": "AWS",
                "version": rest.pop("eventVersion", None),
                "feature": {"name": rest.pop("eventCategory", None)},
            },
            "uid": rest.pop("eventID", None),
            "version": "1.1.0",
            "event_code": rest.pop("eventType", None),
            "profiles": ["cloud", "datetime"],
        },
        "time": ms(rest.pop("eventTime")),
        "status": "Failure" if error else "Success",
        "api": {
            "operation": name,
            "version": rest.pop("apiVersion", None),
            "service": {"name": rest.pop("eventSource", None)},
            "request": {
                "uid": rest.pop("requestID", None),
                "data": None if request is None else json.dumps(request),
            },
            "response": {
                "error": error,
                "message": message,
                "data": None if response is None else json.dumps(response),
            },
        },
        "actor": {
            "user": {
                "type": ident.get("type"),
                "name": ident.get("userName"),
                "uid": ident.get("arn"),
                "uid_alt": ident.get("principalId"),
                "credential_uid": ident.get("accessKeyId"),
                "account": {"uid": ident.get("accountId")},
            },
            "session": {
                "created_time_dt": None
                if created is None
                else datetime.fromtimestamp(ms(created) / 1000, UTC),
                "is_mfa": None if mfa is None else mfa == "true",
                "issuer": issuer.get("arn"),
            },
            "invoked_by": ident.get("invokedBy"),
        },
        "src_endpoint": {
            "ip": source_ip if source_ip and source_ip[0].isdigit() else None,
            "domain": None if source_ip and source_ip[0].isdigit() else source_ip,
            "uid": rest.pop("vpcEndpointId", None),
        },
        "http_request": {"user_agent": rest.pop("userAgent", None)},
        "cloud": {
            "provider": "AWS",
            "region": rest.pop("awsRegion", None),
            "account": {"uid": rest.pop("recipientAccountId", None)},
        },
        "resources": None
        if resources is None
        else [
            {
                "uid": r.get("ARN"),
                "type": r.get("type"),
                "owner": {"account": {"uid": r.get("accountId")}},
            }
            for r in resources
        ],
        "observables": [{"name": "src_endpoint.ip", "type": "IP Address", "value": source_ip}],
        "unmapped": [
            (k, v if isinstance(v, str) else json.dumps(v)) for k, v in {**unmapped, **rest}.items()
        ],
        "raw_data": json.dumps(rec) if keep_raw else None,
        "accountid": ACCOUNT,
        "region": "us-east-1",
    }
    return row


_IDENTITY_MAPPED = (
    "type",
    "principalId",
    "arn",
    "accountId",
    "accessKeyId",
    "userName",
    "invokedBy",
)


def _ocsf_schema() -> Any:
    import pyarrow as pa

    s = pa.string()

    def struct(**fields: Any) -> Any:
        return pa.struct([(k, v) for k, v in fields.items()])

    return pa.schema(
        [
            ("class_uid", pa.int32()),
            (
                "metadata",
                struct(
                    product=struct(name=s, vendor_name=s, version=s, feature=struct(name=s)),
                    uid=s,
                    version=s,
                    event_code=s,
                    profiles=pa.list_(s),
                ),
            ),
            ("time", pa.int64()),
            ("status", s),
            (
                "api",
                struct(
                    operation=s,
                    version=s,
                    service=struct(name=s),
                    request=struct(uid=s, data=s),
                    response=struct(error=s, message=s, data=s),
                ),
            ),
            (
                "actor",
                struct(
                    user=struct(
                        type=s, name=s, uid=s, uid_alt=s, credential_uid=s, account=struct(uid=s)
                    ),
                    session=struct(
                        created_time_dt=pa.timestamp("ms", tz="UTC"), is_mfa=pa.bool_(), issuer=s
                    ),
                    invoked_by=s,
                ),
            ),
            ("src_endpoint", struct(ip=s, domain=s, uid=s)),
            ("http_request", struct(user_agent=s)),
            ("cloud", struct(provider=s, region=s, account=struct(uid=s))),
            (
                "resources",
                pa.list_(struct(uid=s, type=s, owner=struct(account=struct(uid=s)))),
            ),
            ("observables", pa.list_(struct(name=s, type=s, value=s))),
            ("unmapped", pa.map_(s, s)),
            ("raw_data", s),
            ("accountid", s),
            ("region", s),
        ]
    )


def security_lake_file(
    root: Path,
    rows: list[dict[str, Any]],
    *,
    day: str = "20261116",
    region: str = "us-east-1",
    name: str = "part-0000.zstd.parquet",
) -> Path:
    """OCSF rows as Security Lake lays them out under ``root`` (a bucket's folder):
    ``aws/CLOUD_TRAIL_MGMT/2.0/region=<r>/accountId=<a>/eventDay=<day>/<name>``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "aws/CLOUD_TRAIL_MGMT/2.0" / f"region={region}" / f"accountId={ACCOUNT}"
    path = folder / f"eventDay={day}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, _ocsf_schema()), path, compression="zstd")
    return path
