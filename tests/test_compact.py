"""Compaction: a closed folder's small files become a few large ones with every row
kept once, for every reader at every moment (also a compaction killed at random moments, which a
re-run finishes into what one run makes); finding ids, snapshot evidence and the dedup of later
inputs stay as they were; on local lakes and on S3 (moto, with retention in
tests/test_retention.py)."""

from __future__ import annotations

import hashlib
import os
import posixpath
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline import compact
from pipeline.config import Config, parse_config
from pipeline.ingest.run import ingest
from pipeline.lake import COMPACTED, Lake, read_events, read_quarantine
from tests import logfactory as lf
from tests.compactlake import END, SMALL, make_inputs, rows

REPO = Path(__file__).resolve().parents[1]


def built(tmp_path: Path) -> tuple[Lake, Path]:
    inputs = make_inputs(tmp_path / "in")
    ingest([str(inputs)], str(tmp_path / "lake"), SMALL, workers=1)
    return Lake(str(tmp_path / "lake")), inputs


def quarantined(lake: Lake) -> list[str]:
    return sorted(map(str, read_quarantine(lake).column("input_uri").to_pylist()))


def digest(root: Path) -> dict[str, str]:
    """Every data file below ``root`` and its content's hash."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
        if "_tmp" not in p.parts
    }


def test_compaction_keeps_every_row_once_in_few_sorted_files(tmp_path: Path) -> None:
    lake, _ = built(tmp_path)
    before_rows, before_q = rows(lake), quarantined(lake)
    before = len(lake.files("events"))
    done = compact.compact(lake, END)
    assert done.complete and done.written > 0
    after = lake.files("events")
    assert len(after) < before / 3
    assert all(Path(f).name.startswith(COMPACTED) for f in after)
    assert len(lake.files("quarantine")) == 1
    assert rows(lake) == before_rows and quarantined(lake) == before_q
    for f in after:  # sorted as ingestion sorts a file
        t = lake.read_file(f)
        order = [(c, "ascending") for c in compact.EVENT_ORDER]
        assert t.equals(t.sort_by(order))
    # Anything that globs the folders (a pyarrow dataset, DuckDB) now reads each row once.
    plain = ds.dataset(str(tmp_path / "lake" / "events"), format="parquet").to_table()
    assert plain.num_rows == len(before_rows)
    # A second run has nothing to do and changes nothing.
    files = digest(tmp_path / "lake")
    again = compact.compact(lake, END)
    assert again.written == 0 and digest(tmp_path / "lake") == files


def test_open_partitions_are_left_alone(tmp_path: Path) -> None:
    lake, _ = built(tmp_path)
    done = compact.compact(lake, datetime(2026, 11, 16, 11, 30, tzinfo=UTC))
    hours = {Path(f).parent.name for f in lake.files("events") if COMPACTED in f}
    assert hours == {"hour=10"} and done.complete


def test_readers_see_each_row_once_between_commit_and_deletion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The moment after a compacted file appears and before what it replaces is deleted (and a
    run that died there): readers leave the replaced files out; the next run deletes them."""
    lake, _ = built(tmp_path)
    before_rows, before_q = rows(lake), quarantined(lake)
    monkeypatch.setattr(compact.lake_io, "delete", lambda *_: False)
    compact.compact(lake, END)
    raw = [p for p in (tmp_path / "lake" / "events").rglob("*.parquet")]
    assert sum(COMPACTED in p.name for p in raw) < len(raw)  # both are there
    fresh = Lake(lake.root)
    assert rows(fresh) == before_rows and quarantined(fresh) == before_q
    monkeypatch.undo()
    compact.compact(fresh, END)
    raw = [p for p in (tmp_path / "lake").rglob("*.parquet") if "events" in p.parts]
    assert all(COMPACTED in p.name for p in raw) and rows(Lake(lake.root)) == before_rows


def test_later_inputs_are_deduplicated_against_compacted_rows(tmp_path: Path) -> None:
    lake, inputs = built(tmp_path)
    before_rows = rows(lake)
    compact.compact(lake, END)
    again = ingest([str(inputs)], lake.root, SMALL, workers=1)
    assert again["files_skipped"] == again["files"] > 0  # _state/ingested still says done
    copy = tmp_path / "redelivered"
    copy.mkdir()
    shutil.copy(inputs / "ct-003.json.gz", copy / "ct-003-again.json.gz")
    redone = ingest([str(copy)], lake.root, SMALL, workers=1)
    assert redone["ingested"] == 0 and redone["duplicates"] == 22
    assert rows(Lake(lake.root)) == before_rows


