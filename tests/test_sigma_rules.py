"""The rule pack (``rules/``): every rule loads, has named positive and negative cases, and
each case gives the finding it names (or none) through ingestion and the ``sigma`` detector;
and the pack flags the genuine Stratus Red Team detonation captures it is written for."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detectors.sigma.rules import load
from tests.sigmacases import PACK, Case, load_cases, play

CASES = load_cases()


def test_every_rule_of_the_pack_loads_and_compiles() -> None:
    pack = load([str(PACK)], pack=False)
    assert pack.skipped == []
    assert pack.files == len(list((PACK / "cloudtrail").glob("*.yml")))
    assert len(pack.rules) >= 12
    for rule in pack.rules:
        assert rule.attack, f"{rule.title}: no ATT&CK tag"
        assert rule.severity in ("low", "medium", "high", "critical")


def test_every_rule_has_named_positive_and_negative_cases() -> None:
    pack = load([str(PACK)], pack=False)
    positives = Counter(c.rule for c in CASES if c.positive)
    negatives = Counter(c.rule for c in CASES if not c.positive)
    for rule in pack.rules:
        assert positives[rule.id] >= 1, f"{rule.title}: no positive case"
        assert negatives[rule.id] >= 1, f"{rule.title}: no negative case"
    names = [c.label for c in CASES]
    assert len(names) == len(set(names)), "case names repeat within a rule file"


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_case(case: Case, tmp_path: Path) -> None:
    findings = play(case, tmp_path)
    mine = [f for f in findings if f["dedup_key"].startswith(f"sigma:{case.rule}:")]
    if case.positive:
        assert mine, f"{case.label}: the rule did not match ({len(findings)} other findings)"
        evidence = (
            json.loads(mine[0]["evidence"])
            if isinstance(mine[0]["evidence"], str)
            else mine[0]["evidence"]
        )
        assert case.rule in json.dumps(evidence)
    else:
        assert not mine, f"{case.label}: the rule matched {mine[0]['event_count']} event(s)"


def test_the_pack_flags_the_stratus_red_team_detonations(tmp_path: Path, real_logs: Path) -> None:
    """Genuine CloudTrail captured while Stratus Red Team detonated each technique: every
    technique the pack is about gives a finding of the rule written for it."""
    from pipeline.config import Config, SigmaConfig
    from pipeline.detect import run_detect
    from pipeline.ingest.run import ingest

    cfg = Config(sigma=SigmaConfig(rules=(str(PACK),), pack=False))
    expected = {
        "aws.defense-evasion.cloudtrail-stop": "CloudTrail logging stopped",
        "aws.defense-evasion.cloudtrail-delete": "CloudTrail logging stopped",
        "aws.defense-evasion.cloudtrail-event-selectors": "CloudTrail logging stopped",
        "aws.defense-evasion.vpc-remove-flow-logs": "VPC flow logs",
        "aws.defense-evasion.dns-delete-logs": "VPC flow logs",
        "aws.defense-evasion.organizations-leave": "Account left",
        "aws.persistence.iam-backdoor-user": "Access key or console password",
        "aws.persistence.iam-create-user-login-profile": "Access key or console password",
        "aws.privilege-escalation.iam-update-user-login-profile": "Access key or console password",
        "aws.persistence.iam-backdoor-role": "opened to an outside account",
        "aws.exfiltration.ec2-share-ebs-snapshot": "shared outside the tenant",
        "aws.exfiltration.ec2-share-ami": "shared outside the tenant",
        "aws.exfiltration.rds-share-snapshot": "shared outside the tenant",
        "aws.credential-access.secretsmanager-retrieve-secrets": "Burst of secret reads",
        "aws.credential-access.secretsmanager-batch-retrieve-secrets": "Secrets read in a batch",
        "aws.initial-access.console-login-without-mfa": "Console login without MFA",
        "aws.execution.ssm-send-command": "Command run on instances",
    }
    logs = real_logs / "DataDog__stratus-red-team" / "original" / "detonation-logs"
    for technique, title in expected.items():
        lake = tmp_path / technique
        records = json.loads((logs / f"{technique}.json").read_text())
        src = tmp_path / "in" / f"{technique}.json"
        src.parent.mkdir(exist_ok=True)
        src.write_text(json.dumps({"Records": records}))
        assert ingest([str(src)], str(lake), cfg, workers=1)["ingested"] == len(records)
        found = run_detect(
            str(lake),
            cfg,
            datetime(2020, 1, 1, tzinfo=UTC),
            datetime(2030, 1, 1, tzinfo=UTC),
            only=("sigma",),
            write=False,
        )
        titles = [t for t in found.findings["title"].to_pylist()]
        assert any(title in t for t in titles), f"{technique}: {titles}"
