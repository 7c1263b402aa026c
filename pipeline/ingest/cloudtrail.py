"""CloudTrail records as typed structs, and a chunk of them as Arrow columns.

Speed comes from doing per record only what must be done per record. msgspec decodes a delivery
file straight into ``Record`` structs holding just the fields a row needs (everything else is
skipped without becoming a Python object); ``columns`` turns a chunk of records into the
``normalize.ROW_FIELDS`` columns with one list comprehension per field and does the rest (blank
values, coalescing, regexes, outcomes) with Arrow kernels over whole columns.

There is one extraction, not two: a record that does not fit the types (a number where a string
belongs, ``requestParameters`` as a JSON string, ``userIdentity: null``) is decoded generically and
``from_dict`` coerces it into the same ``Record`` with ``normalize``'s lenient rules, so typed and
generic decoding meet before any field is read. The structs are ``gc=False``: a chunk holds hundreds
of thousands of them and none can be part of a cycle, so the cyclic collector has no reason to look
at them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest import jsonnum
from pipeline.ingest.normalize import as_object, as_text, first_string_value

_S = pa.string()
_EVENT_KINDS = {
    "AwsApiCall": "api_call",
    "AwsConsoleSignIn": "console_signin",
    "AwsServiceEvent": "service_event",
    "AwsCloudTrailInsight": "insight",
    "AwsConsoleAction": "console_action",
    "AwsVpceEvent": "vpce_event",
}
ASSUME_ROLE_EVENTS = frozenset({"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"})
_S3_ARN = re.compile(r"^arn:[\w-]+:s3:::([^/]+)(?:/(.*))?$")
# RE2 (Arrow) spelling of normalize's assumed-role pattern; [\w-] is ASCII here, as ARNs are.
_ASSUMED = r"^arn:[\w-]+:sts::[^:]*:assumed-role/(?P<role>[^/]+)/(?P<session>.+)$"
# IAM user names as IAM allows them, and account ids; CloudTrail writes this placeholder for the
# name typed at a failed console sign-in that names no user.
_IAM_USER_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_ACCOUNT_ID = re.compile(r"\d{12}", re.ASCII)
_HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
# ``actor_principal`` of an ``AWSAccount`` caller: "aws-account:" and its 12 digits, then
# "/<role session>" when its principal id names one. Never an ARN
# (those start "arn:"), so no ARN pattern (service roles, break-glass) can match it by mistake.
ACCOUNT_PREFIX = "aws-account:"
# The partition of a region: the standard one's region names, then the others' by prefix
# (AWS publishes these with its endpoints). A region none of them names has no known partition.
_STANDARD_REGION = re.compile(r"(us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d+", re.ASCII)
_PARTITION_PREFIXES = (
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("us-iso-", "aws-iso"),
    ("eu-isoe-", "aws-iso-e"),
)
_DENIED = re.compile(r"(?i)accessdenied|unauthori[sz]ed|forbidden|notauthori[sz]ed|not_authorized")

# A key that makes a record something other than a plain CloudTrail record (a CloudWatch Logs
# payload, a LookupEvents export, an envelope). Its type accepts no JSON value at all, so a record
# carrying it fails typed decoding and takes the generic decoding in ``formats``, which knows them.
_Absent = Annotated[int, msgspec.Meta(ge=1, le=0)]
_NotList = None | bool | int | float | str | dict[str, Any]
_NotStr = None | bool | int | float | list[Any] | dict[str, Any]
_NotDict = None | bool | int | float | str | list[Any]


class _Base(msgspec.Struct, frozen=True, gc=False):
    pass


class Issuer(_Base, frozen=True, gc=False):
    arn: str | None = None


class Session(_Base, frozen=True, gc=False):
    sessionIssuer: Issuer = Issuer()
    sourceIdentity: str | None = None


class Identity(_Base, frozen=True, gc=False):
    type: str | None = None
    arn: str | None = None
    invokedBy: str | None = None
    principalId: str | None = None
    accountId: str | None = None
    accessKeyId: str | None = None
    sessionContext: Session = Session()


class Params(_Base, frozen=True, gc=False):
    bucketName: str | None = None
    key: Any = None  # an S3 key (string) or a DynamoDB key (attribute map)
    prefix: str | None = None
    tableName: str | None = None
    expressionAttributeValues: Any = None
    tags: Any = None  # AssumeRole session tags
    principalTags: Any = None


class Response(_Base, frozen=True, gc=False):
    ConsoleLogin: Any = None
    credentials: Any = None  # AssumeRole: the new session's key id and expiry


class Resource(_Base, frozen=True, gc=False):
    ARN: Any = None
    arn: Any = None


_NO_IDENTITY = Identity()


class Record(
    _Base, frozen=True, gc=False, rename={"timestamp": "@timestamp", "detail_type": "detail-type"}
):
    eventID: str | None = None
    eventTime: str | None = None
    timestamp: str | None = None  # Logstash renames eventTime to @timestamp
    eventName: str | None = None
    eventSource: str | None = None
    eventType: str | None = None
    errorCode: str | None = None
    awsRegion: str | None = None
    sourceIPAddress: str | None = None
    userAgent: str | None = None
    recipientAccountId: str | None = None
    requestID: str | None = None
    sourceIdentity: str | None = None
    userIdentity: Identity = _NO_IDENTITY
    requestParameters: Params | None = None
    responseElements: Response | None = None
    resources: list[Resource] | None = None
    # Rare vendor shapes, read with normalize's helpers exactly as they come.
    network: Any = None  # Datadog: network.client.ip
    http: Any = None  # Datadog: http.useragent, http.request_id
    insightDetails: Any = None
    # Markers of other shapes: see _Absent.
    awslogs: _Absent = 0
    logEvents: _Absent = 0
    Events: _NotList = None
    CloudTrailEvent: _NotStr = None
    jsonPayload: _NotDict = None
    detail: _NotDict = None


class _DeliveryFile(msgspec.Struct, gc=False):
    Records: list[Record]


# A number past a double in a field decoded as Any is kept (jsonnum), as the generic decoding keeps
# it.
delivery_decoder = msgspec.json.Decoder(_DeliveryFile, float_hook=jsonnum.number)
record_decoder = msgspec.json.Decoder(Record, float_hook=jsonnum.number)


class _SessionParams(_Base, frozen=True, gc=False):
    tags: Any = None
    principalTags: Any = None


class _SessionResponse(_Base, frozen=True, gc=False):
    credentials: Any = None


class SessionRecord(_Base, frozen=True, gc=False):
    """What ``assumed_session`` reads of a ``Record``, typed alike: decoding a record the C
    decoder took (so ``Record`` would take it) into this gives the same values, for less."""

    eventName: str | None = None
    errorCode: str | None = None
    requestParameters: _SessionParams | None = None
    responseElements: _SessionResponse | None = None


session_decoder = msgspec.json.Decoder(SessionRecord, float_hook=jsonnum.number)


def from_dict(rec: dict[str, Any]) -> Record:
    """The generic decoding: any decoded CloudTrail dict as a ``Record``, by normalize's rules."""
    ident = as_object(rec.get("userIdentity"))
    session = as_object(ident.get("sessionContext"))
    params = as_object(rec.get("requestParameters"))
    response = as_object(rec.get("responseElements"))
    resources = rec.get("resources")
    return Record(
        eventID=as_text(rec.get("eventID")),
        eventTime=as_text(rec.get("eventTime")),
        timestamp=as_text(rec.get("@timestamp")),
        eventName=as_text(rec.get("eventName")),
        eventSource=as_text(rec.get("eventSource")),
        eventType=as_text(rec.get("eventType")),
        errorCode=as_text(rec.get("errorCode")),
        awsRegion=as_text(rec.get("awsRegion")),
        sourceIPAddress=as_text(rec.get("sourceIPAddress")),
        userAgent=as_text(rec.get("userAgent")),
        recipientAccountId=as_text(rec.get("recipientAccountId")),
        requestID=as_text(rec.get("requestID")),
        sourceIdentity=as_text(rec.get("sourceIdentity")),
        userIdentity=Identity(
            type=as_text(ident.get("type")),
            arn=as_text(ident.get("arn")),
            invokedBy=as_text(ident.get("invokedBy")),
            principalId=as_text(ident.get("principalId")),
            accountId=as_text(ident.get("accountId")),
            accessKeyId=as_text(ident.get("accessKeyId")),
            sessionContext=Session(
                Issuer(as_text(as_object(session.get("sessionIssuer")).get("arn"))),
                as_text(session.get("sourceIdentity")),
            ),
        ),
        requestParameters=Params(
            bucketName=as_text(params.get("bucketName")),
            key=params.get("key"),
            prefix=as_text(params.get("prefix")),
            tableName=as_text(params.get("tableName")),
            expressionAttributeValues=params.get("expressionAttributeValues"),
            tags=params.get("tags"),
            principalTags=params.get("principalTags"),
        ),
        responseElements=Response(response.get("ConsoleLogin"), response.get("credentials")),
        resources=[Resource(r.get("ARN"), r.get("arn")) for r in resources if isinstance(r, dict)]
        if isinstance(resources, list)
        else None,
        network=rec.get("network"),
        http=rec.get("http"),
        insightDetails=rec.get("insightDetails"),
    )


