"""One batch's rows on their way into Arrow, a chunk at a time.

Three kinds of rows, each kept until its chunk is full (``output.CHUNK_RECORDS`` records or
``output.CHUNK_BYTES`` of text):

- ``cloudtrail_c.CFiles``: CloudTrail delivery files the C decoder takes whole;
- ``cloudtrail_python.PythonRecords``: CloudTrail records the Python decoder decoded (files the C
  decoder does not take, and records from other envelopes);
- ``lines.LineRows``: API Gateway access log and Lambda authorizer rows.

Both CloudTrail kinds end in ``cloudtrail_finish.finish``. Switching from one CloudTrail decoder
to the other flushes the other's chunk first, so CloudTrail rows stay in input order (the first
of two copies of an event is the one kept). Every finished chunk, quarantine entry and session
goes to one ``output.Output``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pyarrow as pa

from pipeline.ingest import cloudtrail
from pipeline.ingest.quarantine import QuarantineLog
from pipeline.ingest.reading import Reading
from pipeline.ingest.rows.cloudtrail_c import CFiles
from pipeline.ingest.rows.cloudtrail_python import PythonRecords
from pipeline.ingest.rows.lines import LineRows
from pipeline.ingest.rows.output import Output, Session


class Rows:
    def __init__(self, max_record_bytes: int, quarantine: QuarantineLog, reading: Reading) -> None:
        self.wide = reading.wide
        self.out = Output(quarantine)
        self.python = PythonRecords(self.out, reading, max_record_bytes)
        self.c = CFiles(self.out, reading, max_record_bytes, self.python)
        self.lines = LineRows(self.out, reading)

    @property
    def quarantine(self) -> QuarantineLog:
        return self.out.quarantine

    @property
    def sessions(self) -> list[Session]:
        """(access key id, tags, start time as logged) of each AssumeRole, in input order."""
        return self.out.sessions

    def c_file(self, data: bytes, uri: str) -> int | None:
        """The number of records of a delivery file the C decoder took, or None (nothing
        taken) when the file is not for it."""
        body = self.c.accepts(data)
        if body is None:
            return None
        self.python.flush()
        return self.c.add(body, uri)

    def cloudtrail(
        self,
        recs: list[cloudtrail.Record],
        raws: list[bytes] | list[msgspec.Raw],
        uri: str,
        positions: range | tuple[int, ...],
        ocsf: list[bytes] | None = None,
    ) -> None:
        """Records the Python decoder decoded, with their raw text and positions in ``uri``
        (and, for records read from Security Lake, their OCSF rows' text: ``Item.ocsf``)."""
        self.c.flush()
        self.python.add(recs, raws, uri, positions, ocsf)

    def row(self, row: tuple[Any, ...], uri: str, position: int) -> None:
        """An API Gateway or authorizer row (``normalize.access_log_row``, ``authorizer_row``)."""
        self.lines.add(row, uri, position)

    def table(self) -> pa.Table:
        """Every row of the batch (``Reading.wide``), the pending chunks flushed."""
        self.c.flush()
        self.python.flush()
        self.lines.flush()
        tables = self.out.tables
        return pa.concat_tables(tables) if tables else self.wide.empty_table()
