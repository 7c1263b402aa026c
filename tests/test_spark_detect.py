"""The Spark runner (``pipeline.spark_detect``) finds what ``run_detect`` finds: the same rows,
every column (evidence included), detector by detector, and the same files in the lake.

One local Spark (``local[2]``, on 127.0.0.1) for the module. Compared on ``sample_logs/``, on a
small simulated world with every attack, and on that world's lake in moto's S3, served over HTTP
on 127.0.0.1, so the executors read the lake over HTTP as they would read S3.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import boto3
import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner

import detectors
from pipeline.cli import cli
from pipeline.config import Config
from pipeline.detect import Detected, _write_live, live_name, run_detect
from pipeline.lake import Lake
from pipeline.spark_detect import run_detect_spark
from tests.detectlakes import INPUTS, TwoKinds, sample_lake, world_lake, world_logs

pytestmark = [
    pytest.mark.slow,
    # pyspark 3.5 checks versions with distutils on every task it starts.
    pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning"),
]
BUCKETS = 3  # few, so that keys share buckets, and not one: partitions matter


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Config]:
    root = tmp_path_factory.mktemp("world")
    lake, cfg = world_lake(root / "lake", root / "logs")
    return Path(lake), cfg


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Config]:
    lake, cfg = sample_lake(tmp_path_factory.mktemp("sample") / "lake")
    return Path(lake), cfg


def copies(template: Path, tmp_path: Path) -> tuple[str, str]:
    """Two copies of a lake: one for each engine to write its findings to."""
    a, b = tmp_path / "local", tmp_path / "spark"
    shutil.copytree(template, a)
    shutil.copytree(template, b)
    return str(a), str(b)


def by_detector(found: pa.Table, detector_id: str) -> list[dict[str, Any]]:
    mine = found.filter(pa.compute.equal(found["detector"], detector_id))
    return mine.sort_by("finding_id").to_pylist()


def same_findings(local: Detected, spark: Detected) -> None:
    """Every detector's findings, every column; then the whole table, in order; and the
    summary, but for where and how long it ran."""
    assert spark.findings.schema == local.findings.schema
    for detector_id in detectors.BUILTIN:
        assert by_detector(spark.findings, detector_id) == by_detector(
            local.findings, detector_id
        ), detector_id
    assert spark.findings.to_pylist() == local.findings.to_pylist()
    assert spark.summary["engine"] == "spark"
    left = {k: v for k, v in local.summary.items() if k not in ("lake", "seconds")}
    right = {k: v for k, v in spark.summary.items() if k not in ("lake", "seconds", "engine")}
    assert right == left


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "findings").rglob("*.parquet"))
    }


def test_the_world_on_spark_is_run_detect_and_writes_the_same_files(
    spark: Any, world: tuple[Path, Config], tmp_path: Path
) -> None:
    """Every attack's detector finds something in the world; a live file of the window (a
    sliding window's findings: one the window's detection finds again, one it does not) is
    settled alike."""
    template, cfg = world
    a, b = copies(template, tmp_path)
    before = run_detect(a, cfg, write=False)
    assert {d for d, c in before.summary["detectors"].items() if c["findings"]} == set(
        detectors.BUILTIN
    )
    since = before.findings["window_start"][0].as_py()
    until = before.findings["window_end"][0].as_py()
    seen = before.findings.filter(pa.compute.equal(before.findings["detector"], "residency"))
    gone = seen.set_column(0, seen.schema.field(0), pa.array(["f" * 32], pa.string()))
    for root in (a, b):
        _write_live(Lake(root), "residency", since, until, pa.concat_tables([seen, gone]), False)

    local = run_detect(a, cfg)
    found = run_detect_spark(b, cfg, spark=spark, buckets=BUCKETS)
    same_findings(local, found)
    assert files(Path(b)) == files(Path(a))
    left = Lake(b).read_file(live_name("residency", since, until))
    assert left["finding_id"].to_pylist() == ["f" * 32]  # the one the window did not find


def test_sample_logs_on_spark_are_run_detect(
    spark: Any, sample: tuple[Path, Config], tmp_path: Path
) -> None:
    template, cfg = sample
    a, b = copies(template, tmp_path)
    local = run_detect(a, cfg)
    found = run_detect_spark(b, cfg, spark=spark, buckets=BUCKETS)
    assert local.findings.num_rows
    same_findings(local, found)
    assert files(Path(b)) == files(Path(a))


def test_a_read_split_into_a_task_per_file_gives_the_same_findings(
    spark: Any, sample: tuple[Path, Config], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long history is read in more tasks than buckets (``spark_plan.read_tasks``): a file a
    task here, each task's rows still in a local read's order."""
    from pipeline import spark_plan

    monkeypatch.setattr(spark_plan, "READ_TASK_BYTES", 1)
    made: list[int] = []
    parallelize = type(spark.sparkContext).parallelize

    def counted(self: Any, data: Any, slices: int | None = None) -> Any:
        made.append(slices or 0)
        return parallelize(self, data, slices)

    monkeypatch.setattr(type(spark.sparkContext), "parallelize", counted)
    template, cfg = sample
    a, b = copies(template, tmp_path)
    local = run_detect(a, cfg)
    found = run_detect_spark(b, cfg, spark=spark, buckets=BUCKETS)
    assert max(made) > BUCKETS  # the reads were split past the buckets
    same_findings(local, found)


