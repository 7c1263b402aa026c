"""CloudTrail records decoded by the Python decoder (``cloudtrail.Record``), kept until a chunk is
full; and the records of a chunk the C decoder could not finish, decoded again here."""

from __future__ import annotations

import msgspec
import pyarrow as pa

from pipeline.ingest import cloudtrail, jsonnum, normalize
from pipeline.ingest.reading import Reading
from pipeline.ingest.rows.cloudtrail_finish import finish
from pipeline.ingest.rows.output import CHUNK_BYTES, CHUNK_RECORDS, Output, S, pick, strings


class PythonRecords:
    def __init__(self, out: Output, reading: Reading, max_record_bytes: int) -> None:
        self.out = out
        self.reading = reading
        self.wide = reading.wide
        self.max_record_bytes = max_record_bytes
        self.recs: list[cloudtrail.Record] = []
        self.raws: list[bytes | msgspec.Raw] = []
        self.uris: list[str] = []
        self.positions: list[int] = []
        self.ocsf: list[bytes | None] | None = None  # Security Lake records' OCSF rows
        self.nbytes = 0

    def add(
        self,
        recs: list[cloudtrail.Record],
        raws: list[bytes] | list[msgspec.Raw],
        uri: str,
        positions: range | tuple[int, ...],
        ocsf: list[bytes] | None = None,
    ) -> None:
        if ocsf is not None and self.ocsf is None:
            self.ocsf = [None] * len(self.recs)
        if self.ocsf is not None:
            self.ocsf += ocsf if ocsf is not None else [None] * len(recs)
        self.recs += recs
        self.raws += raws
        self.uris += [uri] * len(recs)
        self.positions += positions
        self.nbytes += sum(map(len, raws))
        if len(self.recs) >= CHUNK_RECORDS or self.nbytes >= CHUNK_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.recs:
            return
        recs, raws, uris, pos, ocsf = self.recs, self.raws, self.uris, self.positions, self.ocsf
        self.recs, self.raws, self.uris, self.positions, self.nbytes = [], [], [], [], 0
        self.ocsf = None
        self.chunk(recs, raws, uris, pos, ocsf)

    def decode_again(self, texts: list[bytes], uris: list[str], pos: list[int]) -> None:
        """Records the C decoder had taken, decoded by the Python decoder (which finds the one
        that raised)."""
        recs, kept = [], []
        for i, text in enumerate(texts):
            try:
                recs.append(cloudtrail.record_decoder.decode(text))
            except (msgspec.DecodeError, msgspec.ValidationError):
                try:
                    recs.append(cloudtrail.from_dict(jsonnum.loads(text)))
                except Exception as exc:
                    self.out.quarantine.append((uris[i], pos[i], *normalize.failure(exc), text))
                    continue
            kept.append(i)
        self.chunk(recs, [texts[i] for i in kept], [uris[i] for i in kept], [pos[i] for i in kept])

    def chunk(
        self,
        recs: list[cloudtrail.Record],
        raws: list[bytes] | list[msgspec.Raw],
        uris: list[str],
        pos: list[int],
        ocsf: list[bytes | None] | None = None,
    ) -> None:
        def chunk(which: list[int]) -> None:
            picked = pick(recs, which)
            rows = None if ocsf is None else pa.array(pick(ocsf, which), pa.binary()).cast(S)
            finish(
                self.out,
                self.reading,
                self.wide,
                self.max_record_bytes,
                cloudtrail.columns(picked),
                strings(pick(raws, which)),
                pa.array(pick(uris, which), S),
                pick(pos, which),
                picked.__getitem__,
                ocsf=rows,
            )

        self.out.one_by_one(len(recs), chunk, lambda i: (uris[i], pos[i], bytes(raws[i])))
