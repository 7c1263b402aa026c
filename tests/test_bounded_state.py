"""What a run reads of its state is bounded by what it works on, not by the lake's age: a year of
state rows beside the ones that matter changes neither which files a run opens nor what it
finds. Ingest opens the ``_state/ingested`` partitions of its inputs and the ``_state/sessions``
days that can hold a session live during its events; alert opens the incidents still active
near its window, those owed a snapshot, and the notifications not yet sent."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline import lake as lake_api
from pipeline import schema
from pipeline.alert import store
from pipeline.alert.run import run_alert
from pipeline.config import AlertingConfig, Config
from pipeline.ingest import sessions
from pipeline.ingest.run import INGESTED, ingest
from pipeline.lake import Lake
from tests import factories as fx
from tests import logfactory as lf
from tests.alertfactory import DAY, T0, finding, incident
from tests.pooled import pooled_config

KEY_ID = "ASIAKEYOFAYEARAGO01"
DELIVERY = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/16"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The lake paths read (ingest's ``Lake.read_file``, alert's ``store.read_bytes``)."""
    seen: list[str] = []
    read_file, read_bytes = Lake.read_file, store.read_bytes

    def lake_read(self: Lake, rel: str, columns: list[str] | None = None) -> pa.Table:
        seen.append(rel)
        return read_file(self, rel, columns)

    def store_read(lk: Lake, rel: str) -> bytes:
        seen.append(rel)
        return read_bytes(lk, rel)

    monkeypatch.setattr(Lake, "read_file", lake_read)
    monkeypatch.setattr(store, "read_bytes", store_read)
    yield seen


def _synthetic_state(lake: Lake, days: int, until: datetime) -> None:
    """``days`` days before ``until`` of other inputs done and other sessions started."""
    for i in range(1, days + 1):
        day = until - i * DAY
        name = f"{day:%Y-%m-%d}"
        rows = [
            {
                "uri": f"s3://trail/{DELIVERY[:-10]}{day:%Y/%m/%d}/{n}.json.gz",
                "identity": f"s3://trail/{name}/{n}\tetag{n}",
                "records": 10,
                "ingested": 10,
                "duplicates": 0,
                "quarantined": 0,
                "commit": f"date={name}",
            }
            for n in range(20)
        ]
        lake.write_table(
            lake_api.ingested_file(f"date={name}", "synthetic"),
            pa.Table.from_pylist(rows, INGESTED),
        )
        tags = [
            {"access_key_id": f"ASIASYN{i:05d}{n:04d}", "tag": "tenant_id", "value": "t0009"}
            for n in range(20)
        ]
        started = {"started": day.replace(hour=9)}
        lake.write_table(
            lake_api.sessions_file(name, "synthetic"),
            pa.Table.from_pylist([{**t, **started} for t in tags], sessions.STATE),
        )


def _ingest_twice(tmp_path: Path, days: int, reads: list[str]) -> tuple[dict[str, Any], list[str]]:
    """An AssumeRole (tenant t0007) ingested; ``days`` of other state; then the same object
    delivered again beside a new one whose call uses the session."""
    root = tmp_path / f"lake-{days}"
    first = lf.delivery_file(
        tmp_path / "in" / DELIVERY / "a.json.gz",
        [lf.assume_role(tenant="t0007", new_key_id=KEY_ID, time="2026-11-16T09:59:00Z")],
    )
    ingest([str(first)], str(root), pooled_config(), workers=1)
    _synthetic_state(Lake(str(root)), days, T0)
    second = lf.delivery_file(
        tmp_path / "in" / DELIVERY / "b.json.gz",
        [lf.ct(key_id=KEY_ID, time="2026-11-16T10:30:00Z")],
    )
    reads.clear()
    summary = ingest([str(first), str(second)], str(root), pooled_config(), workers=1)
    return summary, [r for r in reads if r.startswith("_state/")]


def test_ingest_reads_the_state_of_its_inputs_and_sessions_days_not_a_year(
    tmp_path: Path, reads: list[str]
) -> None:
    one, read_one = _ingest_twice(tmp_path, 1, reads)
    year, read_year = _ingest_twice(tmp_path, 365, reads)
    # The object delivered again is skipped, and the call joins its session, with a year of
    # state in the lake as with a day.
    for summary in (one, year):
        assert (summary["files"], summary["files_skipped"], summary["ingested"]) == (2, 1, 1)
    for days in (1, 365):
        ev = lake_api.events(tmp_path / f"lake-{days}", columns=["action", "actor_tenant"])
        assert dict(zip(ev["action"], ev["actor_tenant"], strict=True))["GetObject"] == "t0007"
    # The same files: the inputs' partition, and the sessions of the days from 12 hours
    # before the call (the longest session) to the call.
    folders = [
        "_state/ingested/date=2026-11-16",
        *(f"_state/sessions/date=2026-11-{d}" for d in (15, 16)),
    ]
    assert sorted(r.rsplit("/", 1)[0] for r in read_one) == folders
    assert sorted(r.rsplit("/", 1)[0] for r in read_year) == folders


