"""The spark benchmark (``bench/spark.py``): its lake is the month it says (30 days, 2,000 tenants,
about the events asked), and its table holds a row per engine, measured, at a tiny size."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest

from bench import spark
from pipeline.lake import read_events


def options(tmp_path: Path, **more: object) -> argparse.Namespace:
    """``--only spark --events 20000 --spark-detectors authz_failure_spike`` (one detector: a
    Spark start and one pass), and ``more``."""
    given: dict[str, object] = {
        "data": tmp_path,
        "events": 20_000,
        "events_given": True,
        "spark_sizes": None,
        "spark_engines": None,
        "spark_detectors": ["authz_failure_spike"],
        "spark_conf": [],
    }
    return argparse.Namespace(**(given | more))


def test_the_lake_is_a_month_of_the_tenants_asked(tmp_path: Path) -> None:
    summary = spark.generate(tmp_path / "lake", 30_000)
    events = read_events(str(tmp_path / "lake"), columns=["event_time", "actor_tenant"])

    assert events.num_rows == summary["events"]
    assert abs(events.num_rows - 30_000) < 30_000 * 0.02  # about the size asked
    days = Counter(t.date() for t in events["event_time"].to_pylist())
    month = [(spark.MONTH + timedelta(days=d)).date() for d in range(spark.DAYS)]
    assert sorted(days) == month  # every day of April, none outside
    assert summary["days"] == [days[d] for d in month]
    assert summary["window"] == days[month[-1]]  # the window: the month's last day
    assert summary["history"] == sum(days[d] for d in month[-15:-1])  # the 14 days before

    tenants = {int(t[1:]) for t in pc.unique(events["actor_tenant"]).to_pylist() if t}
    assert max(tenants) <= spark.TENANTS
    assert max(tenants) > 1_000  # more tenants than the detect benchmark's lake has


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning")
def test_the_table_has_a_row_per_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if why := spark.missing():
        pytest.skip(why)
    spark.main(options(tmp_path, spark_conf=["spark.sql.shuffle.partitions=4"]))
    got = capsys.readouterr()
    out = got.out

    lines = out.splitlines()
    dashes = next(i for i, line in enumerate(lines) if line.startswith("-----"))
    spans = [m.span() for m in re.finditer(r"-+", lines[dashes])]  # the columns
    rows = {}
    for line in lines[dashes + 1 :]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in spans]
        rows[cells[1]] = cells
    assert [r[0] for r in rows.values()] == ["20,000", "20,000"]
    assert set(rows) == {"local (run_detect)", "spark local[2]"}
    local, on_spark = rows["local (run_detect)"], rows["spark local[2]"]
    assert local[2] == on_spark[2]  # the same events: the window and its history
    assert local[11] == on_spark[11]  # the same findings
    jvm, workers, largest = (float(c.replace(",", "")) for c in on_spark[8:11])
    assert jvm > 0 and workers > 0 and largest > 0  # the JVM and its workers were measured
    assert "20,000 events, spark:" in out  # the figures the sizing starts from
    # Each run's figures are printed as it ends (stderr), whatever stops the runs after it.
    for engine, row in (("local", local), ("spark", on_spark)):
        line = next(x for x in got.err.splitlines() if f"20,000 events, {engine}:" in x)
        assert f"{row[2]} events read" in line and f"{row[11]} findings" in line


def test_one_engine_runs_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--spark-engines local``: a size run again on one engine prints that engine's row only."""
    if why := spark.missing():
        pytest.skip(why)
    spark.main(options(tmp_path, spark_engines=["local"]))
    got = capsys.readouterr()
    assert "20,000 events, local:" in got.err and "events, spark:" not in got.err
    assert "local (run_detect)" in got.out and "spark local[2]" not in got.out
