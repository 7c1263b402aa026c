"""The last steps of a chunk of CloudTrail rows, the same whichever decoder read them: records too
large, secrets, tokens out of the free-text columns, unusable records, missing event ids,
AssumeRole* sessions; then the chunk joins the batch (``Output.keep``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest import cloudtrail, normalize, prefilter, redact
from pipeline.ingest.quarantine import Quarantined, too_large
from pipeline.ingest.reading import Reading
from pipeline.ingest.rows.output import Output, S, Session, strings, table

Record = cloudtrail.Record | cloudtrail.SessionRecord
_ASSUME_ROLE = pa.array(sorted(cloudtrail.ASSUME_ROLE_EVENTS), S)


def finish(
    out: Output,
    reading: Reading,
    wide: pa.Schema,
    max_record_bytes: int,
    cols: dict[str, pa.Array],
    raw: pa.Array,
    uris: pa.Array,
    pos: list[int],
    record: Callable[[int], Record],
    secret_rows: pa.Array | None = None,
    ocsf: pa.Array | None = None,
) -> None:
    """A chunk's ``cols`` (``cloudtrail.columns`` or the C decoder's), its ``raw`` text, inputs
    and positions, and ``record(i)``: row i's record, decoded only when needed (AssumeRole*).
    Secrets are redacted here unless the caller did it already: then ``secret_rows`` says which
    records might have held one. Nothing changes unless it returns: its quarantine entries,
    sessions and rows are kept only then (``Output.one_by_one``). ``ocsf``: the OCSF rows of
    records read from Security Lake (null for others), where ``ocsf.`` path columns read."""
    entries: list[Quarantined] = []
    if ocsf is not None:
        cols["_ocsf"] = ocsf  # filtered with the other columns below
    big = pc.greater(pc.binary_length(raw), max_record_bytes)
    if pc.any(big).as_py():
        texts = raw.cast(pa.binary())  # the same buffers: each record's slice, no copy
        for i in pc.indices_nonzero(big).to_pylist():
            text = texts[i].as_buffer()
            entries.append(too_large(uris[i].as_py(), pos[i], text, max_record_bytes))
        small = pc.invert(big)
        cols = {k: v.filter(small) for k, v in cols.items()}
        raw, uris = raw.filter(small), uris.filter(small)
        secret_rows = None if secret_rows is None else secret_rows.filter(small)
        kept = pc.indices_nonzero(small).to_pylist()
        pos = [pos[i] for i in kept]

        def record_of(i: int, record: Callable[[int], Record] = record) -> Any:
            return record(kept[i])

        record = record_of
        if not len(raw):
            out.keep(entries, [], None)
            return
    if secret_rows is None:
        secret_rows = prefilter.flag_secrets(raw)
        if pc.any(secret_rows).as_py():
            which = pc.indices_nonzero(secret_rows)
            texts = redact.redact_many([r.encode() for r in raw.take(which).to_pylist()])
            raw = pc.replace_with_mask(raw, secret_rows, strings(texts))
    # A token in a column is in its record's text too, which the needles flagged.
    redact.scrub_token_columns(cols, secret_rows)
    no_time = pc.is_null(cols["event_time"])
    unusable = pc.or_(no_time, pc.and_(pc.is_null(cols["service"]), pc.is_null(cols["action"])))
    for i in pc.indices_nonzero(unusable).to_pylist():
        if no_time[i].as_py():
            entry = ("missing_event_time", "no eventTime (nor @timestamp)")
        else:
            entry = ("missing_event_name", "neither eventName nor eventSource")
        entries.append(Quarantined(uris[i].as_py(), pos[i], *entry, raw[i].as_py().encode()))
    usable = pc.invert(unusable)
    no_id = pc.and_(pc.is_null(cols["event_id"]), usable)
    if pc.any(no_id).as_py():
        ids = cols["event_id"].to_pylist()
        for i in pc.indices_nonzero(no_id).to_pylist():
            ids[i] = normalize.synthetic_id(raw[i].as_py().encode())
        cols["event_id"] = pa.array(ids, S)
    assume = pc.indices_nonzero(
        pc.and_(
            pc.and_(pc.is_in(cols["action"], value_set=_ASSUME_ROLE), usable),
            pc.is_null(cols["error_code"]),
        )
    )
    # Their times in one conversion (indexing an Arrow array costs a microsecond a value).
    times = cols["event_time"].take(assume).to_pylist()
    sessions: list[Session] = []
    started: dict[int, str] = {}  # row -> the access key id its AssumeRole* returned
    for i, when in zip(assume.to_pylist(), times, strict=True):
        s = cloudtrail.assumed_session(record(i))
        if s is not None:
            sessions.append((s[0], s[1], when))
            started[i] = s[0]
    cols["h_new_session"] = _at(started, len(raw))
    cloudtrail.name_users(cols, raw)
    cols["raw"] = raw
    if pc.any(unusable).as_py():
        cols = {k: v.filter(usable) for k, v in cols.items()}
        uris = uris.filter(usable)
    cols.update(reading.cloudtrail_columns(cols["raw"], cols.pop("_ocsf", None)))
    out.keep(entries, sessions, table(cols, uris, wide))


def _at(values: dict[int, str], n: int) -> pa.Array:
    """A string column of ``n`` rows holding ``values`` at their rows, null elsewhere."""
    if not values:
        return pa.nulls(n, S)
    column: list[str | None] = [None] * n
    for i, v in values.items():
        column[i] = v
    return pa.array(column, S)
