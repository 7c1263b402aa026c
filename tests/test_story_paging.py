"""One attack, one page: a story pages when it opens, again only when its severity rises, and
otherwise tells on-call through the digest; its snapshot grows by parts chained by hash.

Alert runs over a local lake (the local channel: what would go to SNS, as JSON lines).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from pipeline import schema
from pipeline.alert import snapshot, store
from pipeline.alert.run import run_alert
from pipeline.cli import cli
from pipeline.config import AlertingConfig, Config
from pipeline.lake import Lake
from tests import factories as fx
from tests.alertfactory import HOUR, finding

CFG = Config(alerting=AlertingConfig())


def _lake(tmp_path: Path) -> str:
    """usr-e's requests from 203.0.113.5 on t0002 between 10:00 and 12:00."""
    lake = Lake(str(tmp_path / "lake"))
    rows = [
        fx.api(m * 60, actor_principal="usr-e", source_ip="203.0.113.5", target_tenant="t0002")
        for m in range(0, 120, 10)
    ]
    lake.write_table("events/source=apigateway/date=2026-11-16/hour=10/p.parquet", fx.events(rows))
    return lake.root


def _signal(detector: str, kind: str, severity: str, at: timedelta, ips: list[str]) -> dict:
    return finding(
        at=at,
        detector=detector,
        dedup_key=f"{detector}:{kind}|usr-e",
        severity=severity,
        actor="usr-e" if kind != "ip" else ips[0],
        title=f"{detector}: {kind} usr-e",
        evidence=json.dumps(
            {"source_ips": [[ip, 2] for ip in ips], "event_ids": [f"{detector}-{kind}-{at}"]}
        ),
    )


def _add(lake: str, name: str, *findings: dict[str, Any]) -> None:
    table = pa.Table.from_pylist(list(findings), schema=schema.FINDINGS)
    Lake(lake).write_table(f"findings/date=2026-11-16/{name}.parquet", table)


def _pages(lake: str) -> list[dict[str, Any]]:
    """Pages, the first one first."""
    rows = store.load_outbox(Lake(lake), full=True).values()
    return sorted(
        (r for r in rows if r["kind"] in ("new", "escalation")), key=lambda r: r["kind"] != "new"
    )


def _kinds(lake: str) -> list[str]:
    return sorted(r["kind"] for r in store.load_outbox(Lake(lake)).values())


