"""Partitioned detection in pure Python: what the Spark runner does, without Spark.

A detector declares how its work splits (``detectors.base.Partition``): per pass, each event's
key (the first non-null of the pass's columns) and the promise that a finding the pass keeps
depends only on the events of its key. ``detect_parts`` takes it at its word: it splits the
window and the baseline into buckets by a hash of the key, detects each bucket alone (with the
whole run's window bounds and baseline start), keeps what each pass owns and puts the findings
together in the order a detector returns them. A detector without partitions is one bucket. A
``TwoStep`` detector's history is summarized per bucket of each of its summary passes, its
sample is the smallest ranks of every bucket, and the window is scored whole with what it
learnt.

Each bucket's baseline is encoded afresh from its own rows, as an executor builds it, and the
detector is a fresh copy per bucket. Comparing this
with the whole run (``tests/test_partitioned.py``) is what proves a declaration;
``pipeline.spark_detect`` runs ``detect_bucket`` and the same steps on executors.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema

if TYPE_CHECKING:
    from detectors.base import Detector, Partition
    from pipeline.lake import Lake


@dataclass
class Found:
    """One detector's findings over a window (``schema.FINDINGS``, in a detector's order) and
    what it reported beside them: parts it could not judge, parts that failed (part -> why)."""

    findings: pa.Table
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def add(self, other: Found) -> None:
        self.findings = pa.concat_tables([self.findings, other.findings])
        self.skipped.update(other.skipped)
        self.failed.update(other.failed)


def key_columns(det: Detector) -> list[str]:
    """Every column a pass of ``det`` keys on (its partitions, or a two-step one's summary
    passes), in order of first mention."""
    from detectors.base import two_step

    ts = two_step(det)
    passes = [*det.partitions, *(ts.summary_passes() if ts is not None else ())]
    return list(dict.fromkeys(c for p in passes for c in p.columns()))


def _text(table: pa.Table, name: str) -> pa.ChunkedArray:
    col = table[name]
    return col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col


def partition_key(table: pa.Table, part: Partition) -> pa.ChunkedArray:
    """Each row's key: the first non-null of the columns ``part.by`` (dictionaries read as
    text), and with ``part.link``, a follower's the smallest key of the ``lead`` rows sharing
    its link (``detectors.base.Partition``)."""
    cols = [_text(table, name) for name in part.by]
    key = cols[0] if len(cols) == 1 else pc.coalesce(*cols)
    if part.link is None or not table.num_rows:
        return key
    link = _text(table, part.link)
    lead = pc.equal(_text(table, "source"), part.lead)
    leads = pa.table({"link": link, "key": key}).filter(pc.and_(lead, pc.is_valid(key)))
    firsts = leads.group_by("link", use_threads=False).aggregate([("key", "min")])
    firsts = firsts.filter(pc.is_valid(firsts["link"]))
    at = pc.index_in(link, value_set=firsts["link"])
    linked = pc.take(firsts["key_min"], at)
    follows = pc.and_(pc.invert(lead), pc.is_valid(linked))
    return pc.if_else(follows, linked, key)


def bucket_ids(key: pa.ChunkedArray, buckets: int | None) -> np.ndarray:
    """Each row's bucket: a hash of its key modulo ``buckets``, or with None a bucket per
    distinct key (the null key one of them)."""
    import xxhash

    enc = key.combine_chunks().dictionary_encode() if len(key) else pa.array([], pa.string())
    if not len(key):
        return np.zeros(0, dtype=np.int64)
    values = enc.dictionary.to_pylist()
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    if buckets is None:
        per_value = np.arange(len(values) + 1, dtype=np.int64)  # the null key: the last
    else:
        hashed = [xxhash.xxh64_intdigest(str(v).encode()) % buckets for v in values]
        per_value = np.array([*hashed, 0], dtype=np.int64)
    return per_value[codes]


def reencode(table: pa.Table) -> pa.Table:
    """``table`` with its strings dictionary-encoded afresh from its own rows: a bucket's
    baseline as an executor builds it (a dictionary in the order of first appearance)."""
    from pipeline.detect import encode

    cols = [c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return encode(pa.table(cols, names=table.column_names))


def order_findings(found: pa.Table) -> pa.Table:
    """Findings in the order ``Detector.detect`` returns them: worst first, then by score, then
    by id."""
    rank = pa.array([schema.SEVERITY_RANK[s] for s in found["severity"].to_pylist()], pa.int8())
    order = [("r", "descending"), ("score", "descending"), ("finding_id", "ascending")]
    return found.append_column("r", rank).sort_by(order).drop_columns(["r"])


def detect_bucket(
    det: Detector,
    part: Partition | None,
    window: pa.Table,
    baseline: pa.Table | None,
    *,
    start: datetime,
    end: datetime,
    baseline_start: datetime,
) -> Found:
    """One bucket's findings: ``det`` (a copy of its own: ``detect`` leaves state on it) over
    the bucket's window and baseline, only what ``part`` keeps."""
    found = det.detect(baseline, window, start=start, end=end, baseline_start=baseline_start)
    if part is not None and part.keep is not None and found.num_rows:
        mine = [part.keeps(k) for k in found["dedup_key"].to_pylist()]
        found = found.filter(pa.array(mine, pa.bool_()))
    skipped: dict[str, str] = dict(getattr(det, "skipped", None) or {})
    failed: dict[str, str] = dict(getattr(det, "failures", None) or {})
    return Found(found, skipped, failed)


