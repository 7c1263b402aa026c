"""Sliding windows: every schedule tick runs the windowed detectors over the window that ends at
the tick, so a burst pages within a tick of its delivery; the same burst keeps one finding id
however many ticks and windows see it, and pages once (pipeline/detect.py ``run_live``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import detect
from pipeline.alert import store
from pipeline.lake import Lake
from pipeline.runs.unattended import Budget, Report, RunSettings, run_scheduled
from tests import logfactory as lf
from tests.pooled import pooled_config

T0 = datetime(2026, 11, 16, 10, tzinfo=UTC)
DAY = "2026/11/16"
HOUR = timedelta(hours=1)


def _z(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def burst(root: Path, start: datetime, count: int = 30, name: str = "burst") -> None:
    """``count`` denied reads by one session, a few seconds apart from ``start``."""
    records = [
        lf.assume_role(tenant="t0001", session="prober", new_key_id="ASIAPROBE", time=_z(start))
    ]
    records += [
        lf.ct(
            time=_z(start + timedelta(seconds=10 * i)),
            session="prober",
            key_id="ASIAPROBE",
            key=f"tenants/t0001/invoices/{i}.pdf",
            error="AccessDenied",
        )
        for i in range(count)
    ]
    path = root / f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1/{DAY}/{lf.ACCOUNT}_{name}.json.gz"
    lf.delivery_file(path, records)


def tick(tmp: Path, now: datetime, slide: bool = True) -> Report:
    settings = RunSettings(sources=(str(tmp / "trail"),), backfill_hours=2, slide=slide)
    budget = Budget(lambda: 900_000, settings.reserve_seconds)
    return run_scheduled(
        now,
        str(tmp / ("lake" if slide else "lake-aligned")),
        pooled_config(),
        settings,
        budget,
        f"t{now:%H%M}",
    )


def pages(lake: str) -> list[dict[str, Any]]:
    rows = store.load_outbox(Lake(lake), full=True).values()
    return [r for r in rows if r["kind"] in ("new", "escalation")]


def spike_ids(lake: str) -> set[str]:
    found = detect.read_findings(lake)
    return {
        f["finding_id"]
        for f in found.to_pylist()
        if f["detector"] == "authz_failure_spike" and f["actor"] and "prober" in f["actor"]
    }


@pytest.mark.slow
def test_a_burst_pages_at_the_first_tick_after_delivery_and_once(tmp_path: Path) -> None:
    burst(tmp_path / "trail", T0 + timedelta(minutes=7))
    ticks = [T0 + timedelta(minutes=m) for m in range(20, 85, 5)]  # 10:20 .. 11:20
    ids_per_tick, first_page = [], None
    lake = str(tmp_path / "lake")
    for now in ticks:
        report = tick(tmp_path, now)
        assert report.status in ("done", "nothing_to_do"), report.as_dict()
        assert not report.sliding.get("failed")
        if pages(lake) and first_page is None:
            first_page = now
        ids_per_tick.append(spike_ids(lake))
    # Paged at the first tick that could see it (10:20), not after its hour closed (11:15).
    assert first_page == T0 + timedelta(minutes=20)
    assert len(pages(lake)) == 1
    # One finding per spiking group, with the same id at every tick, the aligned 10:00 window's
    # detection (at 11:15) included; no live file is left beside the window's own findings.
    assert ids_per_tick[0] and all(ids == ids_per_tick[0] for ids in ids_per_tick)
    found = detect.read_findings(lake).to_pylist()
    assert len([f["finding_id"] for f in found]) == len({f["finding_id"] for f in found})
    live = [p for p in Lake(lake).files("findings") if "live" in p]
    assert live == []
    # Without sliding windows the same burst pages only once its hour is complete and the lag
    # for late delivery has passed.
    aligned = str(tmp_path / "lake-aligned")
    first_aligned = None
    for now in ticks:
        tick(tmp_path, now, slide=False)
        if pages(aligned) and first_aligned is None:
            first_aligned = now
    assert first_aligned == T0 + timedelta(minutes=75)
    assert spike_ids(aligned) == ids_per_tick[0]


def test_a_finding_anchors_to_the_aligned_window_of_its_first_event(tmp_path: Path) -> None:
    burst(tmp_path / "trail", T0 + timedelta(minutes=52))  # 10:52 .. 10:57
    report = tick(tmp_path, T0 + timedelta(minutes=65))  # sliding window 10:05 .. 11:05
    assert report.sliding["findings"] >= 1
    (start,) = {f["window_start"] for f in detect.read_findings(str(tmp_path / "lake")).to_pylist()}
    assert start == T0


def test_a_live_finding_the_aligned_window_does_not_find_is_kept(tmp_path: Path) -> None:
    from pipeline import schema

    lake = Lake(str(tmp_path / "lake"))
    fid = "f" * 32
    row = {
        **{n: None for n in schema.FINDINGS.names},
        "finding_id": fid,
        "detector": "authz_failure_spike",
        "severity": "medium",
        "title": "t",
        "tenants": [],
        "window_start": T0,
        "window_end": T0 + timedelta(hours=1),
        "event_count": 25,
        "score": 9.0,
        "threshold": 5.0,
        "dedup_key": "authz_failure_spike:actor|x",
        "evidence": "{}",
    }
    import pyarrow as pa

    end = T0 + timedelta(hours=1)
    live = detect.live_name("authz_failure_spike", T0, end)
    lake.write_table(live, pa.Table.from_pylist([row], schema.FINDINGS))
    # The window's own detection found something else: the live finding stays, not duplicated.
    other = {**row, "finding_id": "e" * 32}
    detect._settle_live(
        lake, "authz_failure_spike", T0, end, pa.Table.from_pylist([other], schema.FINDINGS)
    )
    assert lake.read_file(live)["finding_id"].to_pylist() == [fid]
    # It found the same id: the live file goes.
    detect._settle_live(
        lake, "authz_failure_spike", T0, end, pa.Table.from_pylist([row], schema.FINDINGS)
    )
    assert not lake.exists(live)


def test_slide_setting_from_the_environment() -> None:
    from pipeline.errors import ConfigError

    assert RunSettings.from_environ({}).slide is True
    assert RunSettings.from_environ({"TENANTWATCH_RUN_SLIDE": "0"}).slide is False
    with pytest.raises(ConfigError, match="TENANTWATCH_RUN_SLIDE"):
        RunSettings.from_environ({"TENANTWATCH_RUN_SLIDE": "maybe"})


def test_a_window_compacted_after_its_detection_is_not_written_again_as_live(
    tmp_path: Path,
) -> None:
    import pyarrow as pa

    burst(tmp_path / "trail", T0 + timedelta(minutes=30))  # 10:30 .. 10:35
    lake_root = str(tmp_path / "lake")
    tick(tmp_path, T0 + timedelta(minutes=75))  # 10:00's own detection: its findings file
    ids = spike_ids(lake_root)
    assert ids
    # Compaction merges the finished day's findings files into one (as pipeline.compact does).
    lake = Lake(lake_root)
    files = lake.files("findings")
    merged = pa.concat_tables([lake.read_file(f) for f in files])
    for f in files:
        lake.fs.delete_file(lake.path(f))
    lake.write_table("findings/date=2026-11-16/part-compacted.parquet", merged)
    # The next tick's sliding window (10:20 .. 11:20) sees the burst again, anchored to 10:00.
    report = tick(tmp_path, T0 + timedelta(minutes=80))
    assert report.sliding["findings"] >= 1
    rows = detect.read_findings(lake_root).to_pylist()
    assert len(rows) == len({r["finding_id"] for r in rows})
    assert spike_ids(lake_root) == ids and lake.files("findings") == [
        "findings/date=2026-11-16/part-compacted.parquet"
    ]


def cross_tenant_read(root: Path, at: datetime, name: str, reads: int = 1) -> None:
    records = [lf.assume_role(tenant="t0001", session="sneak", new_key_id="ASIASNEAK", time=_z(at))]
    records += [
        lf.ct(
            time=_z(at + timedelta(minutes=1 + i)),
            session="sneak",
            key_id="ASIASNEAK",
            key=f"tenants/t0002/invoices/{name}-{i}.pdf",
        )
        for i in range(reads)
    ]
    path = root / f"AWSLogs/{lf.ACCOUNT}/CloudTrail/us-east-1/{DAY}/{lf.ACCOUNT}_{name}.json.gz"
    lf.delivery_file(path, records)


def test_what_the_fast_path_left_pages_at_the_next_tick(tmp_path: Path) -> None:
    """An object ingested without detection (its function found the lease held): the next
    tick's sliding window runs the rules too, so the cross-tenant read pages then, not after
    its hour and the lag."""
    cross_tenant_read(tmp_path / "trail", T0 + timedelta(minutes=5), "a")
    report = tick(tmp_path, T0 + timedelta(minutes=10))
    assert report.sliding["news"] >= 1
    (page,) = pages(str(tmp_path / "lake"))
    assert "cross" in page["subject"].lower()
    # The hour's own detection finds the same finding: nothing pages again, no live file stays.
    tick(tmp_path, T0 + timedelta(minutes=75))
    assert len(pages(str(tmp_path / "lake"))) == 1
    assert [p for p in Lake(str(tmp_path / "lake")).files("findings") if "live" in p] == []


def test_the_fast_path_reads_only_the_object_s_own_events(tmp_path: Path) -> None:
    from pipeline.ingest.run import ingest

    trail, lake_root = tmp_path / "trail", str(tmp_path / "lake")
    cfg = pooled_config(ingest={"batch_input_bytes": 1})
    cross_tenant_read(trail, T0 + timedelta(minutes=5), "a", reads=3)
    ingest([str(trail)], lake_root, cfg, workers=1)
    cross_tenant_read(trail, T0 + timedelta(minutes=20), "b", reads=2)
    second = ingest([str(trail)], lake_root, cfg, workers=1)
    files = second["new_files"]
    assert files and all("/hour=10/" in f for f in files)
    window = (T0, T0 + timedelta(hours=1))
    fast = detect.run_fast(lake_root, cfg, window, files)
    whole = detect.run_detect(lake_root, cfg, *window, only=("cross_tenant_access",), write=False)
    (f_fast,) = [r for r in fast.findings.to_pylist() if r["detector"] == "cross_tenant_access"]
    (f_whole,) = whole.findings.to_pylist()
    # The same finding (id, window) as the window's own detection, from the object's events only.
    assert f_fast["finding_id"] == f_whole["finding_id"]
    assert (f_fast["event_count"], f_whole["event_count"]) == (2, 5)
    assert fast.summary["news"] == 1
    again = detect.run_fast(lake_root, cfg, window, files)
    assert again.summary["news"] == 0  # the live file has it already


def test_ticks_of_one_window_fit_its_history_once_and_find_the_same(tmp_path: Path) -> None:
    from pipeline.ingest.run import ingest

    burst(tmp_path / "trail", T0 + timedelta(minutes=7))
    burst(tmp_path / "trail", T0 - timedelta(hours=20), count=3, name="history")
    lake_root, cfg = str(tmp_path / "lake"), pooled_config()
    ingest([str(tmp_path / "trail")], lake_root, cfg, workers=1)
    hour = timedelta(hours=1)

    def live(minutes: int) -> Any:
        return detect.run_live(lake_root, cfg, T0 + timedelta(minutes=minutes), hour)

    detect._FITTED.clear()
    first = live(20)
    again = live(25)  # the same aligned window (10:00): its history is not read again
    spike = "authz_failure_spike"
    assert first.summary["detectors"][spike]["baseline_events"] > 0
    assert again.summary["detectors"][spike]["baseline_events"] == 0
    detect._FITTED.clear()
    fresh = live(25)
    assert fresh.summary["detectors"][spike]["baseline_events"] > 0
    assert again.findings.drop_columns(["evidence"]).equals(
        fresh.findings.drop_columns(["evidence"])
    )
    assert again.findings["evidence"].to_pylist() == fresh.findings["evidence"].to_pylist()
    assert again.findings.num_rows >= 1


def test_events_delivered_after_their_window_was_detected_are_detected_then(
    tmp_path: Path,
) -> None:
    """A file that lands hours late (a daily log export, a delayed trail file): its events fall
    in a window detected already, which the run that ingests them marks and detects again."""
    lake = str(tmp_path / "lake-aligned")
    burst(tmp_path / "trail", T0 - timedelta(hours=3), count=3, name="history")
    first = tick(tmp_path, T0 + timedelta(hours=2, minutes=20), slide=False)
    assert first.watermark_after == (T0 + timedelta(hours=2)).isoformat() and pages(lake) == []
    cross_tenant_read(tmp_path / "trail", T0 + timedelta(minutes=5), "late")  # lands now
    second = tick(tmp_path, T0 + timedelta(hours=2, minutes=25), slide=False)
    assert second.as_dict()["late_windows"] == [f"{T0.isoformat()}/{(T0 + HOUR).isoformat()}"]
    (page,) = pages(lake)
    assert "cross" in page["subject"].lower()
    # Done once: the marker is gone, the next run detects nothing again.
    third = tick(tmp_path, T0 + timedelta(hours=2, minutes=30), slide=False)
    assert third.as_dict()["late_windows"] == [] and len(pages(lake)) == 1
