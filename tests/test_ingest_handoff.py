"""Workers hand rows to the parent through scratch files: the same rows, and nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import parse_config
from pipeline.ingest import handoff
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


def test_a_batch_through_a_file_is_the_batch_decoded_in_process(tmp_path: Path) -> None:
    cfg = parse_config({}, environ={})
    refs, _ = list_inputs([str(inputs(tmp_path / "in"))])
    (batch,) = make_batches(refs, cfg.ingest.batch_input_bytes)
    here = decode_batch(batch, cfg.ingest, "tenantId")
    sent = handoff.decode_to_file(batch, cfg.ingest, "tenantId", str(tmp_path))
    assert sent.rows.num_rows == 0 and sent.rows_file is not None
    got = handoff.load_rows(sent)
    assert got.rows.equals(here.rows)
    assert (got.sessions, got.quarantine, got.records_in) == (
        here.sessions,
        here.quarantine,
        here.records_in,
    )
    assert got.rows["raw"].num_chunks == 1  # so the parent can take it a partition at a time
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