CFG = Config(alerting=AlertingConfig())


def _year_of_incidents(lake: Lake, days: int) -> str:
    """``days`` days before T0 of incidents, each paged and snapshotted, one a day; and one
    page of 200 days ago still in doubt. Returns the id of that one."""
    store.ensure_index(lake)  # a store kept since it was empty
    doubtful = ""
    for i in range(1, days + 1):
        inc = incident(
            at=-i * DAY,
            dedup_key=f"cross_tenant_access:cross_tenant|usr-{i}|t0001",
            actor=f"usr-old-{i}",
            evidence=f'{{"source_ips": [["192.0.2.{i % 250}", 1]]}}',
        )
        inc = dataclasses.replace(
            inc, snapshot_uri="s3://snapshots/x", snapshot_sha256="0" * 64, snapshot_revision=1
        )
        store.save_incidents(lake, [inc])
        nid = f"{i:032x}"
        row = store.new_row(
            nid, inc.incident_id, "new", inc.detector, inc.severity, ["t0002"], "s", "t", "{}",
            {}, 1, False, "local", inc.last_seen or inc.window_end,
        )  # fmt: skip
        row["state"] = "in_doubt" if i == 200 else "sent"
        store.write_row(lake, row)
        doubtful = nid if i == 200 else doubtful
    return doubtful


def _alert_lake(tmp_path: Path, days: int) -> tuple[Lake, str]:
    lake = Lake(str(tmp_path / f"alert-{days}"))
    rows = [
        fx.api(m * 60, actor_principal="usr-a", target_tenant="t0002") for m in range(0, 60, 10)
    ]
    lake.write_table("events/source=apigateway/date=2026-11-16/hour=10/p.parquet", fx.events(rows))
    return lake, _year_of_incidents(lake, days)


def _findings(lake: Lake, name: str, *rows: dict[str, Any]) -> None:
    table = pa.Table.from_pylist(list(rows), schema=schema.FINDINGS)
    lake.write_table(f"findings/date={rows[0]['window_start']:%Y-%m-%d}/{name}.parquet", table)


def test_alert_reads_the_incidents_active_near_its_window_and_the_unsent_not_a_year(
    tmp_path: Path, reads: list[str]
) -> None:
    opened: dict[int, list[str]] = {}
    for days in (1, 30, 365):
        lake, doubtful = _alert_lake(tmp_path, days)
        _findings(lake, "new", finding())
        reads.clear()
        result = run_alert(lake.root, CFG, since=T0)
        opened[days] = sorted(r.rsplit("/", 1)[0] for r in reads)
        assert result.summary["pages_queued"] == 1 and result.summary["incidents_new"] == 1
        # Still reported, though paged 200 days ago.
        assert result.summary["in_doubt_ids"] == ([doubtful] if days >= 200 else [])
    # The window's findings, the incidents whose dedup period reaches it (a day's), the new
    # page (written, then read to send): the same with a month of incidents as with a year,
    # bar the page in doubt, read to be reported (once to check, once to deliver).
    new_page = ["incidents/outbox/date=2026-11-16"] * 2
    near = ["incidents/state/date=2026-11-14", "incidents/state/date=2026-11-15"]
    assert opened[30] == ["findings/date=2026-11-16", *new_page, *near]
    assert opened[1] == ["findings/date=2026-11-16", *new_page, near[1]]
    assert opened[365] == sorted([*opened[30], *["incidents/outbox/date=2026-04-30"] * 2])


def test_a_story_begun_months_ago_and_active_still_takes_a_new_finding(
    tmp_path: Path, reads: list[str]
) -> None:
    lake, _ = _alert_lake(tmp_path, 100)
    # usr-a's story began 90 days ago and went on until 20 minutes before T0.
    began = finding(at=-90 * DAY, last_seen=T0 - timedelta(minutes=20))
    _findings(lake, "old", began)
    run_alert(lake.root, CFG, since=T0 - 90 * DAY)
    _findings(lake, "new", finding(dedup_key="tenant_switching:principal|usr-a"))
    reads.clear()
    result = run_alert(lake.root, CFG, since=T0)
    assert (result.summary["incidents_new"], result.summary["incidents_updated"]) == (0, 1)
    assert result.summary["pages_queued"] == 0
    (grown,) = result.incidents
    assert grown.period_start == T0 - 90 * DAY and grown.finding_count == 2
    # Its own state and that of the two closed ones whose dedup period reaches T0, and of the
    # outbox its page (whether it paged, made on its last day) and the digest telling of its
    # growth, not the 90 days of other pages its story spans.
    state = sorted(r.rsplit("/", 1)[0] for r in reads if r.startswith("incidents/state/"))
    assert state == [f"incidents/state/date=2026-{d}" for d in ("08-18", "11-14", "11-15")]
    outbox = {r.rsplit("/", 1)[0] for r in reads if r.startswith("incidents/outbox/")}
    assert outbox == {"incidents/outbox/date=2026-11-16"}