def test_state_folders_compact_and_ingestion_still_skips_done_inputs(tmp_path: Path) -> None:
    lake, inputs = built(tmp_path)
    folders = compact.state_folders(lake)
    n = len(lake.files("_state/ingested"))
    done = compact.compact(lake, END, areas=["state"])
    assert n > 2 and done.written >= 1
    # Every state partition ends as one file (the inputs' folder, and the sessions' days).
    for folder in folders:
        direct = [f for f in lake.files(folder) if posixpath.dirname(f) == folder]
        assert len(direct) <= 1, folder
    again = ingest([str(inputs)], lake.root, SMALL, workers=1)
    assert again["files_skipped"] == again["files"]
    with pytest.raises(ValueError, match="rewritten in place"):
        compact.compact_state(lake, "logs")


def test_the_digests_seen_compact_into_one_file_with_every_row(tmp_path: Path) -> None:
    from pipeline.lake import STATE_DIGESTS, state_file

    lake = Lake(str(tmp_path / "lake"))
    n = compact.OPEN_STATE_FILES

    def add(numbers: range) -> None:
        for i in numbers:
            table = pa.table({"digest_uri": [f"s3://trail/d{i}.json.gz"], "batch": [i]})
            lake.write_table(state_file(STATE_DIGESTS, f"b{i:03d}"), table)

    def batches() -> list[int]:
        return sorted(pa.concat_tables(lake.read_tables(STATE_DIGESTS)).column("batch").to_pylist())

    add(range(n - 1))
    # Always written to: left alone below the threshold, then compacted whole.
    assert compact.compact(lake, END, areas=["state"]).by_folder[STATE_DIGESTS] == (n - 1, n - 1)
    add(range(n - 1, n + 1))
    assert compact.compact(lake, END, areas=["state"]).by_folder[STATE_DIGESTS] == (n + 1, 1)
    assert batches() == list(range(n + 1))
    # The files written since join the compacted file once they reach the threshold again.
    add(range(n + 1, 2 * n))
    done = compact.compact(lake, END, areas=["state"])
    assert done.by_folder[STATE_DIGESTS] == (n, 1) and done.deleted == n
    assert batches() == list(range(2 * n))


def test_closed_state_days_compact_open_ones_wait_and_sessions_still_join(tmp_path: Path) -> None:
    """Input records and sessions of a closed day become one file each; the open day's wait;
    a late file of the closed day still finds its session's tenant and is not taken for done."""
    import tomllib

    from tests.pooled import pooled_text

    # The pooled world's tenancy (session tags), a batch per input file.
    cfg = parse_config(tomllib.loads(pooled_text()) | {"ingest": {"batch_input_bytes": 1}})

    for day in (15, 16):
        for i in range(4):
            at, key_id = f"2026-11-{day}T1{i}:00:00Z", f"ASIAD{day}{i:013d}"
            records = [
                lf.assume_role(tenant="t0003", session=f"u{day}{i}", new_key_id=key_id, time=at),
                lf.ct(time=at, session=f"u{day}{i}", key_id=key_id, key="tenants/t0003/x"),
            ]
            lf.delivery_file(
                tmp_path / "in" / "2026" / "11" / f"{day}" / f"ct-{i}.json.gz", records
            )
    root = str(tmp_path / "lake")
    ingest([str(tmp_path / "in")], root, cfg, workers=1)
    lake = Lake(root)

    def direct(folder: str) -> list[str]:
        return [f for f in lake.files(folder) if posixpath.dirname(f) == folder]

    assert len(direct("_state/sessions/date=2026-11-15")) == 4
    done = compact.compact(lake, datetime(2026, 11, 16, 12, tzinfo=UTC), areas=["state"])
    assert {"_state/ingested/date=2026-11-15", "_state/sessions/date=2026-11-15"} <= set(
        done.by_folder
    )
    # That day is still open, with fewer files than are worth compacting while it is.
    assert all(done.by_folder[f] == (4, 4) for f in done.by_folder if "2026-11-16" in f)
    assert len(direct("_state/sessions/date=2026-11-15")) == 1
    assert len(direct("_state/ingested/date=2026-11-15")) == 1
    assert len(direct("_state/sessions/date=2026-11-16")) == 4

    # A late file of the 15th: its call joins the compacted session; the day's inputs stay done.
    late = [
        lf.ct(
            time="2026-11-15T13:30:00Z",
            session="u153",
            key_id="ASIAD150000000000003",
            key="tenants/t0003/y",
            eventID="late-1",
        )
    ]
    lf.delivery_file(tmp_path / "in" / "2026" / "11" / "15" / "late.json.gz", late)
    again = ingest([str(tmp_path / "in")], root, cfg, workers=1)
    assert again["files_skipped"] == 8 and again["ingested"] == 1
    got = read_events(lake, columns=["event_id", "actor_tenant"]).to_pylist()
    assert {"event_id": "late-1", "actor_tenant": "t0003"} in got


