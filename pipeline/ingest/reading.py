"""What a run reads of each record beyond the fixed columns, compiled once from the configuration.

``Reading`` is built in the main process at the start of a run (``Reading.of``) and travels,
pickled, to every ingest worker with each batch's work: the per-source field mappings
(``normalize.Mapping``), the lookups (``lookups.Lookups``), and the *path columns*: one column per
field path that a ``field`` strategy (its ``path`` and its ``when`` filters) or a ``header``
strategy reads. Decoding fills the path columns of each row's source (the others stay null), and
``tenancy`` resolves from them; they are never stored.

A path that can give several values (``[*]``, ``*``) is a list column (every value, in document
order); any other is a string column. CloudTrail records are read by the compiled struct tree of
``fieldpath.Extractor`` from each record's raw text (after redaction, the text the lake keeps:
``tenantwatch tenancy`` reads the same); per-line records by ``FieldPath.values`` on the decoded
line. An ``apigateway`` or ``authorizer`` path written ``$name`` reads the column ``name`` of that
source's ``[sources.*]`` mapping instead (``$requested_tenant``, ``$tenant_claim``). A
``cloudtrail`` path starting ``ocsf.`` reads the OCSF row a record was read from in Amazon
Security Lake (``securitylake``), by its own extractor over those rows' text; it finds nothing in
records from other inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import config as c
from pipeline import fieldpath
from pipeline.fieldpath import FieldPath
from pipeline.ingest import normalize
from pipeline.ingest.lookups import NONE, Lookups

_S = pa.string()
_LIST = pa.list_(_S)
MAPPED = "$"  # a path naming a column of the source's mapping
OCSF = "ocsf."  # a CloudTrail path into the OCSF row of a record read from Security Lake


@dataclass(frozen=True)
class PathColumn:
    """One path column: ``path`` read from records of ``source``, or ``mapped``: the paths of a
    column of the source's mapping, the first present."""

    name: str
    source: str
    text: str  # as configured (a header's name, a path, or "$column")
    path: FieldPath | None
    mapped: tuple[FieldPath, ...] = ()
    literal: bool = False  # a header's name: one key, as it is

    @property
    def ocsf(self) -> bool:
        """Whether it reads the OCSF row (Security Lake) rather than the CloudTrail record."""
        return self.source == "cloudtrail" and self.text.startswith(OCSF) and not self.literal

    @property
    def many(self) -> bool:
        return self.path is not None and self.path.many

    @property
    def type(self) -> pa.DataType:
        return _LIST if self.many else _S

    def of(self, rec: dict[str, Any]) -> Any:
        """Its value(s) in one decoded record."""
        if self.path is None:
            return fieldpath.first_of(self.mapped, rec)
        if self.many:
            return self.path.values(rec)
        return self.path.first(rec)


