"""The scheduled run's checkpoint in the lake: the end of the last window detected and alerted."""

from __future__ import annotations

from datetime import UTC, datetime

# pipeline.lake (pyarrow) is imported when a watermark is read or written, not with the handler.


def read_watermark(lake_root: str) -> datetime | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.lake import WATERMARK, Lake

    try:  # one request (a HEAD first would be a second)
        data = Lake(lake_root).read_bytes(WATERMARK)
    except FileNotFoundError:
        return None
    value: datetime | None = pq.read_table(pa.BufferReader(data))["watermark"][0].as_py()
    return value


def write_watermark(lake_root: str, watermark: datetime, run_id: str) -> None:
    import pyarrow as pa

    from pipeline.lake import WATERMARK, Lake

    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema([("watermark", ts), ("run_id", pa.string()), ("written_at", ts)])
    row = {"watermark": watermark, "run_id": run_id, "written_at": datetime.now(UTC)}
    Lake(lake_root).write_table(WATERMARK, pa.Table.from_pylist([row], schema))
