"""Runs that die, and runs side by side: ``tenantwatch ingest`` killed (SIGKILL) at random moments
and run again ends with the lake a clean run makes, column by column; two runs over the same
inputs and lake at once end with the lake one run makes; nothing a reader opens is ever half
written, and no temporary file outlives the run that wrote it.

Each run is the real command in a process of its own with two workers, over inputs that make
many batches (AssumeRole sessions joined across them, duplicates re-delivered in later files,
bad lines, access logs), so a kill lands in decoding, planning, writing or committing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline import lake as lake_api
from pipeline.config import Config
from tests import logfactory as lf

TENANTWATCH = str(Path(sys.executable).with_name("tenantwatch"))


def make_inputs(folder: Path, files: int) -> Path:
    """``files`` delivery files (each re-delivering two records of the one before), an access
    log and a file of bad lines."""
    previous: list[dict[str, Any]] = []
    for i in range(files):
        records: list[dict[str, Any]] = []
        for j in range(12):
            key = f"ASIAK{i:04d}{j:09d}"
            hour = f"2026-11-16T{10 + (i + j) % 3:02d}"
            records.append(
                lf.assume_role(tenant=f"t{j % 5:04d}", new_key_id=key, time=f"{hour}:00:00Z")
            )
            records += [
                lf.ct(key_id=key, key=f"tenants/t{(j + m) % 7:04d}/x", time=f"{hour}:0{m}:00Z")
                for m in range(1, 6)
            ]
        lf.delivery_file(folder / f"ct-{i:03d}.json.gz", records + previous[:2])
        previous = records
    lf.lines_file(folder / "api.log", [lf.access_log() for _ in range(40)], cwl_export=True)
    (folder / "junk.log").write_text("not json\n{broken\n" * 5)
    config = folder.parent / "tenantwatch.toml"
    config.write_text("[ingest]\nbatch_input_bytes = 6000\n")  # about a batch a file
    return config


def command(config: Path, inputs: Path, lake: Path) -> list[str]:
    return [TENANTWATCH, "--config", str(config), "ingest", str(inputs), "--lake", str(lake)]


def start(config: Path, inputs: Path, lake: Path) -> subprocess.Popen[bytes]:
    args = [*command(config, inputs, lake), "--workers", "2", "--json"]
    # A group of its own: the workers can be killed with it, as when a machine goes down.
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def finish(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    summary: dict[str, Any] = json.loads(out)
    assert summary["records_in"] == (
        summary["ingested"] + summary["duplicates"] + summary["quarantined_total"]
    )
    return summary


def snapshot(lake: Path) -> dict[str, list[dict[str, Any]]]:
    """Every table of the lake, rows in an order that does not depend on which run wrote which
    file: events by event id, the rest by all their columns."""
    out: dict[str, list[dict[str, Any]]] = {}
    events = lake_api.read_events(str(lake))
    out["events"] = events.sort_by([("event_id", "ascending"), ("record_hash", "ascending")])
    for folder in ("quarantine", "_state/ingested", "_state/sessions", "_state/digests"):
        files = sorted((lake / folder).rglob("*.parquet"))
        tables = [pq.read_table(f) for f in files]
        table = pa.concat_tables(tables) if tables else pa.table({})
        keys = [(c, "ascending") for c in table.column_names if c != "raw"]
        out[folder] = table.sort_by(keys) if keys else table
    return {k: v.to_pylist() for k, v in out.items()}


def assert_readable_and_clean(lake: Path) -> None:
    """What readers see is whole: every file under the lake's tables is Parquet, and the event
    partitions read through this package, a pyarrow dataset and DuckDB."""
    strays = [
        p.relative_to(lake)
        for top in ("events", "quarantine", "_state")
        for p in (lake / top).rglob("*")
        if p.is_file() and p.suffix != ".parquet"
    ]
    assert strays == []
    if not any(p.is_file() for p in (lake / "events").rglob("*")):
        return
    n = len(lake_api.events(str(lake), columns=["event_id"]))
    assert ds.dataset(lake / "events", format="parquet", partitioning="hive").count_rows() == n
    import duckdb

    sql = "SELECT count(*) FROM read_parquet(?, hive_partitioning = true)"
    every_file = str(lake / "events" / "**")  # not only *.parquet: whatever a reader may meet
    assert duckdb.connect().execute(sql, [every_file]).fetchone() == (n,)


def no_temporaries_left(lake: Path) -> list[str]:
    return [str(p.relative_to(lake)) for p in lake.rglob("*") if p.is_file() and ".tmp" in p.name]


def kill_and_rerun(tmp_path: Path, files: int, kills: int, seed: int) -> None:
    inputs = tmp_path / "in"
    config = make_inputs(inputs, files)
    began = time.monotonic()
    clean = finish(start(config, inputs, tmp_path / "clean"))
    took = time.monotonic() - began
    assert clean["files"] == files + 2 and clean["duplicates"] > 0

    rng = random.Random(seed)
    lake = tmp_path / "killed"
    killed = 0
    for _ in range(kills):
        proc = start(config, inputs, lake)
        time.sleep(rng.uniform(0.1, 0.9) * took)
        if proc.poll() is None:
            killed += 1
            # Now the whole group (a machine gone), now the main process alone (its workers
            # then see their pipe close and stop after what they were doing).
            group = rng.random() < 0.5
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
        proc.communicate(timeout=300)
        assert_readable_and_clean(lake)  # before any re-run: readers never see a half file
    assert killed, "no run was killed before it finished: the input is too small"
    again = finish(start(config, inputs, lake))
    assert again["files"] == files + 2

    assert snapshot(lake) == snapshot(tmp_path / "clean")
    assert_readable_and_clean(lake)
    assert no_temporaries_left(lake) == []


@pytest.mark.slow
def test_ingest_killed_at_random_moments_then_run_again_makes_the_clean_lake(
    tmp_path: Path,
) -> None:
    kill_and_rerun(tmp_path, files=16, kills=3, seed=11)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(5))
def test_ingest_killed_many_times_then_run_again_makes_the_clean_lake(
    tmp_path: Path, seed: int
) -> None:
    kill_and_rerun(tmp_path, files=40, kills=12, seed=100 + seed)


def side_by_side(tmp_path: Path, files: int, runs: int, seed: int) -> None:
    inputs = tmp_path / "in"
    config = make_inputs(inputs, files)
    began = time.monotonic()
    finish(start(config, inputs, tmp_path / "one"))
    took = time.monotonic() - began
    rng = random.Random(seed)
    procs = []
    for _ in range(runs):  # each starting while the ones before are at work
        procs.append(start(config, inputs, tmp_path / "many"))
        time.sleep(rng.uniform(0, 0.5) * took)
    for proc in procs:
        finish(proc)
    assert snapshot(tmp_path / "many") == snapshot(tmp_path / "one")
    events = snapshot(tmp_path / "many")["events"]
    assert len({e["event_id"] for e in events}) == len(events)  # none twice, none lost
    assert_readable_and_clean(tmp_path / "many")
    assert no_temporaries_left(tmp_path / "many") == []


@pytest.mark.slow
def test_two_ingests_at_once_over_the_same_inputs_make_the_lake_of_one(tmp_path: Path) -> None:
    side_by_side(tmp_path, files=12, runs=2, seed=0)


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(3))
def test_three_ingests_started_one_after_another_make_the_lake_of_one(
    tmp_path: Path, seed: int
) -> None:
    side_by_side(tmp_path, files=30, runs=3, seed=seed)


# --- each way a run dies, made to happen ----------------------------------------------------

_DIE_WRITING = """
import os, signal, sys
import pyarrow as pa, pyarrow.parquet as pq
from pipeline.lake import Lake

