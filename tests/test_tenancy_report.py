"""tenantwatch tenancy report: exact counts over a small lake ingested with an explicit
configuration, its JSON shape, and the unresolved values it lists."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from pipeline import tenancy_counts, tenancy_report
from pipeline.cli import cli
from pipeline.config import load_config
from tests.logfactory import access_log, assume_role, authorizer_log, ct, delivery_file, lines_file

ROLE = "arn:aws:sts::111122223333:assumed-role"
CONFIG = """
[[tenancy.actor]]
kind = "session_tag"
key = "tenant_id"

[[tenancy.actor]]
kind = "role_session_name"
pattern = '^tenant-(?P<tenant>t\\d{4})-'
roles = ["tenant-scoped-access"]

[[tenancy.actor]]
kind = "authorizer_context"
key = "tenantId"

[[tenancy.actor]]
kind = "field"
source = "cloudtrail"
path = "userIdentity.acountId"        # misspelt: never present

[[tenancy.target]]
kind = "s3_key"
pattern = '^tenants/(?P<tenant>[^/]+)/'

[[tenancy.target]]
kind = "api_path"
pattern = '^/tenants/(?P<tenant>[^/]+)'

[[tenancy.target]]
kind = "s3_bucket"
lookup = "buckets"

[[tenancy.lookup]]
name = "buckets"
values = { "other-bucket" = "t0009" }
"""


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(configuration, lake) of thirteen events:

    CloudTrail (10:00-10:05): two AssumeRole calls by the token vendor (no tenant of its own),
    tagging sessions K1 and K3 with t0001; K1 reads three objects of t0001 and one shared
    object (no target tenant); an untagged ``reports`` role reads two objects of t0002 (no actor
    tenant); K3, whose session name says t0003, reads t0003's data (a conflict).
    API Gateway (11:00): one request of t0001 on t0001, one without a tenant claim on t0002, one
    of t0001 on a path that names no tenant.
    Authorizer (11:00): t0001 denied on t0002.
    """
    tmp = tmp_path_factory.mktemp("tenancy")
    cfg = tmp / "tenantwatch.toml"
    cfg.write_text(CONFIG)
    at = "2026-11-16T10:0{}:00Z".format
    records = [
        assume_role(new_key_id="ASIAK1", time=at(0)),
        assume_role(new_key_id="ASIAK3", session="tenant-t0003-x", time=at(0)),
        *(ct(key_id="ASIAK1", key=f"tenants/t0001/invoices/{i}.pdf", time=at(1)) for i in range(3)),
        ct(key_id="ASIAK1", key="shared/logo.png", time=at(2)),
        ct(role="reports", session="job-1", key_id="ASIAK2", key="tenants/t0002/a", time=at(3)),
        ct(role="reports", session="job-2", key_id="ASIAK2", key="tenants/t0002/b", time=at(3)),
        ct(session="tenant-t0003-x", key_id="ASIAK3", key="tenants/t0003/c", time=at(5)),
    ]
    delivery_file(tmp / "in" / "AWSLogs" / "ct.json.gz", records)
    hour = "16/Nov/2026:11:00:00 +0000"
    health = access_log(when=hour)
    health.update(path="/prod/health/42", resourcePath="/health/{id}")
    lines_file(
        tmp / "in" / "apigateway" / "access.log",
        [
            access_log(when=hour),
            access_log(when=hour, claim=None, principal="usr-bbbb", tenant_path="t0002"),
            health,
        ],
    )
    decision = authorizer_log(claim="t0001", requested="t0002")
    decision["timestamp"] = "2026-11-16 11:00:00,000+0000"
    lines_file(tmp / "in" / "authorizer" / "decisions.log", [decision])
    root = str(tmp / "lake")
    args = ["--config", str(cfg), "ingest", str(tmp / "in"), "--lake", root, "--workers", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return cfg, root


def report(lake: tuple[Path, str], *args: str) -> dict:
    cfg, root = lake
    result = CliRunner().invoke(
        cli, ["--config", str(cfg), "tenancy", "report", "--lake", root, "--json", *args]
    )
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def test_totals_per_source(lake: tuple[Path, str]) -> None:
    got = report(lake)
    assert got["events"] == 13
    shape = {
        s: (c["events"], c["actor_tenant"], c["target_tenant"], c["conflicts"])
        for s, c in got["sources"].items()
    }
    assert shape == {
        "cloudtrail": (9, 5, 6, 1),
        "apigateway": (3, 2, 2, 0),
        "authorizer": (1, 1, 1, 0),
    }
    ct_ = got["sources"]["cloudtrail"]
    assert ct_["actor_tenant_source"] == {"session_tag": 5}
    assert ct_["target_tenant_source"] == {"s3_key": 6}
    assert (ct_["actor_share"], ct_["target_share"]) == (round(5 / 9, 6), round(6 / 9, 6))


def test_per_action_counts_and_which_strategies_resolved_them(lake: tuple[Path, str]) -> None:
    rows = {(a["source"], a["service"], a["action"]): a for a in report(lake)["actions"]}
    assert list(rows) == [  # by source, busiest first
        ("cloudtrail", "s3.amazonaws.com", "GetObject"),
        ("cloudtrail", "sts.amazonaws.com", "AssumeRole"),
        ("apigateway", "execute-api:a1b2c3d4e5/prod", "GET /tenants/{tenantId}/invoices"),
        ("apigateway", "execute-api:a1b2c3d4e5/prod", "GET /health/{id}"),
        # The authorizer names the request's own path: counted by its shape.
        ("authorizer", "lambda:tenant-authorizer", "authorize GET /tenants/{}/invoices"),
    ]
    get = rows[("cloudtrail", "s3.amazonaws.com", "GetObject")]
    assert (get["events"], get["actor_tenant"], get["target_tenant"], get["conflicts"]) == (
        7,
        5,
        6,
        1,
    )
    assert get["actor_tenant_source"] == {"session_tag": 5}
    assert get["target_tenant_source"] == {"s3_key": 6}
    assume = rows[("cloudtrail", "sts.amazonaws.com", "AssumeRole")]
    assert (assume["events"], assume["actor_tenant"], assume["target_tenant"]) == (2, 0, 0)
    assert assume["actor_tenant_source"] == {} and assume["target_tenant_source"] == {}
    api = rows[("apigateway", "execute-api:a1b2c3d4e5/prod", "GET /tenants/{tenantId}/invoices")]
    assert (api["events"], api["actor_tenant"], api["target_tenant"]) == (2, 1, 2)
    assert api["actor_tenant_source"] == {"authorizer_context": 1}
    assert api["target_tenant_source"] == {"api_path": 2}


def test_unresolved_actors_with_samples_and_the_field_they_came_from(
    lake: tuple[Path, str],
) -> None:
    assert report(lake)["unresolved_actors"] == [
        {
            "source": "cloudtrail",
            "column": "actor_principal",
            "field": "userIdentity.arn",
            "value": f"{ROLE}/reports/*",
            "events": 2,
            "with_target_tenant": 2,
            "samples": [f"{ROLE}/reports/job-1", f"{ROLE}/reports/job-2"],
        },
        {
            "source": "cloudtrail",
            "column": "actor_principal",
            "field": "userIdentity.arn",
            "value": f"{ROLE}/tenant-token-vendor/*",
            "events": 2,
            "with_target_tenant": 0,
            "samples": [f"{ROLE}/tenant-token-vendor/vendor"],
        },
        {
            "source": "apigateway",
            "column": "actor_principal",
            "field": "sources.apigateway.principal (authorizerPrincipalId, "
            "authorizer.principalId, authorizer_principalId, user)",
            "value": "usr-bbbb",
            "events": 1,
            "with_target_tenant": 1,
            "samples": ["usr-bbbb"],
        },
    ]


def test_unresolved_resources_with_samples_and_the_field_they_came_from(
    lake: tuple[Path, str],
) -> None:
    assert report(lake)["unresolved_resources"] == [
        {
            "source": "cloudtrail",
            "column": "resource",
            "field": "resources[*].ARN",
            "value": "arn:aws:iam::111122223333:role/*",
            "events": 2,
            "with_actor_tenant": 0,
            "samples": ["arn:aws:iam::111122223333:role/tenant-scoped-access"],
        },
        {
            "source": "apigateway",
            "column": "resource",
            "field": "sources.apigateway.path (path)",
            "value": "/prod/health/{}",
            "events": 1,
            "with_actor_tenant": 1,
            "samples": ["/prod/health/42"],
        },
        {
            "source": "cloudtrail",
            "column": "resource",
            "field": "requestParameters.bucketName, requestParameters.key (or resources[*].ARN)",
            "value": "s3://acme-saas-tenant-data/*",
            "events": 1,
            "with_actor_tenant": 1,
            "samples": ["s3://acme-saas-tenant-data/shared/logo.png"],
        },
    ]


def test_json_shape(lake: tuple[Path, str]) -> None:
    got = report(lake)
    assert set(got) == {
        "lake",
        "since",
        "until",
        "events",
        "sources",
        "actions",
        "unresolved_actors",
        "unresolved_resources",
        "unresolved_left_off",
        "strategies",
    }
    assert (got["lake"], got["since"], got["until"]) == (lake[1], None, None)
    counts = {
        "events",
        "actor_tenant",
        "target_tenant",
        "conflicts",
        "actor_tenant_source",
        "target_tenant_source",
        "actor_share",
        "target_share",
    }
    assert all(set(c) == counts for c in got["sources"].values())
    assert all(set(a) == counts | {"source", "service", "action"} for a in got["actions"])
    assert got["unresolved_left_off"] == {"unresolved_actors": 0, "unresolved_resources": 0}


def test_top_limits_the_lists_and_says_how_many_were_left_off(lake: tuple[Path, str]) -> None:
    got = report(lake, "--top", "1")
    assert [u["value"] for u in got["unresolved_actors"]] == [f"{ROLE}/reports/*"]
    assert got["unresolved_left_off"] == {"unresolved_actors": 2, "unresolved_resources": 2}


def test_a_window_counts_only_its_events(lake: tuple[Path, str]) -> None:
    got = report(lake, "--since", "2026-11-16T11:00:00Z", "--until", "2026-11-16T12:00:00Z")
    assert (got["events"], sorted(got["sources"])) == (4, ["apigateway", "authorizer"])
    assert got["since"] == "2026-11-16T11:00:00+00:00"


def test_partial_aggregates_fold_to_the_same_report(
    lake: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large lake is read a slice at a time and partial counts are folded together: make every
    # slice one row and fold after every second, and the report must not change.
    cfg, root = lake
    whole = tenancy_report.build(root, load_config(cfg)).as_dict()
    monkeypatch.setattr(tenancy_counts, "_ROWS", 1)
    monkeypatch.setattr(tenancy_counts, "_PARTIALS", 2)
    monkeypatch.setattr(tenancy_counts, "_BATCH", 1)
    assert tenancy_report.build(root, load_config(cfg)).as_dict() == whole


def test_the_table_for_people(lake: tuple[Path, str]) -> None:
    cfg, root = lake
    result = CliRunner().invoke(cli, ["--config", str(cfg), "tenancy", "report", "--lake", root])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"tenancy of {root}, first event .. last event: 13 events\n")
    for line in (
        "│ cloudtrail │      9 │    5 (55.6%) │     6 (66.7%) │         1 │ session_tag 5 ",
        "│ cloudtrail │ actor_principal <- userIdentity.arn",
    ):
        assert line in out, out


def test_a_lake_without_events_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    cfg = tmp_path / "tenantwatch.toml"
    cfg.write_text(CONFIG)
    args = ["--config", str(cfg), "tenancy", "report", "--lake", str(tmp_path / "none")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"tenantwatch: error: lake {tmp_path / 'none'}: no events (run tenantwatch ingest first)"
    )


def test_each_strategy_on_the_sampled_records(lake: tuple[Path, str]) -> None:
    got = report(lake)["strategies"]
    assert got["sampled"] == {"cloudtrail": 9, "apigateway": 3, "authorizer": 1}
    shape = {
        s["label"]: (
            s["records"],
            s["filtered"],
            s["present"],
            s["matched"],
            s["resolved"],
            s["session_unknown"],
            s["unmatched"],
            s["not_in_lookup"],
            s["never_present"],
        )
        for s in got["strategies"]
    }
    assert shape == {
        # The vendor's and the reports role's sessions never started in the lake.
        "actor[0] session_tag tenant_id": (9, 0, 5, 5, 5, 4, [], [], False),
        # Only the tenant-scoped-access role's sessions, and only one names its tenant.
        "actor[1] role_session_name": (9, 4, 5, 1, 1, 0, ["usr-aaaa"], [], False),
        "actor[2] authorizer_context": (4, 0, 3, 3, 3, 0, [], [], False),
        "actor[3] field cloudtrail:userIdentity.acountId": (9, 0, 0, 0, 0, 0, [], [], True),
        "target[0] s3_key": (9, 0, 7, 6, 6, 0, ["shared/logo.png"], [], False),
        "target[1] api_path": (4, 0, 4, 3, 3, 0, ["/health/42"], [], False),
        "target[2] s3_bucket -> lookup buckets": (
            9,
            0,
            7,
            7,
            0,
            0,
            [],
            ["acme-saas-tenant-data"],
            False,
        ),
    }


def test_mapped_fields_no_sampled_record_has(lake: tuple[Path, str]) -> None:
    missing = report(lake)["strategies"]["missing_fields"]
    assert [(m["source"], m["key"], m["paths"], m["records"]) for m in missing] == [
        ("apigateway", "domain", ["domainName"], 3),
        ("apigateway", "account_id", ["accountId"], 3),
        ("authorizer", "source_ip", ["source_ip"], 1),
        ("authorizer", "user_agent", ["user_agent"], 1),
    ]


def test_no_sample_no_strategies(lake: tuple[Path, str]) -> None:
    assert report(lake, "--sample", "0")["strategies"] is None


def test_the_strategies_for_people(lake: tuple[Path, str]) -> None:
    cfg, root = lake
    result = CliRunner().invoke(cli, ["--config", str(cfg), "tenancy", "report", "--lake", root])
    out = result.stdout
    assert "never present in 9 sampled records" in out, out
    assert "sources.apigateway.account_id (accountId): in none of 3 sampled apigateway" in out
