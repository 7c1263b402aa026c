"""Decoding a batch (``decode``), with the C decoder and with the Python decoder: records too large
or nested too deeply are quarantined alone."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from pipeline.lake import read_quarantine
from tests import logfactory as lf
from tests.ingestlake import rows, run, with_nesting
from tests.pooled import pooled_config


@pytest.mark.parametrize("native", ["1", "0"])
def test_a_record_too_large_keeps_its_first_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    monkeypatch.setenv("TENANTWATCH_NATIVE", native)
    big = lf.ct(userAgent="x" * 10_000)
    text = json.dumps(big).encode()
    lf.delivery_file(tmp_path / "in" / "delivery.json.gz", [lf.ct(), big])
    lf.lines_file(tmp_path / "in" / "lines.log", [big, lf.ct()])
    cfg = pooled_config(ingest={"max_record_bytes": 4096})
    s = run(tmp_path / "lake", tmp_path / "in", cfg=cfg)
    assert (s["records_in"], s["ingested"], s["quarantined"]) == (4, 2, {"record_too_large": 2})
    entries = read_quarantine(str(tmp_path / "lake")).to_pylist()
    assert [(os.path.basename(e["input_uri"]), e["position"]) for e in entries] == [
        ("delivery.json.gz", 1),
        ("lines.log", 1),
    ]
    for e in entries:
        assert e["raw"] == text[:4096]
        assert e["detail"] == (
            "over ingest.max_record_bytes (4,096); "
            f"raw keeps the first 4,096 of {len(text):,} bytes"
        )


@pytest.mark.parametrize("native", ["1", "0"])
def test_a_record_nested_too_deeply_does_not_take_its_files_other_records_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    """Anyone whose API call CloudTrail records could nest its parameters past what a parser
    reads; if that quarantined the whole delivery file, the file's other events (another
    principal's cross-tenant access) would never reach the detectors."""
    monkeypatch.setenv("TENANTWATCH_NATIVE", native)
    first, last = lf.ct("GetObject"), lf.ct("PutObject", key="tenants/t0002/x")
    deep = with_nesting(json.dumps(lf.ct("ListObjects")), 3000)
    records = f"[{json.dumps(first)}, {deep}, {json.dumps(last)}]"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ct.json.gz").write_bytes(
        gzip.compress(b'{"Records": %b}' % records.encode())
    )
    (tmp_path / "in" / "array.json").write_text(records)
    s = run(tmp_path / "lake", tmp_path / "in")
    assert (s["ingested"], s["duplicates"], s["quarantined"]) == (2, 2, {"too_deep": 2})
    assert {r["event_id"] for r in rows(tmp_path / "lake")} == {first["eventID"], last["eventID"]}
    entries = read_quarantine(str(tmp_path / "lake")).to_pylist()
    assert [(e["position"], e["raw"]) for e in entries] == [(1, deep.encode())] * 2
    # A document that is broken as well as deep is still one entry for the file.
    (tmp_path / "in2").mkdir()
    (tmp_path / "in2" / "broken.json").write_text('{"Records": ' + records[:-1] + ", ")
    s = run(tmp_path / "lake2", tmp_path / "in2")
    assert s["quarantined"] == {"too_deep": 1} and s["records_in"] == 1
