"""The rule pack's test cases (``rules/cases/*.yml``), played through ingestion and the ``sigma``
detector as a deployment would run them: records written as a CloudTrail delivery file,
ingested into a fresh lake, and detected with only the rule under test loaded.

A case's records are CloudTrail records with what a case leaves out filled in (``DEFAULTS``: an
IAM user ``alice`` of account 111122223333, a time a second after the record before it);
``repeat: N`` makes N of a record, ``every_seconds`` spaces them. ``config.account_lookup``
maps accounts to tenants: the actor's tenant is then its account's (a ``field`` strategy over
``userIdentity.accountId``) and ``[sigma] account_lookup`` names the same table.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "rules"
CASES = PACK / "cases"
ACCOUNT = "111122223333"
START = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
DEFAULTS: dict[str, Any] = {
    "eventVersion": "1.09",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "203.0.113.10",
    "userAgent": "aws-cli/2.15.0",
    "eventType": "AwsApiCall",
    "recipientAccountId": ACCOUNT,
    "userIdentity": {
        "type": "IAMUser",
        "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
        "userName": "alice",
        "accountId": ACCOUNT,
        "principalId": "AIDAEXAMPLEALICE",
    },
}


@dataclass(frozen=True)
class Case:
    rule: str  # the rule's id
    rule_file: Path
    name: str
    positive: bool
    records: list[dict[str, Any]]
    accounts: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.rule_file.stem}: {'+' if self.positive else '-'} {self.name}"


def load_cases() -> list[Case]:
    out = []
    for path in sorted(CASES.glob("*.yml")):
        rule_file = PACK / "cloudtrail" / path.name
        for doc in yaml.safe_load_all(path.read_text()):
            for kind, positive in (("positive", True), ("negative", False)):
                for case in doc.get(kind, []):
                    out.append(
                        Case(
                            rule=doc["rule"],
                            rule_file=rule_file,
                            name=case["name"],
                            positive=positive,
                            records=case["records"],
                            accounts=case.get("config", {}).get("account_lookup", {}),
                        )
                    )
    return out


def records(case: Case) -> list[dict[str, Any]]:
    """The case's records, whole."""
    out: list[dict[str, Any]] = []
    t = START
    for spec in case.records:
        spec = dict(spec)
        n = int(spec.pop("repeat", 1))
        step = timedelta(seconds=float(spec.pop("every_seconds", 1)))
        for _ in range(n):
            rec = copy.deepcopy(DEFAULTS)
            rec.update(copy.deepcopy(spec))
            rec["eventTime"] = t.strftime("%Y-%m-%dT%H:%M:%SZ")
            rec["eventID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{case.label}#{len(out)}"))
            rec["requestID"] = rec["eventID"]
            out.append(rec)
            t += step
    return out


def config(case: Case) -> Config:
    data: dict[str, Any] = {"sigma": {"rules": [str(case.rule_file)], "pack": False}}
    if case.accounts:
        data["tenancy"] = {
            "lookup": [{"name": "accounts", "values": case.accounts}],
            "actor": [
                {
                    "kind": "field",
                    "source": "cloudtrail",
                    "path": "userIdentity.accountId",
                    "lookup": "accounts",
                }
            ],
        }
        data["sigma"]["account_lookup"] = "accounts"
    return parse_config(data, environ={})


def play(case: Case, tmp: Path) -> list[dict[str, Any]]:
    """The ``sigma`` findings of the case's records, ingested into a fresh lake."""
    from pipeline.detect import run_detect
    from pipeline.ingest.run import ingest

    cfg = config(case)
    src = tmp / "in" / "delivery.json"
    src.parent.mkdir(parents=True)
    src.write_text(json.dumps({"Records": records(case)}))
    summary = ingest([str(src)], str(tmp / "lake"), cfg, workers=1)
    assert summary["ingested"] == len(records(case)), summary
    found = run_detect(
        str(tmp / "lake"),
        cfg,
        START - timedelta(hours=1),
        START + timedelta(hours=3),
        only=("sigma",),
        write=False,
    )
    assert not found.summary["failed"], found.summary["failed"]
    return found.findings.to_pylist()
