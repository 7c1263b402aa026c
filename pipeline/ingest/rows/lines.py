"""API Gateway access log and Lambda authorizer rows: tuples of ``normalize.ROW_FIELDS`` (then the
path columns, when the run reads any), into Arrow a chunk at a time."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline.ingest import normalize, redact
from pipeline.ingest.reading import Reading
from pipeline.ingest.rows.output import CHUNK_RECORDS, Output, S, pick, table


class LineRows:
    def __init__(self, out: Output, reading: Reading) -> None:
        self.out = out
        self.reading = reading
        self.wide = reading.wide
        self.rows: list[tuple[Any, ...]] = []
        self.uris: list[str] = []
        self.positions: list[int] = []

    def add(self, row: tuple[Any, ...], uri: str, position: int) -> None:
        self.rows.append(row)
        self.uris.append(uri)
        self.positions.append(position)
        if len(self.rows) >= CHUNK_RECORDS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        rows, uris, pos = self.rows, self.uris, self.positions
        self.rows, self.uris, self.positions = [], [], []
        wide = self.wide
        raw_at = normalize.ROW_FIELDS.index("raw")
        # A row: the ROW_FIELDS, then the path columns (or none, when the run reads none).
        fields = [wide.field(name) for name in normalize.ROW_FIELDS]
        if len(rows[0]) > len(fields):
            fields += [wide.field(col.name) for col in self.reading.columns]

        def chunk(which: list[int]) -> None:
            columns = list(zip(*pick(rows, which), strict=True))
            cols = {
                f.name: pa.array(col, pa.binary() if f.name == "raw" else f.type).cast(f.type)
                for col, f in zip(columns, fields, strict=True)
            }
            redact.scrub_token_columns(cols)
            self.out.tables.append(table(cols, pa.array(pick(uris, which), S), wide))

        self.out.one_by_one(len(rows), chunk, lambda i: (uris[i], pos[i], rows[i][raw_at]))
