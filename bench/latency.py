"""Latency benchmark: from a log object landing in S3 to the page on the incident topic's
subscriber, the way a user sees it, through both deployed functions on moto over real HTTP;
beside the delivery times GuardDuty and CloudTrail Insights document.

    .venv/bin/python bench/run.py --only latency [--attacks 50] [--bursts 5]

Each measurement deploys the stack afresh (``tests.soak_month.deploy``) into one moto server on
127.0.0.1, in a process of its own (``tests.soak_month.server``), so moto's work is not counted
as the functions' time; the lake starts as the pooled sample's (``sample_logs/``), ingested,
compacted, detected and alerted as a deployed stack would hold it (``history_lake``).

S3 -> function is moto's own wiring: the buckets send their events to EventBridge and the stack's
rule matches "Object Created". moto cannot invoke a Lambda target (it raises, which also stops the
delivery to every later rule), so the rule's target is re-pointed at an SQS queue, which a thread
long-polls and hands, one event at a time, to ``pipeline.handler.on_s3_object``, as Lambda's
asynchronous invocation would. The stack's rule names the trail bucket only; the API Gateway
exports reach the function through a rule of the same pattern for the export bucket. Another
thread long-polls the SQS queue subscribed to the incident topic: the pager.

1. ``objects_latency``: ``--attacks`` objects, CloudTrail delivery files and API Gateway
   access-log exports in turn, each holding a cross-tenant access by an actor and an address of
   its own (so each is an incident of its own and pages once), put one at a time: from the put
   to the page's arrival, matched to its object by the actor and address it names.
2. ``windowed_latency``: a burst of authorization failures (``authz_failure_spike``, which needs
   history) in a CloudTrail file delivered at a random moment of an hour; the scheduled function
   ticks in simulated time (its Scheduler event's ``time``) from there until it pages.
3. ``sample_hour``: the sample's busiest hour delivered object by object, the scheduled function
   ticking every 5 simulated minutes over it and the lag after: its time and peak memory per tick.

The scheduled function's measurements take one row per entry of ``SCHEDULES``, the schedule
modes (clock-aligned windows alone, and with the sliding window at every tick); another mode is
one more ``Schedule`` there.

The figures are moto's in-process speed on this machine: real Lambda adds cold starts, and S3 ->
EventBridge -> Lambda its own delivery time (bench/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import ipaddress
import json
import logging
import math
import random
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.soak_month import EXPORTS, TRAIL

if TYPE_CHECKING:
    from tests.soak_month import Delivery, Deployment

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"
ACCOUNT = "111122223333"  # the pooled world's account (the sample's)
LAG_MINUTES = 15  # the stack's defaults: LagMinutes and WindowMinutes
WINDOW_MINUTES = 60
TICK_MINUTES = 5
ATTACK_DAY = datetime(2026, 11, 17, tzinfo=UTC)  # the day after the sample's last
PAGE_TIMEOUT_S = 60.0
EXPORTS_RULE = "tenantwatch-exports-object-created"
BURST_DENIALS = 60


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated between the two closest
    ranks (numpy's default); NaN when there are none."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def floor_to(ts: datetime, minutes: int) -> datetime:
    from pipeline.runs.unattended import floor_to as floor

    return floor(ts, minutes)


# --- what is delivered ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """An object to put, and the names a page about it carries (its actor and its address)."""

    bucket: str
    key: str
    body: bytes
    names: frozenset[str]
    kind: str  # cloudtrail | apigateway | subscription | benign
    # subscription: the CloudWatch Logs event the logs function is invoked with (no object put;
    # ``key`` names it in the harness)
    event: Mapping[str, Any] | None = None


def _z(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _address(i: int) -> str:
    return str(ipaddress.ip_address("198.18.0.1") + i)  # RFC 2544's benchmarking range


def trail_key(at: datetime, tag: str) -> str:
    """Where CloudTrail delivers a file at ``at`` (``tag``: the name's 16 unique characters)."""
    return (
        f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{at:%Y/%m/%d}/"
        f"{ACCOUNT}_CloudTrail_us-east-1_{at:%Y%m%dT%H%M}Z_{tag[:16]:0>16}.json.gz"
    )


def _trail_file(records: list[dict[str, Any]]) -> bytes:
    return gzip.compress(json.dumps({"Records": records}).encode(), mtime=0)


def _session(tenant: str, session: str, key_id: str, at: datetime) -> dict[str, Any]:
    """The token vendor's AssumeRole tagging ``session`` with ``tenant`` (key ``key_id``)."""
    from tests import logfactory as lf

    return lf.assume_role(tenant=tenant, session=session, new_key_id=key_id, time=_z(at))


def cloudtrail_attack(i: int, at: datetime) -> Planted:
    """A delivery file in which a session of one tenant reads another tenant's invoice."""
    from tests import logfactory as lf

    actor_t, target_t = f"t{1 + i % 9:04d}", f"t{40 + i % 9:04d}"
    session, key_id, ip = f"latct{i:04d}", f"ASIALATENCY{i:07d}", _address(i)
    records = [
        _session(actor_t, session, key_id, at - timedelta(minutes=3)),
        lf.ct(
            time=_z(at - timedelta(minutes=2)),
            session=session,
            key_id=key_id,
            key=f"tenants/{target_t}/invoices/{i}.pdf",
            sourceIPAddress=ip,
        ),
    ]
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/tenant-scoped-access/{session}"
    key = trail_key(at, f"Latency{i:09d}")
    return Planted(TRAIL, key, _trail_file(records), frozenset({arn, ip}), "cloudtrail")


def _foreign_read(i: int, principal: str, ip: str, t: datetime) -> dict[str, Any]:
    """An access-log line: ``principal``, its token naming one tenant, reads another's invoices."""
    from tests import logfactory as lf

    rec = lf.access_log(
        tenant_path=f"t{40 + i % 9:04d}",
        claim=f"t{1 + i % 9:04d}",
        principal=principal,
        when=f"{t:%d/%b/%Y:%H:%M:%S} +0000",
    )
    rec.update(ip=ip, requestTimeEpoch=str(int(t.timestamp() * 1000)))
    return rec


def apigateway_attack(i: int, at: datetime) -> Planted:
    """An access-log export (CloudWatch Logs' export task to S3) in which a user whose token
    names one tenant reads another tenant's invoices."""

    principal, ip, t = f"latapi{i:04d}", _address(i), at - timedelta(minutes=2)
    rec = _foreign_read(i, principal, ip, t)
    line = f"{t:%Y-%m-%dT%H:%M:%S}.000Z {json.dumps(rec)}\n"
    task = uuid.uuid5(uuid.NAMESPACE_URL, f"tenantwatch-latency/{i}")
    key = f"apigateway/exportedlogs/{task}/{task.hex}/000000.gz"
    body = gzip.compress(line.encode(), mtime=0)
    return Planted(EXPORTS, key, body, frozenset({principal, ip}), "apigateway")


def subscription_attack(i: int, at: datetime) -> Planted:
    """A CloudWatch Logs subscription payload of the access-log group (what the logs function
    receives seconds after API Gateway writes the line) in which a user whose token names one
    tenant reads another tenant's invoices."""
    from tests import logfactory as lf

    principal, ip, t = f"latcwl{i:04d}", _address(i), at - timedelta(seconds=5)
    rec = _foreign_read(i, principal, ip, t)
    event = lf.cwl_subscription(
        [rec], log_group="/aws/apigateway/access", timestamp_ms=int(t.timestamp() * 1000)
    )
    return Planted("", f"subscription-{i}", b"", frozenset({principal, ip}), "subscription", event)


KINDS = (cloudtrail_attack, apigateway_attack, subscription_attack)


def cross_tenant_objects(n: int, start: datetime) -> list[Planted]:
    """``n`` attacks, CloudTrail files, API Gateway exports and access-log subscription payloads
    in turn, their events a minute apart."""
    return [KINDS[i % len(KINDS)](i, start + timedelta(minutes=i)) for i in range(n)]


def benign_object(at: datetime) -> Planted:
    """A delivery file with nothing to report: a user reading its own tenant's invoice."""
    from tests import logfactory as lf

    records = [
        _session("t0001", "latwarm", "ASIALATENCYWARM001", at - timedelta(minutes=3)),
        lf.ct(time=_z(at - timedelta(minutes=2)), session="latwarm", key_id="ASIALATENCYWARM001"),
    ]
    return Planted(
        TRAIL, trail_key(at, "LatencyWarmUp"), _trail_file(records), frozenset(), "benign"
    )


def denial_burst(k: int, at: datetime) -> Planted:
    """A delivery file arriving at ``at``: one session denied ``BURST_DENIALS`` times on its own
    tenant's data in the four minutes before (no cross-tenant access: only the windowed
    detector can page it)."""
    from tests import logfactory as lf

    tenant, session, key_id, ip = (
        "t0005",
        f"latburst{k:03d}",
        f"ASIALATBURST{k:06d}",
        _address(1000 + k),
    )
    records = [_session(tenant, session, key_id, at - timedelta(minutes=5))]
    for j in range(BURST_DENIALS):
        records.append(
            lf.ct(
                time=_z(at - timedelta(minutes=4) + j * timedelta(seconds=3)),
                session=session,
                key_id=key_id,
                key=f"tenants/{tenant}/exports/{k}-{j}.csv",
                error="AccessDenied",
                sourceIPAddress=ip,
            )
        )
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/tenant-scoped-access/{session}"
    body = _trail_file(records)
    return Planted(
        TRAIL, trail_key(at, f"LatencyBurst{k:04d}"), body, frozenset({arn, ip}), "burst"
    )


# --- the sample --------------------------------------------------------------------------------


def sample_deliveries() -> list[Delivery]:
    """Every object of the sample with when it lands (the month soak's plan: each trail file at
    the end of its slot, no late ones; each day's log exports after the day)."""
    from tests.soak_month import MonthSpec, plan

    return plan(MonthSpec(late_share=0.0, twice_share=0.0), SAMPLE)


def busiest_hour(deliveries: Sequence[Delivery]) -> datetime:
    """The hour of the sample's last 24 hours whose delivered CloudTrail files hold the most
    records."""
    trail = [d for d in deliveries if d.path is not None and "/CloudTrail/" in d.key]
    since = max(d.at for d in trail) - timedelta(days=1)
    records: dict[datetime, int] = {}
    for d in trail:
        if d.path is None or d.at < since:
            continue
        n = len(json.loads(gzip.decompress(d.path.read_bytes()))["Records"])
        hour = floor_to(d.at, 60)
        records[hour] = records.get(hour, 0) + n
    return max(records, key=lambda h: (records[h], h))


def split(
    deliveries: Sequence[Delivery], start: datetime, end: datetime
) -> tuple[list[Delivery], list[Delivery]]:
    """The deliveries before ``start`` (the lake's history) and those in [start, end)."""
    return (
        [d for d in deliveries if d.at < start],
        [d for d in deliveries if start <= d.at < end],
    )


def history_lake(out: Path, deliveries: Sequence[Delivery], until: datetime) -> Path:
    """A local lake of ``deliveries`` as a deployed stack holds it at ``until``: ingested, the
    days before ``until``'s compacted, the day before the last window detected and alerted
    (its notifications kept in the lake: there is no topic yet)."""
    from pipeline import compact
    from pipeline.config import load_config
    from pipeline.lake import Lake
    from pipeline.runs.on_demand import run_all

    cfg = load_config(SAMPLE / "tenantwatch.toml", environ={})
    end = floor_to(until - timedelta(minutes=LAG_MINUTES), WINDOW_MINUTES)
    files = [str(d.path) for d in deliveries if d.path is not None]
    run_all(files, str(out), cfg, since=end - timedelta(days=1), until=end)
    compact.compact(
        Lake(str(out)), floor_to(until, 24 * 60), target_bytes=cfg.lake.compact_file_mb << 20
    )
    return out


# --- the deployment and its wiring ----------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    status: str
    ended: float  # perf_counter


@dataclass
class Page:
    received: float  # perf_counter
    names: frozenset[str]
    kind: str
    detector: str


def _names(envelope: Mapping[str, Any]) -> frozenset[str]:
    """Who a page is about: its actor, observables and entities (``kind:value`` -> value)."""
    try:
        body = json.loads(envelope.get("Message") or "{}")
    except ValueError:
        return frozenset()
    out = {str(o.get("value")) for o in body.get("observables") or []}
    actor = (body.get("actor") or {}).get("user") or {}
    if actor.get("uid"):
        out.add(str(actor["uid"]))
    tw = (body.get("unmapped") or {}).get("tenantwatch") or {}
    out |= {str(e).partition(":")[2] for e in tw.get("entities") or []}
    return frozenset(out)


class Poller(threading.Thread):
    """Long-polls an SQS queue and hands each message to ``take``, until stopped."""

    def __init__(self, url: str, take: Callable[[dict[str, Any]], None], batch: int) -> None:
        import boto3

        super().__init__(daemon=True)
        # One at a time for the function: a message is deleted once handled, and one handled
        # for longer than the visibility timeout (30 s) would be received again.
        self.url, self.take, self.batch = url, take, batch
        self.sqs = boto3.client("sqs")  # made here: creating clients is not thread-safe
        self.stopping = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                got = self.sqs.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=self.batch,
                    WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                )
            except Exception as exc:  # the server going away at the end
                if not self.stopping.is_set():
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                return
            for m in got.get("Messages", []):
                try:
                    self.take(m)
                except Exception as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class Harness:
    """One deployment: the lake's root, the object function behind its queue, the pager, and
    the scheduled function called in simulated time. Invocations never overlap (``lock``)."""

    def __init__(self, deployment: Deployment, events_queue: str) -> None:
        import boto3

        self.deployment = deployment
        self.root = deployment.env["TENANTWATCH_LAKE_ROOT"]
        self.s3 = boto3.client("s3")
        self.lock = threading.Lock()
        self.cond = threading.Condition()
        self.runs: dict[str, Run] = {}
        self.pages: list[Page] = []
        self.sink = io.StringIO()
        self.objects = Poller(events_queue, self._object_event, batch=1)
        self.pager = Poller(deployment.queue, self._page, batch=10)

    def __enter__(self) -> Harness:
        self.objects.start()
        self.pager.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.objects.stop()
        self.pager.stop()

    @property
    def errors(self) -> list[str]:
        return self.objects.errors + self.pager.errors

    def invoke(
        self, fn: Callable[[Any, Any], dict[str, Any]], event: Any
    ) -> tuple[dict[str, Any], float]:
        from tests.fakes import FakeContext

        with self.lock, contextlib.redirect_stdout(self.sink):  # the metric lines (EMF)
            t0 = time.perf_counter()
            try:
                out = fn(event, FakeContext())
            except Exception as exc:
                out = {"status": f"error: {type(exc).__name__}: {exc}"[:300]}
            seconds = time.perf_counter() - t0
            self.sink.seek(0)
            self.sink.truncate()
        return out, seconds

    def _object_event(self, message: dict[str, Any]) -> None:
        from pipeline import handler

        event = json.loads(message["Body"])
        key = str(event.get("detail", {}).get("object", {}).get("key", ""))
        out, seconds = self.invoke(handler.on_s3_object, event)
        with self.cond:
            self.runs[key] = Run(seconds, str(out.get("status")), time.perf_counter())
            self.cond.notify_all()

    def _page(self, message: dict[str, Any]) -> None:
        received = time.perf_counter()
        envelope = json.loads(message["Body"])
        attrs = envelope.get("MessageAttributes") or {}
        page = Page(
            received,
            _names(envelope),
            str((attrs.get("kind") or {}).get("Value", "")),
            str((attrs.get("detector") or {}).get("Value", "")),
        )
        with self.cond:
            self.pages.append(page)
            self.cond.notify_all()

    def put(self, p: Planted) -> float:
        """Puts the object (or, for a subscription payload, invokes the logs function with it,
        as CloudWatch Logs does, on a thread of its own); when that started (perf_counter)."""
        t0 = time.perf_counter()
        if p.event is not None:
            threading.Thread(target=self._log_event, args=(p,), daemon=True).start()
            return t0
        self.s3.put_object(Bucket=p.bucket, Key=p.key, Body=p.body)
        return t0

    def _log_event(self, p: Planted) -> None:
        from pipeline import handler

        out, seconds = self.invoke(handler.on_log_events, p.event)
        with self.cond:
            self.runs[p.key] = Run(seconds, str(out.get("status")), time.perf_counter())
            self.cond.notify_all()

    def run_of(self, key: str, timeout: float = PAGE_TIMEOUT_S) -> Run | None:
        """The object function's run for ``key``, once it has ended."""
        with self.cond:
            self.cond.wait_for(lambda: key in self.runs, timeout)
            return self.runs.get(key)

    def page_of(self, p: Planted, timeout: float = PAGE_TIMEOUT_S) -> Page | None:
        """The first page naming ``p``'s actor or address."""

        def first() -> Page | None:
            return next((x for x in self.pages if x.names & p.names), None)

        with self.cond:
            self.cond.wait_for(lambda: first() is not None, timeout)
            return first()

    def tick(self, when: datetime, execution_id: str) -> tuple[dict[str, Any], float]:
        """The scheduled function, its Scheduler event at ``when``."""
        from pipeline import handler
        from tests import awsstack

        event = awsstack.scheduler_event(self.deployment.stack.template, when, execution_id)
        return self.invoke(handler.scheduled, event)


