"""CloudTrail delivery files decoded whole by the C decoder (``native.builder``), kept until a
chunk is full.

A chunk's secrets are redacted before its columns are handed over: the builder writes the
redacted text in place of the original (one copy, not a second pass over every record). When
anything in the chunk raises, its records go to the Python decoder instead
(``PythonRecords.decode_again``), which gives the same rows (tests/test_native.py and the
differential fuzzer hold them equal) and finds the record that raised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest import cloudtrail, formats, native, redact
from pipeline.ingest.reading import Reading
from pipeline.ingest.rows.cloudtrail_finish import finish
from pipeline.ingest.rows.cloudtrail_python import PythonRecords
from pipeline.ingest.rows.output import CHUNK_BYTES, CHUNK_RECORDS, Output, S


class CFiles:
    def __init__(
        self, out: Output, reading: Reading, max_record_bytes: int, python: PythonRecords
    ) -> None:
        self.out = out
        self.reading = reading
        self.wide = reading.wide
        self.max_record_bytes = max_record_bytes
        self.python = python
        self.builder: Any = native.builder()  # None: not built, or TENANTWATCH_NATIVE=0
        self.runs: list[tuple[str, int]] = []  # (input, records) of each file in the chunk

    def accepts(self, data: bytes) -> bytes | None:
        """The body of a delivery file the C decoder is to try, or None when the file is not
        for it (or the decoder is not built)."""
        if self.builder is None:
            return None
        body = formats.delivery_body(data)
        if body is None:
            return None
        if not body.isascii():  # ASCII is UTF-8, and checking it allocates nothing
            try:
                body.decode("utf-8")  # the builder reads UTF-8 it need not check
            except UnicodeDecodeError:
                return None
        return body

    def add(self, body: bytes, uri: str) -> int | None:
        """The number of records the C decoder took from ``body``, or None when it handed the
        file back (nothing taken: the Python decoder reads it)."""
        n: int | None = self.builder.add(body)
        if n is None:
            return None
        self.runs.append((uri, n))
        if self.builder.rows >= CHUNK_RECORDS or self.builder.nbytes >= CHUNK_BYTES:
            self.flush()
        return n

    def flush(self) -> None:
        if not self.runs:
            return
        runs, self.runs = self.runs, []
        builder = self.builder
        # Secrets first: the builder writes the redacted text in place of the original as it
        # hands the raw column over (one copy, not a second pass over every record).
        rows, texts = builder.secrets()
        # A record over max_record_bytes is quarantined as it came, as the Python decoder does
        # (it measures before it redacts): redaction can shorten a record (escapes re-spelt) and
        # so would turn "record_too_large" into whatever the record's fields make of it.
        small = [len(t) <= self.max_record_bytes for t in texts]
        rows = [r for r, keep in zip(rows, small, strict=True) if keep]
        texts = [t for t, keep in zip(texts, small, strict=True) if keep]
        originals: dict[int, bytes] = {}
        try:
            redacted = redact.redact_many(texts) if rows else []
        except MemoryError:
            raise
        except Exception:
            redacted = None  # the chunk goes to the Python decoder below, record by record
        if redacted:
            changed = [
                (row, text, new)
                for row, text, new in zip(rows, texts, redacted, strict=True)
                if new != text
            ]
            originals = {row: text for row, text, _ in changed}
            taken = builder.take([c[0] for c in changed], [c[2] for c in changed])
        else:
            taken = builder.take()
        n, buffers, flag_bytes = taken
        arrays = {name: native.string_array(n, *bufs) for name, bufs in buffers.items()}
        raw = arrays.pop("raw")
        counts = np.array([c for _, c in runs], np.int64)
        uris = pa.DictionaryArray.from_arrays(
            pa.array(np.repeat(np.arange(len(runs), dtype=np.int32), counts)),
            pa.array([u for u, _ in runs], S),
        ).cast(S)
        pos = (np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)).tolist()

        def text(i: int) -> bytes:
            return originals.get(i) or raw[i].as_py().encode()  # as it came: before redaction

        def record(i: int) -> cloudtrail.SessionRecord:
            rec: cloudtrail.SessionRecord = cloudtrail.session_decoder.decode(text(i))
            return rec

        if redacted is not None:
            try:
                flags = pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(flag_bytes)])
                cols = cloudtrail.finish(
                    {k: arrays[k] for k in cloudtrail.VALUE_FIELDS},
                    {k: arrays[k] for k in cloudtrail.TARGET_FIELDS},
                    pc.not_equal(pc.bit_wise_and(flags, 1), 0),
                    {k: arrays[k] for k in cloudtrail.NAME_FIELDS},
                )
                secret_rows = pc.not_equal(pc.bit_wise_and(flags, 2), 0)
                finish(
                    self.out,
                    self.reading,
                    self.wide,
                    self.max_record_bytes,
                    cols,
                    raw,
                    uris,
                    pos,
                    record,
                    secret_rows,
                )
                return
            except MemoryError:
                raise
            except Exception:  # noqa: S110 - one of its records raised: found below
                pass
        self.python.decode_again([text(i) for i in range(n)], uris.to_pylist(), pos)
