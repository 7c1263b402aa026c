"""`tenantwatch tenancy explain` and the function behind it (`tenancy.diagnose`): per record,
which strategy gave which tenant, and for every other strategy why it gave none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import parse_config
from pipeline.ingest import tenancy
from pipeline.ingest.decode import Batch, decode_batch
from pipeline.ingest.lookups import load_lookups
from pipeline.ingest.reading import Reading
from pipeline.ingest.sources import list_inputs
from tests import logfactory as lf

CONFIG = """\
[[tenancy.lookup]]
name = "accounts"
values = { "111122223333" = "acme" }

[[tenancy.actor]]
kind = "session_tag"
key = "tenant_id"

[[tenancy.actor]]
kind = "field"
source = "cloudtrail"
path = "userIdentity.accountId"
lookup = "accounts"
when = { "userIdentity.type" = ["AWSAccount"] }

[[tenancy.actor]]
kind = "authorizer_context"

[[tenancy.target]]
kind = "s3_key"
pattern = '^tenants/(?P<tenant>t\\d{4})/'

[[tenancy.target]]
kind = "field"
source = "cloudtrail"
path = "recipientAcountId"
lookup = "accounts"

[[tenancy.target]]
kind = "field"
source = "cloudtrail"
path = "requestParameters.owner"
lookup = "accounts"
"""


def explain(tmp_path: Path, *args: str, config: str = CONFIG) -> Any:
    (tmp_path / "tw.toml").write_text(config)
    return CliRunner().invoke(
        cli, ["--config", str(tmp_path / "tw.toml"), "tenancy", "explain", *args]
    )


def test_every_strategy_says_what_it_made_of_the_record(tmp_path: Path) -> None:
    rec = lf.ct(
        event_id="evt-1",
        key="tenants/t0002/invoices/1.pdf",
        requestParameters={"bucketName": "b", "key": "other/1.pdf", "owner": "999999999999"},
    )
    path = lf.delivery_file(tmp_path / "in" / "a.json.gz", [rec])
    result = explain(tmp_path, str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"cloudtrail 2026-11-16T10:00:00+00:00 GetObject evt-1 ({path})",
        "  actor: unresolved",
        "  target: unresolved",
        "    actor[0] session_tag tenant_id: session unknown (no AssumeRole seen in this input)",
        "    actor[1] field cloudtrail:userIdentity.accountId -> lookup accounts: filtered out"
        " (when userIdentity.type in ['AWSAccount'])",
        "    actor[2] authorizer_context: not for this source",
        "    target[0] s3_key: value 'other/1.pdf' did not match pattern",
        "    target[1] field cloudtrail:recipientAcountId -> lookup accounts: field absent",
        "    target[2] field cloudtrail:requestParameters.owner -> lookup accounts:"
        " key '999999999999' not in lookup accounts",
    ]


def test_resolved_strategies_name_their_tenant_and_value(tmp_path: Path) -> None:
    tagged = lf.assume_role(tenant="t0007", new_key_id="ASIANEW00000000001")
    call = lf.ct(
        event_id="evt-2",
        key_id="ASIANEW00000000001",
        requestParameters={"bucketName": "b", "key": "tenants/t0002/x", "owner": "111122223333"},
    )
    path = lf.delivery_file(tmp_path / "in" / "a.json.gz", [tagged, call])
    result = explain(tmp_path, str(path), "--json")
    assert result.exit_code == 0, result.output
    (got,) = [r for r in json.loads(result.output)["records"] if r["event_id"] == "evt-2"]
    assert (got["actor_tenant"], got["actor_tenant_source"]) == ("t0007", "session_tag")
    assert (got["target_tenant"], got["target_tenant_source"]) == ("t0002", "s3_key")
    assert got["tenant_conflict"] == "target:s3_key=t0002,field=acme"
    verdicts = {v["label"]: (v["status"], v["why"]) for v in got["strategies"]}
    assert verdicts["actor[0] session_tag tenant_id"] == (
        "resolved",
        "t0007 (from 'ASIANEW00000000001')",
    )
    assert verdicts["target[0] s3_key"] == ("resolved", "t0002 (from 'tenants/t0002/x')")
    assert verdicts["target[2] field cloudtrail:requestParameters.owner -> lookup accounts"] == (
        "resolved",
        "acme (from '111122223333')",
    )


def test_a_path_that_never_matches_shows_as_absent_in_every_record(tmp_path: Path) -> None:
    path = lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct(), lf.ct(), lf.ct()])
    result = explain(tmp_path, str(path), "--json")
    typo = "target[1] field cloudtrail:recipientAcountId -> lookup accounts"
    statuses = [
        v["status"]
        for r in json.loads(result.output)["records"]
        for v in r["strategies"]
        if v["label"] == typo
    ]
    assert statuses == ["absent"] * 3


def test_per_line_sources_and_quarantined_lines_are_explained(tmp_path: Path) -> None:
    good = lf.access_log(claim="t0001", request_id="req-1")
    path = tmp_path / "in" / "api.log"
    path.parent.mkdir()
    path.write_text(json.dumps(good) + "\nnot json at all\n")
    result = explain(tmp_path, str(path), "--limit", "5")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(
        "apigateway 2026-11-16T10:00:00+00:00 GET /tenants/{tenantId}/invoices req-1"
    )
    assert "  actor: t0001 by authorizer_context" in lines
    assert "    actor[0] session_tag tenant_id: not for this source" in lines
    assert (
        "    target[1] field cloudtrail:recipientAcountId -> lookup accounts: not for this source"
        in lines
    )
    assert lines[-1] == f"quarantined: {path} #2: not_json"


def test_a_secret_in_a_value_is_never_shown(tmp_path: Path) -> None:
    secret = "Zk3mQ9vL2xR8pT4wN7yB1cD6"
    rec = lf.ct(key=f"shared/report.pdf?X-Amz-Credential=AKIA/x&X-Amz-Signature={secret}")
    path = lf.delivery_file(tmp_path / "in" / "a.json.gz", [rec])
    result = explain(tmp_path, str(path))
    assert result.exit_code == 0, result.output
    assert "did not match pattern" in result.output and secret not in result.output


def test_a_bad_lookup_stops_explain_as_it_stops_ingest(tmp_path: Path) -> None:
    path = lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct()])
    bad = CONFIG.replace('values = { "111122223333" = "acme" }', 'file = "absent.csv"')
    result = explain(tmp_path, str(path), config=bad)
    assert result.exit_code == 2 and "absent.csv: file not found" in result.output


# --- the function behind it -------------------------------------------------------------------


def _rows(tmp_path: Path, reading: Reading, records: list[dict[str, Any]]) -> Any:
    lf.delivery_file(tmp_path / "a.json.gz", records)
    refs, _ = list_inputs([str(tmp_path)])
    return decode_batch(Batch(tuple(refs)), reading.cfg.ingest, reading)


@pytest.mark.parametrize(
    ("records", "status", "value"),
    [
        ([lf.ct(recipientAccountId="111122223333")], "resolved", "111122223333"),
        ([lf.ct(recipientAccountId="999999999999")], "not_in_lookup", "999999999999"),
        ([lf.ct(recipientAccountId="12345")], "no_match", "12345"),
        ([{k: v for k, v in lf.ct().items() if k != "recipientAccountId"}], "absent", None),
        (
            [lf.ct(userIdentity={"type": "AWSAccount", "accountId": "1"})],
            "not_applicable",
            "111122223333",
        ),
    ],
)
def test_diagnose_gives_each_row_a_status_and_the_value_seen(
    tmp_path: Path, records: list[dict[str, Any]], status: str, value: str | None
) -> None:
    cfg = parse_config(
        {
            "tenancy": {
                "lookup": [{"name": "accounts", "values": {"111122223333": "acme"}}],
                "target": [
                    {
                        "kind": "field",
                        "source": "cloudtrail",
                        "path": "recipientAccountId",
                        "pattern": r"^(?P<tenant>\d{12})$",
                        "lookup": "accounts",
                        "when": {"userIdentity.type": ["AssumedRole"]},
                    }
                ],
            }
        },
        environ={},
    )
    reading = Reading.of(cfg, load_lookups(cfg))
    d = _rows(tmp_path, reading, records)
    (diag,) = tenancy.diagnose(d.rows, reading)
    assert diag.status.to_pylist() == [status]
    assert diag.value.to_pylist() == [value if status != "not_applicable" else None]
    assert diag.tenant.to_pylist() == (["acme"] if status == "resolved" else [None])
    assert status in tenancy.STATUSES and isinstance(diag.status, pa.Array)


def test_ingest_without_any_strategy_says_so_once(tmp_path: Path) -> None:
    path = lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct()])
    args = ["ingest", str(path), "--lake", str(tmp_path / "lake"), "--workers", "1", "--json"]
    (tmp_path / "none.toml").write_text("")
    bare = CliRunner().invoke(cli, ["--config", str(tmp_path / "none.toml"), *args])
    assert bare.exit_code == 0, bare.output
    warning = "tenantwatch: warning: no tenant strategy is configured"
    assert bare.stderr.count(warning) == 1 and warning not in bare.stdout
    (tmp_path / "tw.toml").write_text(CONFIG)
    configured = CliRunner().invoke(cli, ["--config", str(tmp_path / "tw.toml"), *args])
    assert configured.exit_code == 0 and "warning" not in configured.stderr
