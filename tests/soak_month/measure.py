"""What the month measures besides time: this process's peak resident memory between two
points, the lake objects the counting moto server was asked for (and the rows of the state
files among them), and the lake's files per area."""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

STATE_AREAS = ("_state/", "incidents/")


def reset_peak_rss() -> None:
    """Starts this process's peak resident memory (``peak_rss_mb``) again from now (Linux)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)


def peak_rss_mb() -> float:
    """This process's peak resident memory since ``reset_peak_rss`` (since it started where
    the high-water mark cannot be reset)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Reads:
    """Object reads counted by the moto server, and the rows of the state files among them."""

    def __init__(self, endpoint: str, lake_bucket: str, lake_prefix: str) -> None:
        self.url = endpoint + "/_soak/reads"
        self.prefix = f"{lake_bucket}/{lake_prefix}"
        self.rows: dict[str, int] = {}  # state file -> rows (state files are small, few rewritten)

    def take(self) -> tuple[dict[str, int], int]:
        """The lake objects read since the last call (requests per object), and the listings
        (of any bucket: the inputs' too)."""
        import urllib.request

        with urllib.request.urlopen(self.url) as r:  # noqa: S310 - our server on 127.0.0.1
            got = json.loads(r.read())
        reads: dict[str, int] = got["reads"]
        return {k: n for k, n in reads.items() if k.startswith(self.prefix)}, int(got["listings"])

    def state_rows(self, keys: Iterator[str] | list[str]) -> int:
        import pyarrow.parquet as pq

        from pipeline.lake import s3_filesystem

        fs = None
        total = 0
        for k in keys:
            rel = k[len(self.prefix) :]
            if not rel.startswith(STATE_AREAS) or not rel.endswith(".parquet"):
                continue
            if k not in self.rows:
                fs = fs or s3_filesystem()
                try:
                    self.rows[k] = pq.read_metadata(k, filesystem=fs).num_rows
                except OSError:
                    self.rows[k] = 0  # gone since (a lease, a temporary)
            total += self.rows[k]
        return total


def lake_files(bucket: str, prefix: str) -> dict[str, int]:
    import boto3

    counts: Counter[str] = Counter()
    root = os.environ.get("TENANTWATCH_LAKE_ROOT", "")
    if not root.startswith("s3://"):
        for p in Path(root).rglob("*"):
            if p.is_file():
                counts[p.relative_to(root).parts[0]] += 1
        return dict(counts)
    pages = (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    for page in pages:
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            counts[rel.split("/", 1)[0]] += 1
    return dict(counts)
