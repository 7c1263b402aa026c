"""What a batch leaves in the lake besides its event files, once they are written: its
quarantine and the CloudTrail-Digest files it read (``keep_outputs``), the sessions its
``AssumeRole*`` calls taught (``keep_sessions``), and last the record of its inputs that marks it
done (``record_done``).

Every file is named by the batch, so a batch written again writes the same files, and
``record_done`` comes last: a run that dies before it re-runs the batch to the same files. The
sessions come just before it, batch after batch, because later runs read them: a run that dies
leaves the sessions of the batches it recorded (and of the one it was recording), not of batches
it will run again. A run in one process does all three for each batch in turn
(``run.Ingestor.commit``); on Spark the executor that wrote a batch's events keeps its outputs,
and the driver its sessions and record, in input order (``pipeline.spark_ingest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema
from pipeline.ingest import redact, tenancy
from pipeline.ingest.decode import Batch, Decoded
from pipeline.ingest.quarantine import Quarantined
from pipeline.ingest.seen import ingested_partition
from pipeline.lake import (
    STATE_DIGESTS,
    Lake,
    ingested_file,
    quarantine_file,
    sessions_file,
    state_file,
)

_S = pa.string()
INGESTED = pa.schema(
    [
        ("uri", _S),
        ("identity", _S),
        ("records", pa.int64()),
        ("ingested", pa.int64()),
        ("duplicates", pa.int64()),
        ("quarantined", pa.int64()),
        # The partition whose file of the batch is written last: the batch counts as done
        # once that file is there (a batch's inputs may fall in several partitions).
        ("commit", _S),
        # The batch (its file's name): a compacted file holds many batches' rows. Files
        # written before the column was added are named by it (compaction adds it).
        ("batch", _S),
    ]
)
DIGESTS = pa.schema([("digest_uri", _S), ("log_object", _S), ("hash_value", _S)])


@dataclass(frozen=True)
class Counts:
    """A batch's records, as its record of inputs done keeps them (each input's row)."""

    records: int
    ingested: int
    duplicates: int
    quarantined: int


def keep_outputs(lake: Lake, batch_id: str, d: Decoded, quarantine: list[Quarantined]) -> None:
    """The batch's quarantine and digests."""
    if quarantine:
        lake.write_table(quarantine_file(batch_id), quarantine_table(quarantine))
    if d.digests:
        # A folder per day of the digest files' delivery (as for input records), so that
        # what a run compacts of them is today's, not every digest ever seen.
        by_part: dict[str, list[dict[str, Any]]] = {}
        for x in d.digests:
            row = dict(zip(DIGESTS.names, x, strict=True))
            by_part.setdefault(ingested_partition(str(x[0])), []).append(row)
        for part, rows in sorted(by_part.items()):
            lake.write_table(
                state_file(f"{STATE_DIGESTS}/{part}", batch_id),
                pa.Table.from_pylist(rows, DIGESTS),
            )


def keep_sessions(lake: Lake, batch_id: str, sessions: pa.Table, origins: pa.Table) -> None:
    """What the batch's ``AssumeRole*`` calls taught (``sessions``: their ``SESSION_ROWS``;
    ``origins``: the session origins, ``sessions.STATE`` rows): a file per day the sessions
    started on."""
    state = pa.concat_tables([tenancy.state_rows(sessions), origins])
    if state.num_rows:
        days = pc.strftime(state["started"], "%Y-%m-%d")
        for day in pc.unique(days).to_pylist():
            rows = state.filter(pc.equal(days, day))
            lake.write_table(sessions_file(day, batch_id), rows)


def record_done(lake: Lake, batch: Batch, counts: Counts) -> None:
    """The record of the batch's inputs: a file per partition of its inputs, the first input's
    last: the batch is done when that one is there (``run.Ingestor.load_done``), so a run that
    dies between them re-runs it."""
    parts: dict[str, list[Any]] = {}
    for r in batch.inputs:
        parts.setdefault(ingested_partition(r.uri), []).append(r)
    commit = ingested_partition(batch.inputs[0].uri)
    for part in sorted(parts, key=lambda x: x == commit):
        rows = [
            {
                "uri": r.uri,
                "identity": r.identity,
                "records": counts.records,
                "ingested": counts.ingested,
                "duplicates": counts.duplicates,
                "quarantined": counts.quarantined,
                "commit": commit,
                "batch": batch.id,
            }
            for r in parts[part]
        ]
        lake.write_table(ingested_file(part, batch.id), pa.Table.from_pylist(rows, INGESTED))


def quarantine_table(entries: list[Quarantined]) -> pa.Table:
    """The entries as rows, secrets scrubbed from the detail as from the raw bytes: a detail may
    quote its record ("line starts 'curl -H ...'"). Scrubbed before it is cut, so a cut cannot
    leave part of a secret that the whole would have matched."""
    return pa.Table.from_pylist(
        [
            {
                "input_uri": uri,
                "position": pos,
                "reason": reason,
                "detail": redact.scrub_text(detail)[:2000],
                "raw": redact.scrub_bytes(raw),
                "records": records,
            }
            for uri, pos, reason, detail, raw, records in entries
        ],
        schema.QUARANTINE,
    )
