"""API logs in near real time: a CloudWatch Logs subscription's payloads, stored, then ingested.

A subscription filter on the API Gateway access-log group and on the Lambda authorizer's group
invokes ``pipeline.handler.on_log_events`` with each batch of lines, seconds after they were
logged. The run:

1. **stores the payload first**, as received (the gzip bytes inside ``awslogs.data``, which
   ``pipeline.ingest.formats`` reads back like any CloudWatch Logs payload), in the *inbox*
   (``TENANTWATCH_RUN_LOGS_INBOX``, ``s3://bucket/prefix/``). CloudWatch Logs hands each batch
   over once (Lambda's retries, then its dead-letter queue, are all that follow), so nothing is
   ingested or detected before the lines are on S3;
2. then ingests that one object as the S3-object run does (``unattended.run_objects``): the rule
   detectors run over the windows its new events fall in and alert, so a cross-tenant success in
   the API's logs pages within a minute or two.

If the second step fails or runs out of time, the scheduled run, which lists the inbox among its
sources (``TENANTWATCH_RUN_SOURCES`` must cover it: ``LogsInbox.from_environ`` refuses otherwise),
ingests the object on its next tick and detects it with every detector.

The key is ``<inbox>group=<log group>/YYYY/MM/DD/<content hash>.json.gz``:

- the hash is of the decompressed payload, so a payload CloudWatch Logs delivers again (it
  delivers at least once) has the same key; the object is written once (``IfNoneMatch``), the
  input is then already ingested (same key and ETag), nothing is new, no window is detected and
  nothing pages twice;
- the day is that of the payload's first event, in the delivery-day layout by which the scheduled
  run lists its sources (``stages.ingest(sources, ..., since, until)`` lists only the day folders
  from its watermark less the lag to now) and ingest partitions its record of inputs done
  (``_state/ingested/date=...``); the same payload always gets the same day;
- the log group is a folder for people and for lifecycle rules, made one key segment of safe
  characters. It does not decide the source: ingest tells an access-log line from an authorizer
  line by its fields (the ``[sources.apigateway]`` and ``[sources.authorizer]`` mappings,
  ``Reading.line_kind``), as it does for exports and ``logs://``, so any log group names work
  and one group may even hold both.

The inbox holds the lines as logged, secrets included (an ``Authorization`` header an API logs):
it must not lie inside the lake, whose content is redacted (refused at load), and a lifecycle
rule expires it (infra/template.yaml).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline import aws
from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.runs.stages import Stages
from pipeline.runs.unattended import Budget, ObjectRef, Report, RunSettings, run_objects

INBOX_VARIABLE = "TENANTWATCH_RUN_LOGS_INBOX"
# CloudWatch Logs' own rule for a log group's name.
LOG_GROUP_PATTERN = r"^[.\-_/#A-Za-z0-9]{1,512}$"
_UNSAFE_IN_KEY = re.compile(r"[^A-Za-z0-9._-]")


class PayloadError(ValueError):
    """``awslogs.data`` that does not decode into a payload (not base64, not gzip, too large
    inflated, not a JSON object)."""


@dataclass(frozen=True)
class Delivery:
    """One subscription payload: the gzip bytes as received and what the key is made of."""

    data: bytes  # gzip of the payload's JSON, exactly as CloudWatch Logs sent it
    log_group: str
    first_event: datetime  # the timestamp of its first log event (UTC)
    events: int
    digest: str  # of the decompressed payload

    @property
    def run_id(self) -> str:
        return f"logs-{self.digest[:16]}"


def decode(data: str, limit: int) -> tuple[bytes, dict[str, Any], str]:
    """``awslogs.data``: its gzip bytes, the payload they hold, and the hash of the payload's
    text. ``limit`` bounds the inflated size, as ``ingest.max_decompressed_bytes`` bounds an
    input's (Powertools' ``CloudWatchLogsModel`` inflates without a bound)."""
    from pipeline.ingest import gz, jsonnum

    try:
        packed = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError(f"awslogs.data: not base64 ({exc})") from None
    if not gz.is_gzip(packed):
        raise PayloadError("awslogs.data: not gzip")
    try:
        text = gz.decompress_bounded(packed, limit)
    except gz.GzipError as exc:
        raise PayloadError(f"awslogs.data: {exc}") from None
    try:
        payload = jsonnum.loads(text)
    except ValueError as exc:  # orjson.JSONDecodeError
        raise PayloadError(f"awslogs.data: not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise PayloadError(f"awslogs.data: a JSON {type(payload).__name__}, not an object")
    return packed, payload, hashlib.sha256(text).hexdigest()[:32]


def group_folder(log_group: str) -> str:
    """A log group's name as one key segment: ``/aws/lambda/authz`` is ``aws_lambda_authz``."""
    return _UNSAFE_IN_KEY.sub("_", log_group.strip("/")) or "_"


