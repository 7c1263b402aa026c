"""The whole pipeline over ``sample_logs/``: every labelled attack is found by the right detector
at the expected severity, and no labelled negative raises a finding above low."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from eval.evaluate import RANK, matches, score
from pipeline.config import load_config
from pipeline.detect import run_detect
from tests.conftest import SAMPLE_LOGS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], list[dict]]:
    if not (SAMPLE_LOGS / "labels.json").is_file():
        pytest.skip("sample_logs/ has not been generated (make sample-logs)")
    from pipeline.ingest.run import ingest

    lake = str(tmp_path_factory.mktemp("e2e") / "lake")
    cfg = load_config(SAMPLE_LOGS / "tenantwatch.toml", environ={})
    ingest([str(SAMPLE_LOGS / f) for f in ("AWSLogs", "apigateway", "authorizer")], lake, cfg)
    result = run_detect(lake, cfg)  # default window: the latest day, the attack day
    assert result.summary["failed"] == {}
    labels = orjson.loads(Path(SAMPLE_LOGS / "labels.json").read_bytes())
    return result.findings.to_pylist(), labels


def test_every_attack_is_found_by_its_detector_at_its_severity(run: tuple) -> None:
    findings, labels = run
    for label in (lb for lb in labels if lb["kind"] == "attack"):
        mine = [
            f for f in findings if f["detector"] == label["expected_detector"] and matches(f, label)
        ]
        assert mine, f"{label['id']} was not found by {label['expected_detector']}"
        worst = max(RANK[f["severity"]] for f in mine)
        assert worst == RANK[label["expected_severity"]], label["id"]


def test_no_labelled_negative_is_above_low(run: tuple) -> None:
    findings, labels = run
    assert score(findings, labels)["negative_violations"] == []


def test_ticketed_break_glass_is_recorded_at_low(run: tuple) -> None:
    findings, labels = run
    label = next(lb for lb in labels if lb["id"] == "negative-break-glass-ticketed")
    assert [f["severity"] for f in findings if matches(f, label)] == ["low"]


def test_every_paged_finding_points_at_an_attack(run: tuple) -> None:
    findings, labels = run
    attacks = [lb for lb in labels if lb["kind"] == "attack"]
    paged = [f for f in findings if RANK[f["severity"]] > RANK["low"]]
    stray = [f["title"] for f in paged if not any(matches(f, lb) for lb in attacks)]
    assert stray == []
