"""One decoded record -> one normalized row (docs/ARCHITECTURE.md, "Contracts").

A row has the ``ROW_FIELDS`` columns (``WIDE``): the event columns that need no configuration,
then ``h_*`` hint columns (role session name, S3 key, API path, token claim ...) from which
``tenancy`` resolves tenants, vectorised, with the configured strategies. CloudTrail records become
rows a chunk at a time, as columns (``cloudtrail``); API Gateway and authorizer lines one at a
time here (``*_row`` returns a tuple in ``ROW_FIELDS`` order). Time stays text and is parsed per
batch (``timeparse``). A record that cannot become a row raises ``Unusable`` with a stable reason
code; the caller quarantines it, as it does a record on which anything else raised (``failure``).

API Gateway and authorizer lines are read through the source's field mapping (``[sources.*]``,
``Mapping``): every column comes from the first of its field paths present in the line.

Logs are hostile input: every value is read defensively (``as_text`` turns whatever JSON type a
vendor put there into a string or None) and nothing here interprets a value as a path or markup.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from pipeline import config as c
from pipeline.fieldpath import FieldPath, json_text, parse_many
from pipeline.ingest import jsonnum, native

ROW_FIELDS = (
    "event_id",
    "event_time",
    "source",
    "event_kind",
    "service",
    "action",
    "actor_principal",
    "actor_type",
    "actor_session",
    "resource",
    "outcome",
    "error_code",
    "status_code",
    "source_ip",
    "user_agent",
    "account_id",
    "region",
    "request_id",
    "raw",
    # hints for tenant resolution; never stored
    "h_role_name",
    "h_session_name",
    "h_role_arn",
    "h_source_identity",
    "h_claim",
    "h_s3_bucket",
    "h_s3_key",
    "h_ddb_table",
    "h_ddb_key",
    "h_api_path",
    "h_host",
    "h_arns",
    "h_requested_tenant",  # the tenant an authorizer request asked for
    "h_new_session",  # the access key id an AssumeRole* returned
)
HINT_FIELDS = tuple(f for f in ROW_FIELDS if f.startswith("h_"))
# The normalized fields a record's content hash covers: everything but the raw text and hints.
HASHED_FIELDS = ROW_FIELDS[: ROW_FIELDS.index("raw")]
WIDE = pa.schema(
    [(f, pa.int32() if f == "status_code" else pa.string()) for f in ROW_FIELDS]
    + [("input_uri", pa.string()), ("record_hash", pa.string())]
)


class Unusable(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def failure(exc: Exception) -> tuple[str, str]:
    """(reason, detail) of the quarantine entry for a record on which ``exc`` was raised:
    an ``Unusable``'s own, ``too_deep`` for nesting, else ``unprocessable_record`` naming the
    error (a log value no rule here foresaw must cost its record, not the run). Running out of
    memory is the machine's trouble, not the record's: it is raised again."""
    if isinstance(exc, MemoryError):
        raise exc
    if isinstance(exc, Unusable):
        return exc.reason, str(exc)
    if isinstance(exc, RecursionError):
        return "too_deep", f"JSON nested too deeply to handle ({exc})"
    return "unprocessable_record", f"reading it raised {type(exc).__name__}: {exc}"[:500]


def as_text(value: Any) -> str | None:
    """Any JSON value as a string; None for null, "" and the access-log placeholder "-". An object
    or array is its JSON text; one nested too deeply to write as text (orjson writes 254 levels
    and reads 1,024) makes its record ``Unusable``."""
    try:
        return json_text(value)
    except orjson.JSONEncodeError as exc:
        if "recursion" not in str(exc).lower():
            raise
        detail = "a field read as text holds JSON nested too deeply to write (past 254 levels)"
        raise Unusable("too_deep", detail) from None


def as_object(value: Any) -> dict[str, Any]:
    """A JSON object, also when a vendor stored it as a JSON string."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.startswith("{"):
        try:
            parsed = jsonnum.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def synthetic_id(raw: bytes) -> str:
    """A stable id for records that lack one: the same bytes give the same id (so re-delivered
    copies dedup), different bytes differ."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def record_hashes(columns: dict[str, pa.Array]) -> pa.Array:
    """``record_hash`` per row: XXH64 of the ``HASHED_FIELDS`` joined by 0x1F (a null as 0x00, so
    it differs from ""), as 16 hex digits. The C decoder hashes the columns where they are;
    else Arrow joins them and only the digest is a Python call per row."""
    parts = [columns[f].cast(pa.string()) for f in HASHED_FIELDS]
    direct = native.join_hash(parts)
    if direct is not None:
        return fixed_width_strings(direct, 16, len(parts[0]))
    joined = pc.binary_join_element_wise(
        *parts, "\x1f", null_handling="replace", null_replacement="\x00"
    ).cast(pa.binary())
    digest = xxhash.xxh64_hexdigest
    hexes = "".join([digest(v) for v in joined.to_pylist()]).encode()
    return fixed_width_strings(hexes, 16, len(joined))


def fixed_width_strings(data: bytes, width: int, n: int) -> pa.Array:
    """``n`` strings of ``width`` ASCII bytes each, laid end to end in ``data``: no copies."""
    offsets = pa.array(range(0, width * n + 1, width), pa.int32())
    return pa.Array.from_buffers(pa.string(), n, [None, offsets.buffers()[1], pa.py_buffer(data)])


def first_string_value(attrs: Any) -> str | None:
    """The first string in a DynamoDB attribute map: {"pk": {"S": "TENANT#t1"}} -> "TENANT#t1"."""
    if isinstance(attrs, dict):
        for v in attrs.values():
            if isinstance(v, dict):
                s = v.get("S")
                if isinstance(s, str):
                    return s
            elif isinstance(v, str):
                return v
    return None


def path_only(path: str | None) -> str | None:
    """A request path without its query and fragment: tenant patterns read the path, and the
    query may hold secrets that must not become a tenant id."""
    return path.split("?", 1)[0].split("#", 1)[0] if path else path


# --- field mappings of the per-line sources --------------------------------------------------


@dataclass(frozen=True)
class Mapping:
    """The field paths of each column of one per-line source (``[sources.<source>]``), parsed
    once per run; picklable, it goes to the ingest workers."""

    paths: dict[str, tuple[FieldPath, ...]]

    def get(self, column: str, rec: dict[str, Any]) -> str | None:
        """The column's value: the first of its paths that holds one, by ``as_text``'s rules
        (so a value nested too deeply to write makes the record ``Unusable``)."""
        for path in self.paths[column]:
            if len(path.steps) == 1 and path.steps[0].name is not None:  # the common case
                text = as_text(rec.get(path.steps[0].name))
                if text is not None:
                    return text
                continue
            for node in path.nodes(rec):
                text = as_text(node)
                if text is not None:
                    return text
        return None


def mapping(source: str, cfg: c.Config) -> Mapping:
    """The compiled mapping of ``source`` (apigateway or authorizer). An access-log mapping
    without ``tenant_claim`` reads the authorizer_context strategy's key (default tenantId)."""
    fields = getattr(cfg.sources, source)
    paths = {name: parse_many(getattr(fields, name)) for name in fields.__struct_fields__}
    if source == "apigateway" and not paths["tenant_claim"]:
        key = next(
            (s.key for s in cfg.tenancy.actor if isinstance(s, c.AuthorizerContext)), "tenantId"
        )
        paths["tenant_claim"] = parse_many(c.claim_spellings(key))
    return Mapping(paths)


# --- API Gateway access logs -----------------------------------------------------------------


def access_log_row(rec: dict[str, Any], raw: bytes, m: Mapping) -> tuple[Any, ...]:
    event_id = m.get("request_id", rec)
    if event_id is None:
        raise Unusable("missing_request_id", "access-log line without a request id")
    time_text = m.get("time", rec)
    if time_text is None:
        raise Unusable("missing_event_time", "access-log line without a request time")
    status_text = m.get("status", rec)
    try:
        status = int(status_text) if status_text is not None else None
    except ValueError:
        status = None
    if status is not None and not 100 <= status <= 599:
        status = None
    if status is None:
        outcome = "error"
    elif status in (401, 403):
        outcome = "denied"
    elif status < 400:
        outcome = "success"
    else:
        outcome = "error"
    api, stage = m.get("api_id", rec), m.get("stage", rec)
    path = m.get("path", rec)
    api_path = path_only(path)
    if api_path and stage and api_path.startswith(f"/{stage}/"):
        api_path = api_path[len(stage) + 1 :]
    method = m.get("http_method", rec)
    route = m.get("route", rec)
    principal = m.get("principal", rec)
    error_code = m.get("error", rec)
    if error_code is None and status is not None and status >= 400:
        error_code = str(status)
    return (
        event_id,
        time_text,
        "apigateway",
        "access_log",
        f"execute-api:{api}/{stage}" if api else "execute-api",
        f"{method} {route}" if method and route and " " not in route else (route or method),
        principal,
        "token" if principal else None,
        None,
        path,
        outcome,
        error_code,
        status,
        m.get("source_ip", rec),
        m.get("user_agent", rec),
        m.get("account_id", rec),
        None,
        event_id,
        raw,
        None,
        None,
        None,
        None,
        m.get("tenant_claim", rec),
        None,
        None,
        None,
        None,
        api_path,
        m.get("domain", rec),
        None,
        None,
        None,
    )


# --- Lambda authorizer logs (Powertools Logger JSON by default) ------------------------------

_METHOD_ARN = re.compile(
    r"^arn:[\w-]+:execute-api:([^:]*):([^:]*):([^/]+)/([^/]+)/([A-Z*]+)(/.*)?$"
)


def authorizer_row(rec: dict[str, Any], raw: bytes, m: Mapping) -> tuple[Any, ...]:
    event_id = m.get("event_id", rec) or synthetic_id(raw)
    time_text = m.get("time", rec)
    if time_text is None:
        raise Unusable("missing_event_time", "authorizer log line without a time")
    decision = (m.get("decision", rec) or "").lower()
    method_arn = m.get("method_arn", rec)
    region = account = method = path = None
    if method_arn:
        found = _METHOD_ARN.match(method_arn)
        if found:
            region, account, _api, _stage, method, path = found.groups()
    function = m.get("function", rec) or "authorizer"
    return (
        event_id,
        time_text,
        "authorizer",
        "authorizer_decision",
        f"lambda:{function}",
        f"authorize {method} {path}" if method and path else "authorize",
        m.get("principal", rec),
        "token",
        m.get("token_fingerprint", rec),
        path or method_arn,
        "success" if decision == "allow" else "denied" if decision == "deny" else "error",
        None if decision == "allow" else (m.get("reason", rec) or decision or None),
        None,
        m.get("source_ip", rec),
        m.get("user_agent", rec),
        account,
        region,
        m.get("request_id", rec),
        raw,
        None,
        None,
        None,
        None,
        m.get("tenant_claim", rec),
        None,
        None,
        None,
        None,
        path_only(path),
        None,
        None,
        m.get("requested_tenant", rec),
        None,
    )
