"""Small reference tables a SaaS keeps elsewhere: tenant registries, ticket exports.

The configuration names them (``[[tenancy.lookup]]``, a break-glass ticket file or table) and a
run reads each once, at start, before anything is ingested or detected: a run never works from
half a table. Rows come back as plain dicts of text (or lists of text), whatever the format:

- a file, local or ``s3://``: ``.csv`` (a header row), ``.json`` (a list of objects, or one
  object mapping keys to values, read as rows of two columns that the caller names), ``.jsonl``
  (an object a line) or ``.parquet``; ``.gz`` after any of them is decompressed;
- a DynamoDB table, scanned whole (its items' attribute values turned into text).

A file that is missing or cannot be parsed is the user's to fix: a ``ConfigError`` naming it
(exit 2). AWS that cannot be reached or refuses (network, permissions, a table that does not
exist) is a run-time failure: a ``TableError`` (exit 1). Either way nothing has run yet.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Any

import orjson

from pipeline.errors import ConfigError, TenantwatchError

# A registry of every tenant fits easily; a file far larger is a mistake (a log named by error).
MAX_BYTES = 256 << 20

Row = dict[str, Any]


class TableError(TenantwatchError):
    """A table in AWS (an S3 object or a DynamoDB table) could not be read."""


def read_file(name: str, where: str, pair: tuple[str, str] = ("key", "value")) -> list[Row]:
    """The rows of the file ``name`` (local path or ``s3://bucket/key``); ``where`` names the
    configuration key that named it, for messages. A JSON file holding one object of keys and
    values gives a row per member, its key and value in the columns ``pair`` names."""
    data = _bytes(name, where)
    fmt = name.lower()
    if fmt.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ConfigError(f"{where}: {name}: not a valid gzip file ({exc})") from None
        fmt = fmt[:-3]
    try:
        if fmt.endswith(".csv"):
            return _csv(data)
        if fmt.endswith(".jsonl"):
            return [_object(orjson.loads(line), name) for line in data.splitlines() if line.strip()]
        if fmt.endswith(".json"):
            return _json(orjson.loads(data), name, pair)
        if fmt.endswith(".parquet"):
            import pyarrow.parquet as pq

            return [_texts(r) for r in pq.read_table(io.BytesIO(data)).to_pylist()]
    except ConfigError:
        raise
    except Exception as exc:  # orjson, csv, pyarrow: each has its own error types
        raise ConfigError(
            f"{where}: {name}: cannot be parsed ({type(exc).__name__}: {exc})"
        ) from None
    raise ConfigError(f"{where}: {name}: expected a .csv, .json, .jsonl or .parquet file")


def scan_dynamodb(table: str, region: str, where: str) -> list[Row]:
    """Every item of the DynamoDB ``table``, attribute values as text (lists for sets and
    lists)."""
    from pipeline import aws

    client = aws.client("dynamodb", region)
    rows: list[Row] = []
    kwargs: dict[str, Any] = {"TableName": table}
    try:
        while True:
            page = client.scan(**kwargs)
            rows.extend(_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return rows
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except Exception as exc:
        _setup(exc, where)
        raise TableError(f"{where}: DynamoDB table {table!r} cannot be read: {exc}") from exc


def _bytes(name: str, where: str) -> bytes:
    if name.startswith("s3://"):
        from pipeline import aws

        bucket, _, key = name[len("s3://") :].partition("/")
        try:
            obj = aws.client("s3").get_object(Bucket=bucket, Key=key)
            return bytes(obj["Body"].read(MAX_BYTES + 1))
        except Exception as exc:
            _setup(exc, where)
            if aws.error_code(exc) in ("NoSuchKey", "NoSuchBucket", "404"):
                raise ConfigError(f"{where}: {name}: no such object") from None
            raise TableError(f"{where}: {name} cannot be read: {exc}") from exc
    p = Path(name)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{where}: {name}: {size:,} bytes, more than a table may hold")
        return p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: {name}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: {name}: a folder, expected a file") from None
    except OSError as exc:
        raise ConfigError(f"{where}: {name}: cannot be read ({exc})") from None


def _setup(exc: BaseException, where: str) -> None:
    """No credentials or no region: the one-line setup error every AWS edge gives."""
    from pipeline.errors import AwsSetupError

    if type(exc).__name__ in ("NoCredentialsError", "NoRegionError", "PartialCredentialsError"):
        raise AwsSetupError(f"{where}: {exc}") from None


def _csv(data: bytes) -> list[Row]:
    text = data.decode("utf-8-sig")
    rows = []
    for n, r in enumerate(csv.DictReader(io.StringIO(text)), 2):
        if None in r:  # csv's place for the cells past the header's
            raise ValueError(f"line {n} has more cells than the header")
        rows.append(dict(r))
    return rows


def _json(doc: Any, name: str, pair: tuple[str, str]) -> list[Row]:
    if isinstance(doc, list):
        return [_object(r, name) for r in doc]
    if isinstance(doc, dict):
        return [{pair[0]: k, pair[1]: _text(v)} for k, v in doc.items()]
    raise ConfigError(f"{name}: expected a list of objects, or an object of keys and values")


def _object(row: Any, name: str) -> Row:
    if not isinstance(row, dict):
        raise ConfigError(f"{name}: expected objects, found {type(row).__name__}")
    return _texts(row)


def _texts(row: dict[str, Any]) -> Row:
    return {str(k): _text(v) for k, v in row.items()}


def _text(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, list | tuple):
        return [_text(x) for x in v]
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _item(item: dict[str, Any]) -> Row:
    """A DynamoDB item (typed attribute values) as text."""

    def value(av: dict[str, Any]) -> Any:
        (kind, v), *_ = av.items()
        if kind in ("S", "N"):
            return str(v)
        if kind == "BOOL":
            return "true" if v else "false"
        if kind in ("SS", "NS"):
            return sorted(str(x) for x in v)
        if kind == "L":
            return [value(x) for x in v]
        if kind == "NULL":
            return None
        return orjson.dumps(v, default=str).decode()  # maps and binaries: as JSON text

    return {k: value(v) for k, v in item.items()}
