"""Lambda entry points: ``scheduled`` (EventBridge Scheduler), ``on_s3_object`` (new objects) and
``on_log_events`` (a CloudWatch Logs subscription: API logs in near real time, through the S3
inbox of ``pipeline.runs.subscription``).

All parse their event with Powertools' models, log JSON with the run id as correlation id, emit
their metrics in the embedded metric format, and read the configuration as the CLI does
(``parse_config``) from the TOML document in the SSM parameter named by
``TENANTWATCH_CONFIG_PARAMETER`` (through Powertools Parameters, cached for a few minutes, so an
edited threshold or relationship applies within minutes and costs no redeploy), with the
stack's environment variables (``TENANTWATCH_<SECTION>_<KEY>``) on top.

A malformed event is logged, counted (``MalformedEvents``) and rejected with
``MalformedEventError`` naming what was wrong. Retrying it can never help, so the stack gives these
functions at most one retry before the event lands in the dead-letter queue (and its alarm).

Importing this module is cheap on purpose (cold starts): no pyarrow, pandas or scikit-learn until
a run needs them (a test checks).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.exceptions import InvalidModelTypeError
from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    S3EventNotificationEventBridgeModel,
    S3Model,
)
from aws_lambda_powertools.utilities.parser.models.cloudwatch import CloudWatchLogsDecode
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from pipeline.config import Config, IngestConfig, parse_config
from pipeline.errors import ConfigError, TenantwatchError
from pipeline.runs import subscription
from pipeline.runs.subscription import Delivery, LogsInbox, PayloadError
from pipeline.runs.unattended import (
    Budget,
    ObjectRef,
    Report,
    RunSettings,
    in_sources,
    object_run_id,
    run_objects,
    run_scheduled,
    scheduled_run_id,
)

NAMESPACE = "tenantwatch"
CONFIG_MAX_AGE_S = 300  # an edited SSM parameter applies within five minutes

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "tenantwatch"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))


class MalformedEventError(TenantwatchError):
    """The event is not what this function is wired to receive; retrying cannot help."""


# --- event models ------------------------------------------------------------------------------


class ScheduleDetail(BaseModel):
    attempt: int | None = None  # Scheduler's <aws.scheduler.attempt-number>


class ScheduledEvent(EventBridgeModel):
    """The Scheduler target's input (infra/template.yaml): an EventBridge scheduled event filled
    with Scheduler's context attributes. A classic EventBridge rule schedule fits it too."""

    detail: ScheduleDetail


class AwsLogsData(BaseModel):
    data: str


class LogsEvent(BaseModel):
    """A subscription filter's event: ``awslogs.data``, base64 of the gzip of the payload.
    Decoded by ``subscription.decode`` within ``ingest.max_decompressed_bytes``; Powertools'
    ``CloudWatchLogsModel`` would inflate it without a bound and name no reason for a failure."""

    awslogs: AwsLogsData


class LogsPayload(CloudWatchLogsDecode):
    """A decoded data message (Powertools' model of it), whose log group names a key folder."""

    messageType: Literal["DATA_MESSAGE"]
    logGroup: str = Field(pattern=subscription.LOG_GROUP_PATTERN)


def _reject(kind: str, exc: Exception) -> MalformedEventError:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)[:5]
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    elif isinstance(exc, PayloadError):
        errors = []
        problems = str(exc)[:300]
    else:  # a model validator that met the wrong shape (Powertools wraps its AttributeError)
        errors = []
        problems = f"not the expected shape: {str(exc).splitlines()[0][:200]}"
    message = f"{kind}: malformed event ({problems})"
    logger.error(message, extra={"errors": errors})
    metrics.add_metric(name="MalformedEvents", unit=MetricUnit.Count, value=1)
    return MalformedEventError(message)


def parse_scheduled(event: Any) -> ScheduledEvent:
    try:
        parsed: ScheduledEvent = parse(event=event, model=ScheduledEvent)
    except (ValidationError, InvalidModelTypeError) as exc:
        raise _reject("scheduled", exc) from None
    return parsed


def parse_objects(event: Any) -> list[ObjectRef]:
    """The objects of an S3 event notification (``Records``) or of an EventBridge "Object
    Created" event (what the stack wires: it works for a bucket the stack does not own)."""
    try:
        if isinstance(event, dict) and "Records" in event:
            s3 = parse(event=event, model=S3Model)
            return [
                # Notification keys are URL-encoded ("a+b" is "a b"); EventBridge keys are not.
                ObjectRef(r.s3.bucket.name, unquote_plus(r.s3.object.key), r.eventTime)
                for r in s3.Records
                if r.eventName.startswith("ObjectCreated:") and r.s3.object is not None
            ]
        eb = parse(event=event, model=S3EventNotificationEventBridgeModel)
    except (ValidationError, InvalidModelTypeError) as exc:
        raise _reject("s3 object", exc) from None
    if eb.detail_type != "Object Created":
        return []
    return [ObjectRef(eb.detail.bucket.name, eb.detail.object.key, eb.time)]