def _reset(endpoint: str) -> None:
    url = f"{endpoint}/moto-api/reset"  # our own server on 127.0.0.1
    urllib.request.urlopen(urllib.request.Request(url, method="POST")).read()  # noqa: S310


def _upload(lake: Path, root: str) -> int:
    import boto3

    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    n = 0
    for path in sorted(lake.rglob("*")):
        rel = path.relative_to(lake).as_posix()
        if path.is_file() and not rel.startswith("_tmp/"):
            s3.put_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{rel}", Body=path.read_bytes())
            n += 1
    return n


def wire_objects(deployment: Deployment) -> str:
    """S3 -> EventBridge -> the object function as the stack wires it, the rule's target an SQS
    queue (moto cannot invoke a Lambda target); the export bucket by a rule of the same
    pattern. The queue's URL."""
    import boto3

    s3, events, sqs = boto3.client("s3"), boto3.client("events"), boto3.client("sqs")
    for bucket in (TRAIL, EXPORTS):
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    url: str = sqs.create_queue(QueueName="object-function")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rules = [
        r for r in events.list_rules()["Rules"] if "ObjectFunctionTrailObjectCreated" in r["Name"]
    ]
    if len(rules) != 1:
        raise RuntimeError(f"the stack's object rule: {[r['Name'] for r in rules]}")
    rule = rules[0]
    old = [t["Id"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]]
    if old:
        events.remove_targets(Rule=rule["Name"], Ids=old)
    events.put_targets(Rule=rule["Name"], Targets=[{"Id": "ObjectFunction", "Arn": arn}])
    pattern = json.loads(rule["EventPattern"])
    pattern["detail"]["bucket"]["name"] = [EXPORTS]
    pattern["detail"]["object"]["key"] = [{"prefix": "apigateway/"}, {"prefix": "authorizer/"}]
    events.put_rule(Name=EXPORTS_RULE, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=EXPORTS_RULE, Targets=[{"Id": "ObjectFunction", "Arn": arn}])
    return url


