"""What a run asks S3 for (pipeline/lake_io.py): a small file written in one PUT, a small file
read in one GET, and a window's event files fetched once for all the detectors that read them,
with the same rows as reading them from S3 range by range. Counted through the fault proxy,
which logs every request the code under test makes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pytest

from pipeline import lake_io
from pipeline.lake import WATERMARK, Lake, read_events
from pipeline.runs.watermark import read_watermark, write_watermark
from tests import logfactory as lf
from tests.alertsinks import direct, upload_lake
from tests.httpfaults import RuleProxy, in_front_of
from tests.ingestlake import run

pytestmark = pytest.mark.e2e
DAY = "2026-11-16"


@pytest.fixture
def proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RuleProxy]:
    with in_front_of(aws, monkeypatch) as p:
        yield p


@pytest.fixture(scope="module")
def local_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Events in three hour partitions of two sources."""
    root = tmp_path_factory.mktemp("events")
    for hour in ("09", "10", "11"):
        lf.delivery_file(
            root / "in" / f"{hour}.json.gz",
            [
                lf.ct(time=f"{DAY}T{hour}:0{i}:00Z", key=f"tenants/t000{1 + i % 3}/k{hour}{i}")
                for i in range(6)
            ],
        )
    lf.lines_file(root / "in" / "api.log", [lf.access_log(tenant_path="t0002", claim="t0002")])
    run(root / "lake", root / "in")
    return root / "lake"


def _requests(proxy: RuleProxy, method: str, part: str) -> Counter[str]:
    return Counter(e.path for e in proxy.log if e.method == method and part in e.path)


def test_a_small_table_is_written_in_one_put(proxy: RuleProxy, aws: str) -> None:
    root = upload_lake(Path("/nonexistent"), aws, "lake")
    write_watermark(root, datetime(2026, 11, 16, 10, tzinfo=UTC), "run-1")
    assert [(e.method, e.path.split("?")[0]) for e in proxy.log] == [
        ("PUT", f"/lake/lake/{WATERMARK}")
    ]


def test_the_watermark_is_read_in_one_get_and_a_missing_one_in_one_too(
    proxy: RuleProxy, aws: str
) -> None:
    root = upload_lake(Path("/nonexistent"), aws, "lake")
    assert read_watermark(root) is None
    write_watermark(root, datetime(2026, 11, 16, 10, tzinfo=UTC), "run-1")
    proxy.log.clear()
    assert read_watermark(root) == datetime(2026, 11, 16, 10, tzinfo=UTC)
    assert [e.method for e in proxy.log] == ["GET"]


def test_a_snapshot_fetches_each_event_file_once_for_every_read(
    proxy: RuleProxy, aws: str, local_lake: Path
) -> None:
    root = upload_lake(local_lake, aws, "lake")
    lake = Lake(root)
    since, until = datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 17, tzinfo=UTC)
    plain = read_events(Lake(root), since, until)  # outside a snapshot: ranged reads
    proxy.log.clear()
    with lake.snapshot():
        reads = [
            read_events(lake, since, until, columns=["event_id", "actor_tenant"]),
            read_events(lake, since, until, sources=("cloudtrail",), columns=["event_id"]),
            read_events(lake, since, until),
        ]
    gets = _requests(proxy, "GET", "/events/")
    gets = Counter({unquote(k.split("?")[0]): v for k, v in gets.items()})
    files = [f for f in lake.files("events") if f.startswith("events/")]
    assert len(files) >= 4
    assert sorted(gets) == sorted(f"/lake/lake/{f}" for f in files)
    assert set(gets.values()) == {1}
    assert not _requests(proxy, "HEAD", "/events/")

    def ordered(t: pa.Table) -> list[dict[str, object]]:
        return sorted(t.to_pylist(), key=lambda r: str(r["event_id"]))

    assert ordered(reads[2]) == ordered(plain)
    assert ordered(reads[0]) == ordered(plain.select(["event_id", "actor_tenant"]))
    cloudtrail = plain.filter(pa.compute.equal(plain["source"], "cloudtrail"))
    assert ordered(reads[1]) == ordered(cloudtrail.select(["event_id"]))


