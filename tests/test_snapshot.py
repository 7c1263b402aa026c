"""Forensic snapshots: written once, verifiable, never overwritten (pipeline/alert/snapshot.py)."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.alert import snapshot
from pipeline.alert.incidents import Incident
from pipeline.cli import cli
from pipeline.lake import Lake, event_partition
from tests import factories as f
from tests.alertfactory import incident

HOUR = timedelta(hours=1)


def _lake(tmp_path: Path) -> Lake:
    """usr-a of t0001 on t0002 (3 events, in the incident), plus noise the query must leave out."""
    rows = [
        f.api(5 * 60, actor_tenant="t0001", target_tenant="t0002", raw='{"secret":"fp:abc"}'),
        f.api(10 * 60, actor_tenant="t0001", target_tenant="t0002"),
        f.api(20 * 60, actor_tenant="t0001", target_tenant="t0002"),
        f.api(30 * 60, actor_principal="usr-b", actor_tenant="t0003", target_tenant="t0003"),
        f.api(6 * 3600, actor_tenant="t0001", target_tenant="t0002"),  # outside the margin
    ]
    lake = Lake(str(tmp_path / "lake"))
    lake.write_table(
        f"{event_partition('apigateway', '2026-11-16', '10')}/p.parquet", f.events(rows)
    )
    return lake


def _take(lake: Lake, root: Path, inc: Incident | None = None) -> snapshot.Written:
    inc = inc or incident(evidence=json.dumps({"event_ids": ["ev-000001", "ev-000002"]}))
    store = snapshot.open_store(str(root))
    return snapshot.take(lake, store, inc, HOUR, 1000, "SELECT 1")


def test_write_then_verify_passes(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    w = _take(lake, tmp_path / "snaps")
    assert w.rows == 3
    manifest = json.loads(Path(w.manifest_uri).read_text())
    assert {x["name"] for x in manifest["files"]} == {"events.parquet", "raw.parquet"}
    assert manifest["query"]["rows_matched"] == 3 and manifest["query"]["sql"] == "SELECT 1"
    assert manifest["query"]["sample_event_ids"] == {"listed": 2, "found": 2}
    assert manifest["time_span"]["first_event"] == "2026-11-16T10:05:00Z"
    folder = Path(w.manifest_uri).parent
    raw = pq.read_table(folder / "raw.parquet")
    assert raw.column_names == ["event_id", "event_time", "source", "raw"]
    assert "raw" not in pq.read_table(folder / "events.parquet").column_names
    result = snapshot.verify(w.manifest_uri, w.sha256)
    assert result.ok and [x["status"] for x in result.files] == ["ok", "ok"]


def test_tampered_file_is_reported(tmp_path: Path) -> None:
    w = _take(_lake(tmp_path), tmp_path / "snaps")
    target = Path(w.manifest_uri).parent / "raw.parquet"
    os.chmod(target, 0o644)
    target.write_bytes(target.read_bytes() + b"x")
    result = snapshot.verify(str(Path(w.manifest_uri).parent))
    assert not result.ok
    assert {x["name"]: x["status"] for x in result.files} == {
        "events.parquet": "ok",
        "raw.parquet": "changed",
    }


def test_missing_added_and_rewritten_manifest_are_reported(tmp_path: Path) -> None:
    w = _take(_lake(tmp_path), tmp_path / "snaps")
    folder = Path(w.manifest_uri).parent
    os.chmod(folder / "events.parquet", 0o644)
    (folder / "events.parquet").unlink()
    (folder / "extra.parquet").write_bytes(b"planted")
    result = snapshot.verify(w.manifest_uri, expect_sha256="0" * 64)
    statuses = {x["name"]: x["status"] for x in result.files}
    assert statuses == {
        "events.parquet": "missing",
        "raw.parquet": "ok",
        "extra.parquet": "unexpected",
    }
    assert "not the expected" in result.problems[0]


def test_same_evidence_again_is_the_same_snapshot(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    a = _take(lake, tmp_path / "snaps")
    b = _take(lake, tmp_path / "snaps")  # e.g. a re-run after a crash before the state write
    assert a == b


def test_never_overwritten(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    w = _take(lake, tmp_path / "snaps")
    folder = Path(w.manifest_uri).parent
    os.chmod(folder / "events.parquet", 0o644)
    (folder / "events.parquet").write_bytes(b"tampered")
    store = snapshot.open_store(str(tmp_path / "snaps"))
    rel = f"{folder.parent.name}/{folder.name}/events.parquet"
    with pytest.raises(snapshot.SnapshotError, match="never overwritten"):
        store.put_new(rel, b"other", "0" * 64)
    assert (folder / "events.parquet").read_bytes() == b"tampered"  # left for the analyst


def test_other_evidence_goes_to_another_folder(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    inc = incident()
    a = _take(lake, tmp_path / "snaps", inc)
    b = _take(lake, tmp_path / "snaps", dataclasses.replace(inc, tenants=("t0003",), actor=None))
    assert Path(a.manifest_uri).parent.parent == Path(b.manifest_uri).parent.parent
    assert a.manifest_uri != b.manifest_uri and snapshot.verify(a.manifest_uri).ok


def test_max_events_is_recorded(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    store = snapshot.open_store(str(tmp_path / "snaps"))
    w = snapshot.take(lake, store, incident(), HOUR, 2, "SELECT 1")
    q = json.loads(Path(w.manifest_uri).read_text())["query"]
    assert (w.rows, q["rows_matched"], q["truncated"]) == (2, 3, True)


def test_cli_verify(tmp_path: Path) -> None:
    w = _take(_lake(tmp_path), tmp_path / "snaps")
    runner = CliRunner()
    ok = runner.invoke(cli, ["snapshot", "verify", w.manifest_uri, "--sha256", w.sha256])
    assert ok.exit_code == 0, ok.output
    assert "OK: unchanged" in ok.output
    target = Path(w.manifest_uri).parent / "events.parquet"
    os.chmod(target, 0o644)
    target.write_bytes(b"x")
    bad = runner.invoke(cli, ["snapshot", "verify", w.manifest_uri])
    assert bad.exit_code == 1 and "changed  events.parquet" in bad.output
    gone = runner.invoke(cli, ["snapshot", "verify", str(tmp_path / "nowhere")])
    assert gone.exit_code == 1 and "not found" in gone.output


# Anything added under a snapshot's folder is reported: hidden names and sub-folders too, and
# names that would act on a terminal are shown, not obeyed.
ADDED = [".hidden", ".manifest.json.swp", "sub/evil.parquet", "r\u202egnp.exe", "a\u200bb\x7f\x9b"]


def test_every_added_file_is_reported_locally(tmp_path: Path) -> None:
    w = _take(_lake(tmp_path), tmp_path / "snaps")
    folder = Path(w.manifest_uri).parent
    for name in ADDED:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"planted")
    result = snapshot.verify(w.manifest_uri, w.sha256)
    statuses = {x["name"]: x["status"] for x in result.files}
    assert not result.ok
    assert statuses == {"events.parquet": "ok", "raw.parquet": "ok"} | dict.fromkeys(
        ADDED, "unexpected"
    )
    shown = CliRunner().invoke(cli, ["snapshot", "verify", w.manifest_uri])
    assert shown.exit_code == 1
    assert "unexpected  .hidden" in shown.output and "unexpected  sub/evil.parquet" in shown.output
    assert "r\\u202egnp.exe" in shown.output and "a\\u200bb\\x7f\\x9b" in shown.output
    assert not any(c in shown.output for c in "\u202e\u200b\x7f\x9b")


def test_a_crash_while_writing_leaves_nothing_in_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = _lake(tmp_path)
    real_link = os.link

    def crash_on_manifest(src: str, dst: str) -> None:
        if str(dst).endswith(snapshot.MANIFEST):
            raise KeyboardInterrupt  # the process stops between writing and linking
        real_link(src, dst)

    monkeypatch.setattr(os, "link", crash_on_manifest)
    # A killed process cleans nothing up: its temporary file stays where it was written.
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)
    with pytest.raises(KeyboardInterrupt):
        _take(lake, tmp_path / "snaps")
    monkeypatch.undo()
    w = _take(lake, tmp_path / "snaps")  # the re-run completes the same snapshot
    assert snapshot.verify(w.manifest_uri, w.sha256).ok


@pytest.mark.e2e
def test_every_added_object_is_reported_on_s3(aws: str, tmp_path: Path) -> None:
    import boto3

    from pipeline import aws as clients

    clients.reset()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="evidence")
    store = snapshot.open_store("s3://evidence/snapshots")
    inc = incident(evidence=json.dumps({"event_ids": ["ev-000001"]}))
    w = snapshot.take(_lake(tmp_path), store, inc, HOUR, 1000, "SELECT 1")
    folder = w.manifest_uri.removeprefix("s3://evidence/").rsplit("/", 1)[0]
    for name in ADDED:
        s3.put_object(Bucket="evidence", Key=f"{folder}/{name}", Body=b"planted")
    result = snapshot.verify(w.manifest_uri, w.sha256)
    assert not result.ok
    assert {x["name"]: x["status"] for x in result.files} == {
        "events.parquet": "ok",
        "raw.parquet": "ok",
    } | dict.fromkeys(ADDED, "unexpected")
    clients.reset()
