"""Impact of an incident: whose data its actors touched, which objects, how, how often, when.

After "what happened" comes "who must be told what": for each tenant whose data the incident's
actors acted on, the objects (S3 bucket/key, DynamoDB table/key, API path, ARN: the lake's
``resource``), whether each was read, written or denied, how many events, by which actors,
first and last time. ``pipeline.notice`` turns one tenant's part into a draft for that customer.

**Which events.** The incident's evidence, as its forensic snapshot selected it
(``pipeline.alert.query``: the story's actors and addresses over its span with the snapshot
margin, within its tenants). The snapshot's latest part is read first, its manifest checked
against the hash the incident recorded and its events file against the manifest; the lake is
read for what the snapshot lacks: the events past ``snapshot_max_events`` (the snapshot's own
query, run again), or the story's growth since the part was written (the incident's query), or
everything when there is no snapshot, or none that checks out. ``Provenance`` says which was used
and whether the snapshot was complete. The lake and the snapshot hold no secrets (ingest
fingerprints them); nothing here adds any.

**Read, write or denied** is decided in one place, ``access``: an event whose outcome is
``denied`` is ``denied``; otherwise the first rule whose pattern matches its whole action says
``read``, ``write`` or ``other``: the configuration's ``[[impact.actions]]`` first, then
``BUILTIN_ACTIONS`` (AWS API verbs, HTTP methods) unless ``builtin_actions = false``. An action
no rule matches is ``other``: never counted as a read. A failed event (outcome ``error``) keeps
its class and is counted as ``failed`` too.

**Whose data.** An event's target tenant, when it is not the acting tenant's own: the actor on
its own tenant and events without a target tenant are counted apart, never as a tenant's impact.
A tenant the incident's findings name is ``flagged``; another target of the same actors (one a
relationship allows, say) is listed, unflagged, and gets no notice unless asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.alert.incidents import Incident
from pipeline.alert.query import EvidenceQuery, evidence_query
from pipeline.classification import DataClasses
from pipeline.config import ActionRule, Config
from pipeline.errors import InputError, TenantwatchError
from pipeline.lake import Lake, LakeLike, as_lake, read_events

# The event columns an assessment reads (never ``raw``).
COLUMNS = [
    "event_id",
    "event_time",
    "source",
    "action",
    "actor_principal",
    "actor_session",
    "actor_tenant",
    "target_tenant",
    "resource",
    "outcome",
    "source_ip",
]
ACCESS = ("read", "write", "denied", "other")
_ROW_SCHEMA = pa.schema([schema.EVENTS.field(c) for c in COLUMNS])
_EMPTY = _ROW_SCHEMA.empty_table()

# The rest of a PascalCase API name after its verb: ``GetObject``, ``Query``, ``ListTables``.
_REST = r"(?:[A-Z0-9][A-Za-z0-9]*)?"
# What actions do when no ``[[impact.actions]]`` rule says otherwise: AWS API names begin with
# their verb, and HTTP says GET and HEAD are safe (read only) while PUT, POST, PATCH and DELETE
# may change data (an API whose POST routes only read, a search, says so in its own rules). An
# authorizer's decision is no access itself (the access log has the call): allowed, it is
# ``other``; refused, ``denied`` like any denied event.
BUILTIN_ACTIONS: tuple[ActionRule, ...] = (
    ActionRule(
        pattern=r"(?:Get|BatchGet|TransactGet|List|Describe|Head|Query|Scan|Select|Search"
        r"|Lookup|Decrypt|Download)" + _REST,
        access="read",
        sources=("cloudtrail",),
    ),
    ActionRule(
        pattern=r"(?:Put|Delete|Update|Create|BatchWrite|BatchDelete|TransactWrite|Copy"
        r"|Restore|Upload|CompleteMultipartUpload|AbortMultipartUpload|Modify|Set|Attach"
        r"|Detach|Tag|Untag|Import|Write|Replace|Remove|Add|Rename|Move)" + _REST,
        access="write",
        sources=("cloudtrail",),
    ),
    ActionRule(pattern=r"(?:GET|HEAD)(?: .*)?", access="read", sources=("apigateway",)),
    ActionRule(
        pattern=r"(?:PUT|POST|PATCH|DELETE)(?: .*)?", access="write", sources=("apigateway",)
    ),
)


@dataclass(frozen=True)
class Rules:
    """Compiled action rules and data classes, from the configuration."""

    actions: tuple[tuple[re.Pattern[str], str, frozenset[str]], ...]
    classes: DataClasses

    @classmethod
    def of(cls, cfg: Config) -> Rules:
        given = list(cfg.impact.actions)
        if cfg.impact.builtin_actions:
            given += BUILTIN_ACTIONS
        return cls(
            tuple((re.compile(r.pattern), r.access, frozenset(r.sources)) for r in given),
            DataClasses.of(cfg.classification),
        )

    def access(self, source: str | None, action: str | None, outcome: str | None) -> str:
        """``denied``, ``read``, ``write`` or ``other`` (see the module docstring)."""
        if outcome == "denied":
            return "denied"
        for rx, access, sources in self.actions:
            if (not sources or source in sources) and rx.fullmatch(action or ""):
                return access
        return "other"

    def data_class(self, resource: str | None) -> str | None:
        """The configured class of the data at ``resource`` (None: no ``[[classification]]``
        pattern is found in it; ``pipeline.classification``)."""
        return self.classes.data_class(resource)


def access_of(cfg: Config, source: str | None, action: str | None, outcome: str | None) -> str:
    """One event's access class under ``cfg`` (for a single event; ``assess`` compiles once)."""
    return Rules.of(cfg).access(source, action, outcome)


