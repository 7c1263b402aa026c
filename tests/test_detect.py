"""The detect stage and the ``tenantwatch detect`` command over a small lake built in place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner

import detectors
from detectors.cross_tenant_access import CrossTenantAccess
from pipeline import schema
from pipeline.cli import cli
from pipeline.config import parse_config
from pipeline.detect import read_findings, run_detect
from pipeline.errors import InputError
from pipeline.lake import Lake, event_partition
from tests.factories import api, event, events

CFG = parse_config({}, environ={})
DAY = datetime(2026, 11, 16, tzinfo=UTC)


def write(lake: Lake, table: pa.Table, name: str) -> None:
    """Put events where ingestion would, one file per (source, date, hour)."""
    df = table.to_pandas()
    for (source, day, hour), _ in df.groupby(
        [df["source"], df["event_time"].dt.strftime("%Y-%m-%d"), df["event_time"].dt.strftime("%H")]
    ):
        rows = table.filter(
            pa.compute.and_(
                pa.compute.equal(table["source"], source),
                pa.compute.equal(
                    pa.compute.strftime(table["event_time"], "%Y-%m-%d%H"), day + hour
                ),
            )
        )
        lake.write_table(f"{event_partition(source, day, hour)}/part-{name}.parquet", rows)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lk = Lake(str(tmp_path / "lake"))
    history = [
        api(timedelta(hours=-24 * d + 3), actor_tenant="t0001", target_tenant="t0001")
        for d in range(1, 4)
    ]
    today = [event(0, target_tenant="t0002"), event(5, target_tenant="t0002"), *history]
    write(lk, events(today), "a")
    return lk


def test_default_window_is_the_latest_day_and_findings_are_written(lake: Lake) -> None:
    result = run_detect(lake.root, CFG)
    s = result.summary
    assert (s["window_start"], s["window_end"]) == (
        DAY.isoformat(),
        (DAY + timedelta(days=1)).isoformat(),
    )
    assert s["failed"] == {}
    assert s["by_severity"] == {"critical": 1}
    assert s["detectors"]["cross_tenant_access"] == {
        "window_events": 2,
        "baseline_events": 0,
        "findings": 1,
    }
    assert s["detectors"]["tenant_switching"]["baseline_events"] == 3
    # The failure-spike detector reads only denied events of its history (none here).
    assert s["detectors"]["authz_failure_spike"]["baseline_events"] == 0
    files = lake.files("findings")
    assert len(files) == len(detectors.BUILTIN)  # one per detector, empty ones too
    assert all(f.startswith("findings/date=2026-11-16/part-") for f in files)
    stored = read_findings(lake)
    assert stored["finding_id"].to_pylist() == result.findings["finding_id"].to_pylist()


def test_rerunning_a_window_rewrites_the_same_files_and_ids(lake: Lake) -> None:
    first = run_detect(lake.root, CFG)
    files = lake.files("findings")
    again = run_detect(lake.root, CFG)
    assert lake.files("findings") == files
    assert again.findings.equals(first.findings)


def test_a_failing_detector_is_reported_and_the_others_run(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(self: object, window: object) -> None:
        raise RuntimeError("broken on purpose\nsecond line")

    monkeypatch.setattr(CrossTenantAccess, "score", boom)
    result = run_detect(lake.root, CFG)
    assert result.summary["failed"] == {"cross_tenant_access": "RuntimeError: broken on purpose"}
    assert set(result.summary["detectors"]) == set(detectors.BUILTIN) - {"cross_tenant_access"}


def test_since_alone_means_one_day(lake: Lake) -> None:
    result = run_detect(lake.root, CFG, since=DAY - timedelta(days=1))
    assert result.summary["window_end"] == DAY.isoformat()
    assert result.findings.num_rows == 0


def test_an_empty_lake_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no events"):
        run_detect(str(tmp_path / "none"), CFG)


def test_only_runs_the_named_detectors(lake: Lake) -> None:
    result = run_detect(lake.root, CFG, only=("cross_tenant_access",), write=False)
    assert list(result.summary["detectors"]) == ["cross_tenant_access"]
    assert lake.files("findings") == []


def test_cli_detect_json_prints_one_object(lake: Lake) -> None:
    out = CliRunner().invoke(cli, ["detect", "--lake", lake.root, "--json"])
    assert out.exit_code == 0, out.output
    doc = orjson.loads(out.stdout)
    assert doc["findings"][0]["detector"] == "cross_tenant_access"
    assert doc["findings"][0]["evidence"]["event_ids"] == ["ev-000001", "ev-000002"]
    assert set(schema.FINDINGS.names) <= set(doc["findings"][0])


def test_cli_detect_prints_a_table(lake: Lake) -> None:
    out = CliRunner().invoke(cli, ["detect", "--lake", lake.root, "--since", "2026-11-16"])
    assert out.exit_code == 0, out.output
    assert "1 findings, 2026-11-16T00:00:00+00:00" in out.stdout
    assert "critical" in out.stdout and "cross_tenant_access" in out.stdout


def test_cli_detect_bad_setting_exits_2(lake: Lake, tmp_path: Path) -> None:
    toml = tmp_path / "tw.toml"
    toml.write_text('[detectors.authz_failure_spike]\nmin_count = "ten"\n')
    out = CliRunner().invoke(cli, ["--config", str(toml), "detect", "--lake", lake.root])
    assert out.exit_code == 2
    assert (
        "detectors.authz_failure_spike.min_count: expected an integer, got a string" in out.stderr
    )


def test_cli_detect_exit_code_1_when_a_detector_fails(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CrossTenantAccess, "score", lambda self, w: 1 / 0)
    out = CliRunner().invoke(cli, ["detect", "--lake", lake.root, "--json"])
    assert out.exit_code == 1
    assert orjson.loads(out.stdout)["failed"] == {
        "cross_tenant_access": "ZeroDivisionError: division by zero"
    }


def test_values_from_logs_are_not_markup(tmp_path: Path) -> None:
    lk = Lake(str(tmp_path / "lake"))
    write(
        lk, events([api(0, actor_principal="[bold red]x[/]\x1b[31m", target_tenant="t0002")]), "m"
    )
    out = CliRunner().invoke(cli, ["detect", "--lake", lk.root])
    assert out.exit_code == 0, out.output
    assert "[bold red]x[/]" in out.stdout
    assert "\x1b" not in out.stdout


def test_json_output_escapes_what_a_terminal_would_obey(tmp_path: Path) -> None:
    # Right-to-left override, zero-width space, DEL, a C1 CSI: valid JSON as they are, so they
    # must be written as \uXXXX to stay inert in a terminal piping --json.
    hidden = "\u202e\u200b\x7f\x9b"
    principal = f"usr-{hidden}-x\x1b[31m"
    lk = Lake(str(tmp_path / "lake"))
    write(lk, events([api(0, actor_principal=principal, target_tenant="t0002")]), "m")
    out = CliRunner().invoke(cli, ["detect", "--lake", lk.root, "--json"])
    assert out.exit_code == 0, out.output
    assert not any(c in out.stdout for c in hidden + "\x1b")
    assert all(e in out.stdout for e in ("\\u202e", "\\u200b", "\\u007f", "\\u009b", "\\u001b"))
    doc = orjson.loads(out.stdout)
    assert {f["actor"] for f in doc["findings"]} == {principal}  # the same values, written safely


def test_a_lake_with_nothing_before_the_window_has_no_history(tmp_path: Path) -> None:
    lk = Lake(str(tmp_path / "lake"))
    stuffing = [
        api(
            20 * i,
            actor_principal=None,
            actor_tenant=None,
            target_tenant="t0002",
            outcome="denied",
            status_code=401,
            source_ip=f"192.0.2.{i % 40}",
        )
        for i in range(60)
    ]
    write(lk, events(stuffing), "a")
    found = run_detect(lk.root, CFG, only=("authz_failure_spike",), write=False).findings
    assert found["baseline"].to_pylist() == [
        "no history before 2026-11-16 00:00 UTC: baseline unknown; floor 10/h "
        "(distinct failing actors or addresses)"
    ]
    assert found["severity"].to_pylist() == ["medium"]
    # One earlier event is history: its quiet hours are data from then on, not before.
    write(lk, events([api(timedelta(hours=-24 * 3))], prefix="old"), "b")
    again = run_detect(lk.root, CFG, only=("authz_failure_spike",), write=False).findings
    assert (
        again["baseline"]
        .to_pylist()[0]
        .endswith(
            "(all hours, 62 samples) over 3 d; floor 10/h (distinct failing actors or addresses)"
        )
    )


def test_what_a_detector_could_not_judge_is_in_the_summary(tmp_path: Path, lake: Lake) -> None:
    # API requests with an authorizer principal and no authorizer log: hits and misses cannot
    # be told apart, and the summary says so rather than the detector guessing.
    lk = Lake(str(tmp_path / "api"))
    write(lk, events([api(10 * i, request_id=f"r{i}") for i in range(5)]), "a")
    result = run_detect(lk.root, CFG, only=("authorizer_cache",), write=False)
    assert result.findings.num_rows == 0
    (why,) = result.summary["skipped"].values()
    assert list(result.summary["skipped"]) == ["authorizer_cache:*"]
    assert "authorizer's log is not ingested" in why
    assert run_detect(lake.root, CFG, write=False).summary["skipped"] == {}