@dataclass(frozen=True)
class LogsInbox:
    """Where the payloads are stored: ``s3://bucket/prefix/``."""

    bucket: str
    prefix: str  # "" or ending in "/"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], settings: RunSettings, lake_root: str
    ) -> LogsInbox | None:
        """The inbox ``TENANTWATCH_RUN_LOGS_INBOX`` names, or None when it is not set. A
        ``ConfigError`` when it is no ``s3://`` location, when the scheduled run's sources
        (``TENANTWATCH_RUN_SOURCES``) do not cover it (an object the fast path failed to ingest
        would never be read), or when it overlaps the lake."""
        raw = environ.get(INBOX_VARIABLE, "").strip()
        if not raw:
            return None
        bucket, _, prefix = raw.removeprefix("s3://").partition("/")
        if not raw.startswith("s3://") or not bucket:
            raise ConfigError(f"{INBOX_VARIABLE}: expected s3://bucket/prefix/, got {raw!r}")
        inbox = cls(bucket, prefix if not prefix or prefix.endswith("/") else f"{prefix}/")
        if not any(s.startswith("s3://") and inbox.uri.startswith(s) for s in settings.sources):
            raise ConfigError(
                f"{INBOX_VARIABLE}: {inbox.uri} is under none of TENANTWATCH_RUN_SOURCES "
                f"({', '.join(settings.sources) or 'none'}): the scheduled run would never read "
                "a payload the fast path failed to ingest"
            )
        lake = lake_root.rstrip("/") + "/"
        if lake.startswith(inbox.uri) or inbox.uri.startswith(lake):
            raise ConfigError(
                f"{INBOX_VARIABLE}: {inbox.uri} overlaps the lake ({lake_root}): the inbox "
                "holds the lines unredacted"
            )
        return inbox

    @classmethod
    def required(
        cls, environ: Mapping[str, str], settings: RunSettings, lake_root: str
    ) -> LogsInbox:
        inbox = cls.from_environ(environ, settings, lake_root)
        if inbox is None:
            raise ConfigError(
                f"{INBOX_VARIABLE}: not set (s3://bucket/prefix/ where the payloads are stored)"
            )
        return inbox

    def key(self, delivery: Delivery) -> str:
        day = delivery.first_event.astimezone(UTC)
        folder = group_folder(delivery.log_group)
        return f"{self.prefix}group={folder}/{day:%Y/%m/%d}/{delivery.digest}.json.gz"


def store(inbox: LogsInbox, delivery: Delivery) -> str:
    """Write the payload once under its key; a payload delivered again finds it there."""
    key = inbox.key(delivery)
    try:
        aws.client("s3").put_object(
            Bucket=inbox.bucket,
            Key=key,
            Body=delivery.data,
            ContentType="application/gzip",
            IfNoneMatch="*",
        )
    except Exception as exc:
        # 412: stored by an earlier delivery (same key, same payload). Anything else, a 409 from
        # a concurrent delivery's PUT included, fails the invocation, and its retry finds out.
        if aws.error_code(exc) != "PreconditionFailed":
            raise
    return key


def run_delivery(
    delivery: Delivery,
    inbox: LogsInbox,
    lake_root: str,
    cfg: Config,
    settings: RunSettings,
    budget: Budget,
    stages: Stages | None = None,
) -> Report:
    """Store the payload in the inbox, then ingest it and run the rule detectors over its
    windows (``run_objects``). Nothing is ingested unless the payload is stored."""
    key = store(inbox, delivery)
    ref = ObjectRef(inbox.bucket, key, datetime.now(UTC))
    return run_objects([ref], lake_root, cfg, settings, budget, delivery.run_id, stages)