def resource_kind(resource: str | None) -> str:
    """What a ``resource`` identifier names, from its shape (ingest writes these)."""
    if not resource:
        return "no resource recorded"
    if resource.startswith("s3://"):
        return "S3 object" if "/" in resource[len("s3://") :] else "S3 bucket"
    if resource.startswith("dynamodb:"):
        return "DynamoDB item" if "/" in resource else "DynamoDB table"
    if resource.startswith("arn:"):
        parts = resource.split(":")
        service = parts[2] if len(parts) > 2 else ""
        return "API method" if service == "execute-api" else f"AWS resource ({service or '?'})"
    if resource.startswith("/"):
        return "API path"
    return "other resource"


# --- what was assessed -----------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """Where the assessed events came from, and whether they are all the evidence."""

    used: str  # "snapshot", "snapshot+lake" or "lake"
    snapshot_uri: str | None
    snapshot_rows: int  # events taken from the snapshot
    # The snapshot held every event its query matched (None: no snapshot was used).
    snapshot_complete: bool | None
    snapshot_matched: int | None  # events its query matched when it was written
    lake_rows: int  # events read from the lake that the snapshot did not hold
    complete: bool  # the events assessed are all the evidence (nothing cut off or expired)
    since: datetime  # the evidence query's span: [since, until)
    until: datetime
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceImpact:
    """One object of one tenant: how the incident's actors acted on it."""

    tenant: str
    resource: str | None
    kind: str  # resource_kind
    data_class: str | None  # the [[classification]] class, if one matches
    events: int
    read: int
    write: int
    denied: int
    other: int
    failed: int  # events whose outcome was an error (counted in their class too)
    actions: tuple[str, ...]
    actors: tuple[str, ...]
    first: datetime
    last: datetime


@dataclass(frozen=True)
class TenantImpact:
    """One tenant whose data the incident's actors acted on (never the acting tenant's own)."""

    tenant: str
    flagged: bool  # a target tenant of the incident's findings
    events: int
    objects: int  # distinct resources
    read: int
    write: int
    denied: int
    other: int
    failed: int
    actors: tuple[str, ...]
    actor_tenants: tuple[str, ...]  # the acting tenants (those resolved)
    unknown_actor_events: int  # events whose actor's tenant is not known
    data: tuple[str, ...]  # the data classes, or resource kinds where none matches
    first: datetime
    last: datetime