@contextlib.contextmanager
def deployed(
    endpoint: str, lake: Path | None, env: Mapping[str, str] | None = None
) -> Iterator[Harness]:
    """A fresh stack on the moto server at ``endpoint``, its lake a copy of ``lake`` (or empty),
    wired, its pollers running; the functions' environment, with ``env`` over it, set for the
    block."""
    from pipeline import handler
    from tests.soak_month import aws_environment, deploy, environment

    _reset(endpoint)
    level = handler.logger.log_level
    handler.logger.setLevel(logging.WARNING)  # not a line per run
    try:
        with environment(aws_environment(endpoint)):
            config = (SAMPLE / "tenantwatch.toml").read_text()
            deployment = deploy(LAG_MINUTES, TICK_MINUTES, config)
            with environment({**deployment.env, **(env or {})}):
                if lake is not None:
                    _upload(lake, deployment.env["TENANTWATCH_LAKE_ROOT"])
                with Harness(deployment, wire_objects(deployment)) as h:
                    yield h
    finally:
        handler.logger.setLevel(level)


# --- 1: the object function -----------------------------------------------------------------------


@dataclass
class Delivered:
    planted: Planted
    latency_s: float | None  # put -> page; None: no page within PAGE_TIMEOUT_S
    run: Run | None
    pages: int = 0  # pages naming it, counted at the end


