"""What AWS hands the Lambda functions, for tests: a context with a remaining time we control and
the events EventBridge delivers (a Scheduler tick, an S3 "Object Created")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