def test_a_snapshot_fetches_only_the_files_of_the_hours_read(
    proxy: RuleProxy, aws: str, local_lake: Path
) -> None:
    root = upload_lake(local_lake, aws, "lake")
    lake = Lake(root)
    since, until = datetime(2026, 11, 16, 10, tzinfo=UTC), datetime(2026, 11, 16, 11, tzinfo=UTC)
    expected = read_events(Lake(root), since, until)
    proxy.log.clear()
    with lake.snapshot():
        got = read_events(lake, since, until)
    gets = [unquote(p) for p in _requests(proxy, "GET", "/events/")]
    assert gets and all("/hour=10/" in p for p in gets)
    assert sorted(got["event_id"].to_pylist()) == sorted(expected["event_id"].to_pylist())


def test_files_an_ingest_named_are_fetched_whole_without_asking_their_size(
    proxy: RuleProxy, aws: str, local_lake: Path
) -> None:
    root = upload_lake(local_lake, aws, "lake")
    files = [f for f in Lake(root).files("events") if f.startswith("events/")]
    expected = read_events(root).num_rows
    proxy.log.clear()
    lake = Lake(root)  # a lake that never listed them: sizes unknown
    with lake.snapshot():
        got = read_events(lake, files=files)
        again = read_events(lake, files=files, columns=["event_id"])
    assert got.num_rows == again.num_rows == expected
    assert set(_requests(proxy, "GET", "/events/").values()) == {1}
    assert not _requests(proxy, "HEAD", "/events/")


def test_a_file_larger_than_held_files_is_read_from_s3_as_before(
    proxy: RuleProxy, aws: str, local_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lake_io, "FILE_BYTES", 64)  # every event file is "large"
    root = upload_lake(local_lake, aws, "lake")
    files = [f for f in Lake(root).files("events") if f.startswith("events/")]
    lake = Lake(root)
    with lake.snapshot():
        got = read_events(lake, files=files)
        assert lake.held(files[0]) is None
    assert got.num_rows == read_events(root).num_rows


def test_a_file_deleted_after_its_listing_is_reported_missing(
    proxy: RuleProxy, aws: str, local_lake: Path
) -> None:
    # As a compaction does between a listing and a read: the read fails as pyarrow's would,
    # and the callers list again (Lake.read_folder, the detectors' reads).
    root = upload_lake(local_lake, aws, "lake")
    lake = Lake(root)
    files = [f for f in lake.files("events") if f.startswith("events/")]
    lake.fs.delete_file(lake.path(files[0]))
    with lake.snapshot(), pytest.raises(FileNotFoundError):
        lake.held(files[0])


def test_a_marker_is_removed_in_one_delete_leaving_no_folder_marker(
    proxy: RuleProxy, aws: str
) -> None:
    from pipeline.alert import store

    root = upload_lake(Path("/nonexistent"), aws, "lake")
    lake = Lake(root)
    store.write_bytes(lake, "_state/late/20261116T1000", b"")
    proxy.log.clear()
    lake_io.delete(lake, "_state/late/20261116T1000")
    lake_io.delete(lake, "_state/late/20261116T1000")  # gone already: fine
    assert [e.method for e in proxy.log] == ["DELETE", "DELETE"]
    listed = direct("s3", aws).list_objects_v2(Bucket="lake").get("Contents", [])
    assert listed == []


def test_a_local_file_is_deleted_once_and_gone_already_is_reported(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    (tmp_path / "_state" / "late").mkdir(parents=True)
    (tmp_path / "_state" / "late" / "20261116T1000").write_bytes(b"")
    assert lake_io.delete(lake, "_state/late/20261116T1000") is True
    assert not (tmp_path / "_state" / "late" / "20261116T1000").exists()
    assert lake_io.delete(lake, "_state/late/20261116T1000") is False


def test_the_metrics_spool_sent_leaves_no_folder_marker_on_s3(proxy: RuleProxy, aws: str) -> None:
    from pipeline.alert import metrics, store
    from pipeline.lake import metrics_spool_file

    root = upload_lake(Path("/nonexistent"), aws, "lake")
    lake = Lake(root)
    rel = metrics_spool_file("a" * 24)
    store.write_bytes(lake, rel, b"[]")
    out = metrics.put(lake, "Tenantwatch", [], region="us-east-1")
    assert out["error"] is None and out["sent"] == 0
    listed = direct("s3", aws).list_objects_v2(Bucket="lake").get("Contents", [])
    assert listed == []