@dataclass
class ObjectsResult:
    delivered: list[Delivered]
    first_run: Run | None  # the deployment's first object (nothing to report), not counted
    unmatched: int  # pages naming none of the objects
    errors: list[str]

    @property
    def paged(self) -> int:
        return sum(1 for d in self.delivered if d.latency_s is not None)


def objects_latency(
    endpoint: str, lake: Path | None, attacks: int, pause_s: float = 0.2
) -> ObjectsResult:
    """Put ``attacks`` objects one at a time, each after the page of the one before (or its
    timeout) and a pause; from each put to its page."""
    planted = cross_tenant_objects(attacks, ATTACK_DAY + timedelta(hours=10))
    out: list[Delivered] = []
    with deployed(endpoint, lake) as h:
        warm = benign_object(ATTACK_DAY + timedelta(hours=9, minutes=50))
        h.put(warm)
        first = h.run_of(warm.key)
        for i, p in enumerate(planted):
            t0 = h.put(p)
            page = h.page_of(p)
            out.append(Delivered(p, page.received - t0 if page else None, h.run_of(p.key)))
            if (i + 1) % 10 == 0:
                print(f"  objects: {i + 1} of {attacks} put", file=sys.stderr, flush=True)
            time.sleep(pause_s)
        time.sleep(1.0)  # a page sent twice would be here by now
        with h.cond:
            pages = list(h.pages)
        errors = h.errors
    for d in out:
        d.pages = sum(1 for x in pages if x.names & d.planted.names)
    unmatched = sum(1 for x in pages if not any(x.names & d.planted.names for d in out))
    return ObjectsResult(out, first, unmatched, errors)


