"""What each configured strategy makes of a batch's rows, one strategy at a time, vectorised.

A strategy reads a *value* (a hint column such as the role session name or the S3 key, or a path
column for ``field`` and ``header``), takes its pattern's ``tenant`` group as the *key* (the whole
value without a pattern), and maps the key through its lookup to the *tenant* (the key itself
without a lookup). Each step is one Arrow call over the whole column (RE2 for patterns,
``index_in`` + ``take`` for lookups); a value that does not match, or a key the lookup lacks,
gives no tenant. A strategy applies only to rows of its sources and filters (``roles``,
``buckets``, ``tables``, ``when``); elsewhere it gives nothing.

A path with ``[*]`` gives several values per row: the strategy's tenant is that of the first
value that resolves, and when two values resolve to different tenants the row keeps every tenant
found (``Trace.others``), which ``tenancy`` records as a conflict.

``Trace`` keeps every step, for ``tenancy.diagnose`` (why a strategy gave nothing); resolution
reads only ``tenant`` and ``others``. The session strategies (``session_tag``,
``session_origin``), which need the run's history, are in ``tenancy``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import config as c
from pipeline.errors import ConfigError
from pipeline.ingest.reading import Reading

_S = pa.string()
_LIST = pa.list_(_S)

# Where each kind can find anything (a hint column only one source fills); ``field`` names its
# own source.
KIND_SOURCES: dict[str, tuple[str, ...]] = {
    "session_tag": ("cloudtrail",),
    "session_origin": ("cloudtrail",),
    "role_session_name": ("cloudtrail",),
    "role_arn": ("cloudtrail",),
    "source_identity": ("cloudtrail",),
    "authorizer_context": ("apigateway", "authorizer"),
    "s3_key": ("cloudtrail",),
    "s3_bucket": ("cloudtrail",),
    "dynamodb_key": ("cloudtrail",),
    "dynamodb_table": ("cloudtrail",),
    "resource_arn": ("cloudtrail",),
    "api_path": ("apigateway", "authorizer"),
    "header": ("apigateway",),
    "subdomain": ("apigateway",),
}
SESSION_KINDS = (c.SessionTag, c.SessionOrigin)
Strategy = c.ActorStrategy | c.TargetStrategy


def kind_of(strategy: object) -> str:
    """The ``kind`` tag of a configured strategy (msgspec keeps tags on the class)."""
    return str(type(strategy).__struct_config__.tag)  # type: ignore[attr-defined]


def sources_of(s: Strategy) -> tuple[str, ...]:
    return (s.source,) if isinstance(s, c.Field) else KIND_SOURCES[kind_of(s)]


def label(s: Strategy) -> str:
    """A strategy as people recognise it in a report: its kind and what it reads."""
    kind = kind_of(s)
    if isinstance(s, c.Field):
        kind = f"field {s.source}:{s.path}"
    elif isinstance(s, c.SessionTag):
        kind = f"session_tag {s.key}"
    elif isinstance(s, c.Header):
        kind = f"header {s.name}"
    lookup = getattr(s, "lookup", "")
    return f"{kind} -> lookup {lookup}" if lookup else kind


@dataclass(frozen=True)
class Trace:
    """What one strategy made of each row."""

    applies: pa.Array  # bool, never null: the row is of its sources and passes its filters
    of_source: pa.Array  # bool, never null: the row is of its sources
    value: pa.Array  # string: what it read (of several, the one chosen: see module docstring)
    key: pa.Array  # string: the pattern's tenant group (the value, without a pattern)
    tenant: pa.Array  # string: the tenant it gives
    others: pa.Array | None = None  # list<string>: every tenant, where several differ


class Sources:
    """Which rows of a batch are of which sources, worked out once per batch: most batches hold
    one source, and then a strategy applies to every row or to none."""

    def __init__(self, t: pa.Table) -> None:
        self.t = t
        self.present = set(pc.unique(t["source"]).to_pylist()) if t.num_rows else set()
        self._masks: dict[tuple[str, ...], pa.Array] = {}

    def every(self, sources: tuple[str, ...]) -> bool:
        return self.present <= set(sources)

    def none(self, sources: tuple[str, ...]) -> bool:
        return not self.present & set(sources)

    def mask(self, sources: tuple[str, ...]) -> pa.Array:
        if sources not in self._masks:
            n = self.t.num_rows
            if self.every(sources) or self.none(sources):
                self._masks[sources] = pa.array(np.full(n, self.every(sources), np.bool_))
            else:
                self._masks[sources] = _of_sources(self.t, sources)
        return self._masks[sources]


def evaluate(
    t: pa.Table, s: Strategy, where: str, reading: Reading, sources: Sources | None = None
) -> Trace:
    """The trace of a strategy that needs no history (not ``SESSION_KINDS``) over ``t``, a
    table of decoded rows (``reading.wide``); ``sources``: ``t``'s, if known already."""
    n = t.num_rows
    sources = sources or Sources(t)
    mine = sources_of(s)
    of_source = sources.mask(mine)
    if sources.none(mine):  # nothing to read: the hints of other sources are null anyway
        nothing = pa.nulls(n, _S)
        return Trace(of_source, of_source, nothing, nothing, nothing)
    applies = of_source
    values: pa.Array
    if isinstance(s, c.Field):
        column = reading.column(s.source, s.path)
        values = _col(t, column.name)
        for path, allowed in s.when.items():
            when = _col(t, reading.column(s.source, path).name)
            applies = pc.and_(applies, _any_in(when, allowed, n))
    elif isinstance(s, c.Header):
        values = _col(t, reading.column("apigateway", s.name, literal=True).name)
    else:
        values, applies = _hint(t, s, applies)
    pattern, lookup = getattr(s, "pattern", ""), getattr(s, "lookup", "")
    if pa.types.is_list(values.type):
        return _many(values, applies, of_source, pattern, lookup, where, reading)
    if applies is not of_source or not sources.every(mine):
        values = pc.if_else(applies, values, pa.scalar(None, _S))
    # A value is never blank (read by as_text's rule); a pattern's group may be.
    key = _blank_to_null(_extract(values, pattern, where)) if pattern else values
    tenant = reading.lookups.apply(lookup, key) if lookup else key
    return Trace(applies, of_source, values, key, tenant)


