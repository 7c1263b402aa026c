"""boto3 clients for every AWS edge: standard retries, created on first use, one per process.

boto3 honours ``AWS_ENDPOINT_URL`` itself, so the same code talks to AWS, moto or LocalStack.
Tests register botocore event hooks (``before-send``) on these very clients to inject throttling
and outages, so faults go through botocore's real retry path.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from pipeline.errors import AwsSetupError

# Standard mode: exponential backoff with jitter on throttling and transient errors, and a
# client-side retry quota so that a dead endpoint does not multiply the load.
MAX_ATTEMPTS = 5
# S3 throttles a busy prefix with 503 SlowDown, often several times in a row for one request,
# and an ingest makes thousands of requests: reads (boto3) and the lake (pyarrow) try longer.
S3_MAX_ATTEMPTS = 10


def client(service: str, region: str = "") -> Any:
    # AWS_REGION is what Lambda and the other SDKs read; botocore reads AWS_DEFAULT_REGION.
    region = region or os.environ.get("AWS_REGION", "")
    return _cached(service, region, os.environ.get("AWS_ENDPOINT_URL", ""))


def require(uris: list[str]) -> None:
    """An ``AwsSetupError`` (one line) now when the ``uris`` (s3:// and logs:// ones; others are
    ignored) cannot be reached for want of credentials, or of a region for CloudWatch Logs,
    rather than a traceback from the first request. The S3 lake's pyarrow client looks for
    credentials where boto3 does (environment, profiles, container or instance roles)."""
    on_aws = [u for u in uris if u.startswith(("s3://", "logs://"))]
    if not on_aws:
        return
    import boto3

    session = boto3.Session()
    if session.get_credentials() is None:
        raise AwsSetupError(
            f"{on_aws[0]}: no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run where a role provides them)"
        )
    logs = next((u for u in on_aws if u.startswith("logs://")), None)
    if logs and not (session.region_name or os.environ.get("AWS_REGION")):
        raise AwsSetupError(f"{logs}: no AWS region (set AWS_REGION or AWS_DEFAULT_REGION)")


def error_from_aws(exc: BaseException) -> bool:
    """Was ``exc`` raised by the AWS SDK (an error answer, credentials gone, no endpoint)?"""
    return type(exc).__module__.split(".")[0] in ("botocore", "boto3")


@functools.lru_cache(maxsize=16)
def _cached(service: str, region: str, _endpoint: str) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    attempts = S3_MAX_ATTEMPTS if service == "s3" else MAX_ATTEMPTS
    cfg = BotoConfig(
        retries={"mode": "standard", "max_attempts": attempts},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client(service, region_name=region or None, config=cfg)


def reset() -> None:
    """Forget every client (tests: a fresh moto server, fresh hooks)."""
    _cached.cache_clear()


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