# --- 2: the schedule ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """How the scheduled function runs: one row of each table. ``env`` is set on the functions
    (``TENANTWATCH_RUN_*``); ``tick_minutes`` is the Scheduler's period; ``due(delivered,
    last_event)`` is the tick that should page a burst delivered then (its last event then)."""

    name: str
    tick_minutes: int
    env: Mapping[str, str]
    due: Callable[[datetime, datetime], datetime]

    def watermark_at(self, t: datetime) -> datetime:
        """The watermark a schedule that has ticked since long before ``t`` holds at ``t``:
        the last window whose end the lag has passed at the last tick."""
        last_tick = floor_to(t, self.tick_minutes)
        return floor_to(last_tick - timedelta(minutes=LAG_MINUTES), WINDOW_MINUTES)


def _first_tick_at_or_after(t: datetime, minutes: int) -> datetime:
    tick = floor_to(t, minutes)
    return tick if tick == t else tick + timedelta(minutes=minutes)


def _aligned_due(delivered: datetime, last_event: datetime) -> datetime:
    """The first tick at or after the end of the last event's window plus the lag (a burst
    across an hour's end can page a window earlier, from its first part)."""
    end = floor_to(last_event, WINDOW_MINUTES) + timedelta(minutes=WINDOW_MINUTES)
    return _first_tick_at_or_after(end + timedelta(minutes=LAG_MINUTES), TICK_MINUTES)


