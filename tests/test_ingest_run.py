"""An ingest run (``run``): re-runs, duplicates, crashes half way, workers, batches mixing sources,
and names from logs kept out of the lake's paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest.run import ingest
from tests import logfactory as lf
from tests.ingestlake import lake_files, rows, run
from tests.pooled import pooled_config


def test_rerun_changes_nothing_and_skips_ingested_objects(tmp_path: Path) -> None:
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.assume_role(), lf.ct(), lf.ct()])
    first = run(tmp_path / "lake", tmp_path / "in")
    before = lake_files(tmp_path / "lake")
    again = run(tmp_path / "lake", tmp_path / "in")
    assert (again["files_skipped"], again["records_in"]) == (1, 0)
    assert lake_files(tmp_path / "lake") == before
    assert first["ingested"] == 3


def test_duplicate_event_ids_dropped_within_and_across_runs(tmp_path: Path) -> None:
    rec = lf.ct(event_id="dup-1")
    lf.delivery_file(tmp_path / "a" / "1.json.gz", [rec, rec])
    lf.delivery_file(tmp_path / "b" / "2.json.gz", [rec, lf.ct()])  # re-delivered elsewhere
    s1 = run(tmp_path / "lake", tmp_path / "a")
    s2 = run(tmp_path / "lake", tmp_path / "b")
    assert (s1["ingested"], s1["duplicates"]) == (1, 1)
    assert (s2["ingested"], s2["duplicates"]) == (1, 1)
    assert [r["event_id"] for r in rows(tmp_path / "lake")].count("dup-1") == 1


def test_same_placeholder_id_with_other_content_is_not_a_duplicate(tmp_path: Path) -> None:
    # Test corpora reuse ids like "1" for different events: dropping them would lose records.
    a = lf.ct(event_id="1", time="2026-11-16T10:00:00Z")
    b = lf.ct("PutObject", event_id="1", time="2026-11-16T10:00:00Z")
    lf.delivery_file(tmp_path / "x.json.gz", [a, b])
    assert run(tmp_path / "lake", tmp_path / "x.json.gz")["ingested"] == 2


def test_run_that_dies_half_way_is_rerun_to_the_same_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(4):
        lf.delivery_file(
            tmp_path / "in" / f"{i}.json.gz",
            [lf.assume_role(new_key_id=f"ASIAKEY{i:011d}"), lf.ct(key_id=f"ASIAKEY{i:011d}")],
        )
    cfg = pooled_config(ingest={"batch_input_bytes": 1})
    run(tmp_path / "clean", tmp_path / "in", cfg=cfg)

    from pipeline.lake import Lake

    real_write = Lake.write_table
    calls = {"n": 0}

    def dying_write(self: Lake, rel: str, table: Any, sort_by: Any = None) -> None:
        if rel.startswith("_state/ingested/"):
            calls["n"] += 1
            if calls["n"] == 3:  # dies after the third batch's data files, before its state
                raise KeyboardInterrupt
        real_write(self, rel, table, sort_by)

    monkeypatch.setattr(Lake, "write_table", dying_write)
    with pytest.raises(KeyboardInterrupt):
        ingest([str(tmp_path / "in")], str(tmp_path / "crashy"), cfg, workers=1)
    monkeypatch.setattr(Lake, "write_table", real_write)
    resumed = run(tmp_path / "crashy", tmp_path / "in", cfg=cfg)
    assert resumed["files_skipped"] == 2
    assert lake_files(tmp_path / "crashy") == lake_files(tmp_path / "clean")


def test_workers_give_the_same_lake_as_one_process(tmp_path: Path) -> None:
    for i in range(6):
        lf.delivery_file(
            tmp_path / "in" / f"{i}.json.gz",
            [lf.assume_role(tenant=f"t000{i}", new_key_id=f"ASIAKEY{i:011d}")]
            + [lf.ct(key_id=f"ASIAKEY{(i + 5) % 6:011d}") for _ in range(3)],
        )
    cfg = pooled_config(ingest={"batch_input_bytes": 1})
    ingest([str(tmp_path / "in")], str(tmp_path / "one"), cfg, workers=1)
    ingest([str(tmp_path / "in")], str(tmp_path / "two"), cfg, workers=2)
    assert lake_files(tmp_path / "one") == lake_files(tmp_path / "two")


def test_one_batch_mixing_sources_equals_one_batch_per_file(tmp_path: Path) -> None:
    lf.delivery_file(
        tmp_path / "in" / "ct.json.gz",
        [lf.assume_role(tenant="t0007"), lf.ct(key="tenants/t0008/x"), lf.ct("PutObject")],
    )
    lf.lines_file(
        tmp_path / "in" / "api.log",
        [lf.access_log(tenant_path="t0002", claim="t0001"), lf.access_log(status=403)],
        cwl_export=True,
    )
    lf.lines_file(tmp_path / "in" / "auth.log", [lf.authorizer_log(), lf.authorizer_log()])
    run(tmp_path / "mixed", tmp_path / "in")
    per_file = pooled_config(ingest={"batch_input_bytes": 1})
    run(tmp_path / "split", tmp_path / "in", cfg=per_file)

    def table(lake: Path) -> list[tuple[Any, ...]]:
        keep = ("source", "event_id", "action", "actor_tenant", "target_tenant", "outcome")
        return sorted(tuple(r[k] for k in keep) for r in rows(lake))

    mixed = table(tmp_path / "mixed")
    assert mixed == table(tmp_path / "split")
    assert sorted({r[0] for r in mixed}) == ["apigateway", "authorizer", "cloudtrail"]
    assert [r[3:5] for r in mixed if r[2] == "GetObject"] == [("t0007", "t0008")]


def test_tenant_ids_from_logs_never_become_paths(tmp_path: Path) -> None:
    evil = lf.ct(key="tenants/../../../../etc/x/invoices/1.pdf")
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.assume_role(tenant="../../escape"), evil])
    run(tmp_path / "lake", tmp_path / "in")
    written = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(str(p).startswith(str(tmp_path.resolve())) for p in written)
    assert not (tmp_path / "escape").exists()
    r = next(r for r in rows(tmp_path / "lake") if r["action"] == "GetObject")
    assert r["actor_tenant"] == "../../escape"  # kept as data, exactly
