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


def client(service: str, region: str = "") -> Any:
    return _cached(service, region, os.environ.get("AWS_ENDPOINT_URL", ""))


@functools.lru_cache(maxsize=16)
def _cached(service: str, region: str, _endpoint: str) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    cfg = BotoConfig(
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
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
