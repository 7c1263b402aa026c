"""Ingestion on Spark (``pipeline.spark_ingest``) writes the lake a local ingest writes: the same
events, quarantine, sessions and records of inputs done, row for row, in the same files, byte for
byte, and the same summary.

One local Spark (``local[2]``, on 127.0.0.1) for the module, its executors importing this checkout
and reaching only moto. Compared on ``sample_logs/``; on inputs made so that the session join and
the dedup cross objects (one object a batch), runs and executors, with a run that dies half way;
on bad inputs; and on inputs and lakes in moto's S3, served over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import pickle
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import Config, load_config, parse_config
from pipeline.ingest import sessions as s
from pipeline.ingest.run import ingest
from pipeline.lake import Lake, read_events, read_quarantine
from pipeline.spark_ingest import run_ingest_spark
from pipeline.spark_ingest_tasks import SessionHistory, as_of
from tests import logfactory as lf
from tests.conftest import SAMPLE_LOGS
from tests.ingestlake import lake_files
from tests.logfactory import assume, identity
from tests.pooled import pooled_config, pooled_file

pytestmark = [
    pytest.mark.slow,
    # pyspark 3.5 checks versions with distutils on every task it starts.
    pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning"),
]
ONE_FILE_A_BATCH = {"batch_input_bytes": 1}
STATE = ("_state/ingested", "_state/sessions", "_state/digests")
# What differs between two runs of the same work: where and how it ran, and how long it took.
RUN_KEYS = ("lake", "elapsed_s", "records_per_s", "workers", "cpu_s", "finished_at", "engine")


def checked(summary: dict[str, Any]) -> dict[str, Any]:
    """Nothing lost, nothing counted twice."""
    total = summary["ingested"] + summary["duplicates"] + summary["quarantined_total"]
    assert summary["records_in"] == total, summary
    return summary


def both(
    spark: Any, sources: list[str], local: Path | str, on_spark: Path | str, cfg: Config
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same ingest by each engine, into a lake of its own; the summaries agree."""
    mine = checked(ingest(sources, str(local), cfg, workers=1))
    theirs = checked(run_ingest_spark(sources, str(on_spark), cfg, spark=spark))
    assert theirs["engine"] == "spark"
    assert {k: v for k, v in theirs.items() if k not in RUN_KEYS} == {
        k: v for k, v in mine.items() if k not in RUN_KEYS
    }
    return mine, theirs


def tables(root: Path) -> dict[str, list[str]]:
    """What the lake holds of an ingest, read back, each table's rows sorted: the events and
    the quarantine as the lake's readers read them, the state files each with its name."""
    out = {
        "events": sorted(repr(r) for r in read_events(str(root)).to_pylist()),
        "quarantine": sorted(repr(r) for r in read_quarantine(str(root)).to_pylist()),
    }
    for folder in STATE:
        out[folder] = sorted(
            repr((str(f.relative_to(root)), r))
            for f in (root / folder).rglob("*.parquet")
            for r in pq.ParquetFile(f).read().to_pylist()
        )
    return out


def same_lake(local: Path, on_spark: Path) -> dict[str, list[str]]:
    """Row for row, then file for file."""
    mine = tables(local)
    assert tables(on_spark) == mine
    assert lake_files(on_spark) == lake_files(local)
    return mine


def test_sample_logs_on_spark_are_a_local_ingest(spark: Any, tmp_path: Path) -> None:
    """All three sources, in batches of 1 MiB: sessions started in one batch and used in
    another, every source's partitions written by several batches."""
    cfg = load_config(SAMPLE_LOGS / "tenantwatch.toml", environ={})
    cfg = msgspec.structs.replace(
        cfg, ingest=msgspec.structs.replace(cfg.ingest, batch_input_bytes=1 << 20)
    )
    sources = [str(SAMPLE_LOGS / f) for f in ("AWSLogs", "apigateway", "authorizer")]
    summary, _ = both(spark, sources, tmp_path / "local", tmp_path / "spark", cfg)
    held = same_lake(tmp_path / "local", tmp_path / "spark")
    assert summary["ingested"] > 10_000
    assert len({r.split("'", 2)[1] for r in held["_state/ingested"]}) > 5  # record files
    assert held["_state/sessions"] and held["_state/digests"]
    events = read_events(str(tmp_path / "spark"))
    assert set(events["source"].to_pylist()) == {"cloudtrail", "apigateway", "authorizer"}
    tagged = pa.compute.equal(events["actor_tenant_source"], "session_tag")
    assert pa.compute.sum(tagged).as_py() > 100