def _trail_day(root: Path, day: int, files: range) -> list[Path]:
    out = []
    for i in files:
        at, key_id = f"2026-11-{day}T1{i % 10}:00:00Z", f"ASIAD{day}{i:013d}"
        records = [
            lf.assume_role(tenant="t0003", session=f"u{day}{i}", new_key_id=key_id, time=at),
            lf.ct(time=at, session=f"u{day}{i}", key_id=key_id, key="tenants/t0003/x"),
        ]
        out.append(lf.delivery_file(root / "2026" / "11" / f"{day}" / f"ct-{i}.json.gz", records))
    return out


def test_a_batch_stays_done_when_the_partition_it_committed_in_is_compacted(
    tmp_path: Path,
) -> None:
    """A batch with inputs of two days records them in both days' partitions and commits in
    the first; once that day is compacted (its file of the batch gone into the compacted
    one), the other day's inputs still count as done."""
    import tomllib

    from tests.pooled import pooled_text

    cfg = parse_config(tomllib.loads(pooled_text()))  # one batch for all the inputs given
    first = _trail_day(tmp_path / "in", 15, range(2))
    second = _trail_day(tmp_path / "in", 16, range(3))
    root = str(tmp_path / "lake")
    ingest([str(first[0])], root, cfg, workers=1)
    ingest([str(first[1]), *map(str, second)], root, cfg, workers=1)
    lake = Lake(root)
    commits = pa.concat_tables(lake.read_tables("_state/ingested/date=2026-11-16"))["commit"]
    assert set(commits.to_pylist()) == {"date=2026-11-15"}  # committed in the other day
    done = compact.compact(lake, datetime(2026, 11, 16, 12, tzinfo=UTC), areas=["state"])
    assert done.by_folder["_state/ingested/date=2026-11-15"] == (2, 1)
    again = ingest([str(tmp_path / "in")], root, cfg, workers=1)
    assert again["files_skipped"] == 5 and again["ingested"] == 0


def test_an_open_day_s_state_compacts_as_it_grows_and_its_inputs_stay_done(
    tmp_path: Path,
) -> None:
    import tomllib

    from tests.pooled import pooled_text

    cfg = parse_config(tomllib.loads(pooled_text()) | {"ingest": {"batch_input_bytes": 1}})
    n = compact.OPEN_STATE_FILES
    root = str(tmp_path / "lake")
    lake = Lake(root)
    today = "_state/ingested/date=2026-11-16"
    noon = datetime(2026, 11, 16, 12, tzinfo=UTC)
    _trail_day(tmp_path / "in", 16, range(n))
    ingest([str(tmp_path / "in")], root, cfg, workers=1)
    assert compact.compact(lake, noon, areas=["state"]).by_folder[today] == (n, 1)
    _trail_day(tmp_path / "in", 16, range(n, n + 3))
    assert ingest([str(tmp_path / "in")], root, cfg, workers=1)["files_skipped"] == n
    assert compact.compact(lake, noon, areas=["state"]).by_folder[today] == (4, 4)
    again = ingest([str(tmp_path / "in")], root, cfg, workers=1)
    assert again["files_skipped"] == n + 3 and again["ingested"] == 0
    assert read_events(lake, columns=["event_id"]).num_rows == 2 * (n + 3)