def fresh(det: Detector) -> Detector:
    """A copy of ``det`` with no state of a detection before (``detect`` leaves some on it):
    one per bucket, as each executor task gets its own (Spark ships detectors pickled; the
    tests check every detector pickles)."""
    return copy.deepcopy(det)


def _split(
    window: pa.Table,
    baseline: pa.Table | None,
    by: Partition,
    buckets: int | None,
    shuffle: np.random.Generator | None,
) -> Iterator[tuple[pa.Table, pa.Table | None]]:
    """The (window, baseline) of each bucket of the key of ``by``, each in the whole table's
    order (or shuffled)."""
    w_ids = bucket_ids(partition_key(window, by), buckets)
    b_ids = bucket_ids(partition_key(baseline, by), buckets) if baseline is not None else None
    if buckets is None and b_ids is not None:
        # A bucket per key: the same key must be the same bucket on both sides.
        both = pa.concat_arrays(
            [
                partition_key(window, by).combine_chunks().cast(pa.string()),
                partition_key(baseline, by).combine_chunks().cast(pa.string()),
            ]
        )
        ids = bucket_ids(pa.chunked_array([both]), None)
        w_ids, b_ids = ids[: window.num_rows], ids[window.num_rows :]
    w_parts = _parts(window, w_ids, shuffle)
    b_parts = _parts(baseline, b_ids, shuffle) if baseline is not None and b_ids is not None else {}
    empty_w = window.slice(0, 0)
    for b in sorted(set(w_parts) | set(b_parts)):
        bl = b_parts.get(b, baseline.slice(0, 0)) if baseline is not None else None
        yield w_parts.get(b, empty_w), bl


def _parts(table: pa.Table, ids: np.ndarray, shuffle: np.random.Generator | None) -> dict:
    """``table``'s rows per bucket id, each in the table's order (or shuffled): one sort, then
    slices."""
    order = np.argsort(ids, kind="stable")
    cut = np.flatnonzero(np.diff(ids[order])) + 1
    out = {}
    for rows in np.split(order, cut) if len(order) else []:
        if shuffle is not None:
            rows = shuffle.permutation(rows)
        out[int(ids[rows[0]])] = table.take(pa.array(rows, pa.int64()))
    return out


def _take(table: pa.Table, mask: Any, shuffle: np.random.Generator | None) -> pa.Table:
    rows = np.flatnonzero(mask)
    if shuffle is not None:
        rows = shuffle.permutation(rows)
    return table.take(pa.array(rows, pa.int64()))


