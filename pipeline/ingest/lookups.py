"""The ``[[tenancy.lookup]]`` tables, read once per run, and applied to whole columns.

A lookup maps what a log holds (an account id, a bucket or table name, a subdomain) to the tenant
it belongs to. ``load_lookups`` reads every configured table at the start of a run, in the main
process, before anything is ingested (``pipeline.tables`` reads the files and DynamoDB tables and
says what went wrong), checks it, and keeps it as two Arrow arrays, keys and tenants, which travel
to the ingest workers with the configuration. ``Lookups.apply`` maps a column in one Arrow call; a
key the table lacks maps to nothing: an unknown account stays unresolved, never becomes a tenant id
of its own.

A table that maps one key to two tenants is refused (``ConfigError`` naming the table and the key):
which one is right is not for ingestion to guess. Rows without a key or without a tenant are left
out (a registry may list accounts not yet given to anyone); a table where no row has the key or
tenant column at all is refused, since its names are then surely wrong.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import config as c
from pipeline import tables
from pipeline.errors import ConfigError

_S = pa.string()


@dataclass(frozen=True)
class Table:
    """One lookup: ``keys[i]`` belongs to ``tenants[i]`` (keys distinct)."""

    name: str
    keys: pa.Array
    tenants: pa.Array

    def apply(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The tenant of each value; null where the table has no such key (or no value)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not len(self.keys):
            return pa.nulls(len(values), _S)
        return pc.take(self.tenants, pc.index_in(values, value_set=self.keys))

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.keys.to_pylist(), self.tenants.to_pylist(), strict=True))


@dataclass(frozen=True)
class Lookups(Mapping[str, Table]):
    """Every configured lookup by name; immutable, and picklable (it goes to the workers)."""

    tables: tuple[Table, ...] = ()

    def __getitem__(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (t.name for t in self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    def apply(self, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        return self[name].apply(values)


NONE = Lookups()


def load_lookups(cfg: c.Config) -> Lookups:
    """Read every ``[[tenancy.lookup]]`` of ``cfg``. ``ConfigError`` (exit 2) for a file that is
    missing or malformed, lacks its columns, or maps a key to two tenants; ``TableError`` (exit
    1) for a table in AWS that cannot be read."""
    return Lookups(tuple(_load(i, lk) for i, lk in enumerate(cfg.tenancy.lookup)))


def _load(i: int, lk: c.Lookup) -> Table:
    where = f"tenancy.lookup[{i}] ({lk.name})"
    if lk.values:
        source = "values"
        rows: list[dict[str, Any]] = [{lk.key: k, lk.tenant: v} for k, v in lk.values.items()]
    elif lk.file:
        source = lk.file
        rows = tables.read_file(lk.file, where, pair=(lk.key, lk.tenant))
    else:
        source = f"DynamoDB table {lk.dynamodb_table!r}"
        rows = tables.scan_dynamodb(lk.dynamodb_table, lk.region, where)
    return _table(lk, rows, f"{where}: {source}")


def _table(lk: c.Lookup, rows: list[dict[str, Any]], where: str) -> Table:
    for column in (lk.key, lk.tenant):
        if rows and not any(column in r for r in rows):
            raise ConfigError(f"{where}: no {column!r} column (it has {_columns(rows)})")
    found: dict[str, str] = {}
    for n, row in enumerate(rows, 1):
        key, tenant = _scalar(row.get(lk.key), where, n), _scalar(row.get(lk.tenant), where, n)
        if key is None or tenant is None:
            continue
        known = found.setdefault(key, tenant)
        if known != tenant:
            raise ConfigError(
                f"{where}: key {key!r} is mapped to two tenants ({known!r} and {tenant!r})"
            )
    return Table(lk.name, pa.array(list(found), _S), pa.array(list(found.values()), _S))


def _scalar(value: Any, where: str, row: int) -> str | None:
    if isinstance(value, list):
        raise ConfigError(f"{where}: row {row}: expected one value, got a list {value!r}")
    if value is None:
        return None
    value = str(value)
    return value if value.strip() else None


def _columns(rows: list[dict[str, Any]]) -> str:
    names = sorted({k for r in rows[:100] for k in r})
    return ", ".join(names[:10]) or "none"