def _targets(rec: Record) -> tuple[str | None, ...]:
    """(resource, bucket, s3 key, table, DynamoDB key, ARNs): the irregular part, per record.

    Typed ``str | None`` fields need only as_text's blank rule, spelled inline (this runs once
    per record); ``Any`` fields go through as_text itself."""
    p = rec.requestParameters
    bucket = s3_key = table = ddb_key = None
    if p is not None:
        bucket, table = p.bucketName, p.tableName
        if bucket == "" or bucket == "-":
            bucket = None
        if table == "" or table == "-":
            table = None
        key = p.key
        if isinstance(key, str):
            s3_key = None if key == "" or key == "-" else key
        else:
            s3_key = p.prefix
            if s3_key == "" or s3_key == "-":
                s3_key = None
        if table is not None:
            ddb_key = first_string_value(key) or first_string_value(p.expressionAttributeValues)
    arns: list[str] = []
    for r in rec.resources or ():
        a = as_text(r.ARN or r.arn)
        if a:
            arns.append(a)
            if bucket is None and ":s3:::" in a:  # a necessary condition for _S3_ARN
                m = _S3_ARN.match(a)
                if m:
                    bucket = m.group(1)
                    s3_key = s3_key or m.group(2)
    resource: str | None
    if bucket is not None:
        resource = f"s3://{bucket}/{s3_key}" if s3_key else f"s3://{bucket}"
    elif table is not None:
        resource = f"dynamodb:{table}/{ddb_key}" if ddb_key else f"dynamodb:{table}"
    else:
        resource = arns[0] if arns else None
    return resource, bucket, s3_key, table, ddb_key, " ".join(arns) if arns else None


