"""boto3 clients for every AWS edge: standard retries, created on first use, one per process.

boto3 honours ``AWS_ENDPOINT_URL`` itself, so the same code talks to AWS, moto or LocalStack.
Tests register botocore event hooks (``before-send``) on these very clients to inject throttling
and outages, so faults go through botocore's real retry path.
"""

from __future__ import annotations

import functools
import os
from typing import Any

# Standard mode: exponential backoff with jitter on throttling and transient errors, and a
# client-side retry quota so that a dead endpoint does not multiply the load.
MAX_ATTEMPTS = 5
# S3 throttles a busy prefix with 503 SlowDown, often several times in a row for one request,
# and an ingest makes thousands of requests: reads (boto3) and the lake (pyarrow) try longer.
S3_MAX_ATTEMPTS = 10


def client(service: str, region: str = "") -> Any:
    return _cached(service, region, os.environ.get("AWS_ENDPOINT_URL", ""))


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
