"""Publishing through a network that breaks: a rule-driven fault proxy (tests/httpfaults.py)
on 127.0.0.1 between the alert stage and a moto server. Each page arrives exactly once, or is
``in_doubt`` and reported by every later run until someone resolves it; never twice.

What arrived is counted on an SQS queue subscribed to the topic, read straight from moto.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline import aws
from pipeline.alert import store
from pipeline.alert.run import run_alert
from pipeline.cli import cli
from pipeline.config import AlertingConfig, Config
from pipeline.lake import Lake
from tests.alertsinks import (
    NOTIFIED,
    Sinks,
    copy_lake,
    direct,
    make_sinks,
    upload_lake,
    write_findings_lake,
)
from tests.httpfaults import Rule, RuleProxy, in_front_of

pytestmark = pytest.mark.e2e
PUBLISH = rb"Action=Publish(Batch)?&"  # SNS speaks the query protocol: the action is in the body


@pytest.fixture(scope="module")
def findings_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "lake"
    write_findings_lake(str(root))
    return root


@pytest.fixture(scope="module")
def first(findings_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> int:
    """How many notifications the first ``PublishBatch`` carries: at most ten, and together
    within SNS's 256 KB (each message holds the OCSF body once per machine protocol)."""
    from pipeline.alert.sns import SnsChannel

    lake = copy_lake(findings_lake, tmp_path_factory.mktemp("sizes") / "lake")
    run_alert(lake, Config())  # the local channel: the same rows, never sent anywhere
    rows = [
        store.read_row(Lake(lake), r["_path"])
        for _, r in sorted(store.load_outbox(Lake(lake)).items())
    ]
    n = len(next(object.__new__(SnsChannel).batches(rows)))
    assert 1 < n < NOTIFIED  # the faults below hit the first batch and spare the rest
    return n


@pytest.fixture
def proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RuleProxy]:
    """Every AWS call of the code under test goes through the proxy; the tests' own reads go to
    moto directly."""
    from botocore.retries import standard

    from pipeline.alert import calls

    # No real waiting between attempts, wherever the retry happens.
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0.01)
    monkeypatch.setattr(calls, "BACKOFF_S", 0.01)
    with in_front_of(aws, monkeypatch) as p:
        yield p


@pytest.fixture
def sinks(aws: str) -> Sinks:
    return make_sinks(aws)


def _cfg(s: Sinks) -> Config:
    return Config(alerting=AlertingConfig(sns_topic_arn=s.topic_arn))


def _states(lake: str) -> dict[str, str]:
    return {n: r["state"] for n, r in store.load_outbox(Lake(lake)).items()}


def _config_file(tmp_path: Path, s: Sinks) -> str:
    path = tmp_path / "tenantwatch.toml"
    path.write_text(f'[alerting]\nsns_topic_arn = "{s.topic_arn}"\n')
    return str(path)


# --- the answer is lost after SNS published -------------------------------------------------------


