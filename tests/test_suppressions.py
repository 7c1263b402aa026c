"""Suppressions: ``[[suppressions]]`` validated at start, matching as documented, suppressed
findings written but never paged, expired ones reported and not applied."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from pipeline import schema, suppressions
from pipeline.alert.run import read_findings as alert_findings
from pipeline.alert.run import run_alert
from pipeline.cli import cli
from pipeline.config import ConfigError, Suppression, parse_config
from pipeline.detect import read_findings, run_detect
from pipeline.lake import Lake
from tests import verdictlake as vl
from tests.alertfactory import finding


def sup(**kw: Any) -> Suppression:
    fields: dict[str, Any] = {
        "id": "s1",
        "detector": "any",
        "reason": "known",
        "owner": "me",
        "expires": datetime(2030, 1, 1, tzinfo=UTC),
    }
    fields.update(kw)
    return Suppression(**fields)


# --- matching: named positive and negative cases -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("actor, whole value", {"actor": "usr-a"}),
        (
            "actor by pattern, this detector",
            {"actor": r"usr-\w", "detector": "cross_tenant_access"},
        ),
        ("every tenant of the finding", {"tenant": "t000[12]"}),
        ("address from the evidence", {"address": r"198\.51\.100\.\d+"}),
        ("action from the evidence", {"action": "Get.*"}),
        ("all patterns given", {"actor": "usr-a", "tenant": "t0001|t0002", "action": "GetObject"}),
    ],
)
def test_a_suppression_matches(name: str, kw: dict[str, Any]) -> None:
    assert suppressions.matches(sup(**kw), finding())


@pytest.mark.parametrize(
    ("name", "kw", "finding_kw"),
    [
        ("a prefix is not the whole actor", {"actor": "usr-a"}, {"actor": "usr-ab"}),
        ("another detector", {"actor": "usr-a", "detector": "tenant_switching"}, {}),
        # The finding also involves t0002: the suppression names only t0001.
        ("one tenant of two", {"tenant": "t0001"}, {}),
        ("a finding without an actor", {"actor": ".*"}, {"actor": None}),
        ("a finding without addresses", {"address": ".*"}, {"evidence": "{}"}),
        ("one pattern of two fails", {"actor": "usr-a", "action": "PutObject"}, {}),
    ],
)
def test_a_suppression_does_not_match(
    name: str, kw: dict[str, Any], finding_kw: dict[str, Any]
) -> None:
    assert not suppressions.matches(sup(**kw), finding(**finding_kw))


# --- configuration -------------------------------------------------------------------------------

GOOD = vl.suppression()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expires": None}, "suppressions[0].expires: required key is missing"),
        ({"actor": "usr-(a"}, "suppressions[0].actor: not a valid regular expression"),
        ({"detector": "nope"}, "suppressions[0].detector: unknown detector 'nope'; valid: any,"),
        ({"actor": ""}, "suppressions[0]: expected at least one of actor, address, tenant or"),
        ({"owner": " "}, "suppressions[0].owner: expected a non-empty text"),
        ({"reason": None}, "suppressions[0].reason: required key is missing"),
        ({"expires": datetime(2026, 12, 1)}, "suppressions[0].expires: expected a date-time with"),
        ({"id": "a/b"}, "suppressions[0].id: expected letters, digits"),
        ({"tenant_id": "t1"}, "suppressions[0].tenant_id: unknown key"),
    ],
)
def test_a_bad_suppression_is_a_one_line_error_naming_the_key(
    change: dict[str, Any], message: str
) -> None:
    bad = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse_config({"suppressions": [bad]}, "tw.toml", environ={})
    text = str(err.value)
    assert text.startswith(f"tw.toml: {message}"), text
    assert "\n" not in text


def test_a_suppression_id_given_twice_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"suppressions\[1\]\.id: 'usr-a-migration' is defined"):
        vl.config(GOOD, GOOD)


def test_the_cli_rejects_a_bad_suppression_with_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "tw.toml"
    path.write_text(
        '[[suppressions]]\nid = "x"\ndetector = "any"\nactor = "usr-a"\nreason = "r"\nowner = "o"\n'
    )
    out = CliRunner().invoke(cli, ["--config", str(path), "detect", "--lake", str(tmp_path)])
    assert out.exit_code == 2
    assert out.stderr == (
        f"tenantwatch: error: {path}: suppressions[0].expires: required key is missing\n"
    )


# --- detect and alert ----------------------------------------------------------------------------


def test_a_suppressed_finding_is_written_with_its_id_and_never_paged(tmp_path: Path) -> None:
    lake = vl.build(str(tmp_path / "lake"))
    result = run_detect(lake.root, vl.config(GOOD), now=vl.NOW)
    rows = result.findings.select(["actor", "suppressed_by"]).to_pylist()
    marks = {r["actor"]: r["suppressed_by"] for r in rows}
    assert marks == {vl.USR_A: "usr-a-migration", vl.USR_B: None}
    assert result.summary["suppressed"] == 1
    stored = read_findings(lake)
    assert sorted(stored["suppressed_by"].to_pylist(), key=str) == [None, "usr-a-migration"]

    alerted = run_alert(lake.root, vl.config(GOOD))
    assert len(alerted.sent) == 1
    assert alerted.incidents[0].actor == vl.USR_B
    assert "usr-a" not in alerted.sent[0]["text"]


def test_an_expired_suppression_is_reported_at_start_and_not_applied(tmp_path: Path) -> None:
    lake = vl.build(str(tmp_path / "lake"))
    cfg = vl.config(vl.suppression(expires=vl.NOW - timedelta(days=1)))
    heard: list[str] = []
    result = run_detect(lake.root, cfg, now=vl.NOW, warn=heard.append)
    assert result.findings["suppressed_by"].null_count == 2
    assert result.summary["suppressions_expired"] == ["usr-a-migration"]
    assert result.summary["suppressions_active"] == 0
    assert len(heard) == 1
    assert heard[0].startswith("suppression usr-a-migration (configuration) expired on 2026-11-16")


def test_the_cli_warns_once_per_expired_suppression_on_stderr(tmp_path: Path) -> None:
    lake = vl.build(str(tmp_path / "lake"))
    path = tmp_path / "tw.toml"
    path.write_text(
        "".join(
            f'[[suppressions]]\nid = "{i}"\ndetector = "any"\ntenant = "t9"\nreason = "r"\n'
            f'owner = "o"\nexpires = {when}\n'
            for i, when in (
                ("old", "2020-01-01T00:00:00Z"),
                ("older", "2019-01-01T00:00:00Z"),
                ("current", "2099-01-01T00:00:00Z"),
            )
        )
    )
    out = CliRunner().invoke(cli, ["--config", str(path), "detect", "--lake", lake.root, "--json"])
    assert out.exit_code == 0, out.output
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert [w.split()[3] for w in warnings] == ["old", "older"]
    assert all(w.startswith("tenantwatch: warning: suppression ") for w in warnings)
    assert json.loads(out.stdout)["suppressions_expired"] == ["old", "older"]


def test_findings_written_before_the_column_existed_still_read(tmp_path: Path) -> None:
    from pipeline import notebook

    lake = Lake(str(tmp_path / "lake"))
    old = schema.FINDINGS.remove(schema.FINDINGS.get_field_index("suppressed_by"))
    lake.write_table("findings/date=2026-11-16/p.parquet", pa.Table.from_pylist([finding()], old))
    assert read_findings(lake)["suppressed_by"].to_pylist() == [None]
    assert [f["finding_id"] for f in alert_findings(lake, None)] == [finding()["finding_id"]]
    assert notebook.findings(lake)["suppressed_by"].isna().all()
