"""Where inputs come from: local files and folders, and S3 prefixes.

An ``InputRef`` names one object and carries what makes it the same object next time (size and,
on S3, the ETag), so a re-run skips what was already ingested. ``--since/--until`` select objects
by the date in AWS's delivery key layout (``.../YYYY/MM/DD/...``); objects without a date in their
key are always taken. Records are never filtered by time here: a record read is a record counted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import InputError

_KEY_DATE = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/")


@dataclass(frozen=True, slots=True, order=True)
class InputRef:
    uri: str  # /abs/path or s3://bucket/key
    size: int
    etag: str = ""

    @property
    def identity(self) -> str:
        return f"{self.uri}\t{self.etag or self.size}"


def _key_date(key: str) -> date | None:
    m = _KEY_DATE.search(key)
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def in_window(key: str, since: datetime | None, until: datetime | None) -> bool:
    d = _key_date(key)
    if d is None:
        return True
    if since is not None and d < since.date():
        return False
    return not (until is not None and d > until.date())


def _local(source: str, since: datetime | None, until: datetime | None) -> Iterator[InputRef]:
    p = Path(source)
    if p.is_file():
        yield InputRef(str(p.resolve()), p.stat().st_size)
        return
    if not p.is_dir():
        raise InputError(f"{source}: no such file or directory")
    for dirpath, dirnames, filenames in os.walk(p):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            f = Path(dirpath) / name
            if f.is_file() and in_window(str(f), since, until):
                yield InputRef(str(f.resolve()), f.stat().st_size)


def s3_client() -> Any:
    """boto3 S3 client with standard retries; boto3 itself honours AWS_ENDPOINT_URL."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client("s3", config=BotoConfig(retries={"mode": "standard", "max_attempts": 8}))


def _s3(source: str, since: datetime | None, until: datetime | None) -> Iterator[InputRef]:
    bucket, _, prefix = source[len("s3://") :].partition("/")
    if not bucket:
        raise InputError(f"{source}: expected s3://bucket[/prefix]")
    client = s3_client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    try:
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/") or not in_window(f"/{key}", since, until):
                    continue
                yield InputRef(f"s3://{bucket}/{key}", obj["Size"], obj["ETag"].strip('"'))
    except client.exceptions.NoSuchBucket:
        raise InputError(f"{source}: no such bucket") from None


def list_inputs(
    sources: list[str], since: datetime | None = None, until: datetime | None = None
) -> list[InputRef]:
    """Every input object named by ``sources``, deduplicated, in key order (CloudTrail keys sort
    by delivery time, which keeps the AssumeRole -> later calls join in order)."""
    refs: set[InputRef] = set()
    for source in sources:
        it = (
            _s3(source, since, until)
            if source.startswith("s3://")
            else _local(source, since, until)
        )
        refs.update(it)
    return sorted(refs)


def read_input(ref: InputRef) -> bytes:
    if ref.uri.startswith("s3://"):
        bucket, _, key = ref.uri[len("s3://") :].partition("/")
        body = s3_client().get_object(Bucket=bucket, Key=key, IfMatch=ref.etag)["Body"]
        return bytes(body.read())
    return Path(ref.uri).read_bytes()