def _hint(t: pa.Table, s: Strategy, applies: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(value, applies) of the kinds that read a hint column."""
    if isinstance(s, c.RoleSessionName):
        return _col(t, "h_session_name"), _filtered(applies, t, "h_role_name", s.roles)
    if isinstance(s, c.RoleArn):
        return pc.coalesce(_col(t, "h_role_arn"), _col(t, "actor_principal")), applies
    if isinstance(s, c.SourceIdentity):
        return _col(t, "h_source_identity"), applies
    if isinstance(s, c.AuthorizerContext):
        return _col(t, "h_claim"), applies
    if isinstance(s, c.S3Key):
        return _col(t, "h_s3_key"), _filtered(applies, t, "h_s3_bucket", s.buckets)
    if isinstance(s, c.S3Bucket):
        return _col(t, "h_s3_bucket"), applies
    if isinstance(s, c.DynamoDBKey):
        return _col(t, "h_ddb_key"), _filtered(applies, t, "h_ddb_table", s.tables)
    if isinstance(s, c.DynamoDBTable):
        return _col(t, "h_ddb_table"), applies
    if isinstance(s, c.ResourceArn):
        return _col(t, "h_arns"), applies
    if isinstance(s, c.ApiPath):
        return _col(t, "h_api_path"), applies
    if isinstance(s, c.Subdomain):
        return _col(t, "h_host"), applies
    raise ConfigError(f"unsupported kind {kind_of(s)!r}")  # pragma: no cover - config checks


def _many(
    values: pa.Array,
    applies: pa.Array,
    of_source: pa.Array,
    pattern: str,
    lookup: str,
    where: str,
    reading: Reading,
) -> Trace:
    """``evaluate`` over a list column: every value of a row tried, the first that resolves
    chosen (else the first, so a trace shows what was read)."""
    n = len(values)
    values = pc.if_else(applies, values, pa.scalar(None, _LIST))
    flat = pc.list_flatten(values)
    parents = pc.list_parent_indices(values).to_numpy(zero_copy_only=False)
    key = _blank_to_null(_extract(flat, pattern, where) if pattern else flat)
    tenant = reading.lookups.apply(lookup, key) if lookup else key
    resolved = pc.is_valid(tenant).to_numpy(zero_copy_only=False)
    pick = np.full(n, -1, np.int64)
    rows, first = np.unique(parents, return_index=True)
    pick[rows] = first
    rows, first = np.unique(parents[resolved], return_index=True)
    pick[rows] = np.flatnonzero(resolved)[first]
    take = pa.array(pick, mask=pick < 0)
    others = None
    if len(rows) and len(rows) < resolved.sum():  # some row had two values that resolved
        pairs = pa.table({"row": parents[resolved], "tenant": tenant.filter(resolved)})
        distinct = pairs.group_by("row", use_threads=False).aggregate(
            [("tenant", "distinct", pc.CountOptions("only_valid"))]
        )
        several = pc.greater(pc.list_value_length(distinct["tenant_distinct"]), 1)
        if pc.any(several).as_py():
            which = distinct.filter(several)
            slots = np.full(n, -1, np.int64)
            slots[which["row"].to_numpy()] = np.arange(which.num_rows)
            others = pc.take(
                which["tenant_distinct"].combine_chunks(), pa.array(slots, mask=slots < 0)
            )
    return Trace(
        applies, of_source, pc.take(flat, take), pc.take(key, take), pc.take(tenant, take), others
    )


def _col(t: pa.Table, name: str) -> pa.Array:
    col = t[name]
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _of_sources(t: pa.Table, sources: tuple[str, ...]) -> pa.Array:
    return pc.fill_null(pc.is_in(_col(t, "source"), value_set=pa.array(sources, _S)), False)


def _filtered(applies: pa.Array, t: pa.Table, column: str, allowed: tuple[str, ...]) -> pa.Array:
    if not allowed:
        return applies
    keep = pc.fill_null(pc.is_in(_col(t, column), value_set=pa.array(allowed, _S)), False)
    return pc.and_(applies, keep)


def _any_in(values: pa.Array, allowed: tuple[str, ...], n: int) -> pa.Array:
    """Per row: is its value (or one of its values) among ``allowed``?"""
    allowed_set = pa.array(allowed, _S)
    if not pa.types.is_list(values.type):
        return pc.fill_null(pc.is_in(values, value_set=allowed_set), False)
    hit = pc.fill_null(pc.is_in(pc.list_flatten(values), value_set=allowed_set), False)
    rows = np.zeros(n, np.bool_)
    parents = pc.list_parent_indices(values).to_numpy(zero_copy_only=False)
    rows[parents[hit.to_numpy(zero_copy_only=False)]] = True
    return pa.array(rows)


def _extract(values: pa.Array, pattern: str, where: str) -> pa.Array:
    try:
        groups = pc.extract_regex(values, pattern=pattern)
    except pa.ArrowInvalid as exc:
        # Arrow's regex engine is RE2: no look-arounds or back-references.
        raise ConfigError(f"{where}: the pattern is not supported by RE2 ({exc})") from None
    return pc.struct_field(groups, "tenant")


def _blank_to_null(values: pa.Array) -> pa.Array:
    if not len(values) or values.null_count == len(values):
        return values
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, _S), values)
