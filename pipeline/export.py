"""The lake's events as OCSF API Activity (class 6003) Parquet, for Amazon Security Lake.

``export_ocsf`` reads the lake a day at a time and writes, per region and account, one Parquet
file in the layout Security Lake's custom sources use:
``<out>/ext/<source name>/region=<region>/accountId=<account>/eventDay=<YYYYMMDD>/`` (events with
no region or account go to ``region=unknown`` / ``accountId=unknown``). A file's name is a hash of
its partition and the export's span, so running the same export again rewrites the same files.

Each event maps to OCSF (1.3) as: ``api`` (operation = the action, service = the service,
request uid, the error), ``actor`` (user uid = the principal and its type, the session's
credential fingerprint), ``src_endpoint.ip``, ``http_request.user_agent``, ``cloud`` (provider,
region, account), ``resources`` (the resource), ``status`` from the outcome, ``activity_id`` from
the action's verb (create, read, update, delete, other), ``metadata`` (``uid`` = the event id,
``tenant_uid`` = the target tenant, ``product`` = tenantwatch, the ``cloud`` profile) and the
tenant context under ``unmapped``; ``raw_data`` is the original record as the lake keeps it
(secrets already fingerprinted).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from pipeline.alert.render import OCSF_VERSION, PRODUCT

_S = pa.string()
_STR = pa.struct
OCSF_API_ACTIVITY = pa.schema(
    [
        pa.field("activity_id", pa.int32(), nullable=False),
        pa.field("activity_name", _S),
        pa.field("category_uid", pa.int32(), nullable=False),
        pa.field("category_name", _S),
        pa.field("class_uid", pa.int32(), nullable=False),
        pa.field("class_name", _S),
        pa.field("type_uid", pa.int64(), nullable=False),
        pa.field("type_name", _S),
        pa.field("severity_id", pa.int32(), nullable=False),
        pa.field("severity", _S),
        pa.field("status_id", pa.int32()),
        pa.field("status", _S),
        pa.field("status_code", _S),
        pa.field("time", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field(
            "metadata",
            _STR(
                [
                    ("version", _S),
                    ("uid", _S),
                    ("tenant_uid", _S),
                    ("profiles", pa.list_(_S)),
                    ("product", _STR([("name", _S), ("vendor_name", _S), ("version", _S)])),
                ]
            ),
        ),
        pa.field(
            "api",
            _STR(
                [
                    ("operation", _S),
                    ("service", _STR([("name", _S)])),
                    ("request", _STR([("uid", _S)])),
                    ("response", _STR([("error", _S), ("code", pa.int32())])),
                ]
            ),
        ),
        pa.field(
            "actor",
            _STR(
                [
                    ("user", _STR([("uid", _S), ("type", _S), ("credential_uid", _S)])),
                    ("session", _STR([("uid", _S)])),
                ]
            ),
        ),
        pa.field("src_endpoint", _STR([("ip", _S)])),
        pa.field("http_request", _STR([("user_agent", _S)])),
        pa.field(
            "cloud", _STR([("provider", _S), ("region", _S), ("account", _STR([("uid", _S)]))])
        ),
        pa.field("resources", pa.list_(_STR([("uid", _S)]))),
        pa.field("unmapped", pa.map_(_S, _S)),
        pa.field("raw_data", _S),
    ]
)
# What the export reads of each event.
COLUMNS = [
    "event_id",
    "event_time",
    "source",
    "service",
    "action",
    "actor_principal",
    "actor_type",
    "actor_session",
    "actor_tenant",
    "target_tenant",
    "tenant_conflict",
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
]
ACTIVITIES = {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"}
# The action's first word (an API name's verb, or an HTTP method) -> the activity.
_VERBS: tuple[tuple[int, str], ...] = (
    (2, r"^(Get|List|Describe|Head|Lookup|Search|Scan|Query|Select|BatchGet|GET|HEAD)"),
    (1, r"^(Create|Put|Add|Run|Start|Upload|Post|Import|Copy|Register|POST)"),
    (3, r"^(Update|Modify|Set|Change|Attach|Associate|Enable|Disable|Tag|PATCH|PUT)"),
    (4, r"^(Delete|Remove|Detach|Disassociate|Terminate|Untag|Stop|DELETE)"),
)
UNMAPPED = ("actor_tenant", "target_tenant", "tenant_conflict", "source", "outcome")
SOURCE_NAME = "tenantwatch"


@dataclass
class Exported:
    files: list[str] = field(default_factory=list)
    events: int = 0
    days: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"files": len(self.files), "events": self.events, "days": self.days}


def activity_ids(actions: pa.Array) -> pa.Array:
    """The OCSF activity of each action, from its verb."""
    out = pa.array([99] * len(actions), pa.int32())
    for activity, pattern in reversed(_VERBS):
        hit = pc.fill_null(pc.match_substring_regex(actions, pattern), False)
        out = pc.if_else(hit, pa.scalar(activity, pa.int32()), out)
    return out


def to_ocsf(events: pa.Table) -> pa.Table:
    """``events`` (the lake's columns, at least ``COLUMNS``) as OCSF API Activity rows."""
    n = events.num_rows
    col = {c: events[c].combine_chunks().cast(_S) for c in COLUMNS if c not in ("event_time",)}
    col["status_code"] = events["status_code"].combine_chunks().cast(pa.int32())
    activity = activity_ids(col["action"])
    outcome = col["outcome"]
    status_id = pc.if_else(
        pc.equal(outcome, "success"),
        pa.scalar(1, pa.int32()),
        pc.if_else(pc.is_in(outcome, pa.array(["denied", "failure", "error"])), 2, 0),
    ).cast(pa.int32())
    names = pa.array([ACTIVITIES[a] for a in activity.to_pylist()], _S)
    status_names = pa.array(
        [{1: "Success", 2: "Failure"}.get(s, "Unknown") for s in status_id.to_pylist()], _S
    )

    def struct(fields: dict[str, pa.Array], typ: pa.DataType) -> pa.Array:
        return pa.StructArray.from_arrays(
            [fields[f.name] for f in typ], fields=list(typ), mask=None
        )

    t = OCSF_API_ACTIVITY
    product = pa.array([dict(PRODUCT)] * n, t.field("metadata").type.field("product").type)
    metadata = struct(
        {
            "version": pa.array([OCSF_VERSION] * n, _S),
            "uid": col["event_id"],
            "tenant_uid": col["target_tenant"],
            "profiles": pa.array([["cloud"]] * n, pa.list_(_S)),
            "product": product,
        },
        t.field("metadata").type,
    )
    api_t = t.field("api").type
    api = struct(
        {
            "operation": col["action"],
            "service": struct({"name": col["service"]}, api_t.field("service").type),
            "request": struct({"uid": col["request_id"]}, api_t.field("request").type),
            "response": struct(
                {"error": col["error_code"], "code": col["status_code"]},
                api_t.field("response").type,
            ),
        },
        api_t,
    )
    actor_t = t.field("actor").type
    actor = struct(
        {
            "user": struct(
                {
                    "uid": col["actor_principal"],
                    "type": col["actor_type"],
                    "credential_uid": col["actor_session"],
                },
                actor_t.field("user").type,
            ),
            "session": struct({"uid": col["actor_session"]}, actor_t.field("session").type),
        },
        actor_t,
    )
    cloud_t = t.field("cloud").type
    cloud = struct(
        {
            "provider": pa.array(["AWS"] * n, _S),
            "region": col["region"],
            "account": struct({"uid": col["account_id"]}, cloud_t.field("account").type),
        },
        cloud_t,
    )
    resources = pa.array(
        [[{"uid": r}] if r is not None else [] for r in col["resource"].to_pylist()],
        t.field("resources").type,
    )
    unmapped = pa.array(
        [
            [(k, v) for k, v in zip(UNMAPPED, vals, strict=True) if v is not None]
            for vals in zip(*(col[k].to_pylist() for k in UNMAPPED), strict=True)
        ],
        t.field("unmapped").type,
    )
    type_uid = pc.add(pc.multiply(pa.array([6003] * n, pa.int64()), 100), activity.cast(pa.int64()))
    arrays = {
        "activity_id": activity,
        "activity_name": names,
        "category_uid": pa.array([6] * n, pa.int32()),
        "category_name": pa.array(["Application Activity"] * n, _S),
        "class_uid": pa.array([6003] * n, pa.int32()),
        "class_name": pa.array(["API Activity"] * n, _S),
        "type_uid": type_uid,
        "type_name": pc.binary_join_element_wise(pa.array(["API Activity"] * n, _S), names, ": "),
        "severity_id": pa.array([1] * n, pa.int32()),
        "severity": pa.array(["Informational"] * n, _S),
        "status_id": status_id,
        "status": status_names,
        "status_code": col["error_code"],
        "time": events["event_time"].combine_chunks().cast(pa.timestamp("ms", tz="UTC")),
        "metadata": metadata,
        "api": api,
        "actor": actor,
        "src_endpoint": struct({"ip": col["source_ip"]}, t.field("src_endpoint").type),
        "http_request": struct({"user_agent": col["user_agent"]}, t.field("http_request").type),
        "cloud": cloud,
        "resources": resources,
        "unmapped": unmapped,
        "raw_data": col["raw"],
    }
    return pa.Table.from_arrays([arrays[f.name] for f in t], schema=t)


def export_ocsf(
    lake_root: str,
    out: str,
    since: datetime,
    until: datetime,
    source_name: str = SOURCE_NAME,
    progress: Callable[[int, int], None] | None = None,
) -> Exported:
    """Write the events of [since, until) under ``out`` (a folder or ``s3://``), a day at a
    time; see the module docstring for the layout."""
    import pyarrow.parquet as pq

    from pipeline.errors import InputError
    from pipeline.lake import Lake, open_root, read_events

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", source_name):
        raise InputError(f"--source-name {source_name!r}: letters, digits, - and _ only")
    lake = Lake(lake_root)
    fs, base = open_root(out)
    done = Exported()
    day = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = max(1, (until - day + timedelta(days=1) - timedelta(microseconds=1)).days)
    for i in range(days):
        start, end = max(since, day), min(until, day + timedelta(days=1))
        if progress:
            progress(i, days)
        events = read_events(lake, start, end, columns=COLUMNS)
        done.days += 1
        if events.num_rows:
            rows = to_ocsf(events)
            region = pc.fill_null(events["region"].cast(_S), "unknown")
            account = pc.fill_null(events["account_id"].cast(_S), "unknown")
            keys = sorted(set(zip(region.to_pylist(), account.to_pylist(), strict=True)))
            for r, a in keys:
                mask = pc.and_(pc.equal(region, r), pc.equal(account, a))
                part = rows.filter(mask).sort_by([("time", "ascending")])
                folder = (
                    f"ext/{source_name}/region={_safe(r)}/accountId={_safe(a)}/"
                    f"eventDay={day:%Y%m%d}"
                )
                span = f"{folder}|{start.isoformat()}|{end.isoformat()}"
                name = hashlib.sha256(span.encode()).hexdigest()[:24] + ".parquet"
                if isinstance(fs, pafs.LocalFileSystem):  # S3 has no folders to make
                    fs.create_dir(f"{base}/{folder}", recursive=True)
                pq.write_table(part, f"{base}/{folder}/{name}", filesystem=fs, compression="zstd")
                done.files.append(f"{out.rstrip('/')}/{folder}/{name}")
                done.events += part.num_rows
        day += timedelta(days=1)
    if progress:
        progress(days, days)
    return done


def _safe(value: str) -> str:
    """A partition value as a folder name (no slash, no dot-dot)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:64]
    return cleaned if cleaned not in ("", ".", "..") else "unknown"
