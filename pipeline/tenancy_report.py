"""``tenantwatch tenancy report``: what tenant resolution made of the events in a lake.

Read while writing ``[tenancy]``: per source, service and action, how many events have an actor
tenant and a target tenant, which strategies resolved them (``actor_tenant_source``,
``target_tenant_source``) and how many carry a conflict; then the actors and resources left
without a tenant, busiest first, with sample values and the field they came from, which is where
a strategy has to look.

Unresolved values are grouped by what a strategy would key on, not by each value: an
assumed-role session by its role (``arn:aws:sts::1111:assumed-role/app/*``), an S3 object by its
bucket (``s3://bucket/*``), a DynamoDB item by its table, another ARN by its resource type, and
an API path by its shape (segments holding a digit become ``{}``). The group's smallest and
largest values are its samples.

A lake of any size is read in bounded memory: only the columns counted here, a batch at a
time, each batch aggregated with Arrow (``group_by``) and only the partial counts kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema
from pipeline.config import Config
from pipeline.errors import InputError
from pipeline.lake import Lake, event_batches

COLUMNS = [
    "source",
    "service",
    "action",
    "actor_principal",
    "actor_session",
    "source_ip",
    "actor_tenant",
    "actor_tenant_source",
    "target_tenant",
    "target_tenant_source",
    "tenant_conflict",
    "resource",
]
ACTOR_COLUMNS = ("actor_principal", "actor_session", "source_ip")  # first present names the actor
_ROWS = 1 << 17  # rows aggregated at once: a few MB of these columns
_BATCH = 1 << 16  # rows read at once
_PARTIALS = 16  # partial aggregates kept before they are folded into one

# Where each normalized column comes from in the raw record. CloudTrail's names are AWS's; the
# per-line sources read through ``[sources.<source>]``, named by that key.
_CLOUDTRAIL_ACTOR = {
    "actor_session": "userIdentity.accessKeyId",
    "source_ip": "sourceIPAddress",
}
_MAPPED = {
    ("apigateway", "actor_principal"): "principal",
    ("apigateway", "source_ip"): "source_ip",
    ("apigateway", "resource"): "path",
    ("authorizer", "actor_principal"): "principal",
    ("authorizer", "actor_session"): "token_fingerprint",
    ("authorizer", "source_ip"): "source_ip",
    ("authorizer", "resource"): "method_arn",
}


@dataclass(frozen=True)
class Counts:
    """Events of one source, or of one action of a source."""

    events: int
    actor_tenant: int  # events with an actor tenant
    target_tenant: int
    conflicts: int  # events with ``tenant_conflict`` set
    # How many events each strategy kind resolved, busiest first.
    actor_tenant_source: dict[str, int] = field(default_factory=dict)
    target_tenant_source: dict[str, int] = field(default_factory=dict)

    @property
    def actor_share(self) -> float:
        return self.actor_tenant / self.events if self.events else 0.0

    @property
    def target_share(self) -> float:
        return self.target_tenant / self.events if self.events else 0.0


@dataclass(frozen=True)
class Action:
    source: str
    service: str | None
    action: str | None
    counts: Counts


@dataclass(frozen=True)
class Unresolved:
    """Events whose actor (or target) has no tenant, grouped by what names it."""

    source: str
    column: str  # the normalized column the value is in
    field: str  # where that column comes from in the raw record
    value: str  # the group: a value, or its shape with ``*`` / ``{}``
    events: int
    # Of these events, how many resolved the other side (a tenant-scoped event left half done).
    other_side: int
    samples: tuple[str, ...]


@dataclass(frozen=True)
class TenancyReport:
    lake: str
    since: datetime | None
    until: datetime | None
    sources: dict[str, Counts]
    actions: list[Action]  # by source, busiest first
    unresolved_actors: list[Unresolved]  # busiest first
    unresolved_resources: list[Unresolved]
    unresolved_left_off: dict[str, int]  # groups beyond ``top`` not listed, per list

    @property
    def events(self) -> int:
        return sum(c.events for c in self.sources.values())

    def as_dict(self) -> dict[str, Any]:
        """One JSON-able object (``--json``)."""

        def counts(c: Counts) -> dict[str, Any]:
            out = asdict(c)
            out["actor_share"] = round(c.actor_share, 6)
            out["target_share"] = round(c.target_share, 6)
            return out

        return {
            "lake": self.lake,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "events": self.events,
            "sources": {s: counts(c) for s, c in self.sources.items()},
            "actions": [
                {"source": a.source, "service": a.service, "action": a.action, **counts(a.counts)}
                for a in self.actions
            ],
            "unresolved_actors": [_unresolved(u, "target_tenant") for u in self.unresolved_actors],
            "unresolved_resources": [
                _unresolved(u, "actor_tenant") for u in self.unresolved_resources
            ],
            "unresolved_left_off": self.unresolved_left_off,
        }


def _unresolved(u: Unresolved, other: str) -> dict[str, Any]:
    out = asdict(u)
    out[f"with_{other}"] = out.pop("other_side")
    out["samples"] = list(u.samples)
    return out


# --- reading the lake -----------------------------------------------------------------------


def build(
    lake_root: str,
    cfg: Config,
    since: datetime | None = None,
    until: datetime | None = None,
    top: int = 20,
) -> TenancyReport:
    """The report over the events of ``lake_root`` with ``since <= event_time < until`` (either
    open: to the lake's first or last event); ``top`` groups per list of unresolved values."""
    lake = Lake(lake_root)
    if not lake.exists("events"):
        raise InputError(f"lake {lake.root}: no events (run tenantwatch ingest first)")
    acc = _Aggregates()
    for batch in _chunks(event_batches(lake, since, until, columns=COLUMNS, batch_size=_BATCH)):
        acc.add(batch)
    actions_t, actors_t, resources_t = acc.result()
    actions = _actions(actions_t)
    sources: dict[str, Counts] = {}
    for src in schema.SOURCES:
        mine = [a.counts for a in actions if a.source == src]
        if mine:
            sources[src] = _sum(mine)
    actors = _groups(actors_t, cfg)
    resources = _groups(resources_t, cfg)
    return TenancyReport(
        lake=lake.root,
        since=since,
        until=until,
        sources=sources,
        actions=actions,
        unresolved_actors=actors[:top],
        unresolved_resources=resources[:top],
        unresolved_left_off={
            "unresolved_actors": max(0, len(actors) - top),
            "unresolved_resources": max(0, len(resources) - top),
        },
    )


def _chunks(batches: Iterable[pa.RecordBatch]) -> Iterable[pa.Table]:
    """Batches gathered into tables of about ``_ROWS`` rows (a file's row groups may be small:
    aggregating each alone would cost more than reading it)."""
    held: list[pa.RecordBatch] = []
    rows = 0
    for b in batches:
        held.append(b)
        rows += b.num_rows
        if rows >= _ROWS:
            # One chunk: Arrow's kernels pay per chunk (a regex is set up for each).
            yield pa.Table.from_batches(held).combine_chunks()
            held, rows = [], 0
    if held:
        yield pa.Table.from_batches(held).combine_chunks()


_ACTION_KEYS = ["source", "service", "action", "actor_tenant_source", "target_tenant_source"]
_GROUP_KEYS = ["source", "column", "value"]
_SUMS = ["events", "has_actor", "has_target", "conflict"]
_SAMPLES = ("sample_first", "sample_last")


class _Aggregates:
    """Partial counts, folded together whenever enough have gathered."""

    def __init__(self) -> None:
        self.actions: list[pa.Table] = []
        self.actors: list[pa.Table] = []
        self.resources: list[pa.Table] = []

    def add(self, t: pa.Table) -> None:
        if not t.num_rows:
            return
        n = t.num_rows
        # An authorizer's action names the request's own path: counted by its shape instead.
        authorizer = pc.equal(t["source"], "authorizer")
        if pc.any(authorizer).as_py():
            shaped = _per_distinct(t["action"], _path_shape)
            action = pc.if_else(authorizer, shaped, t["action"])
            t = t.set_column(t.column_names.index("action"), "action", action)
        has_actor = pc.is_valid(t["actor_tenant"])
        has_target = pc.is_valid(t["target_tenant"])
        t = t.append_column("events", pa.repeat(pa.scalar(1, pa.int64()), n))
        t = t.append_column("has_actor", pc.cast(has_actor, pa.int64()))
        t = t.append_column("has_target", pc.cast(has_target, pa.int64()))
        t = t.append_column("conflict", pc.cast(pc.is_valid(t["tenant_conflict"]), pa.int64()))
        self.actions.append(_grouped(t, _ACTION_KEYS, _SUMS))

        actors = t.filter(pc.invert(has_actor))
        who = pc.coalesce(*(actors[c] for c in ACTOR_COLUMNS))
        column = pa.nulls(actors.num_rows, pa.string())
        for c in reversed(ACTOR_COLUMNS):
            column = pc.if_else(pc.is_valid(actors[c]), pa.scalar(c), column)
        named = pa.table(
            {
                "source": actors["source"],
                "column": column,
                "value": _head(who, _ACTOR_HEADS),
                "sample_first": who,
                "sample_last": who,
                "events": actors["events"],
                "other": actors["has_target"],
            }
        ).filter(pc.is_valid(who))
        self.actors.append(_grouped(named, _GROUP_KEYS, ["events", "other"], _SAMPLES))

        resources = t.filter(pc.and_(pc.invert(has_target), pc.is_valid(t["resource"])))
        resource = resources["resource"].combine_chunks()
        value = _head(resource, _RESOURCE_HEADS)
        paths = pc.fill_null(pc.starts_with(resource, "/"), False)
        if pc.any(paths).as_py():
            value = pc.replace_with_mask(value, paths, _path_shape(resource.filter(paths)))
        named = pa.table(
            {
                "source": resources["source"],
                "column": pa.repeat(pa.scalar("resource"), resources.num_rows),
                "value": value,
                "sample_first": resource,
                "sample_last": resource,
                "events": resources["events"],
                "other": resources["has_actor"],
            }
        )
        self.resources.append(_grouped(named, _GROUP_KEYS, ["events", "other"], _SAMPLES))
        for name in ("actions", "actors", "resources"):
            if len(getattr(self, name)) >= _PARTIALS:
                setattr(self, name, [self._fold(name)])

    def _fold(self, name: str) -> pa.Table:
        table = pa.concat_tables(getattr(self, name))
        if name == "actions":
            return _grouped(table, _ACTION_KEYS, _SUMS)
        return _grouped(table, _GROUP_KEYS, ["events", "other"], _SAMPLES)

    def result(self) -> tuple[pa.Table, pa.Table, pa.Table]:
        def empty(keys: list[str], sums: list[str], samples: tuple[str, ...]) -> pa.Table:
            cols = {k: pa.array([], pa.string()) for k in [*keys, *samples]}
            return pa.table({**cols, **{s: pa.array([], pa.int64()) for s in sums}})

        return (
            self._fold("actions") if self.actions else empty(_ACTION_KEYS, _SUMS, ()),
            self._fold("actors")
            if self.actors
            else empty(_GROUP_KEYS, ["events", "other"], _SAMPLES),
            self._fold("resources")
            if self.resources
            else empty(_GROUP_KEYS, ["events", "other"], _SAMPLES),
        )


def _grouped(
    t: pa.Table, keys: list[str], sums: list[str], samples: tuple[str, str] | None = None
) -> pa.Table:
    """One row per distinct combination of ``keys`` (nulls included): the sums of ``sums`` and,
    with ``samples``, the first value of the first sample column and the last of the second, in
    row order (so partial results fold into the same answer: a lake is read in path order).

    Acero groups slowly on several string keys (measured: ~3 us a row for three, ~0.4 for one
    integer), so each key is dictionary-encoded, the codes folded into one integer to group
    on, and only the groups turned back into text."""
    import numpy as np

    codes: Any = None
    dictionaries: list[tuple[pa.Array, int]] = []
    for k in keys:
        column = t[k].combine_chunks() if isinstance(t[k], pa.ChunkedArray) else t[k]
        enc = pc.dictionary_encode(column)
        size = len(enc.dictionary) + 1  # 0 is null
        code = pc.fill_null(pc.add(pc.cast(enc.indices, pa.int64()), 1), 0)
        codes = code if codes is None else pc.add(pc.multiply(codes, size), code)
        dictionaries.append((enc.dictionary, size))
    if int(np.prod([float(size) for _, size in dictionaries])) >= 1 << 62:  # pragma: no cover
        raise ValueError("too many distinct values to group on")  # billions of actions: never
    aggs: list[tuple[str, str]] = [(s, "sum") for s in sums]
    columns = {"_key": codes, **{s: t[s] for s in sums}}
    if samples:
        aggs += [(samples[0], "first"), (samples[1], "last")]
        columns |= {samples[0]: t[samples[0]], samples[1]: t[samples[1]]}
    g = pa.table(columns).group_by("_key", use_threads=False).aggregate(aggs)
    rest = g["_key"].to_numpy()
    out: dict[str, Any] = {}
    for k, (dictionary, size) in reversed(list(zip(keys, dictionaries, strict=True))):
        index = rest % size
        rest = rest // size
        out[k] = dictionary.take(pa.array(index - 1, mask=index == 0))
    out = {k: out[k] for k in keys}
    for s in sums:
        out[s] = g[f"{s}_sum"]
    if samples:
        out[samples[0]] = g[f"{samples[0]}_first"]
        out[samples[1]] = g[f"{samples[1]}_last"]
    return pa.table(out)


# What an unresolved value is grouped by: a role's sessions (by ARN, or a role's unique id and
# session name), a bucket's objects, a table's items, an ARN's resource type; API paths by
# their shape. A value with nothing after its head is its own group.
_ACTOR_HEADS = r"^(?P<head>arn:[^:]*:sts::[^:]*:assumed-role/[^/]+/|AROA[A-Z0-9]+:)"
_RESOURCE_HEADS = r"^(?P<head>s3://[^/]+/|dynamodb:[^/]+/|arn:[^:]*:[^:]*:[^:]*:[^:]*:[^/:]+[/:])"


def _head(values: Any, pattern: str) -> Any:
    """``<head>*`` where ``pattern``'s head matches and something follows it, else the value."""
    head = pc.struct_field(pc.extract_regex(values, pattern=pattern), "head")
    longer = pc.less(pc.binary_length(head), pc.binary_length(values))
    return pc.if_else(
        pc.fill_null(longer, False), pc.binary_join_element_wise(head, "*", ""), values
    )


def _per_distinct(values: Any, fn: Any) -> Any:
    """``fn`` over the distinct values only (actions repeat)."""
    enc = pc.dictionary_encode(values)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    return pc.take(fn(enc.dictionary), enc.indices)


def _path_shape(values: Any) -> Any:
    """Paths with each segment that holds a digit (an id) as ``{}``."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    parts = pc.split_pattern(values, "/")
    flat = pc.list_flatten(parts)
    flat = pc.if_else(pc.match_substring_regex(flat, "[0-9]"), pa.scalar("{}"), flat)
    rebuilt = pa.ListArray.from_arrays(parts.offsets, flat, mask=pc.is_null(parts))
    return pc.binary_join(rebuilt, "/")


# --- shaping the counts ----------------------------------------------------------------------


def _actions(t: pa.Table) -> list[Action]:
    merged: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
    for r in t.to_pylist():  # one row per action and strategy pair: hundreds, not events
        key = (r["source"], r["service"], r["action"])
        m = merged.setdefault(
            key, {"events": 0, "actor": 0, "target": 0, "conflicts": 0, "a_src": {}, "t_src": {}}
        )
        m["events"] += r["events"]
        m["actor"] += r["has_actor"]
        m["target"] += r["has_target"]
        m["conflicts"] += r["conflict"]
        for col, name in (("actor_tenant_source", "a_src"), ("target_tenant_source", "t_src")):
            if r[col] is not None:
                m[name][r[col]] = m[name].get(r[col], 0) + r["events"]
    out = [
        Action(
            source=k[0],
            service=k[1],
            action=k[2],
            counts=Counts(
                events=m["events"],
                actor_tenant=m["actor"],
                target_tenant=m["target"],
                conflicts=m["conflicts"],
                actor_tenant_source=_busiest(m["a_src"]),
                target_tenant_source=_busiest(m["t_src"]),
            ),
        )
        for k, m in merged.items()
    ]
    order = {s: i for i, s in enumerate(schema.SOURCES)}
    out.sort(
        key=lambda a: (
            order.get(a.source, len(order)),
            -a.counts.events,
            a.service or "",
            a.action or "",
        )
    )
    return out


def _busiest(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _sum(counts: list[Counts]) -> Counts:
    a_src: dict[str, int] = {}
    t_src: dict[str, int] = {}
    for c in counts:
        for k, v in c.actor_tenant_source.items():
            a_src[k] = a_src.get(k, 0) + v
        for k, v in c.target_tenant_source.items():
            t_src[k] = t_src.get(k, 0) + v
    return Counts(
        events=sum(c.events for c in counts),
        actor_tenant=sum(c.actor_tenant for c in counts),
        target_tenant=sum(c.target_tenant for c in counts),
        conflicts=sum(c.conflicts for c in counts),
        actor_tenant_source=_busiest(a_src),
        target_tenant_source=_busiest(t_src),
    )


def _groups(t: pa.Table, cfg: Config) -> list[Unresolved]:
    rows = t.to_pylist()
    rows.sort(key=lambda r: (-r["events"], r["source"], r["column"], r["value"]))
    out = []
    for r in rows:
        samples = tuple(dict.fromkeys((r["sample_first"], r["sample_last"])))
        out.append(
            Unresolved(
                source=r["source"],
                column=r["column"],
                field=origin(r["source"], r["column"], r["value"], cfg),
                value=r["value"],
                events=r["events"],
                other_side=r["other"],
                samples=samples,
            )
        )
    return out


def origin(source: str, column: str, value: str, cfg: Config) -> str:
    """Where ``column`` of a ``source`` event (``value``: one of its values or groups) comes from
    in the raw record."""
    if source == "cloudtrail":
        if column == "actor_principal":
            if value.startswith("arn:"):
                return "userIdentity.arn"
            if value.startswith("aws-account:"):  # another account calling: named by it
                return "userIdentity.accountId"
            if value.endswith(".amazonaws.com"):
                return "userIdentity.invokedBy"
            return "userIdentity.principalId"
        if column == "resource":
            if value.startswith("s3://"):
                return "requestParameters.bucketName, requestParameters.key (or resources[*].ARN)"
            if value.startswith("dynamodb:"):
                return "requestParameters.tableName, requestParameters.key"
            return "resources[*].ARN"
        return _CLOUDTRAIL_ACTOR.get(column, column)
    key = _MAPPED.get((source, column))
    if key is None:
        return column
    paths = getattr(getattr(cfg.sources, source), key)
    shown = ", ".join((paths,) if isinstance(paths, str) else paths)
    return f"sources.{source}.{key} ({shown})" if shown else f"sources.{source}.{key}"


# --- for people ------------------------------------------------------------------------------


def render(report: TenancyReport, top: int = 20, width: int = 160) -> None:
    """The report as rich tables on stdout; at most ``top`` actions per source."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline.alert.sanitize import clean

    def safe(value: object, limit: int = 100) -> str:
        # Values come from logs: control characters shown, not obeyed; "[x]" stays text.
        return escape(clean(value, limit))

    def share(n: int, c: Counts) -> str:
        return f"{n:,} ({n / c.events:.1%})" if c.events else "0"

    def by(kinds: dict[str, int]) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in kinds.items()) or "-"

    console = Console(width=width)
    window = (
        f"{report.since.isoformat() if report.since else 'first event'} .. "
        f"{report.until.isoformat() if report.until else 'last event'}"
    )
    console.print(f"tenancy of {safe(report.lake)}, {window}: {report.events:,} events")

    t = Table(title="per source", title_justify="left")
    for name in ("source", "events", "actor tenant", "target tenant", "conflicts"):
        t.add_column(name, justify="left" if name == "source" else "right")
    t.add_column("actor tenant from", overflow="fold")
    t.add_column("target tenant from", overflow="fold")
    for source, c in report.sources.items():
        t.add_row(
            source,
            f"{c.events:,}",
            share(c.actor_tenant, c),
            share(c.target_tenant, c),
            f"{c.conflicts:,}",
            by(c.actor_tenant_source),
            by(c.target_tenant_source),
        )
    console.print(t)

    t = Table(title=f"per action (the {top} busiest of each source)", title_justify="left")
    for name in ("source", "service", "action", "events", "actor tenant", "target tenant"):
        t.add_column(
            name, overflow="fold", justify="right" if " " in name or name == "events" else "left"
        )
    t.add_column("conflicts", justify="right")
    t.add_column("actor tenant from", overflow="fold")
    t.add_column("target tenant from", overflow="fold")
    shown: dict[str, int] = {}
    for a in report.actions:
        shown[a.source] = shown.get(a.source, 0) + 1
        if shown[a.source] > top:
            continue
        c = a.counts
        t.add_row(
            a.source,
            safe(a.service, 40),
            safe(a.action, 60),
            f"{c.events:,}",
            share(c.actor_tenant, c),
            share(c.target_tenant, c),
            f"{c.conflicts:,}",
            by(c.actor_tenant_source),
            by(c.target_tenant_source),
        )
    console.print(t)
    for source, n in shown.items():
        if n > top:
            console.print(f"  ... {n - top} more actions of {source} (--json lists every one)")

    for title, rows, other, left in (
        (
            "actors without a tenant",
            report.unresolved_actors,
            "with target tenant",
            report.unresolved_left_off["unresolved_actors"],
        ),
        (
            "resources without a tenant",
            report.unresolved_resources,
            "with actor tenant",
            report.unresolved_left_off["unresolved_resources"],
        ),
    ):
        t = Table(title=f"{title}, busiest first", title_justify="left")
        for name in ("source", "field", "value", "events", other, "samples"):
            t.add_column(
                name, overflow="fold", justify="right" if name in ("events", other) else "left"
            )
        for u in rows:
            t.add_row(
                u.source,
                safe(f"{u.column} <- {u.field}", 200),
                safe(u.value),
                f"{u.events:,}",
                f"{u.other_side:,}",
                "\n".join(safe(s) for s in u.samples),
            )
        console.print(t)
        if left:
            console.print(f"  ... {left} more (--top to list more)")