def test_a_lake_of_the_flat_layout_still_skips_its_inputs_and_joins_its_sessions(
    tmp_path: Path,
) -> None:
    """State files written before the folders were partitioned (directly in them) count."""
    root = tmp_path / "lake"
    first = lf.delivery_file(
        tmp_path / "in" / DELIVERY / "a.json.gz",
        [lf.assume_role(tenant="t0007", new_key_id=KEY_ID, time="2026-11-16T09:59:00Z")],
    )
    ingest([str(first)], str(root), pooled_config(), workers=1)
    for folder in ("ingested", "sessions"):  # as the flat layout held them
        for f in (root / "_state" / folder).rglob("*.parquet"):
            f.rename(root / "_state" / folder / f"old-{f.name}")
    second = lf.delivery_file(
        tmp_path / "in" / DELIVERY / "b.json.gz",
        [lf.ct(key_id=KEY_ID, time="2026-11-16T10:30:00Z")],
    )
    summary = ingest([str(first), str(second)], str(root), pooled_config(), workers=1)
    assert (summary["files_skipped"], summary["ingested"]) == (1, 1)
    ev = lake_api.events(root, columns=["action", "actor_tenant"])
    assert dict(zip(ev["action"], ev["actor_tenant"], strict=True))["GetObject"] == "t0007"


def test_the_newest_and_oldest_events_are_found_from_one_day_s_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The health's lag (every run) and detection's history start (every window) list the
    sources' day folders and one day's files, however many days the lake holds."""
    from pipeline.detect import earliest_event, latest_day
    from pipeline.health import newest_event

    lake = Lake(str(tmp_path / "lake"))
    days = 40
    for i in range(days):
        at = fx.T0 + i * DAY
        rows = fx.events([fx.event(at - fx.T0), fx.event(at - fx.T0 + timedelta(minutes=20))])
        hour = lake_api.event_partition("cloudtrail", f"{at:%Y-%m-%d}", f"{at:%H}")
        lake.write_table(f"{hour}/part-{i}.parquet", rows)
    first, last = fx.T0, fx.T0 + (days - 1) * DAY
    listed: list[str] = []
    listing = Lake._listed

    def spy(self: Lake, rel: str, suffix: str = ".parquet", recursive: bool = True) -> list[str]:
        listed.append(rel)
        return listing(self, rel, suffix, recursive)

    monkeypatch.setattr(Lake, "_listed", spy)

    def day_folders(at: datetime) -> set[str]:
        return {lake_api.event_day(s, f"{at:%Y-%m-%d}") for s in schema.SOURCES}

    assert newest_event(lake) == last + timedelta(minutes=20)
    assert set(listed) == day_folders(last)
    listed.clear()
    assert earliest_event(lake) == first
    assert set(listed) == day_folders(first)
    listed.clear()
    assert latest_day(lake) == last.replace(hour=0)
    assert set(listed) == day_folders(last)


def test_an_event_read_lists_the_days_of_its_window_not_the_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window (or a baseline, read a day at a time) lists its days' folders: a year of events
    beside them is never listed, and the rows read are the same."""
    lake = Lake(str(tmp_path / "lake"))
    for i in range(30):
        day = T0 - i * DAY
        rows = [fx.event(0, event_id=f"e{i}")]
        table = fx.events(rows)
        table = table.set_column(
            table.schema.get_field_index("event_time"),
            "event_time",
            pa.array([day], table.schema.field("event_time").type),
        )
        lake.write_table(
            f"events/source=cloudtrail/date={day:%Y-%m-%d}/hour={day:%H}/p.parquet", table
        )
    listed: list[str] = []
    files = Lake.files

    def spy(self: Lake, rel: str, suffix: str = ".parquet") -> list[str]:
        listed.append(rel)
        return files(self, rel, suffix)

    monkeypatch.setattr(Lake, "files", spy)
    got = lake_api.read_events(lake, T0 - 2 * DAY, T0 + timedelta(hours=1), sources=("cloudtrail",))
    assert sorted(got["event_id"].to_pylist()) == ["e0", "e1", "e2"]
    assert all(rel.startswith("events/source=cloudtrail/date=") for rel in listed)
    assert len(listed) == 3  # three days, not thirty
    assert lake_api.read_events(lake)["event_id"].length() == 30
