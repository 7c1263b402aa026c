"""The quarantine (``quarantine``): bad inputs kept with their reasons, floods of bad lines counted
in bounded memory, entries bounded per batch, older lakes' entries read."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.config import Config, IngestConfig
from pipeline.ingest.reading import Reading
from pipeline.lake import read_quarantine
from tests import logfactory as lf
from tests.ingestlake import peak_traced, quarantine_reasons, run
from tests.pooled import pooled_config


def test_bad_inputs_are_quarantined_with_reasons(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    good = gzip.compress(json.dumps({"Records": [lf.ct() for _ in range(50)]}).encode())
    (d / "truncated.json.gz").write_bytes(good[: len(good) // 2])
    (d / "latin1.json").write_bytes(b'{"Records": [{"eventName": "Get\xe9"}]}')
    (d / "deep.json").write_bytes(b"[" * 5000 + b"]" * 5000)
    (d / "empty.json").write_bytes(b"")
    (d / "bomb.json.gz").write_bytes(gzip.compress(b" " * (64 << 20)))
    big = lf.ct()
    big["requestParameters"]["padding"] = "x" * (10 << 20)
    (d / "huge.json").write_text(json.dumps({"Records": [big, lf.ct()]}))
    (d / "notjson.txt").write_text("Traceback (most recent call last):\n")
    (d / "platform.log").write_text("START RequestId: 1 Version: $LATEST\n")
    cfg = pooled_config(ingest={"max_decompressed_bytes": 32 << 20})
    s = run(tmp_path / "lake", d, cfg=cfg)
    reasons = quarantine_reasons(tmp_path / "lake")
    assert reasons["truncated.json.gz"] == "truncated_gzip"
    assert reasons["latin1.json"] == "invalid_utf8"
    assert reasons["deep.json"] == "too_deep"
    assert reasons["empty.json"] == "empty_input"
    assert reasons["bomb.json.gz"] == "decompressed_too_large"
    assert reasons["huge.json"] == "record_too_large"
    assert reasons["notjson.txt"] == "not_json"
    assert reasons["platform.log"] == "lambda_platform_line"
    assert s["ingested"] == 1  # the normal record next to the huge one


def test_a_flood_of_bad_lines_is_counted_line_by_line_and_kept_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """A few kilobytes of gzip that inflate to 100,000 lines of garbage, beside a good file: every
    line is counted under its reason; the first lines of the input are entries one by one, the
    rest one entry that says how many it stands for, and decoding stays within megabytes."""
    from pipeline.ingest import decode, quarantine
    from pipeline.ingest.sources import list_inputs

    lines = 100_000
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.log.gz").write_bytes(gzip.compress(b"x\n" * lines))
    lf.delivery_file(tmp_path / "in" / "good.json.gz", [lf.ct(), lf.ct("PutObject")])
    assert (tmp_path / "in" / "bad.log.gz").stat().st_size < 4096

    refs, _ = list_inputs([str(tmp_path / "in")])
    batch = decode.Batch(tuple(refs))
    decoded, peak = peak_traced(
        lambda: decode.decode_batch(batch, IngestConfig(), Reading.of(Config()))
    )
    assert isinstance(decoded, decode.Decoded)
    # One by one, each entry of these would take ~250 bytes: ~25 MB for 100,000.
    assert peak < 8 << 20, f"{peak:,} bytes allocated to decode {lines:,} bad lines"

    s = run(tmp_path / "lake", tmp_path / "in")
    (reason,) = s["quarantined"]
    assert s["quarantined"] == {reason: lines} and s["ingested"] == 2
    entries = read_quarantine(str(tmp_path / "lake")).to_pylist()
    assert sum(e["records"] for e in entries) == lines
    assert len(entries) == quarantine.KEPT_PER_INPUT + 1
    assert [e["position"] for e in entries[:3]] == [1, 2, 3]
    gathered = entries[-1]
    assert gathered["records"] == lines - quarantine.KEPT_PER_INPUT
    assert gathered["position"] == quarantine.KEPT_PER_INPUT + 1
    assert f"{lines - quarantine.KEPT_PER_INPUT:,} more records" in gathered["detail"]
    assert gathered["raw"].startswith(b"x\nx\n")
    assert len(gathered["raw"]) <= IngestConfig().max_record_bytes


def test_a_quarantine_written_before_the_records_column_reads_as_one_record_an_entry(
    tmp_path: Path,
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.log").write_text("not json\nnor this\n")
    run(tmp_path / "lake", tmp_path / "in")
    (path,) = (tmp_path / "lake" / "quarantine").glob("*.parquet")
    pq.write_table(pq.read_table(path).drop_columns(["records"]), path)  # as an older lake's
    entries = read_quarantine(str(tmp_path / "lake"))
    assert entries.column("records").to_pylist() == [1, 1]
    assert entries.column("reason").to_pylist() == ["not_json", "not_json"]


def test_a_batch_keeps_a_bounded_number_of_entries_one_by_one() -> None:
    from pipeline.ingest.quarantine import KEPT_PER_BATCH, KEPT_PER_INPUT, QuarantineLog

    log = QuarantineLog(keep=100)
    inputs = KEPT_PER_BATCH // KEPT_PER_INPUT + 3
    for i in range(inputs):
        for n in range(KEPT_PER_INPUT + 5):
            log.append((f"in-{i}", n, "invalid_json", "bad", b"{" * 60))
    entries = log.finish()
    assert sum(e.records for e in entries) == inputs * (KEPT_PER_INPUT + 5)
    assert sum(e.records == 1 for e in entries) == KEPT_PER_BATCH
    gathered = [e for e in entries if e.records > 1]
    assert {e.input_uri for e in gathered} == {f"in-{i}" for i in range(inputs)}
    assert all(len(e.raw) <= 100 + 61 for e in gathered)  # keep, and the line that passed it
