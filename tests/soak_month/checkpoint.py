"""A month that survives its process: the soak's state saved at the end of each simulated day, and
played on from there (``python -m tests.soak_month --resume``).

A month takes hours; a machine that sleeps or restarts would otherwise start it again from day 1.
What the month's world holds lives in two places:

- the moto server: every bucket's objects (the trail, the exports, the lake, the snapshots) and
  the DynamoDB tables' items. ``save`` copies them into ``<workdir>/checkpoint`` (an object's
  bytes once, by bucket, key and ETag: a day adds its own objects only); ``restore`` puts them
  into a new server after the stack is deployed again. The server is seeded first (moto's
  ``/moto-api/seed``), so CloudFormation names the stack's buckets and tables as before, and
  whatever the lake holds that names them (a snapshot's address) still points at them.
- the harness: the ticks measured, the notifications received, where the month stands (the
  next delivery, the tick, the simulated time) and the wall time spent so far.

The SQS queue is drained every tick and the functions hold nothing between invocations that the
lake does not (a resumed month starts them cold, as Lambda may); CloudWatch metrics are not
kept. A checkpoint is written whole before ``state.json`` names it, so a process killed while
writing one leaves the day before's.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

STATE = "state.json"
SEED = 7  # moto's random numbers, for the same resource names every time the stack is deployed


def seed_moto(endpoint: str, seed: int = SEED) -> None:
    """Seed the moto server's random numbers (before the stack is deployed)."""
    url = f"{endpoint}/moto-api/seed?a={seed}"
    req = urllib.request.Request(url, method="POST")  # noqa: S310 - our moto server on 127.0.0.1
    with urllib.request.urlopen(req) as r:  # noqa: S310
        r.read()


@dataclass
class Position:
    """Where the month stands after a day, and what the harness has gathered so far."""

    spec: dict[str, Any]
    now: str  # the last tick's simulated time
    delivered: int  # deliveries played
    ticks_played: int
    days_played: int
    wall_s: float
    ticks: list[dict[str, Any]] = field(default_factory=list)
    day_files: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    resumed: int = 0  # how many times the month was played on from a checkpoint

    @classmethod
    def of(
        cls,
        spec: Any,
        now: datetime,
        delivered: int,
        ticks_played: int,
        res: Any,
        received: Counter[str],
        wall_s: float,
    ) -> Position:
        """The position of the harness's own objects (``MonthSpec``, ``Result``)."""
        return cls(
            spec=spec_of(spec),
            now=now.isoformat(),
            delivered=delivered,
            ticks_played=ticks_played,
            days_played=res.days_played,
            wall_s=wall_s,
            ticks=[{**asdict(t), "statuses": dict(t.statuses)} for t in res.ticks],
            day_files={str(k): v for k, v in res.day_files.items()},
            received=dict(received),
            resumed=res.resumed,
        )


def spec_of(spec: Any) -> dict[str, Any]:
    """What makes a month the same month (a ``MonthSpec`` less how long a process plays it)."""
    return {k: v for k, v in asdict(spec).items() if k not in ("wall_limit_s", "local_lake")}


def _blob(bucket: str, key: str, etag: str) -> str:
    return hashlib.sha256(f"{bucket}\n{key}\n{etag}".encode()).hexdigest()


def save(folder: Path, position: Position) -> dict[str, int]:
    """The moto server's objects and items, and ``position``, as the checkpoint in ``folder``;
    how many objects were copied and how many were already there."""
    import boto3

    blobs = folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    s3 = boto3.client("s3")
    objects: list[dict[str, Any]] = []
    copied = kept = 0
    for b in s3.list_buckets().get("Buckets", []):
        bucket = b["Name"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                name = _blob(bucket, obj["Key"], obj["ETag"])
                path = blobs / name
                if not path.exists():
                    got = s3.get_object(Bucket=bucket, Key=obj["Key"])
                    meta = {"type": got.get("ContentType"), "meta": got.get("Metadata", {})}
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(got["Body"].read())
                    (blobs / f"{name}.json").write_text(json.dumps(meta))
                    os.replace(tmp, path)
                    copied += 1
                else:
                    kept += 1
                objects.append(
                    {
                        "bucket": bucket,
                        "key": obj["Key"],
                        "blob": name,
                        "modified": obj["LastModified"].isoformat(),
                    }
                )
    ddb = boto3.client("dynamodb")
    tables: dict[str, list[Any]] = {}
    for name in ddb.list_tables().get("TableNames", []):
        items: list[Any] = []
        for page in ddb.get_paginator("scan").paginate(TableName=name):
            items += page.get("Items", [])
        tables[name] = items
    state = {"position": asdict(position), "objects": objects, "tables": tables}
    tmp = folder / f"{STATE}.tmp"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, folder / STATE)
    used = {o["blob"] for o in objects}
    for p in blobs.iterdir():  # the objects deleted since (a compacted hour, a marker)
        if p.name.split(".")[0] not in used:
            p.unlink()
    return {"copied": copied, "kept": kept}


def load(folder: Path) -> Position | None:
    """The checkpoint's position, or None when ``folder`` holds none."""
    path = folder / STATE
    if not path.exists():
        return None
    return Position(**json.loads(path.read_text())["position"])


def restore(folder: Path, endpoint: str) -> int:
    """Put the checkpoint's objects and items into the moto server at ``endpoint`` (the stack
    deployed again first: its buckets and tables exist), each object written at the time it was
    (the server's month clock, ``server.set_clock``); the number of objects put. The clock is
    left at the checkpoint's time."""
    import boto3

    from tests.soak_month.server import set_clock

    state = json.loads((folder / STATE).read_text())
    s3 = boto3.client("s3")
    have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    clock = None
    for o in state["objects"]:
        if o["bucket"] not in have:
            s3.create_bucket(Bucket=o["bucket"])
            have.add(o["bucket"])
        blob = folder / "blobs" / o["blob"]
        meta = json.loads((folder / "blobs" / f"{o['blob']}.json").read_text())
        extra = {"ContentType": meta["type"]} if meta.get("type") else {}
        if o.get("modified") and o["modified"] != clock:  # else (an older checkpoint): now
            clock = o["modified"]
            set_clock(endpoint, datetime.fromisoformat(clock))
        s3.put_object(
            Bucket=o["bucket"], Key=o["key"], Body=blob.read_bytes(), Metadata=meta["meta"], **extra
        )
    ddb = boto3.client("dynamodb")
    for name, items in state["tables"].items():
        for item in items:
            ddb.put_item(TableName=name, Item=item)
    set_clock(endpoint, datetime.fromisoformat(state["position"]["now"]))
    return len(state["objects"])
