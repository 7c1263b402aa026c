"""What each configured strategy makes of a sample of the lake's own records.

``tenantwatch tenancy report`` counts what ingestion resolved; this says why the rest was not,
strategy by strategy, so that a path that can never match (a typo, a field this SaaS's logs do
not have) stands out as "never present in N sampled records" instead of hiding in a low share.

Up to ``SAMPLE`` stored records per source are taken from the report's window (spread over its
files: ``lake.sample_events``), decoded exactly as ingest decodes them (the records' raw text,
the configured field mappings and lookups), and each strategy is evaluated on them
(``ingest.tenancy.diagnose``). Sessions are those the lake learnt from ``AssumeRole*`` calls
(``_state/sessions``) plus those started within the sample. Per strategy: the records of its
sources, those its own filters leave out (``roles``, ``buckets``, ``when``), those where its field
was present, where its pattern matched, and where it gave a tenant, with a few values that did
not match or were not in its lookup. Per source, the mapped fields of ``[sources.*]`` that no
sampled record has.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import fieldpath, schema
from pipeline.config import Config
from pipeline.lake import STATE_SESSIONS, Lake, sample_events

SAMPLE = 20_000  # records per source
_EXAMPLES = 3  # values shown per strategy that did not match, or were not in its lookup


@dataclass(frozen=True)
class StrategyCounts:
    label: str  # "actor[0] session_tag tenant_id"
    sources: tuple[str, ...]
    records: int  # sampled records of its sources
    filtered: int  # left out by its own filters
    present: int  # its field (or session) was there
    matched: int  # its pattern matched (every present value, without a pattern)
    resolved: int  # it gave a tenant (its lookup had the key, with a lookup)
    session_unknown: int  # the session never seen starting (no AssumeRole* in lake or sample)
    unmatched: tuple[str, ...]  # values its pattern did not match
    not_in_lookup: tuple[str, ...]  # keys its lookup does not have

    @property
    def never_present(self) -> bool:
        return self.records > self.filtered and self.present == 0 and not self.session_unknown


@dataclass(frozen=True)
class MissingField:
    """A mapped field of ``[sources.<source>]`` that no sampled record of it has."""

    source: str
    key: str
    paths: tuple[str, ...]
    records: int


@dataclass(frozen=True)
class StrategySample:
    sampled: dict[str, int]  # records decoded per source
    strategies: list[StrategyCounts]
    missing_fields: list[MissingField]

    def as_dict(self) -> dict[str, Any]:
        def one(s: StrategyCounts) -> dict[str, Any]:
            out = dict(s.__dict__)
            out |= {
                "sources": list(s.sources),
                "unmatched": list(s.unmatched),
                "not_in_lookup": list(s.not_in_lookup),
                "never_present": s.never_present,
            }
            return out

        return {
            "sampled": self.sampled,
            "strategies": [one(s) for s in self.strategies],
            "missing_fields": [{**m.__dict__, "paths": list(m.paths)} for m in self.missing_fields],
        }


def sample(
    lake: Lake,
    cfg: Config,
    since: datetime | None,
    until: datetime | None,
    per_source: int = SAMPLE,
) -> StrategySample:
    """The strategies' counts over up to ``per_source`` records of each source in the window."""
    from pipeline.ingest import tenancy
    from pipeline.ingest.decode import decode_batch
    from pipeline.ingest.lookups import load_lookups
    from pipeline.ingest.reading import Reading
    from pipeline.ingest.run import make_batches
    from pipeline.ingest.sources import list_inputs

    reading = Reading.of(cfg, load_lookups(cfg))
    raw: dict[str, list[str]] = {}
    for source in schema.SOURCES:
        got = sample_events(lake, since, until, source=source, columns=["raw"], limit=per_source)[
            "raw"
        ]
        raw[source] = [r for r in got.to_pylist() if r]
    with tempfile.TemporaryDirectory(prefix="tenantwatch-sample-") as tmp:
        # Decoded from files, as ingest reads them: one record a line, as the lake keeps it.
        for source, records in raw.items():
            if records:
                Path(tmp, f"{source}.jsonl").write_text("".join(f"{r}\n" for r in records))
        refs, _ = list_inputs([tmp])
        decoded = [decode_batch(b, cfg.ingest, reading) for b in make_batches(refs, 1 << 62)]
    rows = pa.concat_tables([d.rows for d in decoded]) if decoded else None
    sampled = {s: 0 for s in schema.SOURCES}
    if rows is None or not rows.num_rows:
        return StrategySample(sampled, [], _missing(cfg, raw))
    for s, n in zip(*pc.value_counts(rows["source"]).flatten(), strict=True):
        sampled[s.as_py()] = n.as_py()
    sessions = tenancy.SessionMap(timedelta(hours=cfg.tenancy.session_ttl_hours))
    keys = pc.unique(pc.drop_null(rows["actor_session"]))
    known = _lake_sessions(lake, sessions, keys)
    for d in decoded:
        sessions.learn(d.sessions)
        known = pc.unique(pa.concat_arrays([known, d.sessions["access_key_id"].combine_chunks()]))
    found = tenancy.diagnose(rows, reading, sessions)
    counts = [_counts(d, rows, known) for d in found]
    return StrategySample(sampled, counts, _missing(cfg, raw))