@dataclass(frozen=True)
class Impact:
    incident_id: str
    revision: int
    severity: str
    detectors: tuple[str, ...]
    first: datetime | None  # of the events assessed
    last: datetime | None
    events: int  # every event assessed
    cross_tenant_events: int  # on another tenant's data: the tenants' impact
    own_tenant_events: int  # the actor on its own tenant
    unattributed_events: int  # no target tenant
    tenants: tuple[TenantImpact, ...]  # flagged first, then most events
    resources: tuple[ResourceImpact, ...]  # by tenant (as ``tenants``), then most events
    provenance: Provenance
    # Every tenant, actor, session and address the incident itself names (its findings'):
    # what a notice to one tenant must not show of the others.
    named: tuple[str, ...] = ()
    # The events assessed (``COLUMNS`` plus ``access``, ``actor`` and ``scope``: ``cross``,
    # ``own`` or ``unattributed``), in time order.
    rows: pa.Table = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    def affected(self) -> tuple[TenantImpact, ...]:
        """The flagged tenants: those a notice goes to unless another is asked for."""
        return tuple(t for t in self.tenants if t.flagged)

    def tenant(self, tenant: str) -> TenantImpact | None:
        return next((t for t in self.tenants if t.tenant == tenant), None)

    def as_dict(self) -> dict[str, Any]:
        """Every field but ``rows`` and ``named``, times as ISO text (for JSON)."""
        out = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("rows", "named")
        }
        out["tenants"] = [asdict(t) for t in self.tenants]
        out["resources"] = [asdict(r) for r in self.resources]
        out["provenance"] = asdict(self.provenance)
        result: dict[str, Any] = _iso_times(out)
        return result


def _iso_times(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: _iso_times(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_iso_times(v) for v in value]
    return value


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- finding the incident and its events ----------------------------------------------------


def find_incident(lake: Lake, wanted: str) -> Incident:
    """The incident whose id is ``wanted`` or starts with it; ``InputError`` (exit code 2) for
    none or several."""
    from pipeline.alert.store import load_incidents

    incs = load_incidents(lake)
    hits = [i for i in incs if i.incident_id == wanted] or [
        i for i in incs if wanted and i.incident_id.startswith(wanted)
    ]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise InputError(f"no incident {wanted!r} in this lake (tenantwatch incident list)")
    raise InputError(f"incident id {wanted!r} is ambiguous ({len(hits)} incidents start with it)")


def _read_lake(lake: Lake, q: EvidenceQuery) -> pa.Table:
    return read_events(
        lake, q.since, q.until, tenants=q.tenants or None, where=q.arrow_filter(), columns=COLUMNS
    )


def _query_of(manifest: dict[str, Any]) -> EvidenceQuery:
    """The query a snapshot's manifest recorded (``EvidenceQuery.as_dict``), to run it again."""
    q = manifest["query"]

    def names(key: str) -> tuple[str, ...]:
        return tuple(str(x) for x in q.get(key) or ())

    return EvidenceQuery(
        since=datetime.fromisoformat(q["since"]),
        until=datetime.fromisoformat(q["until"]),
        actors=names("actors"),
        addresses=names("addresses"),
        tenants=names("tenants"),
        event_ids=names("event_ids"),
    )


def _snapshot(inc: Incident, region: str) -> tuple[pa.Table, dict[str, Any]]:
    """The events of the incident's latest snapshot part and its manifest, both checked: the
    manifest against the hash the incident recorded, the events file against the manifest.
    ``ValueError`` naming what does not check out."""
    from pipeline.alert.snapshot import MANIFEST, open_store

    uri = str(inc.snapshot_uri)
    store = open_store(uri[: -len(MANIFEST)].rstrip("/"), region)
    raw = store.get(MANIFEST)
    if inc.snapshot_sha256 and hashlib.sha256(raw).hexdigest() != inc.snapshot_sha256:
        raise ValueError(f"{uri}: SHA-256 is not the one the incident recorded")
    manifest: dict[str, Any] = json.loads(raw)
    entry = next((f for f in manifest.get("files", ()) if f.get("name") == "events.parquet"), None)
    data = store.get("events.parquet")
    if entry is None or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ValueError(f"{uri}: events.parquet is not the file its manifest names")
    table = pq.read_table(io.BytesIO(data))
    missing = [c for c in COLUMNS if c not in table.column_names]
    for c in missing:
        table = table.append_column(c, pa.nulls(table.num_rows, _ROW_SCHEMA.field(c).type))
    return table.select(COLUMNS).cast(_ROW_SCHEMA), manifest


def _keys(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table["source"].to_pylist(), table["event_id"].to_pylist(), strict=True))


