"""What the alerting tests share: a lake that holds findings and no incidents yet, an SNS topic
with SQS queues subscribed (what subscribers got, counted), read straight from the moto server.

The queues are read with clients that talk to moto directly (``direct``), so that a test that
puts a fault proxy in ``AWS_ENDPOINT_URL`` counts what SNS delivered, not what the proxy let
through.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.alertfactory import finding

# 14 findings, 12 of them medium or worse: 12 notifications, two PublishBatch calls (10 + 2).
SEVERITIES = ["critical", "high", "high", "medium", "low"] * 3
NOTIFIED = 12


def write_findings_lake(root: str, findings: int = 14) -> None:
    """Events and findings into the lake at ``root``: 14 make ``NOTIFIED`` notifications; the
    first three are critical, high, high (three notifications, one batch)."""
    import pyarrow as pa

    from pipeline import schema
    from pipeline.lake import Lake
    from tests import factories as f

    lake = Lake(root)
    rows, events = [], []
    for i, sev in enumerate(SEVERITIES[:findings]):
        actor, victim = f"usr-{i:02d}", f"t{i + 100:04d}"
        key = f"cross_tenant_access:cross_tenant|{actor}|t0001"
        ids = [f"e{i:02d}-{j}" for j in range(3)]
        evidence = json.dumps({"event_ids": ids, "top_actions": [["GetObject", 3]]})
        rows.append(
            finding(
                dedup_key=key,
                severity=sev,
                actor=actor,
                tenants=[victim],
                title=f"Cross-tenant access: {actor} on {victim}",
                evidence=evidence,
            )
        )
        events += [
            f.api(
                300 + 60 * j,
                event_id=e,
                actor_principal=actor,
                target_tenant=victim,
                source_ip=f"198.51.100.{100 + i}",  # one address each: 14 actors, 14 stories
            )
            for j, e in enumerate(ids)
        ]
    lake.write_table("events/source=apigateway/date=2026-11-16/hour=10/p.parquet", f.events(events))
    lake.write_table(
        "findings/date=2026-11-16/p.parquet", pa.Table.from_pylist(rows, schema.FINDINGS)
    )


def copy_lake(template: Path, dest: Path) -> str:
    shutil.copytree(template, dest)
    return str(dest)


def upload_lake(template: Path, endpoint: str, bucket: str, prefix: str = "lake") -> str:
    """A copy of a local lake in an S3 bucket (created) on the moto server; its root."""
    s3 = direct("s3", endpoint)
    s3.create_bucket(Bucket=bucket)
    for path in sorted(template.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(template).as_posix()}"
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}"


def direct(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")


@dataclass
class Sinks:
    endpoint: str  # the moto server itself
    topic_arn: str
    queue: str  # URL of a queue that gets every message

    def drain(self) -> list[dict[str, Any]]:
        """Every message on the queue, as SNS delivered it (``Message`` parsed into ``Body``)."""
        sqs = direct("sqs", self.endpoint)
        out = []
        while True:
            got = sqs.receive_message(
                QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            msgs = got.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                env = json.loads(m["Body"])
                env["Body"] = json.loads(env["Message"])
                out.append(env)
                sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])

    def deliveries(self) -> Counter[str]:
        """notification id -> how many times it arrived (drains the queue)."""
        return Counter(nid(m) for m in self.drain())


def make_sinks(endpoint: str, fifo: bool = False) -> Sinks:
    """A topic (FIFO if asked) and a queue subscribed to it, raw moto, no filter."""
    sns, sqs = direct("sns", endpoint), direct("sqs", endpoint)
    suffix = ".fifo" if fifo else ""
    attrs = {"FifoTopic": "true"} if fifo else {}
    topic = sns.create_topic(Name=f"tenantwatch-incidents{suffix}", Attributes=attrs)["TopicArn"]
    qattrs = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=f"everything{suffix}", Attributes=qattrs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return Sinks(endpoint, topic, url)


def nid(message: dict[str, Any]) -> str:
    return str(message["MessageAttributes"]["notification_id"]["Value"])
