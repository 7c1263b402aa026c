"""Incident state and the notification outbox, as Parquet in the lake (so every machine agrees).

    incidents/state/date=<period start>/<incident id>.parquet      latest revision of an incident
    incidents/outbox/date=<created>/<notification id>.parquet      a message and its delivery state

One small file per incident and per notification, rewritten in place when it changes: a single
PUT on S3 and a rename locally. A reader takes each file whole in one request (``read_table``):
pyarrow reads a Parquet file on S3 in several ranged GETs, and a file replaced between two of
them would mix pages of two versions. So a reader sees the old row or the new one, never half of
each. Names are our own hashes; nothing from a log becomes part of a path.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import aws, schema
from pipeline.alert.incidents import Incident
from pipeline.lake import INCIDENT_STATE as STATE
from pipeline.lake import OUTBOX, Lake, incident_file, outbox_file

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
    tables = []
    for f in lake.files(rel):
        file = pq.ParquetFile(pa.BufferReader(read_bytes(lake, f)))
        have = set(file.schema_arrow.names)
        t = file.read(columns=[n for n in table_schema.names if n in have])
        for field in table_schema:
            if field.name not in have and field.nullable:
                t = t.append_column(field.name, pa.nulls(t.num_rows, field.type))
        tables.append(t.select(table_schema.names).cast(table_schema))
    return pa.concat_tables(tables) if tables else table_schema.empty_table()


def load_incidents(lake: Lake) -> list[Incident]:
    table = read_folder(lake, STATE, schema.INCIDENTS)
    latest: dict[str, Incident] = {}
    for row in table.to_pylist():
        inc = Incident.from_row(row)
        cur = latest.get(inc.incident_id)
        if cur is None or inc.revision > cur.revision:
            latest[inc.incident_id] = inc
    return list(latest.values())


def save_incidents(lake: Lake, incs: Iterable[Incident]) -> None:
    for inc in incs:
        table = pa.Table.from_pylist([inc.as_row()], schema=schema.INCIDENTS)
        lake.write_table(incident_path(inc), table)


# --- the outbox ----------------------------------------------------------------------------------


def outbox_path(row: dict[str, Any]) -> str:
    return outbox_file(row["_day"], row["notification_id"])


def load_outbox(lake: Lake, full: bool = False) -> dict[str, dict[str, Any]]:
    """notification id -> its row (state columns only unless ``full``), plus ``_path``."""
    out: dict[str, dict[str, Any]] = {}
    cols = None if full else STATE_COLUMNS
    for rel in lake.files(OUTBOX):
        for row in read_table(lake, rel, cols).to_pylist():
            row["_path"] = rel
            out[row["notification_id"]] = row
    return out


def read_row(lake: Lake, rel: str) -> dict[str, Any]:
    row: dict[str, Any] = read_table(lake, rel).cast(schema.OUTBOX).to_pylist()[0]
    row["_path"] = rel
    return row


def write_row(lake: Lake, row: dict[str, Any]) -> None:
    rel = row["_path"]
    clean = {k: v for k, v in row.items() if not k.startswith("_")}
    clean["updated_at"] = datetime.now(UTC)
    lake.write_table(rel, pa.Table.from_pylist([clean], schema=schema.OUTBOX))


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
    dest = lake.path(rel)
    lake.fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
    tmp = f"{dest}.{uuid.uuid4().hex}.tmp" if lake.is_local else dest
    with lake.fs.open_output_stream(tmp) as f:
        f.write(data)
    if tmp != dest:
        lake.fs.move(tmp, dest)


def read_bytes(lake: Lake, rel: str) -> bytes:
    """The file at ``rel`` in one request: one GET on S3 (pyarrow would ask for the size first
    and then a range, which a replacement in between makes a mix of two versions), one open
    file locally (a rename replaces the name, not what is open)."""
    if lake.is_local:
        with lake.fs.open_input_stream(lake.path(rel)) as f:
            data: bytes = f.read()
        return data
    bucket, _, key = lake.path(rel).partition("/")
    try:
        body: bytes = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        # As pyarrow reports a lake it cannot read: an OSError, which the CLI prints as such.
        raise OSError(f"{lake.uri(rel)}: {type(exc).__name__}: {exc}"[:500]) from exc
    return body


def delete(lake: Lake, rel: str) -> None:
    lake.fs.delete_file(lake.path(rel))
