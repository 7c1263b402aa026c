"""Pinned Arrow schemas: the contracts between stages (docs/ARCHITECTURE.md, "Contracts").

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
        # A break-glass principal's ticket id (session tag or role session name); a lake written
        # before this column existed reads it as null.
        pa.field("actor_ticket", _S),
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
        # The input records the entry stands for: 1, or more when an input's many bad records
        # of one reason were gathered into one entry (summaries count records, not entries).
        pa.field("records", pa.int64(), nullable=False),
    ]
)


def empty(schema: pa.Schema) -> pa.Table:
    """An empty table that still has every column (an empty result is still a result)."""
    return schema.empty_table()


SEVERITIES = ("info", "low", "medium", "high", "critical")
# Each severity's place in SEVERITIES, higher is worse: the one order everything sorts and
# compares severities by.
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
_TS = pa.timestamp("us", tz="UTC")

# One row per finding, the same for every detector (docs/ARCHITECTURE.md, "Contracts").
# ``finding_id`` is a content hash of detector id + group key + window, so re-running a window
# gives the same ids.
FINDINGS = pa.schema(
    [
        pa.field("finding_id", _S, nullable=False),
        pa.field("detector", _S, nullable=False),  # the detector's id == its module name
        pa.field("severity", _S, nullable=False),  # one of SEVERITIES
        pa.field("title", _S, nullable=False),
        pa.field("actor", _S),  # principal, session, source IP or null (a tenant-level finding)
        pa.field("actor_tenant", _S),
        pa.field("tenants", pa.list_(_S)),  # target tenants involved
        pa.field("window_start", _TS, nullable=False),
        pa.field("window_end", _TS, nullable=False),
        pa.field("first_seen", _TS),
        pa.field("last_seen", _TS),
        pa.field("event_count", pa.int64(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),  # higher = more anomalous
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("baseline", _S),  # the baseline in force, for people
        pa.field("dedup_key", _S, nullable=False),  # findings sharing it make one incident
        # JSON: top actions, source IPs, outcomes, sample event ids (back into the lake), and
        # what the detector found unusual.
        pa.field("evidence", _S, nullable=False),
        # The id of the suppression that matched: the finding is kept, and never paged. A lake
        # written before this column existed reads it as null.
        pa.field("suppressed_by", _S),
    ]
)

# --- alerting (pipeline/alert/) ------------------------------------------------------------------

INCIDENT_STATUSES = ("new", "updated")
# pending -> publishing -> sent | failed (retried next run) | in_doubt (the process died between
# the publish and the state write: never re-sent automatically, see pipeline/alert/delivery.py).
DELIVERY_STATES = ("pending", "publishing", "sent", "failed", "in_doubt")

# One row per incident (an attack story: the findings of one actor, joined by shared entities),
# its latest revision (incidents/state/date=<period start>/<id>.parquet). ``incident_id`` is a
# hash of the first finding's dedup key + window. The last six columns came later: a lake
# written before reads them as null (pipeline/alert/incidents.py fills them in).
INCIDENTS = pa.schema(
    [
        pa.field("incident_id", _S, nullable=False),
        pa.field("dedup_key", _S, nullable=False),
        pa.field("detector", _S, nullable=False),
        pa.field("severity", _S, nullable=False),  # the worst of its findings
        pa.field("status", _S, nullable=False),  # one of INCIDENT_STATUSES
        pa.field("revision", pa.int32(), nullable=False),  # +1 per alert run that changed it
        pa.field("title", _S, nullable=False),  # the lead (worst) finding's
        pa.field("actor", _S),
        pa.field("actor_tenant", _S),
        pa.field("tenants", pa.list_(_S)),
        pa.field("period_start", _TS, nullable=False),  # the dedup period: [start, end)
        pa.field("period_end", _TS, nullable=False),
        pa.field("window_start", _TS, nullable=False),  # first finding window .. last
        pa.field("window_end", _TS, nullable=False),
        pa.field("first_seen", _TS),
        pa.field("last_seen", _TS),
        pa.field("finding_count", pa.int64(), nullable=False),
        pa.field("event_count", pa.int64(), nullable=False),
        pa.field("finding_ids", pa.list_(_S)),
        pa.field("score", pa.float64(), nullable=False),  # the lead finding's
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("baseline", _S),
        pa.field("evidence", _S, nullable=False),  # the lead finding's evidence JSON
        pa.field("snapshot_uri", _S),  # manifest.json of the forensic snapshot
        pa.field("snapshot_sha256", _S),  # SHA-256 of that manifest (it pins every file)
        # JSON list, in order of first seen: detector, kind, dedup key, severity, title, first
        # and last seen, finding and event counts, dedup period of each signal of the story.
        pa.field("signals", _S),
        pa.field("entities", pa.list_(_S)),  # principal:, session:, address:, egress: values
        pa.field("links", pa.list_(_S)),  # what joins later findings (pipeline/alert/entities.py)
        pa.field("snapshot_revision", pa.int32()),  # the revision the latest snapshot part covers
        pa.field("paged_severity", _S),  # the worst severity it has paged with; null: not paged
        # Each of ``finding_ids``' event count when absorbed (same order): a finding re-detected
        # with more events (its window seen again, more complete) grows the incident by the
        # difference. Null in incidents stored before it was kept: such a finding never grows.
        pa.field("finding_events", pa.list_(pa.int64())),
    ]
)

# One row per notification, its payload and delivery state: the outbox
# (incidents/outbox/date=<day>/<notification_id>.parquet, rewritten on each state change).
OUTBOX = pa.schema(
    [
        pa.field("notification_id", _S, nullable=False),  # hash of incident + kind + revision
        pa.field("incident_id", _S),  # null for a digest
        pa.field("kind", _S, nullable=False),  # new | update | digest
        pa.field("detector", _S, nullable=False),
        pa.field("severity", _S, nullable=False),
        pa.field("tenants", pa.list_(_S)),
        pa.field("subject", _S, nullable=False),  # < 100 printable ASCII characters
        pa.field("text", _S, nullable=False),  # what people read
        pa.field("message", _S, nullable=False),  # the SNS MessageStructure=json envelope
        pa.field("attributes", _S, nullable=False),  # SNS message attributes, JSON
        pa.field("size_bytes", pa.int64(), nullable=False),  # message + subject + attributes
        pa.field("truncated", pa.bool_(), nullable=False),  # evidence cut to fit 256 KB
        pa.field("channel", _S, nullable=False),  # sns | local | securityhub | eventbridge
        pa.field("state", _S, nullable=False),  # one of DELIVERY_STATES
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("last_error", _S),
        # SNS MessageId, the local file it went to, the Security Hub finding ids, the event id
        pa.field("message_id", _S),
        pa.field("updated_at", _TS, nullable=False),
    ]
)

# ``remediated``: real, and fixed: ``tenantwatch verify-fix --close`` found no recurrence.
VERDICT_KINDS = ("true_positive", "false_positive", "benign", "remediated")

# One row per verdict a person gave an incident (``tenantwatch incident close``), in its own file
# (incidents/verdicts/date=<day closed>/<verdict id>.parquet), never rewritten: an incident's
# latest verdict is the one that counts, the earlier ones stay as its history.
VERDICTS = pa.schema(
    [
        pa.field("verdict_id", _S, nullable=False),
        pa.field("incident_id", _S, nullable=False),
        pa.field("incident_revision", pa.int32()),  # the revision the verdict was given on
        pa.field("detectors", pa.list_(_S)),  # the incident's, when it was closed
        pa.field("verdict", _S, nullable=False),  # one of VERDICT_KINDS
        pa.field("note", _S, nullable=False),
        pa.field("closed_by", _S, nullable=False),
        pa.field("closed_at", _TS, nullable=False),
        pa.field("suppression_id", _S),  # the suppression written with it (close --suppress)
    ]
)

CONTAINMENT_ACTIONS = ("contain", "lift")
CONTAINMENT_MODES = ("suspend", "read-only")
# What a subject of containment is: the key of its entry in the containment table is
# ``<kind>#<value>`` (pipeline/containment.py).
CONTAINMENT_KINDS = ("tenant", "principal", "token", "address")

# One row per containment action (``tenantwatch contain``, its ``--lift``, and automatic
# containment when an incident opens), in its own file
# (incidents/containment/date=<day acted>/<action id>.parquet), never rewritten: the record of
# what was turned off for whom, by whom and why, beside the incident it was done for. The entry
# an authorizer reads is in DynamoDB; these rows are its history.
CONTAINMENT = pa.schema(
    [
        pa.field("action_id", _S, nullable=False),
        pa.field("action", _S, nullable=False),  # one of CONTAINMENT_ACTIONS
        pa.field("containment_id", _S, nullable=False),  # the entry's (incident + subject)
        pa.field("incident_id", _S, nullable=False),
        pa.field("subject_kind", _S, nullable=False),  # one of CONTAINMENT_KINDS
        pa.field("subject_value", _S, nullable=False),
        pa.field("mode", _S),  # one of CONTAINMENT_MODES; null for a lift
        pa.field("expires", _TS),  # null for a lift
        pa.field("reason", _S, nullable=False),
        pa.field("acted_by", _S, nullable=False),  # a login, or "tenantwatch" (automatic)
        pa.field("acted_at", _TS, nullable=False),
        pa.field("origin", _S, nullable=False),  # "cli" or "auto"
        pa.field("table_name", _S, nullable=False),  # the DynamoDB table of the entry
    ]
)