def detect_parts(
    det: Detector,
    window: pa.Table,
    baseline: pa.Table | None,
    *,
    start: datetime,
    end: datetime,
    baseline_start: datetime,
    buckets: int | None,
    shuffle: int | None = None,
) -> Found:
    """``det``'s findings over ``window`` (its window columns and key columns, as
    ``read_events`` gives them) given ``baseline`` (as ``read_baseline`` gives it, key columns
    included), detected bucket by bucket: ``buckets`` by a hash of each pass's key, or (None)
    one per key. ``shuffle``: a seed to put each bucket's rows in a random order (a detector
    must not depend on the order its rows come in)."""
    from detectors.base import Partition, merge_state, two_step

    rng = np.random.default_rng(shuffle) if shuffle is not None else None
    out = Found(schema.empty(schema.FINDINGS))
    bounds = {"start": start, "end": end, "baseline_start": baseline_start}
    ts = two_step(det)
    if ts is not None and baseline is not None:
        import pandas as pd

        span = (pd.Timestamp(baseline_start), pd.Timestamp(start))
        summaries = []
        for i, step in enumerate(ts.summary_passes()):
            for w, bl in _split(window, baseline, step, buckets, rng):
                assert bl is not None
                summaries.append(ts.summarize(i, reencode(bl), w, span))
        summary = pa.concat_tables(summaries)
        sampled = pc.is_valid(summary["rank"])
        ts.learn(sample(summary.filter(sampled), ts.sample_size()), span)
        state = summary.filter(pc.invert(sampled))
        ts.absorb(merge_state(state, getattr(ts, "summary_merge", None)))
        whole = window if rng is None else _take(window, np.ones(window.num_rows, bool), rng)
        found = det.detect(None, whole, fitted=True, **bounds)
        return Found(found, dict(getattr(det, "skipped", None) or {}))
    for part in det.partitions or (None,):
        if part is None:
            pieces: Iterator[tuple[pa.Table, pa.Table | None]] = iter([(window, baseline)])
            if rng is not None:
                pieces = _split(window, baseline, Partition(("source",)), 1, rng)
        else:
            pieces = _split(window, baseline, part, buckets, rng)
        for w, bl in pieces:
            if not w.num_rows:
                continue  # nothing to find: a bucket of history alone
            base = reencode(bl) if bl is not None and part is not None else bl
            out.add(detect_bucket(fresh(det), part, w, base, **bounds))
    out.findings = order_findings(out.findings)
    return out


def sample(candidates: pa.Table, size: int) -> pa.Table:
    """The ``size`` candidates of smallest rank (then kind, actor, hour): what every part's
    own smallest ranks give together."""
    order = [(c, "ascending") for c in ("rank", "kind", "actor", "hour")]
    names = set(candidates.column_names)
    return candidates.sort_by([o for o in order if o[0] in names]).slice(0, size)


def detect_lake(
    lake: Lake,
    det: Detector,
    since: datetime,
    until: datetime,
    history_from: datetime | None,
    *,
    buckets: int | None,
    shuffle: int | None = None,
) -> tuple[Found, dict[str, int]]:
    """``det`` over [since, until) of ``lake`` as ``pipeline.detect`` reads it, detected
    bucket by bucket (``detect_parts``), and its counts."""
    from pipeline.detect import history_start, read_baseline, read_window

    keys = key_columns(det)
    window = read_window(lake, det, since, until, extra=keys)
    base_start = history_start(det, since, history_from)
    baseline = read_baseline(lake, det, base_start, since, keys) if det.lookback else None
    found = detect_parts(
        det,
        window,
        baseline,
        start=since,
        end=until,
        baseline_start=base_start,
        buckets=buckets,
        shuffle=shuffle,
    )
    counts = {
        "window_events": window.num_rows,
        "baseline_events": baseline.num_rows if baseline is not None else 0,
        "findings": found.findings.num_rows,
    }
    return found, counts
