"""The benchmarks' generated data keeps up with the schema: a lake the detect benchmark writes is
read back by the pipeline's own reader (so ``make bench`` cannot break when a column is added)."""

from __future__ import annotations

from pathlib import Path

from bench.detect import write_lake
from pipeline import schema
from pipeline.lake import read_events


def test_the_detect_benchmarks_lake_holds_events_of_the_whole_schema(tmp_path: Path) -> None:
    written = write_lake(tmp_path / "lake", 20_000)
    events = read_events(str(tmp_path / "lake"))
    assert events.num_rows == written > 0
    assert events.schema.names == schema.EVENTS.names
    assert events.column("actor_tenant").null_count < events.num_rows  # tenants were written
