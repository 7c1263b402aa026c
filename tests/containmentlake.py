"""What the containment tests share: a lake with two cross-tenant stories detected, the
containment table in moto shaped as infra/template.yaml makes it, and the ``tenantwatch contain``
command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
from click.testing import CliRunner

from pipeline import aws as pipeline_aws
from pipeline import verdicts
from pipeline.alert.run import run_alert
from pipeline.cli import cli
from pipeline.config import Config
from pipeline.detect import run_detect
from pipeline.lake import Lake
from tests import verdictlake as vl

TABLE = "tenantwatch-containment"


def detected_lake(root: Path) -> Lake:
    """Detected, not alerted: two cross-tenant stories (usr-a: t0001 on t0002, usr-b: t0003 on
    t0004), critical, waiting for an alert stage."""
    lake = vl.build(str(root))
    run_detect(lake.root, vl.config())
    return lake


def alert(lake: Lake, cfg: Config | None = None) -> dict[str, Any]:
    return run_alert(lake.root, cfg or vl.config()).summary


def create_table() -> str:
    """An empty containment table in moto (the ``aws`` fixture's), shaped as the template's."""
    pipeline_aws.reset()
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "subject", "AttributeType": "S"},
            {"AttributeName": "containment_id", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "subject", "KeyType": "HASH"},
            {"AttributeName": "containment_id", "KeyType": "RANGE"},
        ],
    )
    return TABLE


def tw(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def incident_of(lake: Lake, actor: str) -> verdicts.IncidentRecord:
    return next(r for r in verdicts.read_incidents(lake) if actor in r.actors)


def items() -> list[dict[str, Any]]:
    return list(boto3.client("dynamodb").scan(TableName=TABLE)["Items"])


def contain_args(lake: Lake, incident: str, *subject: str, **opts: str) -> list[str]:
    o = {"mode": "read-only", "expires": "4h", "reason": "cross-tenant reads", "by": "alice"}
    o.update(opts)
    args = ["contain", incident, *subject, "--table", TABLE, "--lake", lake.root]
    for k, v in o.items():
        args += [f"--{k}", v]
    return args
