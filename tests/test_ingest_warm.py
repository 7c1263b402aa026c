"""A warm process ingesting object after object into the same hour (the S3-triggered function):
the dedup keys of the hour's files are read once per file and process (``seen.file_keys``), and
duplicates are still dropped against every file of the hour, whichever run wrote it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipeline.ingest import seen
from pipeline.lake import Lake
from tests import logfactory as lf
from tests.ingestlake import rows, run


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    got: Counter[str] = Counter()
    read = Lake.read_event_hour

    def counted(self: Lake, partition: str, rel: str, columns: list[str]) -> object:
        got[rel] += 1
        return read(self, partition, rel, columns)

    monkeypatch.setattr(Lake, "read_event_hour", counted)
    return got


def test_each_file_of_an_hour_is_read_once_by_a_warm_process(
    tmp_path: Path, reads: Counter[str]
) -> None:
    lake = tmp_path / "lake"
    for i in range(4):  # four objects of one hour, one run each
        lf.delivery_file(
            tmp_path / f"in{i}" / f"{i}.json.gz", [lf.ct(time=f"2026-11-16T10:0{i}:00Z")]
        )
        run(lake, tmp_path / f"in{i}")
    files = Lake(str(lake)).event_hour_files("events/source=cloudtrail/date=2026-11-16/hour=10")
    assert len(files) == 4
    # Each run read the files of the runs before it, each of them for the first time: three
    # files, once each (re-reading them all would be 1 + 2 + 3 reads).
    assert len(reads) == 3 and set(reads) < set(files)
    assert set(reads.values()) == {1}


def test_a_duplicate_is_dropped_against_files_read_by_an_earlier_run(
    tmp_path: Path, reads: Counter[str]
) -> None:
    lake = tmp_path / "lake"
    first = lf.ct(event_id="seen-1", time="2026-11-16T10:00:00Z")
    lf.delivery_file(tmp_path / "a" / "1.json.gz", [first])
    lf.delivery_file(tmp_path / "b" / "2.json.gz", [lf.ct(time="2026-11-16T10:05:00Z")])
    lf.delivery_file(tmp_path / "c" / "3.json.gz", [first, lf.ct(time="2026-11-16T10:09:00Z")])
    run(lake, tmp_path / "a")
    run(lake, tmp_path / "b")  # reads a's keys: held from now on
    again = run(lake, tmp_path / "c")  # a's keys from memory, b's read
    assert (again["ingested"], again["duplicates"]) == (1, 1)
    assert [r["event_id"] for r in rows(lake)].count("seen-1") == 1
    assert set(reads.values()) == {1}


def test_the_keys_held_stay_within_their_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seen, "_FILE_KEYS_MAX", 2)
    monkeypatch.setattr(seen, "_FILE_KEYS", type(seen._FILE_KEYS)())
    monkeypatch.setattr(seen, "_file_keys_size", 0)
    lake = tmp_path / "lake"
    for i in range(4):
        lf.delivery_file(
            tmp_path / f"in{i}" / f"{i}.json.gz", [lf.ct(time=f"2026-11-16T10:0{i}:00Z")]
        )
        run(lake, tmp_path / f"in{i}")
    assert seen._file_keys_size <= 2
    assert len(rows(lake)) == 4
