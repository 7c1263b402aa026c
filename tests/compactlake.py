"""What the compaction and retention tests share: a lake's small inputs (many small files per
partition, and some in the quarantine) and its rows as a comparable list."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import parse_config
from pipeline.lake import Lake, read_events
from tests import logfactory as lf

SMALL = parse_config({"ingest": {"batch_input_bytes": 1}})  # a batch per input file
END = datetime(2026, 11, 17, tzinfo=UTC)


def make_inputs(folder: Path, files: int = 12) -> Path:
    """Delivery files over three hours (each re-delivering two records of the one before) and
    a file of bad lines: many small files per partition and in the quarantine."""
    previous: list[dict[str, Any]] = []
    for i in range(files):
        records = [
            lf.ct(
                key_id=f"ASIAK{i:04d}{j:09d}",
                key=f"tenants/t{j % 7:04d}/x",
                time=f"2026-11-16T{10 + (i + j) % 3:02d}:0{j % 10}:00Z",
            )
            for j in range(20)
        ]
        lf.delivery_file(folder / f"ct-{i:03d}.json.gz", records + previous[:2])
        previous = records
    for i in range(3):
        (folder / f"junk-{i}.log").write_text(f"not json {i}\n{{broken\n")
    return folder


def rows(lake: Lake) -> list[tuple[str, str]]:
    t = read_events(lake, columns=["event_id", "record_hash"])
    return sorted(zip(t["event_id"].to_pylist(), t["record_hash"].to_pylist(), strict=True))