# --- sessions and duplicates across objects, runs and executors -------------------------------

K1, K2, K9 = "ASIAKEY000000000001", "ASIAKEY000000000002", "ASIAKEY000000000009"


def _crossing(folder: Path) -> dict[str, dict[str, Any]]:
    """Objects whose events need the sessions, and repeat the events, of other objects; sorted
    by name, as batches run. Returns the records the test looks for."""
    e1 = lf.ct(key_id=K2, time="2026-11-16T08:10:00Z", event_id="evt-e1")
    lf.delivery_file(
        folder / "before" / "p.json.gz",
        [lf.assume_role(tenant="t0005", new_key_id=K2, time="2026-11-16T08:00:00Z"), e1],
    )
    d = lf.ct(key_id=K1, time="2026-11-16T10:05:00Z", key="tenants/t0003/x", event_id="evt-d")
    w = lf.ct(key_id=K1, time="2026-11-16T10:07:00Z", event_id="evt-w")
    later = lf.ct(key_id=K1, time="2026-11-16T10:25:00Z", event_id="evt-later")
    gone = lf.ct(key_id=K1, time="2026-11-17T11:00:00Z", event_id="evt-gone")
    objects = {
        # The next day first: the session map's expiry runs ahead of the objects after it.
        "a1": [
            lf.assume_role(tenant="t0009", new_key_id=K9, time="2026-11-17T09:58:00Z"),
            lf.ct(key_id=K9, time="2026-11-17T10:00:00Z"),
        ],
        "a2": [
            lf.assume_role(tenant="t0007", new_key_id=K1, time="2026-11-16T09:59:00Z"),
            lf.ct(key_id=K1, time="2026-11-16T10:00:00Z"),
        ],
        "a3": [d, lf.ct(key_id=K1, time="2026-11-16T10:06:00Z")],
        # Delivered again: e1 (in the lake), d (in a3); w twice in this one.
        "a4": [e1, d, lf.ct(key_id=K2, time="2026-11-16T08:30:00Z"), w, w],
        "a5": [lf.assume_role(tenant="t0008", new_key_id=K1, time="2026-11-16T10:20:00Z")],
        "a6": [later, gone],
    }
    for name, records in objects.items():
        lf.delivery_file(folder / "in" / f"{name}.json.gz", records)
    return {"d": d, "w": w, "later": later, "gone": gone}


def test_sessions_and_duplicates_across_objects_runs_and_a_run_that_died(
    spark: Any, tmp_path: Path
) -> None:
    """One object a batch. A first run leaves a session and an event in the lake; the second
    run's objects use sessions of earlier objects and of the first run, replace a session's tags,
    outlive one, and repeat events of the lake, of an earlier object and of their own. Each
    engine's second run dies as it records its third batch, and is run again; a third run of
    the same inputs skips them all and changes nothing."""
    cfg = pooled_config(ingest=ONE_FILE_A_BATCH)
    found = _crossing(tmp_path)
    local, on_spark = tmp_path / "local", tmp_path / "spark"
    both(spark, [str(tmp_path / "before")], local, on_spark, cfg)
    same_lake(local, on_spark)

    second = [str(tmp_path / "in")]
    with _dies_recording(3), pytest.raises(KeyboardInterrupt):
        ingest(second, str(local), cfg, workers=1)
    with _dies_recording(3), pytest.raises(KeyboardInterrupt):
        run_ingest_spark(second, str(on_spark), cfg, spark=spark)
    resumed, _ = both(spark, second, local, on_spark, cfg)
    assert (resumed["files_skipped"], resumed["duplicates"]) == (2, 3)
    held = same_lake(local, on_spark)

    events = {r["event_id"]: r for r in read_events(str(on_spark)).to_pylist()}
    assert [events[found[k]["eventID"]]["actor_tenant"] for k in ("d", "w", "later", "gone")] == [
        "t0007",  # the tags of an AssumeRole in an earlier object
        "t0007",
        "t0008",  # an AssumeRole of the same key since
        None,  # a day after its session started
    ]
    (kept,) = [r for r in held["events"] if "evt-d" in r]
    assert "a3.json.gz" in kept  # the first object's copy

    again = checked(run_ingest_spark(second, str(on_spark), cfg, spark=spark))
    assert (again["files_skipped"], again["records_in"]) == (6, 0)
    assert lake_files(on_spark) == lake_files(local)


