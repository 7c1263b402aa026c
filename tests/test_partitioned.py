"""Partitioned detection (``pipeline.partitioned``) equals the whole run, detector by detector:
what proves each detector's ``partitions`` (and the histories summarized in parts), on
``sample_logs/`` and on a small simulated world with every attack.

Each detector is run whole (``pipeline.detect._detect_one``, what ``run_detect`` does) and
bucket by bucket: one bucket, seven by a hash of the key, one per key, and seven with each
bucket's rows in a random order (a detector must not depend on the order its rows come in).
The findings must be the same rows, every column, in the same order.
"""

from __future__ import annotations

import pickle
import zlib
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

import detectors
from detectors.access_pattern import AccessPattern
from detectors.base import Partition, merge_state, two_step
from detectors.token_replay import TokenReplay
from pipeline.config import Config
from pipeline.detect import (
    _detect_one,
    earliest_event,
    history_start,
    parts_skipped,
    read_baseline,
    resolve_window,
)
from pipeline.lake import Lake
from pipeline.partitioned import detect_lake, detect_parts, key_columns, partition_key
from tests.detectlakes import TwoKinds, sample_lake, world_lake

pytestmark = pytest.mark.slow
DETECTORS = tuple(detectors.BUILTIN)
# Those whose work splits (partitions, or a history summarized in parts): the others are one
# bucket however many are asked for.
SPLIT = tuple(
    d
    for d in DETECTORS
    if detectors.load(d).partitions or hasattr(detectors.load(d), "summary_passes")
)


class ByAddress(AccessPattern):
    """access_pattern declared by address instead of the actor's tenant: wrong."""

    partitions = (Partition(("source_ip",)),)


class TokenUnlinked(TokenReplay):
    """token_replay by fingerprint alone: a decision's access-log line (no token) is elsewhere."""

    partitions = (Partition(("actor_session",)),)