@pytest.mark.parametrize("action", ["drop-after", "error-after", "reset-after"])
def test_a_lost_answer_is_in_doubt_never_a_second_page(
    findings_lake: Path, sinks: Sinks, proxy: RuleProxy, tmp_path: Path, action: str, first: int
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    proxy.add(Rule(action, method="POST", body=PUBLISH, times=1))  # the first batch of ten

    result = run_alert(lake, _cfg(sinks))

    got = sinks.deliveries()
    assert len(got) == NOTIFIED and set(got.values()) == {1}  # every page, and once
    n = result.summary["notifications"]
    # SNS published the first batch but its answer never came: those ten are in doubt, not
    # "sent" (nobody can know) and not sent again (that would page twice).
    assert n["in_doubt"] == first and n["sent"] == NOTIFIED - first and n["failed"] == 0
    assert sorted(_states(lake).values()) == ["in_doubt"] * first + ["sent"] * (NOTIFIED - first)
    assert len(proxy.actions(action)) == 1


def test_every_answer_lost_pages_each_incident_once(
    findings_lake: Path, sinks: Sinks, proxy: RuleProxy, tmp_path: Path
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    proxy.add(Rule("drop-after", method="POST", body=PUBLISH))

    result = run_alert(lake, _cfg(sinks))

    got = sinks.deliveries()
    assert len(got) == NOTIFIED and set(got.values()) == {1}
    assert result.summary["notifications"]["in_doubt"] == NOTIFIED
    assert set(_states(lake).values()) == {"in_doubt"}


@pytest.mark.parametrize(
    "rule",
    [
        Rule("error-before", method="POST", body=PUBLISH, status=503, times=1),
        Rule("reset-before", method="POST", body=PUBLISH, times=1),
    ],
    ids=["503-before", "reset-before"],
)
def test_an_unanswered_call_that_never_published_is_in_doubt_and_resent_by_hand(
    findings_lake: Path, sinks: Sinks, proxy: RuleProxy, tmp_path: Path, rule: Rule, first: int
) -> None:
    # The proxy broke the call before SNS saw it, but the caller cannot tell that from a call
    # SNS took: in doubt, never re-sent on its own; an engineer who checked resends it.
    lake = copy_lake(findings_lake, tmp_path / "lake")
    proxy.add(rule)
    run1 = run_alert(lake, _cfg(sinks))
    doubtful = run1.summary["in_doubt_ids"]
    assert len(doubtful) == first and run1.summary["notifications"]["sent"] == NOTIFIED - first
    assert len(sinks.deliveries()) == NOTIFIED - first

    resent = run_alert(lake, _cfg(sinks), resend=doubtful)
    assert resent.summary["notifications"]["sent"] == first and resent.summary["in_doubt_ids"] == []
    assert sinks.deliveries() == dict.fromkeys(doubtful, 1)


def test_an_answer_slower_than_the_read_timeout_is_in_doubt(
    findings_lake: Path,
    sinks: Sinks,
    proxy: RuleProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    first: int,
) -> None:
    monkeypatch.setattr(aws, "READ_TIMEOUT_S", 0.5)
    aws.reset()
    lake = copy_lake(findings_lake, tmp_path / "lake")
    proxy.add(Rule("delay", method="POST", body=PUBLISH, delay_s=1.5, times=1))
    result = run_alert(lake, _cfg(sinks))
    assert result.summary["notifications"]["in_doubt"] == first
    got = sinks.deliveries()
    assert len(got) == NOTIFIED and set(got.values()) == {1}


def test_throttling_is_retried_in_the_run_and_sends_once(
    findings_lake: Path, sinks: Sinks, proxy: RuleProxy, tmp_path: Path
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    proxy.add(Rule("error-before", method="POST", body=PUBLISH, status=400, times=3))
    result = run_alert(lake, _cfg(sinks))
    assert result.summary["notifications"]["sent"] == NOTIFIED
    got = sinks.deliveries()
    assert len(got) == NOTIFIED and set(got.values()) == {1}
    assert len(proxy.actions("error-before")) == 3


# --- a FIFO topic: repeating within its deduplication window is safe ------------------------------


@pytest.fixture
def fifo(aws: str) -> Sinks:
    return make_sinks(aws, fifo=True)


def test_on_a_fifo_topic_a_lost_answer_is_retried_and_arrives_once(
    findings_lake: Path, fifo: Sinks, proxy: RuleProxy, tmp_path: Path
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    proxy.add(Rule("drop-after", method="POST", body=PUBLISH, times=2))
    result = run_alert(lake, _cfg(fifo))
    n = result.summary["notifications"]
    assert n["sent"] == NOTIFIED and n["in_doubt"] == 0
    # Each batch that lost its answer was published again with the same deduplication ids; the
    # copies were dropped (moto drops them in the FIFO queue, SNS does at the topic).
    got = fifo.deliveries()
    assert len(got) == NOTIFIED and set(got.values()) == {1}
    assert len(proxy.actions("drop-after")) == 2
    sent = [m for m in proxy.actions("pass") if m.method == "POST"]
    assert all(b"MessageDeduplicationId" in m.body and b"MessageGroupId" in m.body for m in sent)


def test_on_a_fifo_topic_a_dead_runs_recent_publish_is_finished_not_doubted(
    findings_lake: Path, fifo: Sinks, proxy: RuleProxy, tmp_path: Path, first: int
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    _die_after_first_publish(lake, _cfg(fifo))
    publishing = [n for n, s in _states(lake).items() if s == "publishing"]
    assert len(publishing) == first
    rerun = run_alert(lake, _cfg(fifo))
    assert rerun.summary["in_doubt_ids"] == [] and set(_states(lake).values()) == {"sent"}
    got = fifo.deliveries()
    assert len(got) == NOTIFIED and set(got.values()) == {1}


def test_on_a_fifo_topic_an_old_interrupted_publish_is_in_doubt(
    findings_lake: Path, fifo: Sinks, proxy: RuleProxy, tmp_path: Path, first: int
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    _die_after_first_publish(lake, _cfg(fifo))
    for row in store.load_outbox(Lake(lake)).values():  # the attempt was made 5 minutes ago
        if row["state"] == "publishing":
            full = store.read_row(Lake(lake), row["_path"])
            _rewrite_updated_at(Lake(lake), full, minutes_ago=5)
    rerun = run_alert(lake, _cfg(fifo))
    assert len(rerun.summary["in_doubt_ids"]) == first  # past SNS's dedup window: not repeated
    got = fifo.deliveries()
    assert len(got) == NOTIFIED and set(got.values()) == {1}


class Killed(BaseException):
    """Stands for the process dying (SIGKILL, Lambda timeout): nothing catches it."""


def _die_after_first_publish(lake: str, cfg: Config) -> None:
    client = aws.publisher("sns")

    def die(**_: Any) -> None:
        raise Killed

    client.meta.events.register("after-call.sns", die)
    try:
        with pytest.raises(Killed):
            run_alert(lake, cfg)
    finally:
        client.meta.events.unregister("after-call.sns", die)


def _rewrite_updated_at(lake: Lake, row: dict[str, Any], minutes_ago: int) -> None:
    import pyarrow as pa

    from pipeline import schema

    clean = {k: v for k, v in row.items() if not k.startswith("_")}
    clean["updated_at"] = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    lake.write_table(row["_path"], pa.Table.from_pylist([clean], schema=schema.OUTBOX))


# --- in doubt: reported by every run until resolved ----------------------------------------------


def test_in_doubt_is_reported_by_every_run_until_resolved(
    findings_lake: Path, sinks: Sinks, proxy: RuleProxy, tmp_path: Path, first: int
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    config = _config_file(tmp_path, sinks)
    proxy.add(Rule("drop-after", method="POST", body=PUBLISH, times=1))
    args = ["--config", config, "alert", "--lake", lake, "--json"]
    run1 = CliRunner().invoke(cli, args)
    doubtful = sorted(json.loads(run1.stdout)["in_doubt_ids"])
    assert run1.exit_code == 1 and len(doubtful) == first

    for _ in range(2):  # later runs that send nothing still say so, on every channel
        later = CliRunner().invoke(cli, args)
        summary = json.loads(later.stdout)
        assert later.exit_code == 1, later.output
        assert summary["notifications"]["in_doubt"] == first
        assert sorted(summary["in_doubt_ids"]) == doubtful
        assert f"{first} notification(s) in doubt" in later.stderr and doubtful[0] in later.stderr

    # Resolved by hand: some did arrive (mark them), the others did not (send them).
    half = first // 2
    arrived, missing = doubtful[:half], doubtful[half:]
    marks = [x for n in arrived for x in ("--mark-sent", n)]
    resends = [x for n in missing for x in ("--resend", n)]
    fixed = CliRunner().invoke(cli, [*args, *marks, *resends])
    summary = json.loads(fixed.stdout)
    assert fixed.exit_code == 0, fixed.output
    assert summary["notifications"]["sent"] == len(missing)
    assert summary["notifications"]["marked_sent"] == len(arrived)
    assert summary["in_doubt_ids"] == [] and "in doubt" not in fixed.stderr
    got = sinks.deliveries()  # those resent arrived a second time, which the check allowed
    assert len(got) == NOTIFIED and all(got[n] == (2 if n in missing else 1) for n in got)
    quiet = CliRunner().invoke(cli, args)
    assert quiet.exit_code == 0 and json.loads(quiet.stdout)["in_doubt_ids"] == []


def test_a_dead_runs_in_doubt_stays_reported_in_summary_stderr_metric_and_exit_code(
    findings_lake: Path, sinks: Sinks, tmp_path: Path, first: int
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    _die_after_first_publish(lake, _cfg(sinks))  # SNS took the first batch; nobody recorded it
    config = tmp_path / "tenantwatch.toml"
    config.write_text(
        f'[alerting]\nsns_topic_arn = "{sinks.topic_arn}"\ncloudwatch_namespace = "TW/Test"\n'
    )
    args = ["--config", str(config), "alert", "--lake", lake, "--json"]
    cw = direct("cloudwatch", sinks.endpoint)
    for run in range(3):
        result = CliRunner().invoke(cli, args)
        summary = json.loads(result.stdout)
        assert result.exit_code == 1, (run, result.output)
        assert summary["notifications"]["in_doubt"] == len(summary["in_doubt_ids"]) == first
        assert all(n in result.stderr for n in summary["in_doubt_ids"])
        points = cw.get_metric_statistics(
            Namespace="TW/Test",
            MetricName="NotificationsInDoubt",
            StartTime=datetime.now(UTC) - timedelta(hours=1),
            EndTime=datetime.now(UTC) + timedelta(hours=1),
            Period=3600,
            Statistics=["SampleCount", "Minimum"],
        )["Datapoints"]
        assert points[0]["SampleCount"] == run + 1 and points[0]["Minimum"] == first
    got = sinks.deliveries()
    assert len(got) == NOTIFIED and set(got.values()) == {1}


def test_resend_or_mark_sent_of_an_unknown_or_settled_id_is_an_error(
    findings_lake: Path, sinks: Sinks, tmp_path: Path
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    config = _config_file(tmp_path, sinks)
    base = ["--config", config, "alert", "--lake", lake]
    unknown = CliRunner().invoke(cli, [*base, "--resend", "0123abcd"])
    assert unknown.exit_code == 2
    assert unknown.stderr.strip() == (
        "tenantwatch: error: --resend 0123abcd: no such notification in the outbox"
    )
    assert not store.load_outbox(Lake(lake))  # refused before anything was written
    assert sinks.deliveries() == {}

    assert CliRunner().invoke(cli, base).exit_code == 0
    sent = sorted(store.load_outbox(Lake(lake)))[0]
    settled = CliRunner().invoke(cli, [*base, "--mark-sent", sent])
    assert settled.exit_code == 2
    assert f"--mark-sent {sent}: the notification is sent, not in doubt" in settled.stderr


# --- the lake fails under a run -----------------------------------------------------------------


@pytest.fixture(scope="module")
def three_findings_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("three") / "lake"
    write_findings_lake(str(root), findings=3)
    return root


def test_an_s3_lake_failing_after_a_publish_leaves_it_in_doubt_not_resent(
    three_findings_lake: Path, sinks: Sinks, proxy: RuleProxy, tmp_path: Path
) -> None:
    # Three notifications, one batch (moto's S3 behind the proxy is slow: a small lake).
    lake = upload_lake(three_findings_lake, sinks.endpoint, "lake")
    refuse = Rule("error-before", method="PUT", path="/incidents/outbox/", status=403)

    def lake_refuses_from_now_on() -> None:
        proxy.add(refuse)

    # SNS takes the first batch; from then on the lake refuses every write of the outbox, so
    # the run cannot record what it sent and stops there (403: the SDK does not retry it).
    proxy.add(Rule("pass", body=PUBLISH, times=1, before=lake_refuses_from_now_on))
    with pytest.raises(OSError):
        run_alert(lake, _cfg(sinks))
    assert refuse.applied >= 1
    proxy.clear()
    assert len(sinks.deliveries()) == 3
    rerun = run_alert(lake, _cfg(sinks))
    assert len(rerun.summary["in_doubt_ids"]) == 3 and rerun.summary["notifications"]["sent"] == 0
    assert sinks.deliveries() == {}


# --- random faults, many runs: a page arrives once, or is in doubt until resolved ----------------

LAKES = ("local", "s3")
FAULTS = ["drop-after", "error-after", "reset-after", "error-before", "reset-before", "pass"]


def _random_rules(rng: random.Random, s3_lake: bool) -> list[Rule]:
    rules = []
    for _ in range(rng.randint(0, 3)):
        action = rng.choice(FAULTS)
        status = rng.choice([400, 500, 503]) if action.startswith("error") else 500
        rules.append(
            Rule(
                action, method="POST", body=PUBLISH, status=status, skip=rng.randint(0, 1), times=1
            )
        )
    if s3_lake:  # the lake itself fails now and then: reads and writes of state
        for _ in range(rng.randint(0, 2)):
            rules.append(
                Rule(
                    rng.choice(["error-before", "error-after", "reset-before"]),
                    method=rng.choice(["GET", "PUT"]),
                    path="/incidents/",
                    status=rng.choice([403, 503]),
                    skip=rng.randint(0, 20),
                    times=rng.randint(1, 3),
                )
            )
    return rules


@pytest.mark.slow
@pytest.mark.parametrize(
    ("seed", "where"),
    [
        (0, "local"),
        pytest.param(0, "s3", marks=pytest.mark.soak),
        *[
            pytest.param(s, w, marks=pytest.mark.soak)
            for s in range(1, 13)
            for w in ("local", "s3")
        ],
    ],
)
def test_random_faults_over_many_runs_never_page_twice(
    findings_lake: Path, sinks: Sinks, proxy: RuleProxy, tmp_path: Path, seed: int, where: str
) -> None:
    rng = random.Random(seed)
    if where == "local":
        lake = copy_lake(findings_lake, tmp_path / "lake")
    else:
        lake = upload_lake(findings_lake, sinks.endpoint, "lake")
    arrived: Counter[str] = Counter()
    for _ in range(4 if seed == 0 else 8):
        proxy.clear()
        for rule in _random_rules(rng, where == "s3"):
            proxy.add(rule)
        try:
            result = run_alert(lake, _cfg(sinks))
        except OSError:  # the lake failed under the run: as if it died there
            result = None
        proxy.clear()
        arrived += sinks.deliveries()
        assert set(arrived.values()) <= {1}, arrived  # never twice
        states = _states(lake)
        assert {n for n, s in states.items() if s == "sent"} <= set(arrived)
        if result is not None:  # every run lists all that is in doubt
            doubt = {n for n, s in states.items() if s == "in_doubt"}
            assert set(result.summary["in_doubt_ids"]) == doubt
    # An engineer checks each one in doubt: marks what arrived, resends what did not.
    run_alert(lake, _cfg(sinks))  # a clean run first: a dead run's rows become in doubt
    doubt = [n for n, s in _states(lake).items() if s == "in_doubt"]
    final = run_alert(
        lake,
        _cfg(sinks),
        resend=[n for n in doubt if n not in arrived],
        mark_sent=[n for n in doubt if n in arrived],
    )
    arrived += sinks.deliveries()
    assert final.summary["in_doubt_ids"] == []
    assert set(_states(lake).values()) == {"sent"}
    assert len(arrived) == NOTIFIED and set(arrived.values()) == {1}


def test_cloudwatch_unreachable_spools_metrics_and_leaves_pages_alone(
    findings_lake: Path, sinks: Sinks, proxy: RuleProxy, tmp_path: Path
) -> None:
    lake = copy_lake(findings_lake, tmp_path / "lake")
    cfg = Config(
        alerting=AlertingConfig(sns_topic_arn=sinks.topic_arn, cloudwatch_namespace="TW/Faults")
    )
    # botocore speaks JSON (X-Amz-Target) or CBOR (the path) to CloudWatch, by version.
    down = [
        proxy.add(Rule("error-before", target="GraniteServiceVersion20100801.PutMetricData")),
        proxy.add(Rule("error-before", path="/operation/PutMetricData$")),
    ]
    first = run_alert(lake, cfg)
    assert sum(r.applied for r in down) >= 1 and first.summary["metrics"]["error"]
    assert first.summary["metrics"]["spooled"] > 0
    assert first.summary["notifications"]["sent"] == NOTIFIED  # pages do not wait for metrics
    proxy.clear()
    second = run_alert(lake, cfg)
    assert second.summary["metrics"]["error"] is None
    assert second.summary["metrics"]["sent"] > first.summary["metrics"]["spooled"]  # with its own
    cw = direct("cloudwatch", sinks.endpoint)
    sent = cw.get_metric_statistics(
        Namespace="TW/Faults",
        MetricName="NotificationsSent",
        StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(hours=1),
        Period=3600,
        Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    assert sent[0]["Sum"] == NOTIFIED and sent[0]["SampleCount"] == 2  # both runs' points, once
    got = sinks.deliveries()
    assert len(got) == NOTIFIED and set(got.values()) == {1}
