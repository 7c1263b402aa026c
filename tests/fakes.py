"""What AWS hands the Lambda functions, for tests: a context with a remaining time we control,
the events EventBridge delivers (a Scheduler tick, an S3 "Object Created") and the request API
Gateway sends a REQUEST authorizer; and the reference authorizer (infra/authorizer/app.py), a
fresh copy of its module (its cache and clients) per call."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any

from tests.conftest import REPO


@dataclass
class FakeContext:
    """What Powertools reads from a Lambda context, with a remaining time we control."""

    remaining: Callable[[], int] = lambda: 900_000
    function_name: str = "tenantwatch-scheduled"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tw"
    aws_request_id: str = "c0ffee00-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining()


def _z(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduler_event(when: datetime, execution_id: str = "e-1") -> dict[str, Any]:
    """What the stack's Scheduler target sends (infra/template.yaml, placeholders filled)."""
    return {
        "version": "0",
        "id": execution_id,
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": _z(when),
        "region": "us-east-1",
        "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/tw-tick"],
        "detail": {"attempt": "1"},
    }


def object_created(bucket: str, key: str, when: datetime, size: int = 10) -> dict[str, Any]:
    """S3 -> EventBridge "Object Created", as AWS documents it."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": _z(when),
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": "b1946ac9", "sequencer": "00617F08"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "cloudtrail.amazonaws.com",
            "source-ip-address": "203.0.113.15",
            "reason": "PutObject",
        },
    }


API_ID = "a1b2c3d4e5"


def authorizer_request(
    method: str = "GET",
    path: str = "/tenants/t0001/invoices",
    token: str | None = "tok-alice",  # noqa: S107 - what the tests' token check takes
    source_ip: str = "198.51.100.20",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What API Gateway (REST) sends a REQUEST authorizer for ``method path`` on stage prod."""
    hdrs = {"Authorization": f"Bearer {token}"} if token is not None else {}
    hdrs.update(headers or {})
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:{API_ID}/prod/{method}{path}",
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
        "pathParameters": {},
        "stageVariables": {},
        "requestContext": {
            "path": f"/prod{path}",
            "accountId": "123456789012",
            "resourceId": "r1",
            "stage": "prod",
            "requestId": f"req-{uuid.uuid4().hex[:8]}",
            "identity": {"sourceIp": source_ip, "userAgent": "curl/8.5.0"},
            "resourcePath": path,
            "httpMethod": method,
            "apiId": API_ID,
        },
    }


def load_authorizer() -> ModuleType:
    """A fresh copy of the reference authorizer's module: as a cold start, it reads the
    environment on its first request and has nothing cached."""
    path = REPO / "infra" / "authorizer" / "app.py"
    spec = importlib.util.spec_from_file_location(f"authorizer_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # where its dataclasses look up their annotations
    spec.loader.exec_module(module)
    return module
