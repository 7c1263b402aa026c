"""The counts behind ``tenantwatch tenancy report``, read from a lake of any size.

Only the columns counted are read, a file at a time (``lake.event_batches``), and each slice of
about ``_ROWS`` rows is aggregated with Arrow's ``group_by``; the partial results are folded
together whenever ``_PARTIALS`` have gathered, so memory follows the number of groups (actions,
unresolved roles, buckets, API path shapes), never the number of events.

Unresolved values are grouped by what a strategy would key on, not by each value: an
assumed-role session by its role (``arn:aws:sts::1111:assumed-role/app/*``), an S3 object by its
bucket (``s3://bucket/*``), a DynamoDB item by its table, another ARN by its resource type, and
an API path by its shape (segments holding a digit become ``{}``). A group keeps the first and
the last value met (in the lake's path order: source, date, hour) as its samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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


def count(
    lake: Lake, since: datetime | None, until: datetime | None
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(per action, unresolved actors, unresolved resources) of the events in [since, until):
    actions keyed by ``_ACTION_KEYS`` with the ``_SUMS``; the two groups keyed by
    ``_GROUP_KEYS`` with ``events``, ``other`` (the other side resolved) and two samples."""
    acc = _Aggregates()
    for chunk in _chunks(event_batches(lake, since, until, columns=COLUMNS, batch_size=_BATCH)):
        acc.add(chunk)
    return acc.result()
