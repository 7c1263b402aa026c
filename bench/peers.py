"""The peers of the ingest benchmark, one per process: ``python -m bench.peers PEER IN OUT [N]``.

Each reads the CloudTrail delivery files under IN, writes Parquet (zstd) to OUT and prints one
JSON line with the number of records it wrote.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

# The fields tenantwatch normalizes from CloudTrail, as DuckDB's from_json structure.
_FIELDS = """{"eventID":"VARCHAR","eventTime":"VARCHAR","eventSource":"VARCHAR",
"eventName":"VARCHAR","eventType":"VARCHAR","errorCode":"VARCHAR","awsRegion":"VARCHAR",
"sourceIPAddress":"VARCHAR","userAgent":"VARCHAR","recipientAccountId":"VARCHAR",
"requestID":"VARCHAR","userIdentity":{"type":"VARCHAR","arn":"VARCHAR","principalId":"VARCHAR",
"accountId":"VARCHAR","accessKeyId":"VARCHAR","sessionContext":{"sessionIssuer":{"arn":"VARCHAR"}}},
"requestParameters":{"bucketName":"VARCHAR","key":"JSON","tableName":"VARCHAR"}}"""
_SELECT = """
    s.eventID AS event_id, CAST(s.eventTime AS TIMESTAMPTZ) AS event_time,
    'cloudtrail' AS source, s.eventType AS event_kind, s.eventSource AS service,
    s.eventName AS action, coalesce(s.userIdentity.arn, s.userIdentity.principalId) AS actor,
    s.userIdentity.type AS actor_type, s.userIdentity.accessKeyId AS actor_session,
    s.userIdentity.sessionContext.sessionIssuer.arn AS role_arn,
    s.requestParameters.bucketName AS s3_bucket, s.requestParameters.key AS key,
    s.requestParameters.tableName AS ddb_table,
    CASE WHEN s.errorCode IS NULL THEN 'success' ELSE 'error' END AS outcome,
    s.errorCode AS error_code, s.sourceIPAddress AS source_ip, s.userAgent AS user_agent,
    coalesce(s.recipientAccountId, s.userIdentity.accountId) AS account_id,
    s.awsRegion AS region, s.requestID AS request_id"""


_DUCKDB_COPY = """
    COPY (
        SELECT {select}
        FROM (
            SELECT r, from_json(r, '{fields}') AS s
            FROM (
                SELECT unnest(from_json(json -> 'Records', '["JSON"]')) AS r
                FROM read_json_objects('{src}/**/*.json.gz')
            )
        )
    ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
"""


def duckdb_peer(src: Path, out: Path, keep_raw: bool) -> int:
    """read_json_objects + from_json, one thread: each record's text split out as JSON, then
    parsed into the fields (and, like the lake, the record itself kept)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 1")
    raw = ", r AS raw" if keep_raw else ""
    # The paths and fragments are the benchmark's own, never input: no injection to fear.
    query = _DUCKDB_COPY.format(select=_SELECT + raw, fields=_FIELDS, src=src, out=out)
    row = con.execute(query).fetchone()
    return int(row[0]) if row else 0


def pandas_peer(src: Path, out: Path, limit: int) -> int:
    """What a user would write: json.load each file, json_normalize, to_parquet. Columns that
    mix types (``requestParameters.key`` is a string for S3 and an object for DynamoDB) are
    turned into text, as the first ArrowTypeError teaches."""
    import pandas as pd

    frames, n = [], 0
    for path in sorted(src.rglob("*.json.gz")):
        with gzip.open(path) as fh:
            records = json.load(fh)["Records"]
        frames.append(pd.json_normalize(records))
        n += len(records)
        if n >= limit:
            break
    df = pd.concat(frames, ignore_index=True)
    for col in df.columns[df.dtypes.map(lambda t: t.kind == "O")]:
        df[col] = df[col].map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v))
    df.to_parquet(out, compression="zstd")
    return len(df)


def main() -> None:
    peer, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if peer in ("duckdb", "duckdb-fields"):
        n = duckdb_peer(src, out, keep_raw=peer == "duckdb")
    elif peer == "pandas":
        n = pandas_peer(src, out, int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown peer {peer!r}")
    print(json.dumps({"records": n}))


if __name__ == "__main__":
    main()
