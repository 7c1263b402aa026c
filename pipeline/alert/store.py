"""Incident state and the notification outbox, as Parquet in the lake (so every machine agrees).

    incidents/state/date=<period start>/<incident id>.parquet      latest revision of an incident
    incidents/outbox/date=<created>/<notification id>.parquet      a message and its delivery state

One small file per incident and per notification, rewritten in place when it changes: a single
PUT on S3 and a rename locally. A reader takes each file whole in one request (``read_table``):
pyarrow reads a Parquet file on S3 in several ranged GETs, and a file replaced between two of
them would mix pages of two versions. So a reader sees the old row or the new one, never half of
each. Names are our own hashes; nothing from a log becomes part of a path.

A run reads only what can still change, through two indexes of empty files in ``_state`` (names
in ``pipeline.lake``), each written before the file it points to and removed after it:

    _state/incidents/date=<day>/<period day>.<incident id>   active up to <day>
    _state/incidents/snapshot-due/<period day>.<incident id> lacks a snapshot part
    _state/unsent/<day>.<notification id>                     not sent yet (pending, publishing,
                                                              failed or in doubt)

An incident can take a finding of a window starting at ``since`` only if it was active up to
``since`` less the correlation gap (``load_incidents``); a notification that may still be sent or
must still be reported is marked unsent (``load_unsent``). A marker left by a run that died
between the two writes points to a file that is missing or settled: readers pass over it. A lake
stored before the indexes has them built once from a whole read (``ensure_index``).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import lake_io, schema
from pipeline.alert.incidents import Incident
from pipeline.lake import INCIDENT_STATE as STATE
from pipeline.lake import (
    OUTBOX,
    SNAPSHOT_DUE,
    STATE_INDEXED,
    STATE_OPEN_INCIDENTS,
    STATE_UNSENT,
    Lake,
    day_folders,
    incident_file,
    marked,
    open_incident_marker,
    outbox_file,
    snapshot_due_marker,
    unsent_marker,
)

# The outbox columns needed to decide what to send; the payload is read only for those.
STATE_COLUMNS = [
    "notification_id",
    "incident_id",
    "kind",
    "severity",
    "state",
    "attempts",
    "channel",
]


def _day(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d")


def incident_path(inc: Incident) -> str:
    return incident_file(_day(inc.period_start), inc.incident_id)


def read_table(lake: Lake, rel: str, columns: list[str] | None = None) -> pa.Table:
    """The Parquet file at ``rel``, from one read of its bytes (see the module docstring)."""
    return pq.read_table(pa.BufferReader(read_bytes(lake, rel)), columns=columns)


def read_folder(lake: Lake, rel: str, table_schema: pa.Schema) -> pa.Table:
    """Every Parquet file under the folder ``rel`` as one table of ``table_schema``. A nullable
    column the schema gained after a file was written reads as null for that file."""
    return read_files(lake, lake.files(rel), table_schema)


# The rows of each file ``read_days`` read last, by lake and file, with the file's version
# (``Lake.versions``) when it was read: a day's findings are read by every alert run of the day,
# and most of its files have not been written since the run before.
_KEPT: dict[tuple[str, str], tuple[str, pa.Table]] = {}


def read_days(lake: Lake, rel: str, since: datetime, table_schema: pa.Schema) -> pa.Table:
    """``read_folder`` of the ``date=`` partitions of ``rel`` from the day of ``since`` on. A
    file whose version is the one read before (in this process) is not read again; only the
    files of the days read last are kept."""
    first = _day(since)
    days = [d for d in day_folders(lake, rel) if d >= first]
    listed: dict[str, str] = {}
    for d in days:
        listed.update(lake.versions(f"{rel}/date={d}"))
    tables, kept = [], {}
    for f, version in listed.items():
        hit = _KEPT.get((lake.root, f))
        if hit is not None and hit[0] == version and hit[1].schema == table_schema:
            t = hit[1]
        else:
            t = read_files(lake, [f], table_schema)
        kept[(lake.root, f)] = (version, t)
        tables.append(t)
    for key in [k for k in _KEPT if k[0] == lake.root and k[1].startswith(f"{rel}/")]:
        _KEPT.pop(key)
    _KEPT.update(kept)
    return pa.concat_tables(tables) if tables else table_schema.empty_table()


def read_files(lake: Lake, files: list[str], table_schema: pa.Schema) -> pa.Table:
    """The Parquet files ``files`` (read whole) as one table of ``table_schema``."""
    tables = []
    for f in files:
        file = pq.ParquetFile(pa.BufferReader(read_bytes(lake, f)))
        have = set(file.schema_arrow.names)
        t = file.read(columns=[n for n in table_schema.names if n in have])
        for field in table_schema:
            if field.name not in have and field.nullable:
                t = t.append_column(field.name, pa.nulls(t.num_rows, field.type))
        tables.append(t.select(table_schema.names).cast(table_schema))
    return pa.concat_tables(tables) if tables else table_schema.empty_table()


def load_incidents(
    lake: Lake, since: datetime | None = None, gap: timedelta = timedelta(0)
) -> list[Incident]:
    """Every stored incident; with ``since``, only those a finding of a window starting then or
    later can join or belong to (active up to ``since`` less ``gap``, a day's margin), and those
    still lacking a snapshot part, through the index (see the module docstring)."""
    if since is None or not lake.exists(STATE_INDEXED):
        return _latest(read_folder(lake, STATE, schema.INCIDENTS))
    first = _day(since - gap - timedelta(days=1))
    markers = [SNAPSHOT_DUE]
    markers += [f"{STATE_OPEN_INCIDENTS}/date={d}" for d in day_folders(lake, STATE_OPEN_INCIDENTS)]
    markers = [m for m in markers if m == SNAPSHOT_DUE or m.rsplit("=", 1)[1] >= first]
    wanted = sorted({marked(f) for m in markers for f in _markers(lake, m)})
    files = [incident_file(period, iid) for period, iid in wanted]
    return _latest(read_files(lake, [f for f in files if _readable(lake, f)], schema.INCIDENTS))


def read_incident(lake: Lake, period_start: datetime, incident_id: str) -> Incident | None:
    """The stored state of one incident (None if there is none)."""
    rel = incident_file(_day(period_start), incident_id)
    if not lake.exists(rel):
        return None
    found = _latest(read_files(lake, [rel], schema.INCIDENTS))
    return found[0] if found else None


def _latest(table: pa.Table) -> list[Incident]:
    latest: dict[str, Incident] = {}
    for row in table.to_pylist():
        inc = Incident.from_row(row)
        cur = latest.get(inc.incident_id)
        if cur is None or inc.revision > cur.revision:
            latest[inc.incident_id] = inc
    return list(latest.values())


def active_until(inc: Incident) -> datetime:
    """The latest time a finding can be taken into ``inc`` at, less the correlation gap: its
    window's end, last event, and the end of its signals' dedup periods."""
    ends = [inc.window_end, inc.last_seen or inc.window_end, *(s.period_end for s in inc.signals)]
    return max(ends)


def snapshot_due(inc: Incident) -> bool:
    """Whether a run must (again) try to snapshot ``inc`` though no finding changed it: it has
    no snapshot, or its latest part does not cover its latest revision."""
    if not inc.snapshot_uri:
        return True
    return inc.snapshot_revision is not None and inc.snapshot_revision < inc.revision


def _mark_active(lake: Lake, inc: Incident) -> None:
    active, period = _day(active_until(inc)), _day(inc.period_start)
    write_bytes(lake, open_incident_marker(active, period, inc.incident_id), b"")


def save_incidents(lake: Lake, incs: Iterable[Incident]) -> None:
    for inc in incs:
        marker = snapshot_due_marker(_day(inc.period_start), inc.incident_id)
        _mark_active(lake, inc)
        if snapshot_due(inc):
            write_bytes(lake, marker, b"")
        table = pa.Table.from_pylist([inc.as_row()], schema=schema.INCIDENTS)
        lake.write_table(incident_path(inc), table)
        if not snapshot_due(inc):
            lake_io.delete(lake, marker)


# --- the outbox ----------------------------------------------------------------------------------


def outbox_path(row: dict[str, Any]) -> str:
    return outbox_file(row["_day"], row["notification_id"])


def load_outbox(lake: Lake, full: bool = False) -> dict[str, dict[str, Any]]:
    """notification id -> its row (state columns only unless ``full``), plus ``_path``."""
    return _rows(lake, lake.files(OUTBOX), full)


def outbox_names(lake: Lake, first: datetime, last: datetime) -> dict[str, str]:
    """notification id -> path of the outbox rows made for times from ``first`` to ``last``
    (the days of their ``date=`` partitions), from listings alone."""
    lo, hi = _day(first), _day(last)
    days = [d for d in day_folders(lake, OUTBOX) if lo <= d <= hi]
    files = [f for d in days for f in lake.files(f"{OUTBOX}/date={d}")]
    return {posixpath.basename(f).removesuffix(".parquet"): f for f in files}


def read_rows(lake: Lake, files: list[str]) -> dict[str, dict[str, Any]]:
    """``load_outbox`` of the rows at ``files``."""
    return _rows(lake, files, False)


def load_unsent(lake: Lake) -> dict[str, dict[str, Any]]:
    """``load_outbox`` (state columns) of every row not known to be sent: pending, publishing,
    failed and in doubt; through the index once it is built (some rows it gives may be sent:
    ``unmark`` them)."""
    if not lake.exists(STATE_INDEXED):
        return load_outbox(lake)
    names = [marked(f) for f in _markers(lake, STATE_UNSENT)]
    files = [outbox_file(day, nid) for day, nid in sorted(names)]
    rows = _rows(lake, [f for f in files if _readable(lake, f)], False)
    for row in rows.values():
        row["_marked"] = True
    return rows


def _rows(lake: Lake, files: list[str], full: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    cols = None if full else STATE_COLUMNS
    for rel in files:
        for row in read_table(lake, rel, cols).to_pylist():
            row["_path"] = rel
            out[row["notification_id"]] = row
    return out


def _markers(lake: Lake, folder: str) -> list[str]:
    """The markers in ``folder`` (not a marker being written: ``write_bytes``'s temporary)."""
    return [f for f in lake.files(folder, suffix="") if not f.endswith(".tmp")]


def _readable(lake: Lake, rel: str) -> bool:
    """Whether a marker's file is there (a run that died after the marker left none)."""
    return lake.exists(rel)


def _unsent_marker(rel: str) -> str:
    """The ``_state/unsent`` marker of the outbox row at ``rel``."""
    day = posixpath.basename(posixpath.dirname(rel)).removeprefix("date=")
    return unsent_marker(day, posixpath.basename(rel).removesuffix(".parquet"))


def unmark(lake: Lake, row: Mapping[str, Any]) -> None:
    """Drop the unsent marker of a row that is sent (rows ``load_unsent`` gave have
    ``_marked``)."""
    lake_io.delete(lake, _unsent_marker(row["_path"]))


def ensure_index(lake: Lake) -> None:
    """Build the indexes of a store written before them, from one whole read (once)."""
    if lake.exists(STATE_INDEXED):
        return
    for inc in _latest(read_folder(lake, STATE, schema.INCIDENTS)):
        _mark_active(lake, inc)
        if snapshot_due(inc):
            write_bytes(lake, snapshot_due_marker(_day(inc.period_start), inc.incident_id), b"")
    for row in load_outbox(lake).values():
        if row["state"] != "sent":
            write_bytes(lake, _unsent_marker(row["_path"]), b"")
    write_bytes(lake, STATE_INDEXED, b"")


def read_row(lake: Lake, rel: str) -> dict[str, Any]:
    row: dict[str, Any] = read_table(lake, rel).cast(schema.OUTBOX).to_pylist()[0]
    row["_path"] = rel
    return row


def write_row(lake: Lake, row: dict[str, Any]) -> None:
    """Write ``row`` (its unsent marker first, or, once it is sent, removed after)."""
    rel = row["_path"]
    clean = {k: v for k, v in row.items() if not k.startswith("_")}
    clean["updated_at"] = datetime.now(UTC)
    sent = row["state"] == "sent"
    if not sent:
        write_bytes(lake, _unsent_marker(rel), b"")
    lake.write_table(rel, pa.Table.from_pylist([clean], schema=schema.OUTBOX))
    if sent:
        unmark(lake, row)


def new_row(
    notification_id: str,
    incident_id: str | None,
    kind: str,
    detector: str,
    severity: str,
    tenants: list[str],
    subject: str,
    text: str,
    envelope: str,
    attributes: dict[str, Any],
    size_bytes: int,
    truncated: bool,
    channel: str,
    day: datetime,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "notification_id": notification_id,
        "incident_id": incident_id,
        "kind": kind,
        "detector": detector,
        "severity": severity,
        "tenants": tenants,
        "subject": subject,
        "text": text,
        "message": envelope,
        "attributes": json.dumps(attributes, sort_keys=True),
        "size_bytes": size_bytes,
        "truncated": truncated,
        "channel": channel,
        "state": "pending",
        "attempts": 0,
        "last_error": None,
        "message_id": None,
        "_day": _day(day),
    }
    row["_path"] = outbox_path(row)
    return row


# --- small files that are not tables -------------------------------------------------------------


def write_bytes(lake: Lake, rel: str, data: bytes) -> None:
    lake.write_bytes(rel, data)


def read_bytes(lake: Lake, rel: str) -> bytes:
    """The file at ``rel`` in one request (``Lake.read_bytes``)."""
    return lake.read_bytes(rel)
