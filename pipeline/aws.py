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

# The first call and up to five retries.
MAX_ATTEMPTS = 6
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0


def client(service: str, region: str = "") -> Any:
    return _cached(service, region, os.environ.get("AWS_ENDPOINT_URL", ""), MAX_ATTEMPTS)


def publisher(service: str, region: str = "") -> Any:
    """A client that makes each call exactly once (botocore's total_max_attempts = 1)."""
    return _cached(service, region, os.environ.get("AWS_ENDPOINT_URL", ""), 1)


def own_client(service: str, region: str = "") -> Any:
    """A retrying client of one's own, not shared with the rest of the process: for a thread
    that works beside the others (the lease's renewals), so that a process forked meanwhile
    never holds a shared client's connection that this thread is using."""
    return _make(service, region, MAX_ATTEMPTS)


@functools.lru_cache(maxsize=16)
def _cached(service: str, region: str, _endpoint: str, attempts: int) -> Any:
    return _make(service, region, attempts)


def _make(service: str, region: str, attempts: int) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    cfg = BotoConfig(
        retries={"mode": "standard", "total_max_attempts": attempts},
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