def _vendor(rec: Record) -> tuple[str | None, str | None, str | None]:
    """(client ip, user agent, request id) from Datadog's network/http objects."""
    network, http = as_object(rec.network), as_object(rec.http)
    client = as_object(network.get("client"))
    return (
        as_text(client.get("ip")),
        as_text(http.get("useragent")),
        as_text(http.get("request_id")),
    )


def _insight(rec: Record) -> tuple[str | None, str | None]:
    """(service, action) of an Insights event: it names the API it is about inside."""
    insight = rec.insightDetails
    source = as_text(insight.get("eventSource"))
    state, name = as_text(insight.get("state")), as_text(insight.get("eventName"))
    return source, f"{name} ({state})" if name and state else name


def _blank_to_null(col: pa.Array) -> pa.Array:
    """normalize.as_text's rule over a column: "" and the placeholder "-" are no value."""
    short = pc.less_equal(pc.binary_length(col), 1)
    if not pc.any(short).as_py():
        return col
    blank = pc.and_(short, pc.is_in(col, value_set=pa.array(["", "-"], _S)))
    return pc.if_else(blank, pa.scalar(None, _S), col)


def _per_value(col: pa.Array, fn: Any) -> pa.Array:
    """``fn`` applied once per distinct value (event types, error codes: a handful), so the rule
    stays the Python one."""
    enc = pc.dictionary_encode(col)
    out = pc.take(pa.array([fn(v) for v in enc.dictionary.to_pylist()], _S), enc.indices)
    null_value = fn(None)
    return out if null_value is None else pc.fill_null(out, null_value)