@contextmanager
def _dies_recording(n: int) -> Iterator[None]:
    """The run in the block dies as it records its ``n``-th batch done (in this process: the
    driver, for Spark, whose executors have written every batch by then)."""
    real = Lake.write_table
    recorded = []

    def dying(self: Lake, rel: str, table: Any, sort_by: Any = None, **kw: Any) -> None:
        if rel.startswith("_state/ingested/"):
            recorded.append(rel)
            if len(recorded) == n:
                raise KeyboardInterrupt
        real(self, rel, table, sort_by, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Lake, "write_table", dying)
        yield


ACME, GLOBEX, INITECH = "111122223333", "444455556666", "777788889999"


def test_session_origins_of_a_chain_of_roles_across_objects(spark: Any, tmp_path: Path) -> None:
    """``session_origin``: each hop's origin is learnt from the call that started it, in
    another object, and a chain keeps its first."""
    cfg = parse_config(
        {
            "ingest": ONE_FILE_A_BATCH,
            "tenancy": {
                "lookup": [{"name": "accounts", "values": {ACME: "acme", GLOBEX: "globex"}}],
                "actor": [
                    {
                        "kind": "field",
                        "source": "cloudtrail",
                        "path": "userIdentity.accountId",
                        "lookup": "accounts",
                        "when": {
                            "userIdentity.sessionContext.sessionIssuer.userName": ["app-user"]
                        },
                    },
                    {"kind": "session_origin"},
                ],
            },
        },
        environ={},
    )
    app = identity(ACME, "app-user", "ASIAAPP0000000000001")
    partner = identity(GLOBEX, "partner-access", "ASIAPARTNER000000001")
    deeper = identity(INITECH, "partner-access", "ASIADEEPER0000000001")
    records = [
        assume(app, GLOBEX, "partner-access", partner["accessKeyId"], "2026-11-16T10:00:00Z"),
        assume(partner, INITECH, "partner-access", deeper["accessKeyId"], "2026-11-16T10:02:00Z"),
        lf.ct(time="2026-11-16T10:03:00Z", userIdentity=deeper),
        lf.ct(time="2026-11-16T10:04:00Z", userIdentity=partner),
    ]
    for i, rec in enumerate(records):
        lf.delivery_file(tmp_path / "in" / f"{i}.json.gz", [rec])
    sources = [str(tmp_path / "in")]
    both(spark, sources, tmp_path / "local", tmp_path / "spark", cfg)
    held = same_lake(tmp_path / "local", tmp_path / "spark")
    calls = [
        r for r in read_events(str(tmp_path / "spark")).to_pylist() if r["action"] == "GetObject"
    ]
    assert [(r["actor_tenant"], r["actor_tenant_source"]) for r in calls] == [
        ("acme", "session_origin")
    ] * 2
    assert sum(s.ORIGIN in r for r in held["_state/sessions"]) == 2