def _lake_sessions(lake: Lake, sessions: Any, keys: pa.Array) -> pa.Array:
    """Learn the lake's sessions of the access keys ``keys``; the keys it knows."""
    known = []
    for t in lake.read_tables(STATE_SESSIONS):
        t = t.filter(pc.is_in(t["access_key_id"], value_set=keys))
        if not t.num_rows:
            continue
        # A file holds one batch's sessions; an access key id's rows in it are one session.
        ids = t["access_key_id"]
        number = pc.index_in(ids, value_set=pc.unique(ids)).cast(pa.int32())
        sessions.learn(t.append_column("session", number))
        known.append(ids.combine_chunks())
    return pc.unique(pa.concat_arrays(known)) if known else pa.array([], pa.string())


def _counts(d: Any, rows: pa.Table, known: pa.Array) -> StrategyCounts:
    import numpy as np

    from pipeline.ingest import redact, strategies

    status = np.asarray(d.status.to_numpy(zero_copy_only=False), dtype=object)
    mine = np.asarray(pc.fill_null(d.of_source, False).to_numpy(zero_copy_only=False), dtype=bool)

    def n(*names: str) -> int:
        return int((np.isin(status, list(names)) & mine).sum())

    # A session the lake knows, without the tag asked for, is a session without it.
    unknown = (status == "session_unknown") & mine
    seen = pc.fill_null(pc.is_in(rows["actor_session"], value_set=known), False)
    seen_np = seen.to_numpy(zero_copy_only=False)
    absent_known = int((unknown & seen_np).sum())
    session_unknown = int((unknown & ~seen_np).sum())
    records = int(mine.sum())
    filtered = n("not_applicable")
    absent = n("absent") + absent_known
    matched = n("not_in_lookup", "resolved")

    def examples(column: pa.Array, which: str) -> tuple[str, ...]:
        picked = pc.unique(pc.drop_null(column.filter(pa.array((status == which) & mine))))
        return tuple(redact.scrub_text(str(v)) for v in picked.to_pylist()[:_EXAMPLES])

    return StrategyCounts(
        label=d.label,
        sources=strategies.sources_of(d.strategy),
        records=records,
        filtered=filtered,
        present=records - filtered - absent - session_unknown,
        matched=matched,
        resolved=n("resolved"),
        session_unknown=session_unknown,
        unmatched=examples(d.value, "no_match"),
        not_in_lookup=examples(d.key, "not_in_lookup"),
    )


def _missing(cfg: Config, raw: dict[str, list[str]]) -> list[MissingField]:
    """Mapped fields of the per-line sources that none of their sampled records has."""
    out = []
    for source in ("apigateway", "authorizer"):
        records = []
        for text in raw.get(source, []):
            try:
                rec = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
        if not records:
            continue
        fields = getattr(cfg.sources, source)
        for key in fields.__struct_fields__:
            given = getattr(fields, key)
            paths = (given,) if isinstance(given, str) else tuple(given)
            parsed = [fieldpath.parse(p) for p in paths]
            if parsed and not any(p.present(r) for r in records for p in parsed):
                out.append(MissingField(source, key, paths, len(records)))
    return out