write = pq.write_table


def write_then_die(*args, **kwargs):
    write(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # the file is written, not yet moved into place


pq.write_table = write_then_die
Lake(sys.argv[1]).write_table(sys.argv[2], pa.table({"a": [1]}))
"""


def test_a_run_killed_between_writing_a_file_and_moving_it_leaves_nothing_readers_meet(
    tmp_path: Path,
) -> None:
    lake = tmp_path / "lake"
    partition = "events/source=cloudtrail/date=2026-11-16/hour=10"
    died = subprocess.run(
        [sys.executable, "-c", _DIE_WRITING, str(lake), f"{partition}/part-x.parquet"],
        capture_output=True,
        check=False,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()
    assert not (lake / partition).exists() or list((lake / partition).iterdir()) == []
    assert no_temporaries_left(lake) != []  # it is somewhere: where no reader looks
    assert_readable_and_clean(lake)

    inputs = tmp_path / "in"
    lf.delivery_file(inputs / "a.json.gz", [lf.ct(), lf.ct("PutObject")])
    run = subprocess.run(
        [TENANTWATCH, "ingest", str(inputs), "--lake", str(lake), "--workers", "1"],
        capture_output=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert no_temporaries_left(lake) == []  # its writer is dead: the next run removed it
    assert len(lake_api.events(str(lake))) == 2


def test_temporaries_of_live_writers_stay_and_those_left_behind_go(tmp_path: Path) -> None:
    from pipeline import temporaries
    from pipeline.lake import TEMPORARY, Lake

    lake = Lake(str(tmp_path / "lake"))
    lake.ensure_writable()
    folder = tmp_path / "lake" / TEMPORARY
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = temporaries.owner().rsplit(".", 1)[0]
    hour_ago = time.time() - 3600
    names = {
        "mine": f"{temporaries.owner()}.{'a' * 32}.tmp",
        "dead": f"{host}.{dead.pid}.{'b' * 32}.tmp",
        "other host, fresh": f"elsewhere.1.{'c' * 32}.tmp",
        "other host, stale": f"elsewhere.1.{'d' * 32}.tmp",
        "no owner, stale": "something.tmp",
    }
    for name in names.values():
        (folder / name).write_bytes(b"x")
    for key in ("other host, stale", "no owner, stale"):
        os.utime(folder / names[key], (hour_ago, hour_ago))
    # Beside its file, as earlier versions wrote them: a stale one and a fresh one.
    partition = tmp_path / "lake" / "events" / "source=cloudtrail" / "date=2026-11-16" / "hour=10"
    partition.mkdir(parents=True)
    beside_stale = partition / f"part-1.parquet.{'e' * 32}.tmp"
    beside_fresh = partition / f"part-2.parquet.{'f' * 32}.tmp"
    for path in (beside_stale, beside_fresh):
        path.write_bytes(b"x")
    os.utime(beside_stale, (hour_ago, hour_ago))

    removed = lake.clean_temporaries()
    left = {p.name for p in folder.iterdir()} | {p.name for p in partition.iterdir()}
    assert left == {names["mine"], names["other host, fresh"], beside_fresh.name}
    assert len(removed) == 4
    # Once none is left beside a file, the lake is not walked for them again.
    os.utime(beside_fresh, (hour_ago, hour_ago))
    assert lake.clean_temporaries() == [str(beside_fresh.relative_to(tmp_path / "lake"))]
    beside_stale.write_bytes(b"x")
    os.utime(beside_stale, (hour_ago, hour_ago))
    assert lake.clean_temporaries() == []


def test_a_process_id_given_again_to_a_later_process_is_not_the_owner() -> None:
    from pipeline import temporaries

    me = temporaries.owner()
    assert not temporaries.left_behind(me, time.time())  # this process, written just now
    assert temporaries.left_behind(me, time.time() - 86_400 * 365)  # before it started


def test_workers_stop_when_the_main_process_is_killed_and_their_scratch_goes_next_run(
    tmp_path: Path,
) -> None:
    """Killed outright (the out-of-memory killer picks the largest process), the main process
    leaves its workers: they must not wait for it forever, holding their memory."""
    inputs = tmp_path / "in"
    config = make_inputs(inputs, 24)
    proc = start(config, inputs, tmp_path / "lake")
    deadline = time.monotonic() + 120
    while not list((tmp_path / "lake" / "_state" / "ingested").rglob("*.parquet")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended too soon"
        time.sleep(0.02)
    owner = f"{socket_host()}.{proc.pid}-"
    proc.kill()  # the main process alone
    proc.communicate(timeout=60)  # its output closes once every worker has exited
    scratch = [
        p
        for folder in (Path("/dev/shm"), Path(tempfile.gettempdir()))
        if folder.is_dir()
        for p in folder.glob(f"tenantwatch-ingest-{owner}*")
    ]
    finish(start(config, inputs, tmp_path / "lake"))
    assert [p for p in scratch if p.exists()] == []


def socket_host() -> str:
    from pipeline import temporaries

    return temporaries.owner().rsplit(".", 1)[0]


def _two_batches(tmp_path: Path) -> tuple[Path, Config, list[str]]:
    """Two input files, a batch each, with events in the same partitions and the second
    re-delivering a record of the first."""
    from pipeline.config import parse_config
    from pipeline.ingest.run import make_batches
    from pipeline.ingest.sources import list_inputs

    first = [lf.ct(), lf.ct("PutObject")]
    lf.delivery_file(tmp_path / "in" / "1.json.gz", first)
    lf.delivery_file(tmp_path / "in" / "2.json.gz", [lf.ct("HeadObject"), first[0]])
    cfg = parse_config({"ingest": {"batch_input_bytes": 1}}, environ={})
    refs, _ = list_inputs([str(tmp_path / "in")])
    return tmp_path / "in", cfg, [b.id for b in make_batches(refs, 1)]


def test_files_a_dead_run_wrote_ahead_do_not_make_their_own_batch_duplicates(
    tmp_path: Path,
) -> None:
    """Workers write batches in any order and the main process records them in input order: a
    run can die with the second batch's files written and the first not recorded. The next run
    plans the first batch again; the second batch's files must not count until it plans that
    batch too, or the second batch's rows would be duplicates of themselves."""
    from pipeline.ingest.run import ingest

    inputs, cfg, (_, second) = _two_batches(tmp_path)
    ingest([str(inputs)], str(tmp_path / "clean"), cfg, workers=1)
    for path in (tmp_path / "clean" / "events").rglob(f"part-{second}.parquet"):
        ahead = tmp_path / "lake" / path.relative_to(tmp_path / "clean")
        ahead.parent.mkdir(parents=True, exist_ok=True)
        ahead.write_bytes(path.read_bytes())
    again = ingest([str(inputs)], str(tmp_path / "lake"), cfg, workers=1)
    assert (again["ingested"], again["duplicates"]) == (3, 1)
    assert snapshot(tmp_path / "lake") == snapshot(tmp_path / "clean")


def test_a_batch_a_dead_run_wrote_but_never_recorded_still_counts_when_batches_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that arrives before the next run changes how inputs fall into batches: the dead
    run's files (whole, and read by every reader) belong to a batch no run will write again,
    and their rows must not be written a second time."""
    from pipeline.ingest.run import ingest
    from pipeline.lake import Lake

    lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct(), lf.ct("PutObject")])
    write = Lake.write_table

    def dying(self: Lake, rel: str, *args: Any, **kwargs: Any) -> None:
        if rel.startswith("_state/ingested/"):
            raise KeyboardInterrupt
        write(self, rel, *args, **kwargs)

    monkeypatch.setattr(Lake, "write_table", dying)
    with pytest.raises(KeyboardInterrupt):
        ingest([str(tmp_path / "in")], str(tmp_path / "lake"), Config(), workers=1)
    monkeypatch.setattr(Lake, "write_table", write)
    lf.delivery_file(tmp_path / "in" / "b.json.gz", [lf.ct("HeadObject")])
    ingest([str(tmp_path / "in")], str(tmp_path / "lake"), Config(), workers=1)
    ids = lake_api.events(str(tmp_path / "lake"), columns=["event_id"])["event_id"].tolist()
    assert len(ids) == len(set(ids)) == 3