def _sliding_due(delivered: datetime, last_event: datetime) -> datetime:
    """The first tick after the delivery: its window (the hour up to the tick) holds the burst."""
    return floor_to(delivered, TICK_MINUTES) + timedelta(minutes=TICK_MINUTES)


CLOCK_ALIGNED = Schedule(
    "clock-aligned 1-hour windows, 15-min lag, 5-min ticks",
    TICK_MINUTES,
    {"TENANTWATCH_RUN_SLIDE": "0"},
    _aligned_due,
)
SLIDING = Schedule(
    "the same and a sliding 1-hour window at every tick",
    TICK_MINUTES,
    {"TENANTWATCH_RUN_SLIDE": "1"},
    _sliding_due,
)
SCHEDULES: tuple[Schedule, ...] = (CLOCK_ALIGNED, SLIDING)


@dataclass
class Burst:
    delivered_at: datetime  # simulated
    due_by: datetime  # the tick that should page it (``Schedule.due``)
    paged_at: datetime | None  # the tick that paged (simulated)
    tick_s: float | None  # wall time of that tick
    ticks: int  # ticks run until it paged

    @property
    def delay_min(self) -> float | None:
        if self.paged_at is None:
            return None
        return (self.paged_at - self.delivered_at).total_seconds() / 60


@dataclass
class WindowedResult:
    schedule: Schedule
    bursts: list[Burst]
    idle_tick_s: list[float]  # the other ticks' wall times
    errors: list[str]


def windowed_latency(
    endpoint: str, lake: Path | None, schedule: Schedule, bursts: int, seed: int = 7
) -> WindowedResult:
    """``bursts`` denial bursts, each delivered at a random moment of its own hour (stratified:
    the k-th in the k-th of ``bursts`` equal parts of the hour), each in its own three hours;
    the scheduled function ticks from the delivery on until it pages (three hours at most)."""
    from pipeline.runs.watermark import write_watermark

    rng = random.Random(seed)
    step = timedelta(minutes=schedule.tick_minutes)
    out: list[Burst] = []
    idle: list[float] = []
    with deployed(endpoint, lake, schedule.env) as h:
        for k in range(bursts):
            offset = (k + rng.random()) * 3600 / bursts
            at = ATTACK_DAY + timedelta(hours=3 * k + 1, seconds=offset)
            write_watermark(h.root, schedule.watermark_at(at), "latency-bench")
            p = denial_burst(k, at)
            h.put(p)
            h.run_of(p.key)  # the object function ingests it (nothing there it pages)
            burst = Burst(at, schedule.due(at, at - timedelta(minutes=1)), None, None, 0)
            tick = floor_to(at, schedule.tick_minutes) + step
            while tick <= at + timedelta(hours=3):
                report, seconds = h.tick(tick, f"latency-{k}-{burst.ticks}")
                burst.ticks += 1
                sent = (report.get("alert") or {}).get("notifications_sent", 0)
                if h.page_of(p, PAGE_TIMEOUT_S if sent else 0.0):
                    burst.paged_at, burst.tick_s = tick, seconds
                    break
                idle.append(seconds)
                tick += step
            out.append(burst)
            paged = f"paged at {burst.paged_at:%H:%M}" if burst.paged_at else "not paged"
            print(
                f"  {schedule.name}: burst {k + 1} of {bursts} at {at:%H:%M:%S}, {paged}",
                file=sys.stderr,
                flush=True,
            )
        errors = h.errors
    return WindowedResult(schedule, out, idle, errors)


# --- 3: an hour of the sample ---------------------------------------------------------------------


