"""Workers: the planning columns reach the parent through scratch files, the raw text stays with
the worker, failures reach the parent, and the lake is the one one process writes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import parse_config
from pipeline.ingest import handoff, prepare, run
from pipeline.ingest.reading import Reading
from pipeline.ingest.run import decode_batch, ingest, make_batches
from pipeline.ingest.sources import list_inputs
from tests import logfactory as lf


def inputs(folder: Path, files: int = 3) -> Path:
    for i in range(files):
        lf.delivery_file(
            folder / f"{i}.json.gz",
            [lf.assume_role(tenant=f"t000{i}", new_key_id=f"ASIAKEY{i:011d}")]
            + [lf.ct(key_id=f"ASIAKEY{i:011d}") for _ in range(3)],
        )
    return folder


def test_a_batch_through_a_file_is_the_batch_decoded_in_process_as_the_plan_reads_it(
    tmp_path: Path,
) -> None:
    cfg = parse_config({}, environ={})
    refs, _ = list_inputs([str(inputs(tmp_path / "in"))])
    (batch,) = make_batches(refs, cfg.ingest.batch_input_bytes)
    here = decode_batch(batch, cfg.ingest, Reading.of(cfg))
    sent = handoff.to_file(here, str(tmp_path), Reading.of(cfg))
    assert sent.rows.num_rows == 0 and sent.rows_file is not None
    got = handoff.load_rows(sent)
    assert got.rows.equals(prepare.plan_rows(here.rows, Reading.of(cfg)))
    assert "raw" not in got.rows.column_names
    assert (got.sessions, got.quarantine, got.records_in) == (
        here.sessions,
        here.quarantine,
        here.records_in,
    )
    assert not list(tmp_path.glob("*.arrow"))


def test_a_run_with_workers_leaves_no_scratch_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(handoff, "_SHARED_MEMORY", shm)
    cfg = parse_config({"ingest": {"batch_input_bytes": 1}}, environ={})
    summary = ingest([str(inputs(tmp_path / "in"))], str(tmp_path / "lake"), cfg, workers=2)
    assert summary["ingested"] == 12
    assert not list(shm.iterdir())


def _lake_files(root: Path) -> dict[str, pa.Table]:
    return {
        str(p.relative_to(root)): pq.read_table(p)
        for p in sorted(root.rglob("*.parquet"))
        if "_state/logs" not in str(p)
    }


def _workload(folder: Path) -> Path:
    """Batches that need each other: sessions learnt in one batch and used in later ones, the
    same events delivered again in later files, several hours per batch."""
    folder.mkdir(parents=True)
    events = [
        [
            lf.ct(
                key_id=f"ASIAKEY{i % 3:011d}",
                time=f"2026-11-16T{10 + (i + j) % 4:02d}:00:00Z",
                event_id=f"e{i}-{j}",
            )
            for j in range(5)
        ]
        for i in range(8)
    ]
    for i in range(8):
        key = f"ASIAKEY{i % 3:011d}"
        recs = [lf.assume_role(tenant=f"t000{i % 3}", new_key_id=key)] if i < 3 else []
        recs += events[i] + (events[i - 4] if i >= 4 else [])  # a re-delivery of earlier events
        lf.delivery_file(folder / f"{i}.json.gz", recs)
    return folder


@pytest.mark.parametrize("budget", [2_000_000, 3])
def test_workers_write_the_lake_one_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """--workers 2 (decoding and writing in workers, planning here) and --workers 1 give the
    same files and summary; also when the dedup index forgets partitions (budget 3 keys) and
    must read them back while this run's own files for them may still be being written."""
    monkeypatch.setattr(run.SeenIndex.__init__, "__defaults__", (budget,))
    cfg = parse_config({"ingest": {"batch_input_bytes": 1}}, environ={})
    src = str(_workload(tmp_path / "in"))
    one = ingest([src], str(tmp_path / "one"), cfg, workers=1)
    two = ingest([src], str(tmp_path / "two"), cfg, workers=2)
    strip = ("elapsed_s", "records_per_s", "workers", "cpu_s", "lake", "finished_at")
    assert {k: v for k, v in one.items() if k not in strip} == {
        k: v for k, v in two.items() if k not in strip
    }
    assert one["duplicates"] == 20 and one["ingested"] == 43
    a, b = _lake_files(tmp_path / "one"), _lake_files(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:
        if name.startswith("_state/ingested"):
            continue  # holds no path of the lake, but let equal tables be equal anyway
        assert a[name].equals(b[name]), name


def _fail(*_: object) -> None:
    raise ValueError("no such batch")


def _die(*_: object) -> None:
    os._exit(3)


@pytest.mark.parametrize(
    ("decode", "error", "message"),
    [(_fail, ValueError, "no such batch"), (_die, RuntimeError, r"worker died \(exit code 3\)")],
)
def test_a_worker_that_fails_or_dies_fails_the_run_and_leaves_nothing_running(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    decode: Callable[..., None],
    error: type[Exception],
    message: str,
) -> None:
    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the workers must inherit the patched decode_batch (fork start method)")
    monkeypatch.setattr(handoff, "decode_batch", decode)
    cfg = parse_config({"ingest": {"batch_input_bytes": 1}}, environ={})
    with pytest.raises(error, match=message) as failed:
        ingest([str(inputs(tmp_path / "in"))], str(tmp_path / "lake"), cfg, workers=2)
    if decode is _fail:  # where in the worker: its traceback, as the cause
        assert isinstance(failed.value.__cause__, handoff.RemoteTraceback)
        assert "_fail" in str(failed.value.__cause__)
    assert not multiprocessing.active_children()
    assert not (tmp_path / "lake" / "_state" / "ingested").exists()


def test_the_summary_says_how_much_cpu_the_main_process_and_the_workers_took(
    tmp_path: Path,
) -> None:
    cfg = parse_config({"ingest": {"batch_input_bytes": 1}}, environ={})
    source = str(inputs(tmp_path / "in"))
    alone = ingest([source], str(tmp_path / "lake1"), cfg, workers=1)
    assert alone["cpu_s"]["main"] > 0 and alone["cpu_s"]["workers"] == 0
    pooled = ingest([source], str(tmp_path / "lake2"), cfg, workers=2)
    assert pooled["cpu_s"]["main"] > 0 and pooled["cpu_s"]["workers"] > 0
