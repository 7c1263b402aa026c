"""The notebook API (pipeline/notebook.py) over a small lake: a cross-tenant read and noise."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline import notebook as tw
from pipeline.alert.run import run_alert
from pipeline.config import parse_config
from pipeline.detect import run_detect
from pipeline.errors import ConfigError, InputError
from pipeline.lake import Lake, event_partition
from tests import factories as f

CFG = parse_config({}, environ={})


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    """usr-x of t0001 reads t0002 twice from 203.0.113.99; usr-a works on its own tenant."""
    rows = [
        f.api(60, actor_principal="usr-x", target_tenant="t0002", source_ip="203.0.113.99"),
        f.api(120, actor_principal="usr-x", target_tenant="t0002", source_ip="203.0.113.99"),
        f.api(180, target_tenant="t0001"),
        f.api(240, target_tenant="t0001", outcome="denied", status_code=403),
    ]
    root = str(tmp_path_factory.mktemp("nb") / "lake")
    Lake(root).write_table(
        f"{event_partition('apigateway', '2026-11-16', '10')}/p.parquet", f.events(rows)
    )
    run_detect(root, CFG, f.T0, f.T0 + timedelta(days=1))
    run_alert(root, CFG)
    return root


def test_events_filter_by_actor_in_any_role(lake: str) -> None:
    assert len(tw.events(lake, "2026-11-16", "2026-11-17", actor="usr-x")) == 2
    assert len(tw.events(lake, "2026-11-16", "2026-11-17", actor="203.0.113.99")) == 2
    assert len(tw.events(lake, "2026-11-16", "2026-11-17", tenant="t0001")) == 4
    assert len(tw.events(lake, "2026-11-16", "2026-11-17", outcome="denied")) == 1
    assert len(tw.events(lake, "2026-11-17", "2026-11-18")) == 0


def test_findings_are_pruned_by_window_day(lake: str) -> None:
    found = tw.findings(lake, "2026-11-16", "2026-11-17", detector="cross_tenant_access")
    assert list(found["actor"]) == ["usr-x"] and list(found["severity"]) == ["critical"]
    assert tw.evidence(found.iloc[0])["source_ips"] == [["203.0.113.99", 2]]
    assert tw.findings(lake, "2026-11-17", "2026-11-18").empty
    assert tw.findings(lake, min_severity="critical")["actor"].tolist() == ["usr-x"]


def test_incidents_and_their_snapshot_verify(lake: str) -> None:
    incs = tw.incidents(lake, tenant="t0002")
    assert list(incs["actor"]) == ["usr-x"]
    assert tw.incidents(lake, "2026-11-17").empty
    snap = tw.snapshot(lake, incs.iloc[0]["incident_id"][:10])
    assert sorted(snap.events()["event_id"]) == ["ev-000001", "ev-000002"]
    assert len(snap.raw()) == 2 and snap.verify().ok


def test_a_tampered_snapshot_fails_verification(lake: str, tmp_path: Path) -> None:
    import shutil

    snap = tw.snapshot(lake, tw.incidents(lake).iloc[0]["incident_id"])
    copy = tmp_path / "copy"
    shutil.copytree(Path(snap.manifest_uri).parent, copy)
    target = copy / "events.parquet"
    os.chmod(target, 0o644)
    target.write_bytes(target.read_bytes() + b"x")
    forged = tw.Snapshot(snap.incident_id, str(copy / "manifest.json"), snap.sha256, snap.manifest)
    result = forged.verify()
    assert not result.ok
    assert {f["name"]: f["status"] for f in result.files}["events.parquet"] == "changed"


def test_unknown_incident_is_an_input_error(lake: str) -> None:
    with pytest.raises(InputError, match="no incident"):
        tw.incident(lake, "ffffffff")


def test_compare_findings_shows_what_a_setting_drops(lake: str) -> None:
    diff = tw.compare_findings(lake, "cross_tenant_access", "2026-11-16", cfg=CFG, min_events=3)
    assert list(diff["change"]) == ["dropped"]
    assert diff.attrs["overrides"] == {"min_events": 3}
    same = tw.compare_findings(lake, "cross_tenant_access", "2026-11-16", cfg=CFG, min_events=2)
    assert list(same["change"]) == ["same"]


def test_overrides_are_validated_like_the_configuration() -> None:
    with pytest.raises(ConfigError, match="min_events"):
        tw.detector("cross_tenant_access", CFG, min_events="many")


def test_sweep_gives_findings_per_value(lake: str) -> None:
    out = tw.sweep(lake, "cross_tenant_access", "min_events", [1, 2, 3], "2026-11-16", cfg=CFG)
    assert out.groupby("value").size().reindex([1, 2, 3], fill_value=0).tolist() == [1, 1, 0]
    assert tw.records(out)[0]["actor_tenant"] == "t0001"


def test_run_detector_returns_the_fitted_detector(lake: str) -> None:
    run = tw.run_detector(lake, "authz_failure_spike", "2026-11-16", cfg=CFG)
    hourly = run.detector.hourly(run.window, "tenant", "t0001")  # type: ignore[attr-defined]
    assert hourly[hourly["part"] == "window"]["count"].sum() == 1


def test_a_lake_may_be_given_as_a_path(lake: str) -> None:
    """Notebooks hold folders as ``pathlib.Path``: every read takes one as its text."""
    path = Path(lake)
    assert tw.events(path, "2026-11-16", "2026-11-17").equals(
        tw.events(lake, "2026-11-16", "2026-11-17")
    )
    assert len(tw.events(path, "2026-11-16", "2026-11-17", actor="usr-x")) == 2
    assert list(tw.findings(path, "2026-11-16", "2026-11-17")["actor"]).count("usr-x") == 1
    assert list(tw.incidents(path)["actor"]) == ["usr-x"]
    assert tw.quarantine(path).empty
    assert tw.ensure_lake(path, "does-not-exist") == lake


def test_ensure_lake_keeps_a_lake_with_events(lake: str) -> None:
    assert tw.ensure_lake(lake, "does-not-exist") == lake


def test_ensure_lake_needs_logs_to_build_from(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        tw.ensure_lake(str(tmp_path / "empty"), tmp_path / "nothing")