def _kind(event_type: str | None) -> str:
    return _EVENT_KINDS.get(event_type or "", (event_type or "unknown").lower())


def _denied(error_code: str | None) -> str | None:
    return None if error_code is None else "denied" if _DENIED.search(error_code) else "error"


def columns(recs: list[Record]) -> dict[str, pa.Array]:
    """The row columns of a chunk of records (event time still text; ``event_id`` null where the
    record has none: the caller derives it from the redacted raw bytes). Checks: rows where
    ``event_time`` is null lack a time, rows where both ``service`` and ``action`` are null lack a
    name; the caller quarantines both."""
    return finish(*values(recs))


# The fields ``values`` reads, by the names ``finish`` takes (the order of native.COLUMNS).
VALUE_FIELDS = (
    "event_id",
    "event_time",
    "timestamp",
    "service",
    "action",
    "event_type",
    "error_code",
    "region",
    "source_ip",
    "user_agent",
    "recipient",
    "request_id",
    "session_source_identity",
    "source_identity",
    "actor_type",
    "arn",
    "invoked_by",
    "principal_id",
    "ident_account",
    "actor_session",
    "h_role_arn",
)
TARGET_FIELDS = ("resource", "h_s3_bucket", "h_s3_key", "h_ddb_table", "h_ddb_key", "h_arns")
# The role and session names of an assumed-role ARN.
NAME_FIELDS = ("h_role_name", "h_session_name")


def values(
    recs: list[Record],
) -> tuple[dict[str, pa.Array], dict[str, pa.Array], pa.Array, dict[str, pa.Array]]:
    """What ``finish`` takes: the ``VALUE_FIELDS`` (as_text's blank rule applied), the
    ``TARGET_FIELDS`` as ``_targets`` gives them, whether a console login failed, and the
    ``NAME_FIELDS`` of assumed-role ARNs. The C decoder (``_ctscan.c``) gives the same four
    from the file's bytes."""
    n = len(recs)
    ids = [r.userIdentity for r in recs]
    ctx = [i.sessionContext for i in ids]
    raw: dict[str, list[Any]] = {
        "event_id": [r.eventID for r in recs],
        "event_time": [r.eventTime for r in recs],
        "timestamp": [r.timestamp for r in recs],
        "service": [r.eventSource for r in recs],
        "action": [r.eventName for r in recs],
        "event_type": [r.eventType for r in recs],
        "error_code": [r.errorCode for r in recs],
        "region": [r.awsRegion for r in recs],
        "source_ip": [r.sourceIPAddress for r in recs],
        "user_agent": [r.userAgent for r in recs],
        "recipient": [r.recipientAccountId for r in recs],
        "request_id": [r.requestID for r in recs],
        "session_source_identity": [c.sourceIdentity for c in ctx],
        "source_identity": [r.sourceIdentity for r in recs],
        "actor_type": [i.type for i in ids],
        "arn": [i.arn for i in ids],
        "invoked_by": [i.invokedBy for i in ids],
        "principal_id": [i.principalId for i in ids],
        "ident_account": [i.accountId for i in ids],
        "actor_session": [i.accessKeyId for i in ids],
        "h_role_arn": [c.sessionIssuer.arn for c in ctx],
    }
    rare = [i for i, r in enumerate(recs) if r.insightDetails or r.network or r.http]
    for i in rare:
        r = recs[i]
        if isinstance(r.insightDetails, dict) and as_text(r.eventName) is None:
            raw["service"][i], raw["action"][i] = _insight(r)
        ip, agent, request = _vendor(r)
        raw["source_ip"][i] = as_text(raw["source_ip"][i]) or ip
        raw["user_agent"][i] = as_text(raw["user_agent"][i]) or agent
        raw["request_id"][i] = as_text(raw["request_id"][i]) or request
    targets = list(zip(*[_targets(r) for r in recs], strict=True)) if n else [()] * 6
    login_failed = pa.array(
        [
            r.responseElements is not None and r.responseElements.ConsoleLogin == "Failure"
            for r in recs
        ],
        pa.bool_(),
    )
    value = {k: _blank_to_null(pa.array(v, _S)) for k, v in raw.items()}
    parts = pc.extract_regex(value["arn"], pattern=_ASSUMED)
    return (
        value,
        {k: pa.array(t, _S) for k, t in zip(TARGET_FIELDS, targets, strict=True)},
        login_failed,
        {
            "h_role_name": pc.struct_field(parts, "role"),
            "h_session_name": pc.struct_field(parts, "session"),
        },
    )