def evidence_rows(lake: LakeLike, inc: Incident, cfg: Config) -> tuple[pa.Table, Provenance]:
    """The incident's evidence events (``COLUMNS``) and where they came from (module
    docstring)."""
    lk = as_lake(lake)
    margin = timedelta(minutes=cfg.alerting.snapshot_margin_minutes)
    current = evidence_query(inc, margin)
    notes: list[str] = []
    snap: pa.Table | None = None
    manifest: dict[str, Any] = {}
    if inc.snapshot_uri:
        try:
            snap, manifest = _snapshot(inc, cfg.alerting.region)
        except Exception as exc:
            from pipeline import aws

            # Not found, changed, unreadable, refused: the lake still has the events.
            if not isinstance(exc, ValueError | KeyError | OSError | TenantwatchError) and (
                not aws.error_from_aws(exc)
            ):
                raise
            notes.append(f"the snapshot was not used: {exc}")
    else:
        notes.append("the incident has no snapshot")
    if snap is None:
        rows = _read_lake(lk, current)
        return rows, Provenance(
            used="lake",
            snapshot_uri=None,
            snapshot_rows=0,
            snapshot_complete=None,
            snapshot_matched=None,
            lake_rows=rows.num_rows,
            complete=True,
            since=current.since,
            until=current.until,
            notes=tuple(notes),
        )
    q = manifest.get("query") or {}
    matched = int(q.get("rows_matched", snap.num_rows))
    truncated = bool(q.get("truncated")) or matched > snap.num_rows
    covers = inc.snapshot_revision is None or inc.snapshot_revision >= inc.revision
    if covers and not truncated:
        since, until = _span(manifest, current)
        return snap, Provenance(
            used="snapshot",
            snapshot_uri=inc.snapshot_uri,
            snapshot_rows=snap.num_rows,
            snapshot_complete=True,
            snapshot_matched=matched,
            lake_rows=0,
            complete=True,
            since=since,
            until=until,
            notes=tuple(notes),
        )
    query = _query_of(manifest) if covers else current
    if truncated:
        notes.append(
            f"the snapshot holds {snap.num_rows} of the {matched} events its query matched "
            "(alerting.snapshot_max_events); the others were read from the lake"
        )
    if not covers:
        notes.append(
            f"the snapshot covers revision {inc.snapshot_revision} of {inc.revision}; "
            "the story's later evidence was read from the lake"
        )
    more = _read_lake(lk, query)
    have = set(_keys(snap))
    extra = more.filter(pa.array([k not in have for k in _keys(more)], pa.bool_()))
    rows = pa.concat_tables([snap, extra])
    complete = True
    if truncated and rows.num_rows < matched:
        complete = False
        notes.append(
            f"{matched - rows.num_rows} events the snapshot's query matched are no longer in "
            "the lake (retention?): the counts are a lower bound"
        )
    return rows, Provenance(
        used="snapshot+lake",
        snapshot_uri=inc.snapshot_uri,
        snapshot_rows=snap.num_rows,
        snapshot_complete=not truncated,
        snapshot_matched=matched,
        lake_rows=extra.num_rows,
        complete=complete,
        since=query.since,
        until=query.until,
        notes=tuple(notes),
    )


def _span(manifest: dict[str, Any], fallback: EvidenceQuery) -> tuple[datetime, datetime]:
    try:
        q = _query_of(manifest)
    except (KeyError, ValueError, TypeError):
        return fallback.since, fallback.until
    return q.since, q.until


# --- the assessment --------------------------------------------------------------------------


