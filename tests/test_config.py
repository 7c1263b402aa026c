from __future__ import annotations

import re
import shutil
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import (
    ActorStrategy,
    BreakGlass,
    Config,
    ConfigError,
    Relationship,
    TargetStrategy,
    load_config,
    parse_config,
)
from tests.conftest import REPO


def _kinds(union: object) -> set[str]:
    return {t.__struct_config__.tag for t in typing.get_args(union)}


def _kind(x: object) -> str:
    return str(type(x).__struct_config__.tag)  # type: ignore[attr-defined]


def test_example_file_loads_and_shows_every_kind_without_the_simulated_saas() -> None:
    path = REPO / "tenantwatch.example.toml"
    cfg = load_config(path, environ={})
    assert {_kind(s) for s in cfg.tenancy.actor} == _kinds(ActorStrategy)
    assert {_kind(s) for s in cfg.tenancy.target} == _kinds(TargetStrategy)
    assert {_kind(r) for r in cfg.relationships} == _kinds(Relationship)
    assert {
        ("file" if lk.file else "dynamodb_table" if lk.dynamodb_table else "values")
        for lk in cfg.tenancy.lookup
    } == {"file", "dynamodb_table", "values"}
    bg = next(r for r in cfg.relationships if isinstance(r, BreakGlass))
    assert bg.ticket_tag and bg.tickets and bg.tickets_file
    # Neutral: none of the simulated SaaS's tenants, accounts, roles or tickets.
    text = path.read_text()
    for simulated in (r"\bt\d{4}\b", "111122223333", "SUP-4821", "acme-saas", "usr-"):
        assert not re.search(simulated, text), simulated


def test_the_example_file_is_not_picked_up_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(REPO / "tenantwatch.example.toml", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}) == parse_config({}, environ={})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[lake]\nrooot = 'x'\n", "lake.rooot: unknown key"),
        ("surprise = 1\n", "surprise: unknown key"),
        ("[lake]\nroot = 3\n", "lake.root: expected a string, got an integer"),
        ("[ingest]\nworkers = 'many'\n", "ingest.workers: expected an integer, got a string"),
        ("[ingest]\nworkers = -1\n", "ingest.workers: expected 0 (all cores) or more"),
        ("[[tenancy.actor]]\nkind = 'telepathy'\n", "tenancy.actor[0].kind: unknown kind"),
        ("[[tenancy.actor]]\nkind = 'role_arn'\n", "tenancy.actor[0].pattern: required key"),
        (
            "[[tenancy.target]]\nkind = 's3_key'\npattern = 'tenants/(.*)/'\n",
            "tenancy.target[0].pattern: the pattern needs a (?P<tenant>...) group",
        ),
        (
            "[[tenancy.target]]\nkind = 's3_key'\npattern = '(?P<tenant>'\n",
            "tenancy.target[0].pattern: not a valid regular expression",
        ),
        (  # valid for Python, but ingest runs tenant patterns with RE2 (Arrow)
            "[[tenancy.actor]]\nkind = 'role_session_name'\n"
            "pattern = '^tenant-(?P<tenant>t(?!0000)\\d{4})-'\n",
            "tenancy.actor[0].pattern: not supported by RE2",
        ),
        (
            "[[relationships]]\nkind='break_glass'\nprincipal_pattern='x'\n"
            "tickets=[{id='A-1', tenants=['t1'], expires=2026-01-01T00:00:00}]\n",
            "relationships[0].tickets[0].expires: expected a date-time with a time zone",
        ),
        ("[lake\n", "not valid TOML"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "tw.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    text = str(exc.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_named_but_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "absent.toml", environ={})


def test_no_file_in_cwd_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, environ={}) == Config()


def test_environment_overrides_scalar_keys() -> None:
    cfg = parse_config(
        {"lake": {"root": "here"}},
        environ={"TENANTWATCH_LAKE_ROOT": "s3://b/p", "TENANTWATCH_INGEST_WORKERS": "3"},
    )
    assert cfg.lake.root == "s3://b/p"
    assert cfg.ingest.workers == 3


def test_environment_override_with_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"ingest\.workers: expected an integer"):
        parse_config({}, environ={"TENANTWATCH_INGEST_WORKERS": "lots"})


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.lake = None  # type: ignore[misc]


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[lake]\nroot = 3\n", "lake.root: expected a string"),
        (None, "configuration file not found"),
    ],
)
def test_cli_reports_bad_config_with_exit_code_2(
    tmp_path: Path, toml: str | None, needle: str
) -> None:
    path = tmp_path / "tw.toml"
    if toml is not None:
        path.write_text(toml)
    result = CliRunner().invoke(cli, ["--config", str(path), "simulate", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert result.output.startswith("tenantwatch: error: ")
    assert needle in result.output


def test_shared_egress_takes_addresses_and_cidr_blocks_and_refuses_anything_else() -> None:
    cfg = parse_config(
        {"alerting": {"shared_egress": ["203.0.113.10", "198.51.100.0/24", "2001:db8::/32"]}},
        environ={},
    )
    assert cfg.alerting.shared_egress[1] == "198.51.100.0/24"
    assert (
        cfg.alerting.correlation_gap_minutes == 60 and parse_config({}).alerting.shared_egress == ()
    )
    with pytest.raises(ConfigError, match=r"alerting.shared_egress\[1\]: expected an IP address"):
        parse_config({"alerting": {"shared_egress": ["203.0.113.10", "office-proxy"]}}, environ={})
    with pytest.raises(ConfigError, match="correlation_gap_minutes"):
        parse_config({"alerting": {"correlation_gap_minutes": -5}}, environ={})


def test_channel_keys_are_checked_at_load_and_taken_from_the_environment() -> None:
    cfg = parse_config(
        {"alerting": {"eventbridge_bus": "security"}},
        environ={
            "TENANTWATCH_ALERTING_SECURITYHUB": "true",
            "TENANTWATCH_ALERTING_EVENTBRIDGE_SOURCE": "acme.tenantwatch",
        },
    )
    a = cfg.alerting
    assert (a.securityhub, a.eventbridge_bus, a.eventbridge_source) == (
        True,
        "security",
        "acme.tenantwatch",
    )
    assert parse_config({}, environ={}).alerting.securityhub is False
    arn = "arn:aws:events:eu-west-1:123456789012:event-bus/security"
    product = "arn:aws:securityhub:eu-west-1:123456789012:product/123456789012/default"
    ok = {"securityhub": True, "securityhub_product_arn": product, "eventbridge_bus": arn}
    assert parse_config({"alerting": ok}, environ={}).alerting.eventbridge_bus == arn
    for key, value, needle in [
        ("eventbridge_bus", "my bus", r"alerting\.eventbridge_bus: expected a bus name"),
        ("eventbridge_bus", "arn:aws:sns:eu-west-1:123456789012:t", "alerting.eventbridge_bus"),
        ("eventbridge_source", "aws.securityhub", "alerting.eventbridge_source: expected"),
        ("eventbridge_source", "", "alerting.eventbridge_source: expected"),
        ("securityhub_product_arn", "default", "alerting.securityhub_product_arn: expected"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            parse_config({"alerting": {key: value}}, environ={})
    with pytest.raises(ConfigError, match=r"alerting\.securityhub: expected true or false"):
        parse_config({}, environ={"TENANTWATCH_ALERTING_SECURITYHUB": "yes please"})
