"""Pinned Arrow schemas: the contracts between stages (DESIGN.md "Normalized events").

Every source becomes rows of ``EVENTS``; a batch is checked against it where it crosses into the
lake, so a column can never silently change type because of what one batch held. Types are the
ones Athena/Glue and DuckDB read without conversion (string, int32, bool, timestamp[us, UTC]).
"""

from __future__ import annotations

import pyarrow as pa

SOURCES = ("cloudtrail", "apigateway", "authorizer")
OUTCOMES = ("success", "denied", "error")

_S = pa.string()

EVENTS = pa.schema(
    [
        pa.field("event_id", _S, nullable=False),  # eventID / requestId
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source", _S, nullable=False),  # one of SOURCES
        # api_call, insight, console_signin, service_event, access_log, authorizer_decision ...
        pa.field("event_kind", _S),
        pa.field("service", _S),  # eventSource, or execute-api:<api>/<stage>, lambda:<function>
        pa.field("action", _S),  # eventName, or "GET /tenants/{tenantId}/invoices"
        pa.field("actor_principal", _S),  # stable principal: ARN (session kept) or principalId
        pa.field("actor_type", _S),  # userIdentity.type, or "token"
        pa.field("actor_session", _S),  # accessKeyId, or the token fingerprint (never the token)
        pa.field("actor_tenant", _S),
        pa.field("actor_tenant_source", _S),  # the strategy kind that resolved actor_tenant
        pa.field("target_tenant", _S),
        pa.field("target_tenant_source", _S),
        # Fail secure: a second, disagreeing candidate is kept, never silently resolved.
        pa.field("tenant_conflict", _S),  # e.g. "actor:session_tag=t0001,role_session_name=t0002"
        pa.field("resource", _S),  # resource ARN, s3://bucket/key, table/key, or API path
        pa.field("outcome", _S),  # one of OUTCOMES
        pa.field("error_code", _S),
        pa.field("status_code", pa.int32()),
        pa.field("source_ip", _S),
        pa.field("user_agent", _S),
        pa.field("account_id", _S),
        pa.field("region", _S),
        pa.field("request_id", _S),
        pa.field("raw", _S),  # the original record as JSON, secrets replaced by fingerprints
        # 64-bit content hash of the normalized fields: with event_id, what makes a duplicate.
        pa.field("record_hash", _S),
        pa.field("input_uri", _S),  # the file or object it came from
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("input_uri", _S, nullable=False),
        pa.field("position", pa.int64(), nullable=False),  # record index / line number; -1: file
        pa.field("reason", _S, nullable=False),  # a short, stable code: counted in summaries
        pa.field("detail", _S),  # what exactly was wrong, for people
        pa.field("raw", pa.large_binary()),  # the bytes as received (secrets redacted if parseable)
    ]
)


def empty(schema: pa.Schema) -> pa.Table:
    """An empty table that still has every column (an empty result is still a result)."""
    return schema.empty_table()
