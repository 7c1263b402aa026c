"""The evaluation's tenant-resolution score: what counts as resolved, unresolved and wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from eval.evaluate import Run, WorldResult, matches, resolution
from eval.paging import Paging, replay, score_pages
from pipeline.simulate.writer import TRUTH
from tests.alertfactory import T0, finding


def _truth(path: Path, rows: list[tuple[str, str, str | None, str | None]]) -> Path:
    cols = list(zip(*rows, strict=True))
    scoped = [a is not None or t is not None for _, _, a, t in rows]
    table = pa.Table.from_arrays(
        [
            pa.array(cols[0]).dictionary_encode().cast(TRUTH.field(0).type),
            pa.array(cols[1]),
            pa.array(cols[2], pa.string()).dictionary_encode().cast(TRUTH.field(2).type),
            pa.array(cols[3], pa.string()).dictionary_encode().cast(TRUTH.field(3).type),
            pa.array(scoped),
        ],
        schema=TRUTH,
    )
    pq.write_table(table, path)
    return path


def _held(source: str, event_id: str, actor: str | None, target: str | None) -> dict:
    return {"source": source, "event_id": event_id, "action": "GetObject",
            "actor_tenant": actor, "target_tenant": target}  # fmt: skip


def test_resolution_counts_each_side_the_truth_names(tmp_path: Path) -> None:
    truth = _truth(
        tmp_path / "truth.parquet",
        [
            ("cloudtrail", "e1", "t1", "t2"),  # both resolved
            ("cloudtrail", "e2", None, "t2"),  # only a target to find: found
            ("cloudtrail", "e3", "t1", "t1"),  # actor missing: unresolved
            ("apigateway", "e4", None, "t3"),  # not in the lake: unresolved
            ("cloudtrail", "e5", None, None),  # no tenant anywhere, and the lake guessed one
            ("authorizer", "e6", "t1", "t2"),  # resolved, but the target is another tenant
        ],
    )
    held = {
        (r["source"], r["event_id"]): r
        for r in (
            _held("cloudtrail", "e1", "t1", "t2"),
            _held("cloudtrail", "e2", None, "t2"),
            _held("cloudtrail", "e3", None, "t1"),
            _held("cloudtrail", "e5", None, "t9"),
            _held("authorizer", "e6", "t1", "t3"),
        )
    }
    r = resolution(held, truth)
    assert (r.events, r.in_lake, r.scoped, r.resolved, r.wrong) == (6, 5, 5, 3, 2)
    assert r.coverage == 3 / 5
    assert r.unresolved == {
        "cloudtrail GetObject: actor": 1,
        "apigateway (not in the lake): target": 1,
    }


def test_a_world_that_cannot_be_ingested_misses_its_targets(tmp_path: Path) -> None:
    truth = _truth(tmp_path / "truth.parquet", [("cloudtrail", "e1", "t1", "t1")])
    world = WorldResult()
    world.add(7, Run(resolution({}, truth), None, "ingest failed: unsupported kind"))
    misses = world.misses()
    assert "seed 7: ingest failed: unsupported kind" in misses
    assert "coverage 0.00% < 99%" in misses


def test_a_detector_no_attack_expects_has_no_recall_target_but_its_pages_count(
    tmp_path: Path,
) -> None:
    truth = _truth(tmp_path / "truth.parquet", [("cloudtrail", "e1", "t1", "t1")])
    held = {("cloudtrail", "e1"): _held("cloudtrail", "e1", "t1", "t1")}
    row = {"labels": 0, "found": 0, "paged": 0, "true": 0, "low": 0, "missed": [], "false": []}
    detection = {
        "negative_violations": [],
        "sigma": dict(row),
        "cross_tenant_access": {**row, "labels": 2, "found": 1, "missed": ["a"]},
    }
    world = WorldResult()
    world.add(7, Run(resolution(held, truth), detection))
    rows = {r["detector"]: r for r in world.rows()}
    assert rows["sigma"]["recall"] is None
    assert world.misses() == ["cross_tenant_access recall 0.500"]
    # A page that matches no attack still costs the detector its precision.
    detection["sigma"] = {**row, "paged": 1, "false": ["stray"]}
    world = WorldResult()
    world.add(7, Run(resolution(held, truth), detection))
    assert "sigma precision 0.000" in world.misses()


def _label(lid: str, kind: str, actor: str, severity: str = "high") -> dict:
    return {"id": lid, "kind": kind, "expected_detector": "cross_tenant_access",
            "expected_severity": severity, "actor": actor, "tenants": ["t0002"],
            "start": "2026-11-16T10:00:00Z", "end": "2026-11-16T11:00:00Z",
            "event_ids": []}  # fmt: skip


def _replayed(tmp_path: Path, findings: list[dict], labels: list[dict]) -> Paging:
    from pipeline import schema
    from pipeline.config import Config

    lake, cfg = str(tmp_path / "lake"), Config()
    replay(lake, cfg, pa.Table.from_pylist(findings, schema=schema.FINDINGS), T0)
    return score_pages(lake, cfg, findings, labels, matches)


def _seen(actor: str, detector: str, ip: str, severity: str = "high") -> dict:
    return finding(
        actor=actor,
        detector=detector,
        severity=severity,
        dedup_key=f"{detector}:x|{actor}",
        evidence=json.dumps({"source_ips": [[ip, 1]], "event_ids": [f"{actor}-{detector}"]}),
    )


def test_pages_per_attack_count_one_story_once_and_a_negatives_page(tmp_path: Path) -> None:
    labels = [
        _label("attack-a", "attack", "usr-a"),
        _label("attack-b", "attack", "usr-b"),
        _label("negative-n", "negative", "usr-n"),
    ]
    findings = [
        _seen("usr-a", "cross_tenant_access", "203.0.113.1"),
        _seen("usr-a", "tenant_switching", "203.0.113.1"),  # same attacker: no second page
        _seen("usr-b", "cross_tenant_access", "203.0.113.2"),
        _seen("usr-n", "cross_tenant_access", "203.0.113.3"),
    ]
    p = _replayed(tmp_path, findings, labels)
    assert (p.attacks, p.paged_once, p.pages, p.escalations) == (2, 2, 2, 0)
    assert p.merged == [] and p.repaged == [] and p.unpaged == []
    assert len(p.negatives_paged) == 1 and p.negatives_paged[0].startswith("negative-n:")


def test_two_attackers_in_one_incident_are_counted_as_wrongly_merged(tmp_path: Path) -> None:
    labels = [_label("attack-a", "attack", "usr-a"), _label("attack-b", "attack", "usr-b")]
    findings = [  # one address, not declared as shared egress: told as one story
        _seen("usr-a", "cross_tenant_access", "203.0.113.1"),
        _seen("usr-b", "cross_tenant_access", "203.0.113.1"),
    ]
    p = _replayed(tmp_path, findings, labels)
    assert p.merged == ["attack-a + attack-b"] and p.pages == 1