def test_bad_inputs_are_quarantined_as_a_local_ingest_quarantines_them(
    spark: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    whole = json.dumps({"Records": [lf.ct(), lf.ct("PutObject")]}).encode()
    (folder / "ct").mkdir(parents=True)
    (folder / "ct" / "cut.json.gz").write_bytes(lf.gzip_cut(whole, len(whole) // 2))
    (folder / "ct" / "corrupt.json.gz").write_bytes(gzip.compress(whole)[:30] + b"\x00" * 40)
    lf.delivery_file(folder / "ct" / "time.json.gz", [lf.ct(time="yesterday"), lf.ct()])
    (folder / "empty.log").write_bytes(b"")
    lines = [json.dumps(lf.access_log()), "{broken", "not json at all", json.dumps(lf.access_log())]
    (folder / "api.log").write_text("\n".join(lines) + "\n")
    (folder / "latin1.log").write_bytes(b"caf\xe9 \xff\n")
    summary, _ = both(spark, [str(folder)], tmp_path / "local", tmp_path / "spark", pooled_config())
    same_lake(tmp_path / "local", tmp_path / "spark")
    reasons = set(read_quarantine(str(tmp_path / "spark"))["reason"].to_pylist())
    assert {"invalid_json", "not_json", "empty_input", "bad_event_time"} <= reasons
    assert {"truncated_gzip", "corrupt_gzip"} & reasons
    assert summary["ingested"] >= 3


def test_inputs_and_lakes_in_s3_over_http(spark: Any, aws: str, tmp_path: Path) -> None:
    """Executors read the inputs with boto3 and write the lake, both at AWS_ENDPOINT_URL."""
    _crossing(tmp_path)
    s3 = boto3.client("s3")
    for bucket in ("tw-in", "tw-lake"):
        s3.create_bucket(Bucket=bucket)
    prefix = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/16/"
    for f in sorted((tmp_path / "in").iterdir()):
        s3.put_object(Bucket="tw-in", Key=prefix + f.name, Body=f.read_bytes())
    cfg = pooled_config(ingest={"batch_input_bytes": 300})
    sources = ["s3://tw-in/AWSLogs/"]
    summary, _ = both(spark, sources, "s3://tw-lake/local", "s3://tw-lake/spark", cfg)
    assert (summary["files"], summary["duplicates"]) == (6, 2)

    def objects(lake: str) -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket="tw-lake", Prefix=f"{lake}/")["Contents"]
        return {
            o["Key"].removeprefix(lake): s3.get_object(Bucket="tw-lake", Key=o["Key"])[
                "Body"
            ].read()
            for o in listed
        }

    mine = objects("local")
    assert objects("spark") == mine
    assert any(k.startswith("/events/") for k in mine) and any("_state/ingested" in k for k in mine)


def test_the_cli_ingests_on_spark(spark: Any, tmp_path: Path) -> None:
    """``--engine spark`` on the session already running (left running, its settings as they
    were); ``--master`` without it, or ``--workers`` with it, is a usage error."""
    _crossing(tmp_path)
    args = ["--config", pooled_file(tmp_path / "cfg"), "ingest", str(tmp_path / "in"), "--json"]
    runner = CliRunner()
    local = runner.invoke(cli, [*args, "--lake", str(tmp_path / "local"), "--workers", "1"])
    found = runner.invoke(cli, [*args, "--lake", str(tmp_path / "spark"), "--engine", "spark"])
    assert found.exit_code == 0, found.output
    mine, theirs = json.loads(found.stdout), json.loads(local.stdout)
    assert mine["engine"] == "spark" and mine["ingested"] == theirs["ingested"] > 0
    assert lake_files(tmp_path / "spark") == lake_files(tmp_path / "local")
    assert spark.sparkContext._jsc is not None  # still running, as it was set
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
    assert spark.conf.get("spark.sql.adaptive.coalescePartitions.enabled") == "true"
    wrong = runner.invoke(cli, [*args, "--lake", str(tmp_path / "x"), "--master", "local[2]"])
    assert wrong.exit_code == 2 and "--engine spark" in wrong.output
    wrong = runner.invoke(
        cli, [*args, "--lake", str(tmp_path / "x"), "--engine", "spark", "--workers", "2"]
    )
    assert wrong.exit_code == 2 and "--engine local" in wrong.output


def test_without_pyspark_the_engine_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.ct()])
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark: ImportError
    args = ["--config", pooled_file(tmp_path / "cfg"), "ingest", str(tmp_path / "in")]
    out = CliRunner().invoke(cli, [*args, "--lake", str(tmp_path / "lake"), "--engine", "spark"])
    assert out.exit_code == 2
    assert "install tenantwatch[spark]" in out.output
    assert not (tmp_path / "lake").exists()