def test_a_budget_stops_compaction_between_groups_and_the_next_run_finishes(
    tmp_path: Path,
) -> None:
    lake, _ = built(tmp_path)
    before_rows = rows(lake)
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 1:
            raise compact.Stop

    first = compact.compact(lake, END, check=check)
    assert not first.complete and first.written == 1
    assert rows(Lake(lake.root)) == before_rows
    rest = compact.compact(lake, END)
    assert rest.complete and rest.written > 0 and rows(Lake(lake.root)) == before_rows


_KILLED = """
import sys
from datetime import datetime, UTC
from pipeline import compact
from pipeline.lake import Lake
end = datetime(2026, 11, 17, tzinfo=UTC)
compact.compact(Lake(sys.argv[1]), end, target_bytes=int(sys.argv[2]))
"""


def _killed_runs(tmp_path: Path, kills: int, seed: int) -> None:
    """A closed day compacted into its folder, one of its hours compacted before."""
    lake, _ = built(tmp_path)
    compact.compact(lake, datetime(2026, 11, 16, 11, tzinfo=UTC), areas=("events",))
    pristine = tmp_path / "pristine"
    shutil.copytree(lake.root, pristine)
    expected_rows, expected_q = rows(lake), quarantined(lake)
    target = str(40_000)  # several groups in the day (its files are about 8 KB)
    whole = tmp_path / "whole"
    shutil.copytree(pristine, whole)
    subprocess.run([sys.executable, "-c", _KILLED, str(whole), target], check=True, cwd=REPO)
    made = [Path(f).parent.name for f in digest(whole) if f.startswith("events/")]
    # Several files in the day's folder (a last group of one file may stay in its hour).
    assert made.count("date=2026-11-16") > 1 and len(made) - made.count("date=2026-11-16") <= 1
    rng = random.Random(seed)
    for k in range(kills):
        victim = tmp_path / f"victim-{k}"
        shutil.copytree(pristine, victim)
        for _ in range(3):  # killed, killed again part way through what is left
            proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(victim), target], cwd=REPO)
            time.sleep(rng.uniform(0.3, 2.0))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            seen = Lake(str(victim))
            assert rows(seen) == expected_rows and quarantined(seen) == expected_q
        subprocess.run([sys.executable, "-c", _KILLED, str(victim), target], check=True, cwd=REPO)
        assert digest(victim) == digest(whole)


def test_killed_compactions_converge(tmp_path: Path) -> None:
    _killed_runs(tmp_path, kills=2, seed=26)


@pytest.mark.soak
def test_killed_compactions_converge_soak(tmp_path: Path) -> None:
    _killed_runs(tmp_path, kills=25, seed=2026)


def _run_all(root: Path, cfg: Config) -> tuple[list[dict[str, Any]], list[str]]:
    from pipeline.detect import run_detect
    from pipeline.runs.on_demand import alert_all

    found = run_detect(str(root), cfg, datetime(2026, 11, 16, tzinfo=UTC), END)
    alert_all(str(root), cfg, since=None)
    findings = sorted(found.findings.to_pylist(), key=lambda r: r["finding_id"])
    snaps = sorted(str(p.relative_to(root)) for p in (root / "snapshots").glob("*/*/*"))
    return findings, snaps


def test_finding_ids_and_snapshot_evidence_are_unchanged_by_compaction(tmp_path: Path) -> None:
    import msgspec

    from pipeline.config import load_config

    cfg = load_config(REPO / "sample_logs" / "tenantwatch.toml")
    small = msgspec.structs.replace(cfg.ingest, batch_input_bytes=1 << 18)
    cfg = msgspec.structs.replace(cfg, ingest=small)
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    days = [str(p) for p in (REPO / "sample_logs").glob("**/2026/11/1[56]")]
    ingest(days, str(plain), cfg, workers=1)
    shutil.copytree(plain, packed)
    done = compact.compact(Lake(str(packed)), END)
    assert done.written > 0 and done.files_after < done.files_before
    assert not list(packed.glob("events/*/*/hour=*/*.parquet"))  # days, compacted whole
    a, b = _run_all(plain, cfg), _run_all(packed, cfg)
    assert a[0] and a[0] == b[0]  # ids, evidence, everything
    assert a[1] and a[1] == b[1]  # snapshot folders are named by their content's hash