def test_three_detectors_on_one_attacker_page_once_with_the_story(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _add(
        lake,
        "a",
        _signal("cross_tenant_access", "cross_tenant", "high", timedelta(0), ["203.0.113.5"]),
        _signal("tenant_switching", "principal", "high", timedelta(0), ["203.0.113.5"]),
        _signal("authz_failure_spike", "ip", "high", timedelta(0), ["203.0.113.5"]),
    )
    result = run_alert(lake, CFG)
    (page,) = _pages(lake)
    assert result.summary["pages_queued"] == 1 and page["kind"] == "new"
    assert page["subject"].endswith("(+2 signals)")
    text = page["text"]
    assert "SIGNALS (in order; 3 in this incident)" in text and "ENTITIES" in text
    assert "Principal:      usr-e" in text and "Address:        203.0.113.5" in text
    body = json.loads(json.loads(page["message"])["sqs"])
    tw = body["unmapped"]["tenantwatch"]
    assert [s["detector"] for s in tw["signals"]] == sorted(
        ["cross_tenant_access", "tenant_switching", "authz_failure_spike"]
    )  # all began at once: in dedup key order
    assert set(body["finding_info"]["types"]) == {
        "cross_tenant_access",
        "tenant_switching",
        "authz_failure_spike",
    }
    assert "principal:usr-e" in tw["entities"] and tw["kind"] == "new"


def test_a_rise_in_severity_pages_once_as_an_escalation_and_the_rest_are_digests(
    tmp_path: Path,
) -> None:
    lake = _lake(tmp_path)
    ip = ["203.0.113.5"]
    _add(lake, "a", _signal("authz_failure_spike", "actor", "high", timedelta(0), ip))
    run_alert(lake, CFG)
    assert _kinds(lake) == ["new"]

    # Same severity, another detector: the story grows, a digest says so, nobody is paged.
    _add(lake, "b", _signal("tenant_switching", "principal", "high", timedelta(minutes=20), ip))
    second = run_alert(lake, CFG)
    assert second.summary["pages_queued"] == 0 and _kinds(lake) == ["digest", "new"]

    # Critical: one escalation page, marked as such, naming the severity it rose from.
    _add(lake, "c", _signal("cross_tenant_access", "cross_tenant", "critical", HOUR, ip))
    third = run_alert(lake, CFG)
    assert third.summary["escalations_queued"] == 1
    new, esc = _pages(lake)
    assert esc["kind"] == "escalation" and esc["incident_id"] == new["incident_id"]
    assert esc["subject"].startswith("[CRITICAL] Escalated: ")
    assert "ESCALATED from high to critical" in esc["text"]
    assert "not a new one" in esc["text"]

    # Critical again: no second escalation; and re-running changes nothing.
    _add(lake, "d", _signal("cross_tenant_access", "cross_tenant", "critical", 2 * HOUR, ip))
    run_alert(lake, CFG)
    run_alert(lake, CFG)
    assert _kinds(lake) == ["digest", "digest", "escalation", "new"]
    (inc,) = store.load_incidents(Lake(lake))
    assert [s.severity for s in inc.signals] == ["high", "high", "critical"]


def test_an_escalation_is_not_paged_twice_after_a_crash_before_the_state_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = _lake(tmp_path)
    ip = ["203.0.113.5"]
    _add(lake, "a", _signal("authz_failure_spike", "actor", "high", timedelta(0), ip))
    run_alert(lake, CFG)
    _add(lake, "b", _signal("cross_tenant_access", "cross_tenant", "critical", HOUR, ip))
    saved = store.save_incidents

    def die(*_: Any) -> None:
        raise KeyboardInterrupt("killed after the outbox was written")

    monkeypatch.setattr(store, "save_incidents", die)
    with pytest.raises(KeyboardInterrupt):
        run_alert(lake, CFG)
    monkeypatch.setattr(store, "save_incidents", saved)
    run_alert(lake, CFG)
    run_alert(lake, CFG)
    assert _kinds(lake) == ["escalation", "new"]
    assert all(r["state"] == "sent" for r in store.load_outbox(Lake(lake)).values())


def test_a_later_signal_adds_a_snapshot_part_chained_to_the_first(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _add(lake, "a", _signal("cross_tenant_access", "cross_tenant", "high", timedelta(0), []))
    run_alert(lake, CFG)
    (first,) = store.load_incidents(Lake(lake))
    assert first.snapshot_uri and first.snapshot_revision == 1
    part1 = json.loads(Path(first.snapshot_uri).read_text())
    assert part1["part"] == 1 and part1["previous"] is None
    assert part1["query"]["rows_matched"] == 9  # usr-e's events up to an hour after 10:20

    # A signal naming usr-e's address: the story's entities now include 203.0.113.5.
    _add(lake, "b", _signal("tenant_switching", "principal", "high", HOUR, ["203.0.113.5"]))
    second = run_alert(lake, CFG)
    assert second.summary["snapshots_written"] == 1
    (grown,) = store.load_incidents(Lake(lake))
    assert grown.snapshot_uri != first.snapshot_uri and grown.snapshot_revision == 2
    part2 = json.loads(Path(grown.snapshot_uri).read_text())
    assert part2["part"] == 2
    assert part2["previous"]["sha256"] == first.snapshot_sha256
    assert part2["query"]["addresses"] == ["203.0.113.5"]
    assert first.snapshot_uri and Path(first.snapshot_uri).exists()  # never replaced

    verified = snapshot.verify(grown.snapshot_uri, grown.snapshot_sha256)
    assert verified.ok and [p.part for p in (verified, *verified.earlier)] == [2, 1]
    out = CliRunner().invoke(cli, ["snapshot", "verify", grown.snapshot_uri])
    assert out.exit_code == 0 and "2 parts chained" in out.output

    # The first part changed: the chain from the latest part says so.
    old = Path(first.snapshot_uri).parent / "events.parquet"
    os.chmod(old, 0o644)
    old.write_bytes(old.read_bytes() + b"x")
    broken = snapshot.verify(grown.snapshot_uri, grown.snapshot_sha256)
    assert not broken.ok
    assert {f["name"]: f["status"] for f in broken.earlier[0].files}["events.parquet"] == "changed"
    out = CliRunner().invoke(cli, ["snapshot", "verify", grown.snapshot_uri])
    assert out.exit_code == 1 and "part 1:" in out.output and "CHANGED" in out.output


def test_a_rewritten_earlier_manifest_breaks_the_chain(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _add(lake, "a", _signal("cross_tenant_access", "cross_tenant", "high", timedelta(0), []))
    run_alert(lake, CFG)
    (first,) = store.load_incidents(Lake(lake))
    _add(lake, "b", _signal("tenant_switching", "principal", "high", HOUR, ["203.0.113.5"]))
    run_alert(lake, CFG)
    (grown,) = store.load_incidents(Lake(lake))
    assert first.snapshot_uri and grown.snapshot_uri
    manifest = Path(first.snapshot_uri)
    os.chmod(manifest, 0o644)
    manifest.write_text(manifest.read_text().replace('"part": 1', '"part": 1 '))
    result = snapshot.verify(grown.snapshot_uri)
    assert not result.ok
    assert any("is not the expected" in p for p in result.earlier[0].problems)