def test_an_error_on_an_executor_is_raised_on_the_driver_as_it_was_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass's function, run here: a batch whose decoding raises hands back the
    exception, which the driver raises with the executor's traceback as its cause."""
    from pipeline.ingest import handoff
    from pipeline.ingest.reading import Reading
    from pipeline.ingest.run import make_batches
    from pipeline.ingest.sources import list_inputs
    from pipeline.spark_ingest_tasks import KEYS, TASKS, Found, Setup, keys_task

    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.ct()])
    (batch,) = make_batches(list_inputs([str(tmp_path / "in")])[0], 1 << 20)

    def throttled(*_: Any) -> None:
        raise OSError("SlowDown: please reduce your request rate")

    monkeypatch.setattr("pipeline.spark_ingest_tasks.decode_batch", throttled)
    cfg = pooled_config()
    task = pa.RecordBatch.from_pylist([{"batch": 0, "task": pickle.dumps(batch)}], TASKS)
    (meta,) = [
        row["meta"]
        for out in keys_task(Setup(str(tmp_path / "lake"), cfg, Reading.of(cfg)))(iter([task]))
        for row in pa.Table.from_batches([out], KEYS).to_pylist()
    ]
    found: Found = pickle.loads(meta)  # noqa: S301 - made just above
    assert found.failure is not None
    with pytest.raises(OSError, match="SlowDown") as raised:
        found.failure.raise_it()
    assert isinstance(raised.value.__cause__, handoff.RemoteTraceback)
    assert "throttled" in str(raised.value.__cause__)


# --- the session map as of each batch, without Spark --------------------------------------------


def test_the_session_history_gives_the_map_as_it_was_after_each_batch() -> None:
    """A map learnt, replaced, given origins, read from state and expired at random: the
    history's map as of each batch looks up what the map did then, tag by tag."""
    rnd = random.Random(11)
    ttl = timedelta(hours=1)
    m = s.SessionMap(ttl)
    history = SessionHistory(frozenset({"tenant_id", s.ORIGIN}))
    seen: list[dict[str, dict[str, Any]]] = []
    for k in range(60):
        minute = k * 3
        when = f"2026-11-16T{10 + minute // 60:02d}:{minute % 60:02d}:00Z"
        step = rnd.choice(["learn", "learn", "origin", "earlier", "expire", "nothing"])
        key = f"ASIA{rnd.randrange(6)}"
        if step == "learn":
            tags = {"tenant_id": f"t{rnd.randrange(4)}", "other": "x"} if rnd.random() < 0.8 else {}
            m.learn(s.session_rows([(key, tags, when)]))
        elif step == "origin":
            at = pa.array([when]).cast(pa.timestamp("us", tz="UTC"))
            m.learn_origins(pa.array([key]), pa.array([f"o{rnd.randrange(3)}"]), at)
        elif step == "earlier":
            stored = s.SessionMap(ttl)
            stored.learn(s.session_rows([(key, {"tenant_id": "stored"}, when)]))
            m.learn_earlier(stored.tags)
        elif step == "expire":
            m.expire(int(pa.scalar(when).cast(pa.timestamp("us", tz="UTC")).value))
        history.after(k, m.tags)
        seen.append({tag: _looked_up(m, tag) for tag in ("tenant_id", s.ORIGIN)})
    table = history.table()
    for k, want in enumerate(seen):
        held = as_of(table, k, ttl)
        assert {tag: _looked_up(held, tag) for tag in want} == want, k
    assert len({repr(w) for w in seen}) > 20  # the map did change


def _looked_up(m: s.SessionMap, tag: str) -> dict[str, Any]:
    keys, values, started = m.lookup(tag)
    assert len(set(keys.to_pylist())) == len(keys)  # a row per key and tag
    return {
        k: (v, t)
        for k, v, t in zip(keys.to_pylist(), values.to_pylist(), started.to_pylist(), strict=True)
    }