def parse_log_events(event: Any) -> Delivery | None:
    """A CloudWatch Logs subscription's data message, or None for a control message (CloudWatch
    Logs checking that the destination answers: nothing to do)."""
    try:
        envelope = parse(event=event, model=LogsEvent)
        limit = IngestConfig().max_decompressed_bytes
        data, decoded, digest = subscription.decode(envelope.awslogs.data, limit)
        if decoded.get("messageType") == "CONTROL_MESSAGE":
            return None
        payload = parse(event=decoded, model=LogsPayload)
    except (ValidationError, InvalidModelTypeError, PayloadError) as exc:
        raise _reject("cloudwatch logs", exc) from None
    first = payload.logEvents[0].timestamp if payload.logEvents else datetime.now(UTC)
    return Delivery(data, payload.logGroup, _utc(first), len(payload.logEvents), digest)


# --- configuration ----------------------------------------------------------------------------


def load(environ: Mapping[str, str]) -> tuple[Config, RunSettings]:
    """The pipeline configuration (SSM document + environment) and the run settings."""
    name = environ.get("TENANTWATCH_CONFIG_PARAMETER", "")
    data: dict[str, Any] = {}
    where = "defaults"
    if name:
        where = f"ssm:{name}"
        text = parameters.get_parameter(name, max_age=CONFIG_MAX_AGE_S)
        try:
            data = tomllib.loads(str(text))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    cfg, settings = parse_config(data, where, environ), RunSettings.from_environ(environ)
    # Every function checks the inbox: the scheduled run is what reads it after a failure.
    LogsInbox.from_environ(environ, settings, cfg.lake.root)
    return cfg, settings


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _finish(report: Report) -> dict[str, Any]:
    out = report.as_dict()
    metrics.add_metric(name="RunSeconds", unit=MetricUnit.Seconds, value=report.seconds)
    metrics.add_metric(name="WindowsDetected", unit=MetricUnit.Count, value=len(report.windows))
    if report.status == "checkpoint":
        metrics.add_metric(name="RunCheckpointed", unit=MetricUnit.Count, value=1)
    if report.status == "busy":
        metrics.add_metric(name="RunSkippedBusy", unit=MetricUnit.Count, value=1)
    logger.info(f"{report.kind} run {report.status}", extra={"report": out})
    return out


# --- the handlers -------------------------------------------------------------------------------


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def scheduled(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Ingest since the watermark, then detect and alert every finished window."""
    ev = parse_scheduled(event)
    # The scheduled time, not the clock: a retried or repeated tick takes the same windows. Never
    # later than the clock, whatever the event says.
    now = min(_utc(ev.time), datetime.now(UTC))
    run_id = scheduled_run_id(now, ev.id)
    logger.set_correlation_id(run_id)
    cfg, settings = load(os.environ)
    budget = Budget(context.get_remaining_time_in_millis, settings.reserve_seconds)
    report = run_scheduled(now, cfg.lake.root, cfg, settings, budget, run_id)
    # A tick that finds the Glue job holding the lake (a window it was handed) ran as it should.
    if report.status in ("done", "nothing_to_do") or report.held_by.startswith("glue:"):
        metrics.add_metric(name="RunCompleted", unit=MetricUnit.Count, value=1)
    # Windows whose every Glue job run failed (pipeline.runs.handoff): 0 too, for the alarm.
    metrics.add_metric(name="WindowsFailed", unit=MetricUnit.Count, value=len(report.failed))
    if report.watermark_after:
        behind = (
            datetime.now(UTC) - datetime.fromisoformat(report.watermark_after)
        ).total_seconds()
        metrics.add_metric(name="WatermarkLagMinutes", unit=MetricUnit.NoUnit, value=behind / 60)
    return _finish(report)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def on_s3_object(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Ingest just the new object(s); rule detectors and alerting if no other run is busy."""
    objects = parse_objects(event)
    run_id = object_run_id(objects)
    logger.set_correlation_id(run_id)
    cfg, settings = load(os.environ)
    wanted = [o for o in objects if in_sources(o, settings.sources)]
    for o in objects:
        if o not in wanted:
            # Not ours to read (and IAM would refuse): a wiring mistake, not a retryable error.
            logger.warning("object outside the configured sources", extra={"bucket": o.bucket})
    if not wanted:
        return _finish(Report(run_id, "objects", status="nothing_to_do"))
    budget = Budget(context.get_remaining_time_in_millis, settings.reserve_seconds)
    report = run_objects(wanted, cfg.lake.root, cfg, settings, budget, run_id)
    metrics.add_metric(name="ObjectsIngested", unit=MetricUnit.Count, value=len(wanted))
    return _finish(report)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def on_log_events(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Store a CloudWatch Logs subscription's payload in the inbox, then ingest it; rule
    detectors and alerting if no other run is busy (``pipeline.runs.subscription``)."""
    delivery = parse_log_events(event)
    if delivery is None or not delivery.events:
        run_id = "logs-control" if delivery is None else delivery.run_id
        return _finish(Report(run_id, "objects", status="nothing_to_do"))
    logger.set_correlation_id(delivery.run_id)
    cfg, settings = load(os.environ)
    inbox = LogsInbox.required(os.environ, settings, cfg.lake.root)
    metrics.add_metric(name="LogEventsReceived", unit=MetricUnit.Count, value=delivery.events)
    budget = Budget(context.get_remaining_time_in_millis, settings.reserve_seconds)
    report = subscription.run_delivery(delivery, inbox, cfg.lake.root, cfg, settings, budget)
    return _finish(report)