def finish(
    c: dict[str, pa.Array],
    hint: dict[str, pa.Array],
    login_failed: pa.Array,
    names: dict[str, pa.Array],
) -> dict[str, pa.Array]:
    """The row columns from ``values``' four parts: coalescing, outcomes, the schema's names."""
    n = len(login_failed)
    typed = pc.if_else(
        pc.is_valid(c["actor_type"]),
        pc.binary_join_element_wise(
            c["actor_type"], pc.coalesce(c["ident_account"], "unknown"), ":"
        ),
        pa.scalar(None, _S),
    )
    has_error = pc.is_valid(c["error_code"])
    # An IAM user is named by its ARN. Console sign-in events (CheckMfa, a failed ConsoleLogin)
    # carry none, and their principal id would be a second name for the same user: they are
    # named by ``name_users``, or stay unnamed.
    unnamed_user = pc.fill_null(
        pc.and_(pc.equal(c["actor_type"], "IAMUser"), pc.is_null(c["arn"])), False
    )
    # Another account acting here (a cross-account call, as the resource's account receives it)
    # is named by the account, and by the role session its principal id names
    # ("AROA...:<session>"): "aws-account:<id>/<session>". The role's id part is left off: it is
    # no name a person or a relationship uses.
    other = pc.fill_null(
        pc.and_(
            pc.equal(c["actor_type"], "AWSAccount"),
            pc.match_substring_regex(c["ident_account"], r"^\d{12}$"),
        ),
        False,
    )
    named = pc.extract_regex(
        pc.if_else(other, c["principal_id"], pa.scalar(None, _S)), r"^[A-Z0-9]+:(?P<s>.+)$"
    )
    suffix = pc.if_else(
        pc.is_valid(named),
        pc.binary_join_element_wise("/", pc.struct_field(named, [0]), ""),
        pa.scalar("", _S),
    )
    account = pc.if_else(
        other,
        pc.binary_join_element_wise(ACCOUNT_PREFIX, c["ident_account"], suffix, ""),
        pa.scalar(None, _S),
    )
    actor = pc.coalesce(c["arn"], account, c["invoked_by"], c["principal_id"], typed)
    return {
        "event_id": c["event_id"],
        "event_time": pc.coalesce(c["event_time"], c["timestamp"]),
        "source": pa.repeat(pa.scalar("cloudtrail", _S), n),
        "event_kind": _per_value(c["event_type"], _kind),
        "service": c["service"],
        "action": c["action"],
        "actor_principal": pc.if_else(unnamed_user, pa.scalar(None, _S), actor),
        "actor_type": c["actor_type"],
        "actor_session": c["actor_session"],
        "resource": hint["resource"],
        "outcome": pc.if_else(
            has_error,
            _per_value(c["error_code"], _denied),
            pc.if_else(login_failed, pa.scalar("denied", _S), pa.scalar("success", _S)),
        ),
        "error_code": pc.if_else(
            pc.and_(pc.invert(has_error), login_failed),
            pa.scalar("ConsoleLoginFailure", _S),
            c["error_code"],
        ),
        "status_code": pa.nulls(n, pa.int32()),
        "source_ip": c["source_ip"],
        "user_agent": c["user_agent"],
        "account_id": pc.coalesce(c["recipient"], c["ident_account"]),
        "region": c["region"],
        "request_id": c["request_id"],
        "h_role_name": names["h_role_name"],
        "h_session_name": names["h_session_name"],
        "h_role_arn": c["h_role_arn"],
        "h_source_identity": pc.coalesce(c["session_source_identity"], c["source_identity"]),
        **{k: hint[k] for k in TARGET_FIELDS if k != "resource"},
        "_unnamed_user": unnamed_user,
    }


