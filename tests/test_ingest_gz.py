"""Decompression (``gz``): bombs stopped at the limit without allocating past it, the output held
once, a truncated stream read as far as its records are whole."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from pipeline.config import IngestConfig
from pipeline.ingest import gz
from tests import logfactory as lf
from tests.ingestlake import entries_by_input, gzip_of_zeros, peak_traced, rows, run
from tests.pooled import pooled_config


def test_the_default_decompression_limit_stops_a_bomb_without_allocating_past_it() -> None:
    limit = IngestConfig().max_decompressed_bytes
    # Decoding a file holds several times its decompressed size, and ingestion stays under 1 GB.
    assert limit <= 128 << 20
    bomb = gzip_of_zeros(limit + (16 << 20))
    err, peak = peak_traced(lambda: gz.maybe_decompress(bomb, limit))
    assert isinstance(err, gz.GzipError)
    assert err.reason == "decompressed_too_large"
    assert "ingest.max_decompressed_bytes" in str(err)  # the setting to raise
    assert limit < len(err.partial) <= limit + (1 << 20)
    assert peak < limit * 1.15 + (4 << 20), f"{peak:,} bytes allocated for a {limit:,} limit"


def test_decompressing_holds_the_output_once() -> None:
    data = gzip_of_zeros(40 << 20)
    out, peak = peak_traced(lambda: gz.maybe_decompress(data, 64 << 20))
    assert out == bytes(40 << 20)
    assert peak < (40 << 20) * 1.15 + (4 << 20), f"{peak:,} bytes allocated for 40 MiB"


def test_bombs_stop_at_the_configured_limit_in_a_file_and_in_a_cloudwatch_payload(
    tmp_path: Path,
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "bomb.json.gz").write_bytes(gzip_of_zeros(8 << 20))
    payload = base64.b64encode(gzip_of_zeros(8 << 20)).decode()
    good = lf.cwl_subscription([lf.authorizer_log()])
    lines = [{"awslogs": {"data": payload}}, good]
    (d / "cwl.json").write_text("".join(json.dumps(o) + "\n" for o in lines))
    cfg = pooled_config(ingest={"max_decompressed_bytes": 1 << 20})
    s = run(tmp_path / "lake", d, cfg=cfg)
    assert (s["records_in"], s["ingested"], s["quarantined_total"]) == (3, 1, 2)
    q = entries_by_input(tmp_path / "lake")
    assert q["bomb.json.gz"]["reason"] == "decompressed_too_large"
    assert q["cwl.json"]["reason"] == "bad_cloudwatch_payload"
    for entry in q.values():
        assert "inflates past 1,048,576 bytes" in entry["detail"]
        assert "ingest.max_decompressed_bytes" in entry["detail"]
    # The file's first bytes are kept, the rest of the bomb is not.
    assert q["bomb.json.gz"]["raw"] == bytes(1 << 20)
    assert q["bomb.json.gz"]["detail"].endswith("raw keeps the first 1,048,576 of 1,048,577 bytes")


@pytest.mark.parametrize("native", ["1", "0"])
def test_a_truncated_gzip_gives_its_whole_records_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    """What a cut stream decompressed to is read as far as its records are whole: a delivery
    file's records before the cut, a line file's lines; the rest is one entry, from the cut
    record on (its first ``max_record_bytes``), at the position of the first record not read."""
    monkeypatch.setenv("TENANTWATCH_NATIVE", native)
    d = tmp_path / "in"
    d.mkdir()
    records = [lf.ct(key=f"tenants/t0001/{i}") for i in range(100)]
    delivery = json.dumps({"Records": records}).encode()
    packed = gzip.compress(delivery)
    (d / "delivery.json.gz").write_bytes(packed[: len(packed) * 3 // 4])
    logs = [lf.access_log() for _ in range(100)]
    lines = b"".join(json.dumps(x).encode() + b"\n" for x in logs)
    packed = gzip.compress(lines)
    (d / "access.log.gz").write_bytes(packed[: len(packed) // 2])
    pretty = json.dumps(records[0], indent=2).encode()  # one record, pretty-printed
    (d / "pretty.json.gz").write_bytes(gzip.compress(pretty)[:-30])
    cfg = pooled_config(ingest={"max_record_bytes": 4096})
    s = run(tmp_path / "lake", d, cfg=cfg)
    assert s["quarantined"] == {"truncated_gzip": 3}

    ids = {r["event_id"] for r in rows(tmp_path / "lake")}
    q = entries_by_input(tmp_path / "lake")
    for name, originals, text, key, first in (
        ("delivery.json.gz", records, delivery, "eventID", 0),  # positions: array indexes
        ("access.log.gz", logs, lines, "requestId", 1),  # line numbers
    ):
        before = q[name]["position"] - first
        assert 0 < before < len(originals), name
        assert ids >= {x[key] for x in originals[:before]}, name  # the whole records, read
        assert not ids & {x[key] for x in originals[before:]}, name
        assert f"the {before:,} records or lines before this rest were read" in q[name]["detail"]
        rest = q[name]["raw"]
        assert 0 < len(rest) <= 4096 and rest in text, name
        # The rest is the first record not read, as far as the cut (after the comma before it).
        assert json.dumps(originals[before]).encode().startswith(rest.lstrip(b", \n")), name
    assert s["ingested"] == q["delivery.json.gz"]["position"] + q["access.log.gz"]["position"] - 1
    # A record spread over lines cannot be read before its end: the file is one entry.
    assert q["pretty.json.gz"]["position"] == -1
    assert pretty.startswith(q["pretty.json.gz"]["raw"])
    assert q["pretty.json.gz"]["detail"].startswith("the gzip stream ends before its trailer")