@dataclass
class Tick:
    at: datetime
    seconds: float
    peak_mb: float  # the process's peak RSS during the tick
    before_mb: float  # its RSS when the tick began
    status: str
    windows: int  # aligned windows detected


def rss_mb() -> float:
    """This process's resident memory now (Linux; NaN elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


@dataclass
class HourResult:
    schedule: Schedule
    hour: datetime
    objects: int
    records: int
    ticks: list[Tick]
    object_runs: list[float]
    errors: list[str]


def sample_hour(
    endpoint: str, lake: Path, deliveries: Sequence[Delivery], hour: datetime, schedule: Schedule
) -> HourResult:
    """The hour's objects delivered as they land (each handed to the object function), the
    scheduled function ticking every 5 minutes from the hour's first to the lag after its end."""
    from pipeline.runs.watermark import write_watermark
    from tests.soak_month import peak_rss_mb, reset_peak_rss

    todo = sorted(split(deliveries, hour, hour + timedelta(hours=1))[1], key=lambda d: d.at)
    records = sum(
        len(json.loads(gzip.decompress(d.path.read_bytes())).get("Records", []))
        for d in todo
        if d.path is not None and "/CloudTrail/" in d.key
    )
    ticks: list[Tick] = []
    runs: list[float] = []
    step = timedelta(minutes=TICK_MINUTES)
    with deployed(endpoint, lake, schedule.env) as h:
        write_watermark(h.root, schedule.watermark_at(hour), "latency-bench")
        i = 0
        at = hour
        while at < hour + timedelta(minutes=60 + LAG_MINUTES):
            at += step
            while i < len(todo) and todo[i].at <= at:
                d = todo[i]
                i += 1
                if d.path is None:
                    continue
                h.put(Planted(d.bucket, d.key, d.path.read_bytes(), frozenset(), "sample"))
                run = h.run_of(d.key)
                if run is not None:
                    runs.append(run.seconds)
            before = rss_mb()
            reset_peak_rss()
            report, seconds = h.tick(at, f"latency-hour-{len(ticks)}")
            windows = len(report.get("windows") or [])
            ticks.append(
                Tick(at, seconds, peak_rss_mb(), before, str(report.get("status")), windows)
            )
        errors = h.errors
    return HourResult(schedule, hour, len(todo), records, ticks, runs, errors)


# --- the tables -----------------------------------------------------------------------------------


def _s(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f} s"


def _min(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1f} min"


LATENCY_HEAD = (
    "| path | what pages | paged | delivery -> page p50 | p95 | max | function run p50 | p95 |\n"
    "|---|---|---|---|---|---|---|---|"
)


OBJECT_PATHS = (
    ("cloudtrail", "`on_s3_object`, CloudTrail files put one at a time"),
    ("apigateway", "`on_s3_object`, API Gateway access-log exports put one at a time"),
    ("subscription", "`on_log_events`, access-log subscription payloads, one at a time"),
    ("", "all of the above"),
)


def objects_rows(r: ObjectsResult) -> list[str]:
    """One row per way in, and one for them all."""
    rows = []
    for kind, label in OBJECT_PATHS:
        mine = [d for d in r.delivered if not kind or d.planted.kind == kind]
        if not mine:
            continue
        lat = [d.latency_s for d in mine if d.latency_s is not None]
        runs = [d.run.seconds for d in mine if d.run is not None]
        paged = f"{len(lat)} of {len(mine)}"
        rows.append(
            f"| {label} | cross_tenant_access | {paged} "
            f"| {_s(percentile(lat, 50))} | {_s(percentile(lat, 95))} "
            f"| {_s(max(lat) if lat else math.nan)} | {_s(percentile(runs, 50))} "
            f"| {_s(percentile(runs, 95))} |"
        )
    return rows


def windowed_row(r: WindowedResult) -> str:
    delays = [b.delay_min for b in r.bursts if b.delay_min is not None]
    ticks = [b.tick_s for b in r.bursts if b.tick_s is not None]
    paged = f"{len(delays)} of {len(r.bursts)}"
    return (
        f"| `scheduled`, {r.schedule.name} (simulated time) | authz_failure_spike | {paged} "
        f"| {_min(percentile(delays, 50))} | {_min(percentile(delays, 95))} "
        f"| {_min(max(delays) if delays else math.nan)} "
        f"| {_s(percentile(ticks, 50))} (the paging tick) "
        f"| {_s(max(ticks) if ticks else math.nan)} (max) |"
    )


