"""Amazon Security Lake: CloudTrail kept as OCSF Parquet, read back into CloudTrail records.

Security Lake stores CloudTrail management events as OCSF 1.x rows in Parquet
(``aws/CLOUD_TRAIL_MGMT/2.0/region=<r>/accountId=<a>/eventDay=YYYYMMDD/*.parquet``): API Activity
(``class_uid`` 6003), Authentication (3002, console sign-ins) and Account Change (3001). The lake
wants the same event whichever way a CloudTrail record arrived, so every row is turned back into
the CloudTrail record it came from and handed to the CloudTrail decoder like any other record:
event id, record hash, tenant strategies and redaction are then the CloudTrail ones, with no
second set of rules to keep equal.

- A row that kept its original record (``raw_data``, or ``unmapped`` as one JSON text, holding a
  CloudTrail record) is that record, byte for byte.
- Any other row is rebuilt from its OCSF fields, as AWS's CloudTrail to OCSF mapping placed them
  (``api.operation`` is ``eventName``, ``actor.user.uid`` the identity's ARN, ``time`` the event
  time in epoch milliseconds ...), and the members of ``unmapped`` (the CloudTrail fields the
  mapping has no place for; a dotted key is a path) go back where they were. The rebuilt record
  is read like any other: its normalized row is the original's whenever the fields a row reads
  were kept.

A file is Parquet by its content (the ``PAR1`` magic), and OCSF by its columns (``class_uid`` and
``metadata``). Only the columns the mapping reads are decoded. Nothing is dropped: a row of
another class or product (``ocsf_unmapped_class``) or without the fields an event needs
(``ocsf_missing_field``) is a quarantine entry holding the row as JSON; a file whose Parquet does
not read (``corrupt_parquet``) or that is no OCSF (``parquet_not_ocsf``) is one entry, which keeps
no bytes: compressed pages can hold a secret that no scrubbing of the bytes would find.

Each record also carries its OCSF row as JSON text under the key ``ocsf`` (``Item.ocsf``,
secrets redacted), from which ``field`` strategies read their ``ocsf.``-prefixed paths
(``ocsf.actor.user.account.uid``); those paths find nothing in records from other inputs.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ingest import formats, jsonnum, normalize, redact
from pipeline.ingest.formats import CLOUDTRAIL, QUARANTINE, Item

MAGIC = b"PAR1"
OCSF_PREFIX = "ocsf."  # a ``field`` path that reads the OCSF row rather than the record
# The classes AWS maps CloudTrail management events to.
CLASSES = {6003: "API Activity", 3002: "Authentication", 3001: "Account Change"}
PRODUCT = "CloudTrail"
# The columns the mapping reads: every other column (observables, enrichments, type and
# severity codes) stays undecoded in the file.
COLUMNS = (
    "class_uid",
    "metadata",
    "time",
    "time_dt",
    "status",
    "api",
    "actor",
    "src_endpoint",
    "http_request",
    "cloud",
    "resources",
    "unmapped",
    "raw_data",
    "accountid",
    "region",
)
BATCH_ROWS = 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Missing(ValueError):
    """A row without a field every CloudTrail event has."""


def is_parquet(data: bytes) -> bool:
    """Whether ``data`` is (or claims to be) a Parquet file: it starts with the magic."""
    return data[:4] == MAGIC


def items(data: bytes) -> Iterator[Item]:
    """The items of one Security Lake Parquet file: CloudTrail records (each with its OCSF row as
    ``Item.ocsf``), or quarantine entries with their reasons."""
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        names = pf.schema_arrow.names
    except Exception as exc:  # pyarrow: ArrowInvalid, OSError, ... for a broken footer
        yield Item(QUARANTINE, -1, None, b"", "corrupt_parquet", _detail(data, exc))
        return
    if "class_uid" not in names or "metadata" not in names:
        shown = ", ".join(sorted(names)[:8])
        detail = f"Parquet without OCSF's class_uid and metadata columns (columns: {shown})"
        yield Item(QUARANTINE, -1, None, b"", "parquet_not_ocsf", detail)
        return
    position = 0
    batches = pf.iter_batches(BATCH_ROWS, columns=[c for c in COLUMNS if c in names])
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:
            detail = f"{_detail(data, exc)}; the {position:,} rows before it were read"
            yield Item(QUARANTINE, position, None, b"", "corrupt_parquet", detail)
            return
        if batch is None:
            return
        for row in batch.to_pylist(maps_as_pydicts="lossy"):
            try:
                yield _item(row, position)
            except Exception as exc:  # a value no rule foresaw costs its row alone
                yield Item(QUARANTINE, position, None, b"", *normalize.failure(exc))
            position += 1


def _detail(data: bytes, exc: Exception) -> str:
    return f"{len(data):,} bytes of Parquet that do not read: {exc}"


def _item(row: dict[str, Any], position: int) -> Item:
    text = orjson.dumps(row, default=_plain)
    ocsf = redact.redact_raw(b'{"ocsf":' + text + b"}")
    metadata = _obj(row.get("metadata"))
    product = _text(_obj(metadata.get("product")).get("name"))
    cls = row.get("class_uid")
    if cls not in CLASSES or (product is not None and product != PRODUCT):
        detail = f"class_uid {cls}, product {product}: not a CloudTrail class read here"
        return Item(QUARANTINE, position, None, text, "ocsf_unmapped_class", detail)
    original = _original(row)
    if original is not None:
        return Item(CLOUDTRAIL, position, original[0], original[1], ocsf=ocsf)
    try:
        record = cloudtrail_record(row)
    except Missing as exc:
        return Item(QUARANTINE, position, None, text, "ocsf_missing_field", str(exc))
    return Item(CLOUDTRAIL, position, record, orjson.dumps(record, default=_plain), ocsf=ocsf)


def _original(row: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
    """The CloudTrail record a row kept as text (``raw_data``, or ``unmapped`` written as one
    JSON text), decoded, with its bytes; None when it kept none."""
    for kept in (row.get("raw_data"), row.get("unmapped")):
        if isinstance(kept, str) and kept.lstrip().startswith("{"):
            raw = kept.encode()
            try:
                obj = jsonnum.loads(raw)
            except (orjson.JSONDecodeError, RecursionError):
                continue
            if formats.classify(obj) == CLOUDTRAIL:
                return obj, raw
    return None


def cloudtrail_record(row: dict[str, Any]) -> dict[str, Any]:
    """The CloudTrail record an OCSF row (API Activity, Authentication, Account Change) was
    mapped from, as far as the row kept it."""
    api, metadata = _obj(row.get("api")), _obj(row.get("metadata"))
    request, response = _obj(api.get("request")), _obj(api.get("response"))
    name, source = _text(api.get("operation")), _text(_obj(api.get("service")).get("name"))
    if name is None and source is None:
        raise Missing("no api.operation nor api.service.name (eventName, eventSource)")
    when = _time(row.get("time")) or _time(row.get("time_dt"))
    if when is None:
        raise Missing("no time (eventTime)")
    actor = _obj(row.get("actor"))
    user, session = _obj(actor.get("user")), _obj(actor.get("session"))
    account = _obj(user.get("account")).get("uid") or user.get("account_uid")
    attributes = _some(
        creationDate=_time(session.get("created_time_dt")) or _time(session.get("created_time")),
        mfaAuthenticated=_flag(session.get("is_mfa", session.get("mfa"))),
    )
    issuer = _some(arn=_text(session.get("issuer")))
    context = _some(sessionIssuer=issuer or None, attributes=attributes or None)
    identity = _some(
        type=_text(user.get("type")),
        principalId=_text(user.get("uid_alt")),
        arn=_text(user.get("uid")),
        accountId=_text(account),
        accessKeyId=_text(user.get("credential_uid")),
        userName=_text(user.get("name")),
        sessionContext=context or None,
        invokedBy=_text(actor.get("invoked_by")),
    )
    endpoint, cloud = _obj(row.get("src_endpoint")), _obj(row.get("cloud"))
    response_data = _json(response.get("data"))
    if response_data is None and row.get("class_uid") == 3002 and _text(row.get("status")):
        # Authentication keeps a console sign-in's outcome as its status.
        response_data = {"ConsoleLogin": _text(row.get("status"))}
    record = _some(
        eventVersion=_text(_obj(metadata.get("product")).get("version")),
        userIdentity=identity or None,
        eventTime=when,
        eventSource=source,
        eventName=name,
        awsRegion=_text(cloud.get("region")) or _text(row.get("region")),
        sourceIPAddress=_text(endpoint.get("ip")) or _text(endpoint.get("domain")),
        userAgent=_text(_obj(row.get("http_request")).get("user_agent")),
        errorCode=_text(response.get("error")),
        errorMessage=_text(response.get("message")),
        requestParameters=_json(request.get("data")),
        responseElements=response_data,
        requestID=_text(request.get("uid")),
        eventID=_text(metadata.get("uid")),
        apiVersion=_text(api.get("version")),
        eventType=_text(metadata.get("event_code")),
        recipientAccountId=_text(_obj(cloud.get("account")).get("uid"))
        or _text(row.get("accountid")),
        vpcEndpointId=_text(endpoint.get("uid")),
        eventCategory=_text(_obj(_obj(metadata.get("product")).get("feature")).get("name")),
        resources=[_resource(r) for r in row["resources"] if isinstance(r, dict)]
        if isinstance(row.get("resources"), list)
        else None,
    )
    unmapped = row.get("unmapped")
    if isinstance(unmapped, str):
        unmapped = _json(unmapped)
    if isinstance(unmapped, dict):
        for key, value in unmapped.items():
            _put(record, str(key).split("."), _unmapped_value(value))
    return record


def _resource(r: dict[str, Any]) -> dict[str, Any]:
    return _some(
        accountId=_text(_obj(_obj(r.get("owner")).get("account")).get("uid")),
        type=_text(r.get("type")),
        ARN=_text(r.get("uid")),
    )


def _put(record: dict[str, Any], keys: list[str], value: Any) -> None:
    """``value`` at the path ``keys`` of ``record``, unless a mapped field is there already (or
    the path runs through a value that is no object: then its dotted key is kept whole)."""
    at = record
    for i, key in enumerate(keys[:-1]):
        nxt = at.get(key)
        if nxt is None:
            nxt = at[key] = {}
        if not isinstance(nxt, dict):
            at.setdefault(".".join(keys[i:]), value)
            return
        at = nxt
    at.setdefault(keys[-1], value)


def _unmapped_value(value: Any) -> Any:
    """A member of ``unmapped``: OCSF keeps them as text, so JSON objects, arrays and booleans
    are read back as such; any other text (an account id's leading zeros) stays text."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped in ("true", "false"):
            return stripped == "true"
        if stripped == "null":
            return None
        if stripped.startswith(("{", "[")):
            parsed = _json(stripped)
            if parsed is not None:
                return parsed
    return value


def _json(value: Any) -> Any:
    """A JSON value kept as text (``api.request.data``), decoded; a struct as it is; text that
    does not parse stays text."""
    if isinstance(value, str):
        try:
            return jsonnum.loads(value.encode())
        except (orjson.JSONDecodeError, RecursionError):
            return value
    return value


def _time(value: Any) -> str | None:
    """An OCSF time (epoch milliseconds, or a timestamp) as CloudTrail writes times: whole
    seconds, with a fraction only when there is one."""
    try:
        if isinstance(value, datetime):
            at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            at = _EPOCH + timedelta(milliseconds=value)
        else:
            return None
    except (OverflowError, ValueError):
        return None
    if not at.microsecond:
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if not at.microsecond % 1000:
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _flag(value: Any) -> str | None:
    return None if value is None else ("true" if value else "false")


def _some(**fields: Any) -> dict[str, Any]:
    """The fields that have a value, in the order given."""
    return {k: v for k, v in fields.items() if v is not None}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text not in ("", "-") else None


def _plain(value: Any) -> Any:
    """What orjson does not write itself: binary as base64, decimals as numbers' text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value).__name__)