# --- a closed day ------------------------------------------------------------------------------


def _spread_lake(tmp_path: Path, objects: int) -> Lake:
    """``objects`` delivery files, each of a few records in three hours of the day (one of them
    the next day's first), ingested one object a batch: several files per hour, two sources'
    worth of folders (CloudTrail and API Gateway access logs)."""
    inputs = tmp_path / "in"
    for i in range(objects):
        records = [
            lf.ct(
                key_id=f"ASIAS{i:04d}{j:09d}",
                key=f"tenants/t{(i + j) % 5:04d}/x",
                time=f"2026-11-{16 + (h == 24):02d}T{h % 24:02d}:{(i * 7 + j) % 60:02d}:00Z",
            )
            for j, h in enumerate(((i * 5) % 25, (i * 11 + 3) % 25, (i * 13 + 7) % 25))
        ]
        lf.delivery_file(inputs / f"ct-{i:04d}.json.gz", records)
        when = f"16/Nov/2026:{(i * 5) % 24:02d}:{i % 60:02d}:00 +0000"
        lf.lines_file(inputs / f"apigw-{i:04d}.log", [lf.access_log(when=when)])
    ingest([str(inputs)], str(tmp_path / "lake"), SMALL, workers=1)
    return Lake(str(tmp_path / "lake"))


def _per_day(lake: Lake) -> dict[tuple[str, str], int]:
    """The readable event files of each (source, day)."""
    out: dict[tuple[str, str], int] = {}
    for f in lake.files("events"):
        parts = f.split("/")
        key = (parts[1], parts[2])
        out[key] = out.get(key, 0) + 1
    return out


