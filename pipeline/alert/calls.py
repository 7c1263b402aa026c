"""One call to a service that may not be repeated blindly, judged by what its failure proves.

What ``sns`` judges inline, shared by the channels added after it (``securityhub``,
``eventbridge``): an error answer (4xx) or a connection never made means the service did
nothing; no answer, or a 5xx, means nobody can know. Throttling and a refused connection are
tried again a few times with backoff; an unknown outcome only where the channel says a repeat
is harmless (``may_repeat``). The client must be ``aws.publisher`` (botocore repeats nothing).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pipeline import aws

ATTEMPTS = 5  # calls per batch within one run
BACKOFF_S = 0.5  # the first wait between attempts; doubled each time, with full jitter
MAX_BACKOFF_S = 20.0

# Error codes that mean "not now": the service refused the request before doing anything.
THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "Throttled",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
        "SlowDown",
    }
)


def judge(exc: BaseException) -> tuple[str, str]:
    """``refused`` (an error answer: nothing done), ``busy`` (throttled or never reached:
    nothing done, worth another try soon) or ``unknown`` (it may have been done); and the
    error's text."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
    )

    err = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, ClientError):
        if aws.http_status(exc) >= 500:
            return "unknown", err  # the service (or a proxy) may have done it, then failed
        return ("busy" if aws.error_code(exc) in THROTTLED else "refused"), err
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return "busy", err  # never connected
    if isinstance(exc, NoCredentialsError | ParamValidationError):
        return "refused", err  # never sent
    # A read timeout, a connection closed or reset after the request went out, or anything
    # we did not foresee: it may have been done.
    return "unknown", err


def call(fn: Callable[[], Any], may_repeat: Callable[[float], bool]) -> tuple[str, Any, str]:
    """``fn()`` until it is answered or judged final: (``answered``, its answer, "") or
    (``refused`` | ``busy`` | ``unknown``, None, the last error). ``may_repeat(wait)``: whether
    a call that may have been done can be made again after ``wait`` seconds."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return "answered", fn(), ""
        except Exception as exc:
            verdict, error = judge(exc)
        wait = random.random() * min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (attempt - 1))
        again = attempt < ATTEMPTS and (
            verdict == "busy" or (verdict == "unknown" and may_repeat(wait))
        )
        if not again:
            return verdict, None, error
        time.sleep(wait)


def batched(
    rows: Sequence[dict[str, Any]],
    weight: Callable[[dict[str, Any]], int],
    max_total: int,
    max_rows: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in order, in batches of at most ``max_rows`` whose weights (bytes, findings)
    add up to at most ``max_total``: a service's limits per call. A row heavier than the limit
    on its own goes alone (the channel says why it cannot be sent)."""
    batch: list[dict[str, Any]] = []
    total = 0
    for row in rows:
        n = weight(row)
        full = max_rows is not None and len(batch) == max_rows
        if batch and (full or total + n > max_total):
            yield batch
            batch, total = [], 0
        batch.append(row)
        total += n
    if batch:
        yield batch
