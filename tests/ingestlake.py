"""What the ingestion tests share: an ingest run that checks nothing is lost, and reads of the
lake it wrote; gzip bombs, peak allocations and deeply nested records to feed it."""

from __future__ import annotations

import os
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.ingest.run import ingest
from pipeline.lake import read_events, read_quarantine
from tests.pooled import pooled_config


def run(lake: Path, *sources: Path | str, cfg: Config | None = None, **kw: Any) -> dict[str, Any]:
    summary = ingest([str(s) for s in sources], str(lake), cfg or pooled_config(), workers=1, **kw)
    total = summary["ingested"] + summary["duplicates"] + summary["quarantined_total"]
    assert summary["records_in"] == total, summary  # nothing lost, ever
    return summary


def rows(lake: Path) -> list[dict[str, Any]]:
    return sorted(
        read_events(str(lake)).to_pylist(), key=lambda r: (r["event_time"], r["event_id"])
    )


def lake_files(lake: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()
    }


def quarantine_reasons(lake: Path) -> dict[str, str]:
    return {
        os.path.basename(r["input_uri"]): r["reason"]
        for r in read_quarantine(str(lake)).to_pylist()
    }


def entries_by_input(lake: Path) -> dict[str, dict[str, Any]]:
    return {os.path.basename(r["input_uri"]): r for r in read_quarantine(str(lake)).to_pylist()}


def gzip_of_zeros(size: int) -> bytes:
    """A gzip bomb: ``size`` zero bytes in about a thousandth of that, made a MiB at a time."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [z.compress(block) for _ in range(size >> 20)]
    return b"".join([*parts, z.compress(bytes(size & ((1 << 20) - 1))), z.flush()])


def peak_traced(fn: Callable[[], object]) -> tuple[object, int]:
    """``fn()``'s result (or the exception it raised) and the peak of Python's allocations."""
    tracemalloc.start()
    try:
        try:
            result = fn()
        except Exception as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def with_nesting(record: str, depth: int) -> str:
    """A record's JSON text with one more field holding ``depth`` nested objects."""
    return record[:-1] + ', "x": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