PEER_ROWS = (
    "| GuardDuty (documented, not run) | its finding types | | a new finding to EventBridge: "
    '"near real-time" (formerly "within 5 minutes of the finding"); activity to finding: not '
    "documented | | a finding's later occurrences: every 6 hours by default (15 min or 1 h "
    "if set) | | |\n"
    "| CloudTrail Insights (documented, not run) | API call and error rates per minute against "
    "a baseline | | no delivery time per Insights event documented | | up to 36 hours before "
    "the first after enabling | | |"
)


def hour_table(results: Sequence[HourResult]) -> str:
    rows = [
        "| schedule | ticks | tick s p50 | max | ticks detecting an aligned window (s) "
        "| peak RSS MB p50 | max | above the RSS before the tick, MB p50 | max "
        "| object runs s p50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        secs = [t.seconds for t in r.ticks]
        peaks = [t.peak_mb for t in r.ticks]
        grew = [t.peak_mb - t.before_mb for t in r.ticks]
        aligned = ", ".join(f"{t.seconds:.2f}" for t in r.ticks if t.windows) or "none"
        rows.append(
            f"| {r.schedule.name} | {len(r.ticks)} | {percentile(secs, 50):.2f} "
            f"| {max(secs, default=math.nan):.2f} | {aligned} | {percentile(peaks, 50):.0f} "
            f"| {max(peaks, default=math.nan):.0f} | {percentile(grew, 50):.0f} "
            f"| {max(grew, default=math.nan):.0f} | {percentile(r.object_runs, 50):.2f} |"
        )
    return "\n".join(rows)


def main(args: argparse.Namespace) -> None:
    from tests.soak_month.server import MotoProcess

    started = time.perf_counter()
    deliveries = sample_deliveries()
    hour = busiest_hour(deliveries)
    before, _ = split(deliveries, hour, hour + timedelta(hours=1))
    with tempfile.TemporaryDirectory(prefix="tenantwatch-latency-") as tmp:
        print("latency: building the sample's lakes", file=sys.stderr, flush=True)
        full = history_lake(Path(tmp) / "full", deliveries, max(d.at for d in deliveries))
        until_hour = history_lake(Path(tmp) / "before-hour", before, hour)
        with MotoProcess() as endpoint:
            print("latency: the object function", file=sys.stderr, flush=True)
            objs = objects_latency(endpoint, full, args.attacks)
            windowed = [windowed_latency(endpoint, full, s, args.bursts) for s in SCHEDULES]
            print("latency: an hour of the sample", file=sys.stderr, flush=True)
            hourly = [sample_hour(endpoint, until_hour, deliveries, hour, s) for s in SCHEDULES]
    missing = [d.planted.key for d in objs.delivered if d.latency_s is None]
    twice = [d.planted.key for d in objs.delivered if d.pages > 1]
    print(
        f"\nlatency: the pooled sample ({SAMPLE.name}/, 15 days) as history; "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print(LATENCY_HEAD)
    for row in objects_rows(objs):
        print(row)
    for w in windowed:
        print(windowed_row(w))
    print(PEER_ROWS)
    print()
    first = objs.first_run
    lat = [d.latency_s for d in objs.delivered if d.latency_s is not None]
    print(
        f"object function: the deployment's first run (nothing to report) "
        f"{_s(first.seconds if first else math.nan)}; delivery -> page p50 of the first ten "
        f"objects {_s(percentile(lat[:10], 50))}, of the last ten {_s(percentile(lat[-10:], 50))} "
        f"(all in one hour's window); pages naming no object: {objs.unmatched}; objects paged "
        f"more than once: {len(twice)}"
    )
    for key in missing:
        print(f"NOT PAGED within {PAGE_TIMEOUT_S:.0f} s: {key}")
    for w in windowed:
        for b in w.bursts:
            paged = f"{b.paged_at:%H:%M}" if b.paged_at else "NOT PAGED"
            print(
                f"{w.schedule.name}: delivered {b.delivered_at:%Y-%m-%d %H:%M:%S}, due by "
                f"{b.due_by:%H:%M}, paged {paged} after {b.ticks} ticks"
            )
        idle = _s(percentile(w.idle_tick_s, 50)) if w.idle_tick_s else "none ran"
        print(f"{w.schedule.name}: the ticks that did not page, p50 {idle}")
    h = hourly[0]
    print(
        f"\nThe scheduled function over the sample's busiest hour, {h.hour:%Y-%m-%d %H:00} UTC "
        f"({h.objects} objects, {h.records:,} CloudTrail records), a tick every "
        f"{TICK_MINUTES} min from its first to {LAG_MINUTES} min after its end:\n"
    )
    print(hour_table(hourly))
    errors = objs.errors + [e for w in windowed for e in w.errors]
    for err in errors + [e for r in hourly for e in r.errors]:
        print(f"error: {err}")