@dataclass(frozen=True)
class Reading:
    cfg: c.Config
    lookups: Lookups = NONE
    apigateway: normalize.Mapping = field(default_factory=lambda: normalize.Mapping({}))
    authorizer: normalize.Mapping = field(default_factory=lambda: normalize.Mapping({}))
    columns: tuple[PathColumn, ...] = ()
    extractor: fieldpath.Extractor | None = None  # the CloudTrail path columns'
    ocsf_extractor: fieldpath.Extractor | None = None  # the ``ocsf.`` path columns'

    @classmethod
    def of(cls, cfg: c.Config, lookups: Lookups = NONE) -> Reading:
        mappings = {s: normalize.mapping(s, cfg) for s in ("apigateway", "authorizer")}
        wanted: dict[tuple[str, str, str], PathColumn] = {}

        def want(source: str, text: str, literal: bool = False) -> None:
            key = (source, "literal" if literal else "path", text)
            if key in wanted:
                return
            name = f"x{len(wanted)}"
            if literal:
                column = PathColumn(name, source, text, fieldpath.literal(text), literal=True)
            elif text.startswith(MAPPED) and source != "cloudtrail":
                column = PathColumn(name, source, text, None, mappings[source].paths[text[1:]])
            else:
                column = PathColumn(name, source, text, fieldpath.parse(text))
            wanted[key] = column

        for s in (*cfg.tenancy.actor, *cfg.tenancy.target):
            if isinstance(s, c.Field):
                want(s.source, s.path)
                for when in s.when:
                    want(s.source, when)
            elif isinstance(s, c.Header):
                want("apigateway", s.name, literal=True)
        columns = tuple(wanted.values())
        trail = tuple(col.path for col in _trail(columns, ocsf=False) if col.path)
        ocsf = tuple(col.path for col in _trail(columns, ocsf=True) if col.path)
        return cls(
            cfg,
            lookups,
            mappings["apigateway"],
            mappings["authorizer"],
            columns,
            fieldpath.Extractor(trail) if trail else None,
            fieldpath.Extractor(ocsf) if ocsf else None,
        )

    def column(self, source: str, text: str, literal: bool = False) -> PathColumn:
        """The path column of a strategy's ``path`` (or ``when`` key, or header name)."""
        for col in self.columns:
            if (col.source, col.text, col.literal) == (source, text, literal):
                return col
        raise KeyError((source, text))

    @property
    def wide(self) -> pa.Schema:
        """The decoded rows' schema: ``normalize.WIDE`` and the path columns."""
        schema = normalize.WIDE
        for col in self.columns:
            schema = schema.append(pa.field(col.name, col.type))
        return schema

    def line_kind(self, obj: dict[str, Any]) -> str | None:
        """``formats.LineKind`` by the mappings' field names: an authorizer line has a decision
        and a function or principal; an access-log line a request id and a method, route or
        status."""

        def has(m: normalize.Mapping, column: str) -> bool:
            return any(p.present(obj) for p in m.paths[column])

        a, g = self.authorizer, self.apigateway
        if has(a, "decision") and (has(a, "function") or has(a, "principal")):
            return "authorizer"
        if has(g, "request_id") and any(has(g, k) for k in ("http_method", "route", "status")):
            return "apigateway"
        return None

    def line_values(self, source: str, rec: dict[str, Any]) -> tuple[Any, ...]:
        """The path columns of one per-line record (None for another source's columns)."""
        return tuple(col.of(rec) if col.source == source else None for col in self.columns)

    def cloudtrail_columns(
        self, raw: pa.Array, ocsf: pa.Array | None = None
    ) -> dict[str, pa.Array]:
        """The path columns of a chunk of CloudTrail records, from their raw texts; the ``ocsf.``
        ones from ``ocsf``, the OCSF rows (``{"ocsf": row}``) of those read from Security Lake
        (null for the others)."""
        n = len(raw)
        out = {col.name: pa.nulls(n, col.type) for col in self.columns}
        if not n:
            return out
        texts = [(self.extractor, raw, False)]
        if ocsf is not None and ocsf.null_count < len(ocsf):
            texts.append((self.ocsf_extractor, pc.fill_null(ocsf, "{}"), True))
        for extractor, text, of_ocsf in texts:
            if extractor is None:
                continue
            found = extractor.extract(_texts(text))
            wanted = [col for col in _trail(self.columns, of_ocsf) if col.path]
            for col, values in zip(wanted, found, strict=True):
                if col.many:
                    out[col.name] = pa.array(values, _LIST)
                else:
                    out[col.name] = pa.array([v[0] if v else None for v in values], _S)
        return out


def _trail(columns: Iterable[PathColumn], ocsf: bool) -> list[PathColumn]:
    """The CloudTrail path columns that read the record (``ocsf`` False) or its OCSF row."""
    return [c for c in columns if c.source == "cloudtrail" and c.ocsf == ocsf]


def _texts(raw: pa.Array) -> Iterable[memoryview]:
    """Each string of ``raw`` as a view of its bytes (no copy, no Python string)."""
    raw = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
    _, offsets, data = raw.buffers()
    ends = np.frombuffer(offsets, np.int32)[raw.offset : raw.offset + len(raw) + 1].tolist()
    view = memoryview(data) if data is not None else memoryview(b"")
    return (view[a:b] for a, b in pairwise(ends))
