"""[sources.apigateway] / [sources.authorizer]: every column of the per-line sources read through
the mapping, lines recognised by it, and the defaults reading today's names as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config, parse_config
from pipeline.errors import ConfigError
from pipeline.ingest.run import ingest
from pipeline.lake import read_events
from tests import logfactory as lf

# A SaaS whose access-log format and authorizer logger name everything their own way.
SILO_SOURCES = {
    "apigateway": {
        "request_id": "rid",
        "time": ["epoch_ms", "when"],
        "status": "code",
        "path": "uri",
        "http_method": "verb",
        "route": "route",
        "api_id": "api",
        "stage": "stage",
        "domain": "host",
        "principal": "auth.principal",
        "tenant_claim": "claims.account",
        "error": "auth_error",
        "source_ip": "src",
        "user_agent": "agent",
        "account_id": "acct",
    },
    "authorizer": {
        "event_id": "invocation_id",
        "time": "ts",
        "decision": "verdict",
        "reason": "why",
        "method_arn": "route_arn",
        "principal": "sub",
        "token_fingerprint": "token_sha",
        "tenant_claim": "claims.account",
        "requested_tenant": "path_account",
        "request_id": "apigw_request_id",
        "source_ip": "src",
        "user_agent": "agent",
        "function": "fn",
    },
}
ACCESS_LINE = {
    "rid": "r-1",
    "epoch_ms": 1794823200000,
    "code": 403,
    "uri": "/v1/v1/accounts/444455556666/invoices?token=abc",
    "verb": "GET",
    "route": "/accounts/{account}/invoices",
    "api": "api9",
    "stage": "v1",
    "host": "api.example.com",
    "auth": {"principal": "usr-1"},
    "claims.account": "111122223333",
    "auth_error": "tenant mismatch",
    "src": "203.0.113.5",
    "agent": "curl/8",
    "acct": "999988887777",
}
AUTH_LINE = {
    "invocation_id": "inv-1",
    "ts": "2026-11-16T10:00:00.123Z",
    "verdict": "DENY",
    "why": "account claim does not match path",
    "route_arn": "arn:aws:execute-api:eu-west-1:999988887777:api9/v1/GET/accounts/444455556666",
    "sub": "usr-1",
    "token_sha": "sha256:feedface",
    "claims": {"account": "111122223333"},
    "path_account": "444455556666",
    "apigw_request_id": "r-1",
    "src": "203.0.113.5",
    "agent": "curl/8",
    "fn": "account-authorizer",
}
ACCOUNTS = {"111122223333": "acme", "444455556666": "globex"}


def run(tmp_path: Path, lines: list[dict[str, Any]], cfg: Config) -> list[dict[str, Any]]:
    lf.lines_file(tmp_path / "in" / "x.log", lines)
    s = ingest([str(tmp_path / "in")], str(tmp_path / "lake"), cfg, workers=1)
    assert s["records_in"] == s["ingested"] + s["duplicates"] + s["quarantined_total"]
    assert s["quarantined_total"] == 0, s
    return sorted(read_events(str(tmp_path / "lake")).to_pylist(), key=lambda r: r["source"])


def silo(**tenancy: Any) -> Config:
    return parse_config(
        {
            "sources": SILO_SOURCES,
            "tenancy": {"lookup": [{"name": "accounts", "values": ACCOUNTS}], **tenancy},
        },
        environ={},
    )


def test_lines_with_their_own_field_names_are_recognised_and_read_through_the_mapping(
    tmp_path: Path,
) -> None:
    api, auth = run(tmp_path, [ACCESS_LINE, AUTH_LINE], silo())
    assert {
        k: api[k] for k in ("event_id", "action", "actor_principal", "outcome", "status_code")
    } == {
        "event_id": "r-1",
        "action": "GET /accounts/{account}/invoices",
        "actor_principal": "usr-1",
        "outcome": "denied",
        "status_code": 403,
    }
    assert (api["service"], api["error_code"], api["source_ip"], api["user_agent"]) == (
        "execute-api:api9/v1",
        "tenant mismatch",
        "203.0.113.5",
        "curl/8",
    )
    assert api["account_id"] == "999988887777"
    assert api["event_time"].isoformat() == "2026-11-16T10:00:00+00:00"
    assert (auth["event_id"], auth["service"], auth["actor_session"]) == (
        "inv-1",
        "lambda:account-authorizer",
        "sha256:feedface",
    )
    assert (auth["outcome"], auth["error_code"], auth["request_id"]) == (
        "denied",
        "account claim does not match path",
        "r-1",
    )
    assert auth["action"] == "authorize GET /accounts/444455556666"


def test_the_default_names_do_not_recognise_another_format(tmp_path: Path) -> None:
    lf.lines_file(tmp_path / "in" / "x.log", [ACCESS_LINE, AUTH_LINE])
    s = ingest([str(tmp_path / "in")], str(tmp_path / "lake"), Config(), workers=1)
    assert s["quarantined"] == {"unrecognised_record": 2}


def test_field_strategies_read_the_token_claim_the_path_account_and_a_mapped_column(
    tmp_path: Path,
) -> None:
    cfg = silo(
        actor=[
            {
                "kind": "field",
                "source": "apigateway",
                "path": "claims.account",
                "lookup": "accounts",
            },
            {
                "kind": "field",
                "source": "authorizer",
                "path": "claims.account",
                "lookup": "accounts",
            },
        ],
        target=[
            {
                "kind": "api_path",
                "pattern": r"^/v1/accounts/(?P<tenant>\d{12})(?:/|$)",
                "lookup": "accounts",
            },
            {
                "kind": "field",
                "source": "authorizer",
                "path": "$requested_tenant",
                "lookup": "accounts",
            },
        ],
    )
    api, auth = run(tmp_path, [ACCESS_LINE, AUTH_LINE], cfg)
    # The access log's path starts with the stage (/v1/v1/...): the stage is taken off, and the
    # query (which may hold a token) never reaches a pattern.
    assert (api["actor_tenant"], api["target_tenant"], api["target_tenant_source"]) == (
        "acme",
        "globex",
        "api_path",
    )
    assert (auth["actor_tenant"], auth["target_tenant"]) == ("acme", "globex")


def test_the_requested_tenant_is_read_through_its_mapping(tmp_path: Path) -> None:
    cfg = silo(
        target=[
            {
                "kind": "field",
                "source": "authorizer",
                "path": "$requested_tenant",
                "lookup": "accounts",
            }
        ]
    )
    (auth,) = [r for r in run(tmp_path, [AUTH_LINE], cfg) if r["source"] == "authorizer"]
    assert (auth["target_tenant"], auth["target_tenant_source"]) == ("globex", "field")


def test_a_mapped_name_that_is_no_column_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'\$requested' is no column of \[sources.authorizer\]"):
        silo(target=[{"kind": "field", "source": "authorizer", "path": "$requested"}])
    with pytest.raises(
        ConfigError, match=r"\$names are columns of \[sources.\*\], not of cloudtrail"
    ):
        silo(target=[{"kind": "field", "source": "cloudtrail", "path": "$principal"}])


@pytest.mark.parametrize(
    ("line", "spelling"),
    [
        ({"authorizerTenantId": "t0007"}, "authorizerTenantId"),
        ({"authorizer.tenantId": "t0007"}, "authorizer.tenantId (one key)"),
        ({"authorizer_tenantId": "t0007"}, "authorizer_tenantId"),
        ({"authorizer": {"tenantId": "t0007"}}, "authorizer: {tenantId}"),
    ],
)
def test_without_a_claim_mapping_the_authorizer_context_key_is_read_in_every_spelling(
    tmp_path: Path, line: dict[str, str], spelling: str
) -> None:
    base = lf.access_log(claim=None)
    del base["authorizerTenantId"]
    cfg = parse_config(
        {"tenancy": {"actor": [{"kind": "authorizer_context", "key": "tenantId"}]}}, environ={}
    )
    (row,) = run(tmp_path, [{**base, **line}], cfg)
    assert (row["actor_tenant"], row["actor_tenant_source"]) == ("t0007", "authorizer_context"), (
        spelling
    )


def test_an_explicit_claim_mapping_takes_the_place_of_the_spellings(tmp_path: Path) -> None:
    line = {**lf.access_log(claim="t0001"), "ctx": {"org": "t0009"}}
    cfg = parse_config(
        {
            "sources": {"apigateway": {"tenant_claim": "ctx.org"}},
            "tenancy": {"actor": [{"kind": "authorizer_context"}]},
        },
        environ={},
    )
    (row,) = run(tmp_path, [line], cfg)
    assert row["actor_tenant"] == "t0009"


def test_the_default_mapping_reads_todays_names_as_before(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "tenancy": {
                "actor": [{"kind": "authorizer_context"}],
                "target": [{"kind": "api_path", "pattern": "^/tenants/(?P<tenant>[^/]+)"}],
            }
        },
        environ={},
    )
    got = run(
        tmp_path,
        [lf.access_log(tenant_path="t0002"), lf.authorizer_log(claim="t0001", requested="t0003")],
        cfg,
    )
    api, auth = got
    assert (api["actor_principal"], api["actor_tenant"], api["target_tenant"]) == (
        "usr-aaaa",
        "t0001",
        "t0002",
    )
    assert (api["action"], api["outcome"], api["source_ip"]) == (
        "GET /tenants/{tenantId}/invoices",
        "success",
        "203.0.113.9",
    )
    assert (auth["actor_tenant"], auth["target_tenant"], auth["service"]) == (
        "t0001",
        "t0003",
        "lambda:tenant-authorizer",
    )


def test_a_header_strategy_reads_the_logged_header(tmp_path: Path) -> None:
    line = {**lf.access_log(tenant_path="t0002"), "X-Tenant-Id": "t0005"}
    cfg = parse_config(
        {"tenancy": {"target": [{"kind": "header", "name": "X-Tenant-Id"}]}}, environ={}
    )
    (row,) = run(tmp_path, [line], cfg)
    assert (row["target_tenant"], row["target_tenant_source"]) == ("t0005", "header")


def test_a_secret_in_a_line_never_becomes_a_path_value(tmp_path: Path) -> None:
    # A field strategy over the whole auth object: the token in it is fingerprinted first.
    line = {**ACCESS_LINE, "auth": {"principal": "usr-1", "password": "hunter2-very-secret"}}
    cfg = silo(
        target=[
            {"kind": "field", "source": "apigateway", "path": "auth", "pattern": "(?P<tenant>.+)"}
        ]
    )
    (row,) = run(tmp_path, [line], cfg)
    assert "hunter2" not in str(row["target_tenant"]) and "usr-1" in row["target_tenant"]


def test_a_claim_mapping_and_an_authorizer_context_key_must_agree() -> None:
    def both(claim: str, key: str) -> Config:
        return parse_config(
            {
                "sources": {"apigateway": {"tenant_claim": claim}},
                "tenancy": {"actor": [{"kind": "authorizer_context", "key": key}]},
            },
            environ={},
        )

    assert both("authorizer.orgId", "orgId").sources.apigateway.tenant_claim == "authorizer.orgId"
    with pytest.raises(
        ConfigError, match=r"tenant_claim \(ctx\.org\) and the authorizer_context key 'orgId'"
    ):
        both("ctx.org", "orgId")
