"""The latency benchmark's inputs and wiring (``bench/latency.py`` measures with them): the
attack objects and bursts it delivers, the sample it starts from, and the deployment on moto
with its pollers (the object function behind its queue, the pager)."""

from __future__ import annotations

import contextlib
import gzip
import io
import ipaddress
import json
import logging
import math
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
    """A delivery file with nothing to report: a user reading its own tenant's invoice, in its
    tenant's region (t0002's is us-east-1, the trail's, in the pooled world's ``[[tenants]]``)."""
    from tests import logfactory as lf

    records = [
        _session("t0002", "latwarm", "ASIALATENCYWARM001", at - timedelta(minutes=3)),
        lf.ct(
            time=_z(at - timedelta(minutes=2)),
            session="latwarm",
            key_id="ASIALATENCYWARM001",
            key="tenants/t0002/invoices/1.pdf",
        ),
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