def name_users(cols: dict[str, pa.Array], raw: pa.Array) -> None:
    """``actor_principal`` of the rows ``finish`` left unnamed (``_unnamed_user``, which it
    takes out of ``cols``), from each record's text: both decoders meet here."""
    unnamed = cols.pop("_unnamed_user")
    if not pc.any(unnamed).as_py():
        return
    which = pc.indices_nonzero(unnamed)
    regions = cols["region"].take(which).to_pylist()
    names = [
        user_arn(jsonnum.loads(raw[i].as_py()), region)
        for i, region in zip(which.to_pylist(), regions, strict=True)
    ]
    cols["actor_principal"] = pc.replace_with_mask(
        cols["actor_principal"], unnamed, pa.array(names, _S)
    )


def user_arn(record: dict[str, Any], region: str | None) -> str | None:
    """``arn:<partition>:iam::<account>:user/<userName>`` of a record's IAM user, when its user
    name, account and region's partition are all known; otherwise None, unresolved: the name
    of an identity is never guessed."""
    identity = as_object(record.get("userIdentity"))
    name, account = as_text(identity.get("userName")), as_text(identity.get("accountId"))
    if name is None or name == _HIDDEN or not _IAM_USER_NAME.fullmatch(name):
        return None
    if account is None or not _ACCOUNT_ID.fullmatch(account):
        return None
    partition = _partition(region)
    return None if partition is None else f"arn:{partition}:iam::{account}:user/{name}"


def _partition(region: str | None) -> str | None:
    if region is None:
        return None
    for prefix, partition in _PARTITION_PREFIXES:
        if region.startswith(prefix):
            return partition
    return "aws" if _STANDARD_REGION.fullmatch(region) else None


def assumed_session(
    rec: Record | SessionRecord,
) -> tuple[str, dict[str, str], str | None] | None:
    """For a successful AssumeRole*: (new access key id, session tags, expiration text)."""
    if rec.eventName not in ASSUME_ROLE_EVENTS or rec.errorCode:
        return None
    creds = rec.responseElements.credentials if rec.responseElements is not None else None
    key_id = as_text(creds.get("accessKeyId")) if isinstance(creds, dict) else None
    if key_id is None:
        return None
    params = rec.requestParameters
    tags: dict[str, str] = {}
    raw_tags = params.tags if params is not None else None
    if isinstance(raw_tags, list):
        for t in raw_tags:
            if isinstance(t, dict):
                k, v = (
                    as_text(t.get("key") or t.get("Key")),
                    as_text(t.get("value") or t.get("Value")),
                )
                if k and v:
                    tags[k] = v
    principal_tags = params.principalTags if params is not None else None
    if isinstance(principal_tags, dict):
        for k, v in principal_tags.items():
            if as_text(v):
                tags.setdefault(str(k), str(as_text(v)))
    return key_id, tags, as_text(creds.get("expiration")) if isinstance(creds, dict) else None