def classify(rows: pa.Table, rules: Rules) -> pa.Table:
    """``rows`` with ``access``, ``actor`` (principal, else session) and ``scope`` (``cross``:
    another tenant's data; ``own``: the actor's own tenant; ``unattributed``: no target tenant)
    added, in time order."""
    rows = rows.sort_by([("event_time", "ascending"), ("event_id", "ascending")])
    sep = "\x1f"
    keys = pc.binary_join_element_wise(
        pc.fill_null(rows["source"], ""),
        pc.fill_null(rows["action"], ""),
        pc.fill_null(rows["outcome"], ""),
        sep,
    )
    uniq = pc.unique(keys)
    classes = []
    for k in uniq.to_pylist():
        source, action, outcome = str(k).split(sep)
        classes.append(rules.access(source, action, outcome))
    access = pc.take(pa.array(classes, pa.string()), pc.index_in(keys, value_set=uniq))
    actor = pc.coalesce(rows["actor_principal"], rows["actor_session"])
    target, acting = rows["target_tenant"], rows["actor_tenant"]
    own = pc.fill_null(pc.equal(target, acting), False)
    scope = pc.if_else(
        pc.is_null(target), pa.scalar("unattributed"), pc.if_else(own, "own", "cross")
    )
    return (
        rows.append_column("access", access)
        .append_column("actor", actor)
        .append_column("scope", scope)
    )


def _texts(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(sorted({str(v) for v in values if v is not None and v != ""}))


def _count(rows: Sequence[dict[str, Any]], **match: Any) -> int:
    return sum(1 for r in rows if all(r[k] == v for k, v in match.items()))


def assess(lake: LakeLike, incident: Incident | str, cfg: Config) -> Impact:
    """The impact of ``incident`` (an ``Incident``, its id, or the start of its id)."""
    lk = as_lake(lake)
    inc = find_incident(lk, incident) if isinstance(incident, str) else incident
    rules = Rules.of(cfg)
    raw, prov = evidence_rows(lk, inc, cfg)
    rows = classify(raw, rules)
    flagged = set(inc.tenants)
    cross = rows.filter(pc.equal(rows["scope"], "cross")).to_pylist()
    by_resource: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for r in cross:
        by_resource.setdefault((r["target_tenant"], r["resource"]), []).append(r)
        by_tenant.setdefault(r["target_tenant"], []).append(r)
    resources = []
    for (tenant, resource), rs in by_resource.items():
        resources.append(
            ResourceImpact(
                tenant=tenant,
                resource=resource,
                kind=resource_kind(resource),
                data_class=rules.data_class(resource),
                events=len(rs),
                **{a: _count(rs, access=a) for a in ACCESS},
                failed=_count(rs, outcome="error"),
                actions=_texts(r["action"] for r in rs),
                actors=_texts(r["actor"] for r in rs),
                first=min(r["event_time"] for r in rs),
                last=max(r["event_time"] for r in rs),
            )
        )
    tenants = []
    for tenant, rs in by_tenant.items():
        mine = [x for x in resources if x.tenant == tenant]
        tenants.append(
            TenantImpact(
                tenant=tenant,
                flagged=tenant in flagged,
                events=len(rs),
                objects=len(mine),
                **{a: _count(rs, access=a) for a in ACCESS},
                failed=_count(rs, outcome="error"),
                actors=_texts(r["actor"] for r in rs),
                actor_tenants=_texts(r["actor_tenant"] for r in rs),
                unknown_actor_events=_count(rs, actor_tenant=None),
                data=_texts(x.data_class or x.kind for x in mine),
                first=min(r["event_time"] for r in rs),
                last=max(r["event_time"] for r in rs),
            )
        )
    tenants.sort(key=lambda t: (not t.flagged, -t.events, t.tenant))
    order = {t.tenant: i for i, t in enumerate(tenants)}
    resources.sort(key=lambda x: (order[x.tenant], -x.events, x.resource or ""))
    times = rows["event_time"]
    scopes = rows["scope"].to_pylist()
    return Impact(
        incident_id=inc.incident_id,
        revision=inc.revision,
        severity=inc.severity,
        detectors=tuple(sorted({inc.detector, *(s.detector for s in inc.signals)})),
        first=pc.min(times).as_py() if len(rows) else None,
        last=pc.max(times).as_py() if len(rows) else None,
        events=rows.num_rows,
        cross_tenant_events=scopes.count("cross"),
        own_tenant_events=scopes.count("own"),
        unattributed_events=scopes.count("unattributed"),
        tenants=tuple(tenants),
        resources=tuple(resources),
        provenance=prov,
        named=_named(inc),
        rows=rows,
    )


def _named(inc: Incident) -> tuple[str, ...]:
    names = {*inc.tenants, inc.actor_tenant, inc.actor}
    names |= {e.partition(":")[2] for e in inc.entities}
    return tuple(sorted(n for n in names if n))