class Run:
    """A lake, its configuration, its attack day and where its history begins."""

    def __init__(self, root: str, cfg: Config) -> None:
        self.lake, self.cfg = Lake(root), cfg
        self.since, self.until = resolve_window(self.lake, None, None)
        self.history_from: datetime | None = earliest_event(self.lake)

    def detector(self, detector_id: str) -> Any:
        return detectors.from_config(self.cfg, (detector_id,))[detector_id]

    def whole(self, det: Any) -> tuple[pa.Table, dict[str, int]]:
        return _detect_one(self.lake, det, self.since, self.until, self.history_from)

    def parts(self, det: Any, buckets: int | None, shuffle: int | None = None) -> Any:
        return detect_lake(
            self.lake,
            det,
            self.since,
            self.until,
            self.history_from,
            buckets=buckets,
            shuffle=shuffle,
        )


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return Run(*sample_lake(tmp_path_factory.mktemp("sample") / "lake"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("world")
    return Run(*world_lake(root / "lake", root / "logs"))


def same(got: pa.Table, want: pa.Table) -> None:
    """The same findings, row for row (a readable difference when not)."""
    assert got.schema == want.schema
    assert got.to_pylist() == want.to_pylist()


@pytest.mark.parametrize(
    ("detector_id", "buckets"),
    [(d, 1) for d in DETECTORS if d not in SPLIT] + [(d, b) for d in SPLIT for b in (1, 7, None)],
)
def test_the_world_detected_bucket_by_bucket_is_the_whole_run(
    world: Run, detector_id: str, buckets: int | None
) -> None:
    whole, counts = world.whole(world.detector(detector_id))
    det = world.detector(detector_id)
    found, got_counts = world.parts(det, buckets)
    assert whole.num_rows, f"{detector_id} finds nothing in the world: nothing is compared"
    same(found.findings, whole)
    assert got_counts == counts


@pytest.mark.parametrize("detector_id", DETECTORS)
def test_sample_logs_detected_bucket_by_bucket_are_the_whole_run(
    sample: Run, detector_id: str
) -> None:
    whole_det = sample.detector(detector_id)
    whole, _ = sample.whole(whole_det)
    # One bucket per key, for tenant_switching, is thousands of sessions and addresses: the
    # world's test runs it.
    if detector_id not in SPLIT:
        runs: tuple[int | None, ...] = (1,)
    else:
        runs = (1, 7) if detector_id == "tenant_switching" else (1, 7, None)
    for buckets in runs:
        found, _ = sample.parts(sample.detector(detector_id), buckets)
        same(found.findings, whole)
        assert {f"{detector_id}:{k}": v for k, v in found.skipped.items()} == parts_skipped(
            detector_id, whole_det
        )


@pytest.mark.parametrize("detector_id", DETECTORS)
def test_no_detector_depends_on_the_order_of_its_rows(world: Run, detector_id: str) -> None:
    whole, _ = world.whole(world.detector(detector_id))
    for seed in (3, 11):
        found, _ = world.parts(world.detector(detector_id), 7, shuffle=seed)
        same(found.findings, whole)


def test_a_declaration_that_breaks_the_promise_is_caught(world: Run) -> None:
    """access_pattern by address instead of the actor's tenant: an actor's peers (and its own
    events from another address) are then in other buckets, and the findings differ."""
    base = world.detector("access_pattern")
    wrong = ByAddress(base.settings, base.relationships)
    wrong.classes = base.classes
    whole, _ = world.whole(base)
    found, _ = world.parts(wrong, 7)
    assert found.findings.to_pylist() != whole.to_pylist()


@pytest.mark.parametrize("detector_id", [d for d in DETECTORS if detectors.load(d).window_only])
def test_the_rows_a_detector_leaves_unread_change_no_finding(world: Run, detector_id: str) -> None:
    """A detector's ``window_only`` (rows it never reads of its window) is only a saving: its
    findings over the whole window are the same, evidence included."""
    from pipeline.detect import read_window, window_columns
    from pipeline.lake import read_events

    det = world.detector(detector_id)
    full = read_events(
        world.lake, world.since, world.until, sources=det.sources, columns=window_columns(det)
    )
    kept = read_window(world.lake, det, world.since, world.until)
    assert 0 < kept.num_rows < full.num_rows / 2
    start = history_start(det, world.since, world.history_from)
    base = read_baseline(world.lake, det, start, world.since)
    bounds = {"start": world.since, "end": world.until, "baseline_start": start}
    want = world.detector(detector_id).detect(base, full, **bounds)
    assert want.num_rows
    same(det.detect(base, kept, **bounds), want)


def test_a_linked_event_takes_its_lead_s_key() -> None:
    t = pa.table(
        {
            "source": ["authorizer", "apigateway", "apigateway", "authorizer", "apigateway",
                       "apigateway", "authorizer", "apigateway", "authorizer"],
            "request_id": ["r1", "r1", "r2", "r3", "r3", None, "r4", "r4", "r4"],
            "actor_session": ["t1", None, "own", "t3", "x", "y", "t9", None, "t5"],
        }
    )  # fmt: skip
    part = Partition(("actor_session",), link="request_id", lead="authorizer")
    assert partition_key(t, part).to_pylist() == [
        "t1", "t1",  # the access-log line goes with its decision's token
        "own",  # no decision for r2: its own key
        "t3", "t3",  # even over a key of its own
        "y",  # no request id
        "t9", "t5", "t5",  # two decisions: each keeps its own, the line takes the smallest
    ]  # fmt: skip
    assert (
        partition_key(t, Partition(("actor_session",))).to_pylist()
        == t["actor_session"].to_pylist()
    )


def test_token_replay_needs_its_requests_linked(world: Run) -> None:
    """By fingerprint alone, a decision's client (on the access-log line of its request, which
    names no token) is in another bucket, and the findings differ."""
    base = world.detector("token_replay")
    whole, _ = world.whole(base)
    found, _ = world.parts(TokenUnlinked(base.settings, base.relationships), 7)
    assert found.findings.to_pylist() != whole.to_pylist()


def test_each_pass_keeps_the_findings_it_owns(world: Run) -> None:
    base = world.detector("cross_tenant_access")
    det = TwoKinds(base.settings, base.relationships)
    whole, _ = world.whole(base)
    found, _ = world.parts(det, 7)
    same(found.findings, whole)
    kinds = {orjson.loads(e)["kind"] for e in whole["evidence"].to_pylist()}
    assert {"cross_tenant", "break_glass_ticket"} <= kinds  # more than one pass found something


def test_which_detectors_split(world: Run) -> None:
    assert SPLIT == (
        "cross_tenant_access",
        "tenant_switching",
        "authorizer_cache",
        "token_replay",
        "access_pattern",
    )


def test_tenant_switching_is_two_step_and_fit_is_its_parts(world: Run) -> None:
    det = world.detector("tenant_switching")
    ts = two_step(det)
    assert ts is not None
    assert [p.by for p in ts.summary_passes()] == [
        ("actor_principal",),
        ("actor_session",),
        ("source_ip",),
    ]
    assert two_step(world.detector("access_pattern")) is None


def _pieces(table: pa.Table, column: str, n: int) -> list[pa.Table]:
    bucket = np.array([zlib.crc32(str(v).encode()) % n for v in table[column].to_pylist()])
    return [table.filter(pa.array(bucket == i)) for i in range(n)]


def test_authorizer_cache_learns_the_same_from_its_history_in_parts(world: Run) -> None:
    """Its 14 days are counted: by request id in seven parts, their rows merged or not, they
    teach what the whole history teaches; split apart from their decisions (by source), the
    requests are all cache hits and the misses are lost."""
    det = world.detector("authorizer_cache")
    assert [p.by for p in det.summary_passes()] == [("request_id",)]
    start = history_start(det, world.since, world.history_from)
    baseline = read_baseline(world.lake, det, start, world.since, key_columns(det))
    span = (pd.Timestamp(start), pd.Timestamp(world.since))

    def learnt(state: pa.Table) -> tuple[dict[Any, float], dict[str, Any], dict[str, int]]:
        det.learn(det.summary_schema.empty_table(), span)
        det.absorb(state)
        return det.counts_.to_dict(), det.shares_, det.tokens_

    whole = learnt(det.summarize(0, baseline, None, span))
    assert sum(whole[0].values()) > 100 and whole[1]["route"] and whole[1]["tenant"] and whole[2]
    parts = pa.concat_tables(
        [det.summarize(0, p, None, span) for p in _pieces(baseline, "request_id", 7)]
    )
    merged = merge_state(parts, det.summary_merge)
    assert merged.num_rows < parts.num_rows
    assert learnt(parts) == whole
    assert learnt(merged) == whole
    apart = pa.concat_tables(
        [det.summarize(0, p, None, span) for p in _pieces(baseline, "source", 2)]
    )
    assert learnt(apart)[0] == {}


def test_every_detector_pickles_to_a_copy_that_finds_the_same(world: Run) -> None:
    """Executors get detectors pickled (Sigma's compiled rules, relationships and tickets
    included): a copy must detect as the original does."""
    for detector_id in DETECTORS:
        det = world.detector(detector_id)
        copy = pickle.loads(pickle.dumps(det))  # noqa: S301 - our own object
        assert type(copy) is type(det) and copy.settings == det.settings
        same(world.whole(copy)[0], world.whole(det)[0])


def test_an_empty_window_gives_no_findings_bucket_by_bucket(world: Run) -> None:
    from pipeline import schema

    det = world.detector("access_pattern")
    empty = schema.empty(schema.EVENTS)
    found = detect_parts(
        det,
        empty,
        None,
        start=world.since,
        end=world.until,
        baseline_start=world.since,
        buckets=7,
    )
    assert found.findings.num_rows == 0
    assert found.findings.schema == schema.FINDINGS
