"""boto3 clients for every AWS edge: created on first use, one per process.

Two kinds. ``client`` retries (botocore's standard mode: exponential backoff with jitter on
throttling and transient errors, and a client-side quota so that a dead endpoint does not
multiply the load): right for reads and for writes that can be repeated (an S3 PUT of the same
bytes). ``publisher`` never retries: for calls that are not idempotent (SNS ``Publish``), where
botocore re-sending a request whose answer was lost sends the message twice. Whoever uses a
publisher decides what may be tried again (``pipeline.alert.sns``).

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
# client-side retry quota so that a dead endpoint does not multiply the load. Retries after the
# first call.
MAX_ATTEMPTS = 5
# S3 throttles a busy prefix with 503 SlowDown, often several times in a row for one request,
# and an ingest makes thousands of requests: reads (boto3) and the lake (pyarrow) try longer.
S3_MAX_ATTEMPTS = 10
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0


def _region(region: str) -> str:
    # AWS_REGION is what Lambda and the other SDKs read; botocore reads AWS_DEFAULT_REGION.
    return region or os.environ.get("AWS_REGION", "")


def client(service: str, region: str = "") -> Any:
    return _cached(service, _region(region), os.environ.get("AWS_ENDPOINT_URL", ""), True)


def publisher(service: str, region: str = "") -> Any:
    """A client that makes each call exactly once (botocore's total_max_attempts = 1)."""
    return _cached(service, _region(region), os.environ.get("AWS_ENDPOINT_URL", ""), False)


def own_client(service: str, region: str = "") -> Any:
    """A retrying client of one's own, not shared with the rest of the process: for a thread
    that works beside the others (the lease's renewals), so that a process forked meanwhile
    never holds a shared client's connection that this thread is using."""
    return _make(service, _region(region), True)


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
def _cached(service: str, region: str, _endpoint: str, retrying: bool) -> Any:
    return _make(service, region, retrying)


def _make(service: str, region: str, retrying: bool) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    if retrying:
        attempts = S3_MAX_ATTEMPTS if service == "s3" else MAX_ATTEMPTS
        retries = {"mode": "standard", "max_attempts": attempts}
    else:
        retries = {"mode": "standard", "total_max_attempts": 1}
    cfg = BotoConfig(
        retries=retries,
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
    )
    return boto3.client(service, region_name=region or None, config=cfg)


def reset() -> None:
    """Forget every client (tests: a fresh moto server, fresh hooks, other timeouts)."""
    _cached.cache_clear()


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def http_status(exc: BaseException) -> int:
    """The HTTP status of a service's error answer (0: no answer was read)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0