def test_a_closed_day_has_a_few_files_per_source_however_many_it_was_delivered_in(
    tmp_path: Path,
) -> None:
    lake = _spread_lake(tmp_path, 120)
    before, before_rows = _per_day(lake), rows(lake)
    assert max(before.values()) >= 100  # hundreds of small files a day
    done = compact.compact(lake, END)
    after = _per_day(Lake(lake.root))
    day = ("source=cloudtrail", "date=2026-11-16")
    gw = ("source=apigateway", "date=2026-11-16")
    assert done.complete and after[day] == after[gw] == 1
    assert rows(Lake(lake.root)) == before_rows
    assert all("/hour=" not in f for f in lake.files("events") if "date=2026-11-16" in f)
    # 11-17 is still open (END is its first moment): left as it was.
    nxt = ("source=cloudtrail", "date=2026-11-17")
    assert after[nxt] == before[nxt] > 1
    # With a small size target a day still has a few: about its size over the target.
    fresh = _spread_lake(tmp_path / "again", 120)
    fresh_rows = rows(fresh)
    size = sum(p.stat().st_size for p in (Path(fresh.root) / "events").rglob("*.parquet"))
    compact.compact(fresh, END, target_bytes=size // 3)
    counts = _per_day(Lake(fresh.root))
    assert 1 < counts[day] <= 4 and rows(Lake(fresh.root)) == fresh_rows


def test_a_compacted_day_reads_as_its_hours_did(tmp_path: Path) -> None:
    """Every reader of events (windows within the day, file by file, samples, the newest and
    oldest event, the latest day) gets from a day's compacted files what it got from the hours'
    files; also between the commit and the deletions, and with one hour compacted first."""
    from pipeline.detect import earliest_event, latest_day
    from pipeline.health import newest_event
    from pipeline.lake import event_batches, sample_events

    lake = _spread_lake(tmp_path, 40)
    packed = tmp_path / "packed"
    shutil.copytree(lake.root, packed)
    compact.compact(Lake(str(packed)), datetime(2026, 11, 16, 12, tzinfo=UTC))  # hours first
    compact.compact(Lake(str(packed)), END)
    assert any(p.parent.name == "date=2026-11-16" for p in packed.rglob("compacted-*"))
    windows = [
        (None, None),
        (datetime(2026, 11, 16, 10, 30, tzinfo=UTC), datetime(2026, 11, 16, 11, 30, tzinfo=UTC)),
        (datetime(2026, 11, 16, 23, tzinfo=UTC), datetime(2026, 11, 17, 0, 30, tzinfo=UTC)),
        (datetime(2026, 11, 16, 0, tzinfo=UTC), datetime(2026, 11, 16, 1, tzinfo=UTC)),
    ]
    cols = ["event_id", "record_hash", "event_time", "source"]

    def key(t: pa.Table) -> list[tuple[Any, ...]]:
        return sorted(zip(*(t[c].to_pylist() for c in cols), strict=True))

    def seen(root: Path) -> dict[str, Any]:
        lk = Lake(str(root))
        out: dict[str, Any] = {
            # compacted: days whose only files are their compacted ones
            "newest": newest_event(lk),
            "earliest": earliest_event(lk),
            "latest_day": latest_day(lk),
        }
        for since, until in windows:
            out[f"read {since} {until}"] = key(read_events(lk, since, until, columns=cols))
            batches = list(event_batches(lk, since, until, columns=cols))
            out[f"batches {since} {until}"] = key(pa.Table.from_batches(batches))
        return out

    plain = seen(Path(lake.root))
    assert all(plain[k] for k in plain) and len(plain[f"read {windows[1][0]} {windows[1][1]}"])
    assert seen(packed) == plain
    since, until = windows[1]
    everything = set(plain[f"read {since} {until}"])
    got = sample_events(Lake(str(packed)), since, until, source="cloudtrail", columns=cols, limit=5)
    assert got.num_rows == 5 and set(key(got)) <= everything
    # Between a day's commit and its deletions (or a run that died there): the same.
    between = tmp_path / "between"
    shutil.copytree(lake.root, between)
    original = compact.lake_io.delete
    compact.lake_io.delete = lambda *_: False  # type: ignore[assignment]
    try:
        compact.compact(Lake(str(between)), END)
    finally:
        compact.lake_io.delete = original  # type: ignore[assignment]
    assert any(between.rglob("hour=10/part-*.parquet"))
    assert seen(between) == plain


def test_the_scheduled_run_compacts_yesterday_within_its_budget(tmp_path: Path) -> None:
    from pipeline.runs.unattended import Budget, Report, _upkeep

    lake, _ = built(tmp_path)
    files = digest(tmp_path / "lake")
    day = "events/source=cloudtrail/date=2026-11-16/"
    files_before = [f.removeprefix(day) for f in lake.files("events")]
    spent = Report("r1", "scheduled")
    _upkeep(lake.root, SMALL, END, Budget(lambda: 10_000, reserve_s=60), spent)
    assert spent.status == "checkpoint" and digest(tmp_path / "lake") == files
    ample = Report("r2", "scheduled")
    _upkeep(lake.root, SMALL, END, Budget(lambda: 600_000, reserve_s=60), ample)
    assert ample.status == "done" and ample.compaction["written"] > 0
    assert ample.compaction["complete"]
    # Yesterday's three hours became one file in the day's folder.
    assert Lake(lake.root).files("events") == [
        f"events/source=cloudtrail/date=2026-11-16/{compact.compacted_name(sorted(files_before))}"
    ]


def test_a_folder_read_while_a_compaction_deletes_its_files_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingestion reads its state while another run compacts it: a file deleted between the
    listing and its read sends the reader back to the listing, which names the compacted file."""
    from pipeline.lake import STATE_DIGESTS, state_file

    lake = Lake(str(tmp_path / "lake"))
    for i in range(compact.OPEN_STATE_FILES):
        table = pa.table({"digest_uri": [f"d{i}"], "batch": [i]})
        lake.write_table(state_file(STATE_DIGESTS, f"b{i}"), table)
    listings: list[list[str]] = []
    files = Lake.files

    def files_then_compact(self: Lake, rel: str, suffix: str = ".parquet") -> list[str]:
        out = files(self, rel, suffix)
        listings.append(out)
        if len(listings) == 1:
            compact.compact(Lake(self.root), END, areas=["state"])
        return out

    monkeypatch.setattr(Lake, "files", files_then_compact)
    read = lake.read_folder(STATE_DIGESTS)
    assert len(listings) == 2 and len(listings[0]) == compact.OPEN_STATE_FILES
    assert [posixpath.basename(f) for f, _ in read] == [posixpath.basename(listings[1][0])]
    assert sorted(pa.concat_tables([t for _, t in read])["batch"].to_pylist()) == list(
        range(compact.OPEN_STATE_FILES)
    )
