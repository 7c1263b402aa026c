"""The lake as Athena reads it: the Glue tables of infra/template.yaml, and their DuckDB twin.

Each area of the lake an analyst queries is one table (``TABLES``): its folder, its pinned
schema (``pipeline/schema.py``; ``INGESTED`` and the sessions' ``STATE`` for ingest's own
state), and the hive keys of its partition folders, which the template projects (no crawler,
no ``MSCK REPAIR``).
The template writes each table's columns out; ``tests/test_infra.py`` checks them against
``glue_columns`` so that a column added to a schema cannot be missing from Athena.

``connect`` opens the same tables over a local lake in DuckDB, reading exactly the files Athena
reads (every Parquet file below a partition's folder, compacted or not), so the analyst's
queries in ``infra/queries/`` and the query each notification prints can be run, and tested,
without AWS. The two dialects differ only where ``duckdb_sql`` and ``_MACROS`` say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import lake, schema
from pipeline.ingest.run import INGESTED
from pipeline.ingest.sessions import STATE as SESSIONS


@dataclass(frozen=True)
class Table:
    name: str
    folder: str  # below the lake's root
    schema: pa.Schema
    # The hive keys of its partition folders (``<key>=<value>/``), outermost first: Athena's
    # partition columns, projected by the template. A key that is also a column of the files
    # (``source`` of events) is a partition column only.
    partitions: tuple[str, ...]

    @property
    def columns(self) -> list[pa.Field]:
        """The columns of the files, as the table has them (partition keys left out)."""
        return [f for f in self.schema if f.name not in self.partitions]


TABLES = {
    t.name: t
    for t in (
        Table("events", lake.EVENTS, schema.EVENTS, ("source", "date")),
        Table("findings", lake.FINDINGS, schema.FINDINGS, ("date",)),
        Table("incidents", lake.INCIDENT_STATE, schema.INCIDENTS, ("date",)),
        Table("outbox", lake.OUTBOX, schema.OUTBOX, ("date",)),
        Table("verdicts", lake.VERDICTS, schema.VERDICTS, ("date",)),
        Table("containment", lake.CONTAINMENT, schema.CONTAINMENT, ("date",)),
        # Flat: its files lie directly in the folder; no partition to project.
        Table("quarantine", lake.QUARANTINE, schema.QUARANTINE, ()),
        # The date= partitions only: an input without a delivery day in its key is recorded
        # under prefix=<hash>, which no projection can enumerate.
        Table("ingested", lake.STATE_INGESTED, INGESTED, ("date",)),
        # Access key id -> the session's tags and origin, by the day the session started.
        Table("sessions", lake.STATE_SESSIONS, SESSIONS, ("date",)),
    )
}

_HIVE = {
    pa.string(): "string",
    pa.large_binary(): "binary",
    pa.binary(): "binary",
    pa.bool_(): "boolean",
    pa.int32(): "int",
    pa.int64(): "bigint",
    pa.float64(): "double",
    pa.timestamp("us", tz="UTC"): "timestamp",
}


def hive_type(t: pa.DataType) -> str:
    """The Glue (Hive) type Athena reads the Arrow type ``t`` of the lake's Parquet as."""
    if pa.types.is_list(t):
        return f"array<{hive_type(t.value_type)}>"
    return _HIVE[t]


def glue_columns(table: Table) -> list[dict[str, str]]:
    """The ``StorageDescriptor.Columns`` of ``table`` in the template, in schema order."""
    return [{"Name": f.name, "Type": hive_type(f.type)} for f in table.columns]


# --- the DuckDB twin -----------------------------------------------------------------------------

_DUCK = {
    "string": "VARCHAR",
    "binary": "BLOB",
    "boolean": "BOOLEAN",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "timestamp": "TIMESTAMPTZ",
}
# Athena's functions DuckDB lacks, as DuckDB macros. Athena's timestamps are UTC; DuckDB's
# session is set to UTC so that casts of timestamps to dates agree.
_MACROS = ("CREATE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)",)


def duckdb_sql(sql: str) -> str:
    """Athena (Trino) SQL of ``infra/queries/`` as DuckDB runs it: the one difference in the
    text (an array type's spelling); parameters (``?``) are positional in both."""
    return re.sub(r"\bARRAY\((\w+)\)", r"\1[]", sql)


def _duck_type(hive: str) -> str:
    if hive.startswith("array<"):
        return f"{_duck_type(hive[6:-1])}[]"
    return _DUCK[hive]


def files(root: str | Path, table: Table) -> list[str]:
    """The files Athena reads for ``table`` in the local lake at ``root``: every Parquet file
    below a partition's folder (a day's hours' folders and compacted files included)."""
    top = Path(root, table.folder)
    pattern = "/".join([*(f"{k}=*" for k in table.partitions), "**", "*.parquet"])
    return sorted(str(p) for p in top.glob(pattern) if p.is_file())


def connect(root: str | Path, database: str = "tenantwatch") -> Any:
    """A DuckDB connection over the local lake at ``root`` with a view per table of
    ``TABLES``, in the main schema and in ``database`` (as a notification names
    ``tenantwatch.events``)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for macro in _MACROS:
        con.execute(macro)
    con.execute(f'CREATE SCHEMA "{database}"')
    for table in TABLES.values():
        found = files(root, table)
        present: set[str] = set()
        if found:
            # File names as SQL string literals (a root may hold a quote; the lake's own names
            # are safe characters only).
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in found)
            source = f"read_parquet([{listed}], union_by_name = true, filename = true)"
            described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()  # noqa: S608
            present = {r[0] for r in described}
        else:
            source = "(SELECT NULL AS filename WHERE false)"
        cols = [
            f'"{f.name}"'
            if f.name in present
            else f'CAST(NULL AS {_duck_type(hive_type(f.type))}) AS "{f.name}"'
            for f in table.columns
        ]
        cols += [
            f"regexp_extract(filename, '/{k}=([^/]+)/', 1) AS \"{k}\"" for k in table.partitions
        ]
        body = f"SELECT {', '.join(cols)} FROM {source}"  # noqa: S608
        for where in ("main", database):
            con.execute(f'CREATE VIEW "{where}"."{table.name}" AS {body}')
    return con