def test_a_lake_in_s3_is_read_by_the_executors_over_http(
    spark: Any, aws: str, tmp_path: Path
) -> None:
    from pipeline.ingest.run import ingest

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="tw-lake")
    logs = world_logs(tmp_path / "logs")
    cfg = _config(logs)
    inputs = [str(logs / f) for f in INPUTS]
    for prefix in ("local", "spark"):
        ingest(inputs, f"s3://tw-lake/{prefix}", cfg)
    local = run_detect("s3://tw-lake/local", cfg)
    found = run_detect_spark("s3://tw-lake/spark", cfg, spark=spark, buckets=BUCKETS)
    same_findings(local, found)

    def objects(prefix: str) -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket="tw-lake", Prefix=f"{prefix}/findings/")
        return {
            o["Key"].removeprefix(prefix): s3.get_object(Bucket="tw-lake", Key=o["Key"])[
                "Body"
            ].read()
            for o in listed.get("Contents", [])
        }

    assert objects("spark") == objects("local")
    assert len(objects("spark")) == len(detectors.BUILTIN)


def _config(logs: Path) -> Config:
    from pipeline.config import load_config

    return load_config(logs / "tenantwatch.toml", environ={})


def test_a_detector_that_fails_on_an_executor_is_reported_as_run_detect_reports_it(
    spark: Any, world: tuple[Path, Config], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """authz_failure_spike built by hand with a dimension it does not know raises in ``fit``,
    on the executor: the run goes on, and its summary names it with run_detect's words."""
    from detectors.authz_failure_spike import AuthzFailureSpike, Settings

    template, cfg = world
    a, b = copies(template, tmp_path)
    built = detectors.from_config

    def broken(cfg: Config, only: tuple[str, ...] | None = None) -> dict[str, Any]:
        dets = built(cfg, only)
        dets["authz_failure_spike"] = AuthzFailureSpike(Settings(dimensions=("bogus",)))
        return dets

    monkeypatch.setattr(detectors, "from_config", broken)
    only = ("authz_failure_spike", "access_pattern")
    local = run_detect(a, cfg, only=only)
    found = run_detect_spark(b, cfg, spark=spark, buckets=BUCKETS, only=only)
    assert found.summary["failed"] == local.summary["failed"]
    assert list(found.summary["failed"]) == ["authz_failure_spike"]
    assert "unknown dimension 'bogus'" in found.summary["failed"]["authz_failure_spike"]
    same_findings(local, found)


def test_a_detector_of_several_passes_keeps_each_pass_s_own_findings(
    spark: Any, world: tuple[Path, Config], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cross_tenant_access in a pass per kind of finding (``keep``), the events read once and
    kept for the passes: the whole run's findings and counts."""
    template, cfg = world
    a, b = copies(template, tmp_path)
    only = ("cross_tenant_access",)
    local = run_detect(a, cfg, only=only)
    built = detectors.from_config

    def in_passes(cfg: Config, only: tuple[str, ...] | None = None) -> dict[str, Any]:
        dets = built(cfg, only)
        whole = dets["cross_tenant_access"]
        dets["cross_tenant_access"] = TwoKinds(whole.settings, whole.relationships)
        return dets

    monkeypatch.setattr(detectors, "from_config", in_passes)
    found = run_detect_spark(b, cfg, spark=spark, buckets=BUCKETS, only=only)
    kinds = {orjson.loads(e)["kind"] for e in found.findings["evidence"].to_pylist()}
    assert {"cross_tenant", "break_glass_no_ticket", "break_glass_ticket"} <= kinds
    same_findings(local, found)


def test_the_cli_runs_detect_on_spark(
    spark: Any, world: tuple[Path, Config], tmp_path: Path
) -> None:
    """``--engine spark`` on the session already running (a notebook's, a job's: left
    running); ``--master`` alone is a usage error."""
    template, _ = world
    a, b = copies(template, tmp_path)
    config = str(template.parent / "logs" / "tenantwatch.toml")
    runner = CliRunner()
    args = ["--config", config, "detect", "--json", "--detector", "access_pattern"]
    local = runner.invoke(cli, [*args, "--lake", a])
    found = runner.invoke(cli, [*args, "--lake", b, "--engine", "spark", "--buckets", "2"])
    assert found.exit_code == 0, found.output
    mine, theirs = orjson.loads(found.stdout), orjson.loads(local.stdout)
    assert mine["engine"] == "spark" and mine["findings"] == theirs["findings"]
    assert spark.sparkContext._jsc is not None  # still running
    wrong = runner.invoke(cli, [*args, "--lake", a, "--master", "local[2]"])
    assert wrong.exit_code == 2 and "--engine spark" in wrong.output


def test_without_pyspark_the_engine_says_which_extra_to_install(
    world: tuple[Path, Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    template, _ = world
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark: ImportError
    config = str(template.parent / "logs" / "tenantwatch.toml")
    args = ["--config", config, "detect", "--lake", str(template), "--engine", "spark"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 2
    assert "install tenantwatch[spark]" in out.output
