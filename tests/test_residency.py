"""residency: named positive and negative cases on small inline data, and ``[[tenants]]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import detectors
from detectors import testing
from detectors.residency import Residency, Settings
from pipeline.config import Classification, load_config, parse_config
from pipeline.config_tenants import Tenant
from pipeline.errors import ConfigError
from tests.factories import api, event, events

TENANTS = (
    Tenant(id="t0007", regions=("eu-west-1",), classification="financial"),
    Tenant(id="t0008", regions=("eu-west-1", "eu-central-1")),
    Tenant(id="t0009", regions=("us-east-1",)),
)
CLASSES = (Classification(pattern="/payroll/", data_class="personal"),)
EU_API = "e1u2a3p4i5"


def detect(rows: list[dict], tenants: tuple[Tenant, ...] = TENANTS, **settings: Any) -> list[dict]:
    det = Residency(Settings(**settings), (), tenants, CLASSES)
    return det.detect(None, events(rows)).to_pylist()


def only(findings: list[dict]) -> dict:
    assert len(findings) == 1, [f["title"] for f in findings]
    return findings[0]


def ev(f: dict) -> dict:
    return dict(orjson.loads(f["evidence"]))


def s3(at: float, tenant: str, region: str, **kw: Any) -> dict:
    kw.setdefault("resource", f"s3://acme-data/tenants/{tenant}/usage/x.json")
    return event(at, actor_tenant=tenant, target_tenant=tenant, region=region, **kw)


def access(at: float, tenant: str, **kw: Any) -> dict:
    """An access-log line of the tenant's user on its own data (no region: API Gateway's access
    logs name none)."""
    return api(at, actor_tenant=tenant, target_tenant=tenant, **{"region": None, **kw})


class _Configured(Residency):
    """The detector as ``from_config`` builds it for a world whose t0002 is pinned to eu-west-1
    (the contract builds detectors with settings and relationships only)."""

    def __init__(self, settings: Any = None, relationships: Any = ()) -> None:
        super().__init__(settings, relationships, (Tenant(id="t0002", regions=("eu-west-1",)),))


def test_residency_keeps_the_detector_contract() -> None:
    # check_detector's checks: those of the class on the class, the rest on it as configured.
    for check_class in (testing.check_declaration, testing.check_docstring, testing.check_settings):
        check_class(Residency)
    testing.check_empty_window(_Configured)
    window = events([s3(0, "t0002", "us-east-1"), s3(1, "t0002", "eu-west-1")])
    for check in (
        testing.check_finds,
        testing.check_optional_columns,
        testing.check_input_not_mutated,
        testing.check_stable_ids,
        testing.check_missing_column,
        testing.check_fit_returns_self,
    ):
        check(_Configured, window)


# --- positives -----------------------------------------------------------------------------------


def test_a_write_outside_the_tenants_regions_is_high() -> None:
    f = only(detect([s3(0, "t0008", "us-east-1", action="PutObject")]))
    d = ev(f)
    assert (f["severity"], f["tenants"], d["kind"]) == ("high", ["t0008"], "data_outside")
    assert (d["regions_seen"], d["tenant_regions"], d["writes"]) == (
        {"us-east-1": 1},
        ["eu-central-1", "eu-west-1"],
        1,
    )


def test_a_read_of_a_classified_tenants_data_outside_is_high() -> None:
    f = only(detect([s3(0, "t0007", "us-east-1")]))
    assert (f["severity"], ev(f)["classes"]) == ("high", {"financial": 1})


def test_a_read_of_a_resource_a_classification_pattern_names_is_high() -> None:
    row = s3(0, "t0008", "us-west-2", resource="s3://acme-data/tenants/t0008/payroll/p.csv")
    assert only(detect([row]))["severity"] == "high"


def test_an_unclassified_read_outside_is_medium() -> None:
    assert only(detect([s3(0, "t0008", "us-east-1")]))["severity"] == "medium"


def test_classes_setting_limits_what_makes_a_read_high() -> None:
    rows = [s3(0, "t0007", "us-east-1")]
    assert only(detect(rows, classes=("personal",)))["severity"] == "medium"


def test_a_denied_attempt_outside_is_low() -> None:
    f = only(detect([s3(0, "t0007", "us-east-1", action="PutObject", outcome="denied")]))
    assert (f["severity"], ev(f)["denied"]) == ("low", 1)


def test_one_finding_per_tenant_and_actor_with_the_worst_severity() -> None:
    rows = [s3(i, "t0008", "us-east-1") for i in range(3)]
    rows.append(s3(9, "t0008", "us-east-1", action="PutObject"))
    f = only(detect(rows))
    assert (f["event_count"], f["severity"]) == (4, "high")


def test_an_api_request_takes_its_region_from_the_api_regions_map() -> None:
    row = access(0, "t0007", service="execute-api:us1/prod")
    f = only(detect([row], api_regions={"us1": "us-east-1"}))
    assert (ev(f)["region_from"], ev(f)["regions_seen"]) == ({"api_regions": 1}, {"us-east-1": 1})


def test_an_unmapped_api_takes_the_region_of_the_authorizers_method_arn() -> None:
    rows = [
        access(0, "t0007", request_id="req-1"),
        access(0, "t0007", request_id="req-1", source="authorizer", region="us-east-1"),
    ]
    f = only(detect(rows))
    assert (ev(f)["region_from"], f["event_count"]) == ({"authorizer": 1}, 1)


def test_actor_egress_outside_the_regions_is_its_own_kind() -> None:
    row = s3(0, "t0007", "eu-west-1", source_ip="203.0.113.9")
    f = only(detect([row], actor_egress={"us-east-1": ("203.0.113.0/24",)}))
    assert (ev(f)["kind"], ev(f)["regions_seen"]) == ("actor_outside", {"us-east-1": 1})


def test_the_findings_count_what_was_not_judged() -> None:
    rows = [
        s3(0, "t0007", "us-east-1"),
        s3(1, "t0042", "ap-south-1"),  # no [[tenants]] entry
        s3(2, "t0043", "ap-south-1"),
        event(3, target_tenant=None, region="ap-south-1"),
        access(4, "t0008"),  # API region unknown
    ]
    assert ev(only(detect(rows)))["not_judged"] == {
        "no_target_tenant": 1,
        "tenants_without_regions": 2,
        "events_of_tenants_without_regions": 2,
        "unknown_region": 1,
    }


# --- negatives -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(s3(0, "t0007", "eu-west-1", action="PutObject"), id="inside-its-region"),
        pytest.param(s3(0, "t0008", "eu-central-1"), id="second-region"),
        pytest.param(s3(0, "t0042", "ap-south-1"), id="tenant-without-regions"),
        pytest.param(event(0, target_tenant=None, region="ap-south-1"), id="unresolved-target"),
        pytest.param(
            event(0, target_tenant="t0007", service="sts.amazonaws.com", action="AssumeRole"),
            id="global-identity-service",
        ),
        pytest.param(
            access(0, "t0007", service=f"execute-api:{EU_API}/prod"), id="api-in-its-region"
        ),
        pytest.param(access(0, "t0007"), id="api-region-unknown"),
        pytest.param(
            access(0, "t0007", source="authorizer", region="us-east-1"),
            id="authorizer-line-alone",
        ),
        pytest.param(s3(0, "t0007", "eu-west-1", source_ip="203.0.113.9"), id="egress-not-set"),
    ],
)
def test_allowed_or_unjudged_events_are_not_reported(row: dict) -> None:
    assert detect([row], api_regions={EU_API: "eu-west-1"}) == []


def test_a_tenant_with_two_regions_using_both_is_not_reported() -> None:
    rows = [
        s3(i, "t0008", ("eu-west-1", "eu-central-1")[i % 2], action="PutObject") for i in range(6)
    ]
    assert detect(rows) == []


def test_an_address_no_egress_places_is_never_judged() -> None:
    row = s3(0, "t0007", "eu-west-1", source_ip="198.51.100.7")
    assert detect([row], actor_egress={"us-east-1": ("203.0.113.0/24",)}) == []


def test_without_tenants_nothing_is_judged() -> None:
    assert detect([s3(0, "t0007", "us-east-1", action="PutObject")], tenants=()) == []


# --- configuration -----------------------------------------------------------------------------


def test_from_config_gives_the_detector_the_tenants_and_classification() -> None:
    cfg = parse_config(
        {
            "tenants": [{"id": "t0007", "regions": ["eu-west-1"], "classification": "financial"}],
            "classification": [{"pattern": "/payroll/", "class": "personal"}],
        },
        environ={},
    )
    det = detectors.from_config(cfg, only=("residency",))["residency"]
    assert isinstance(det, Residency)
    assert (det.tenants, det.classification) == (cfg.tenants, cfg.classification)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[[tenants]]\nid = 't1'\nregions = ['eu_west_1']\n", "tenants[0].regions[0]: expected an"),
        (
            "[[tenants]]\nid = 't1'\nregions = ['eu-west-1']\n"
            "[[tenants]]\nid = 't1'\nregions = ['eu-west-2']\n",
            "tenants[1].id: 't1' is defined twice",
        ),
        ("[[tenants]]\nid = 't1'\nregions = []\n", "tenants[0].regions: expected at least one"),
        ("[[tenants]]\nid = 't1'\n", "tenants[0].regions: required key"),
        ("[[tenants]]\nid = ' '\nregions = ['eu-west-1']\n", "tenants[0].id: expected a tenant"),
        (
            "[[tenants]]\nid = 't1'\nregions = ['eu-west-1', 'eu-west-1']\n",
            "tenants[0].regions[1]: 'eu-west-1' is listed twice",
        ),
        ("[[tenants]]\nid = 't1'\nregions = ['eu-west-1']\nzone = 1\n", "tenants[0].zone: unknown"),
    ],
)
def test_bad_tenants_are_one_line_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "tw.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    assert message in str(exc.value)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"api_regions": {"abc": "europe"}}, "detectors.residency.api_regions.abc: expected an"),
        (
            {"actor_egress": {"us-east-1": ["300.1.2.3/8"]}},
            "detectors.residency.actor_egress.us-east-1[0]: expected an IP address or CIDR",
        ),
        ({"actor_egress": {"usa": []}}, "detectors.residency.actor_egress.usa: expected an AWS"),
        ({"write_actions": "(Put"}, "detectors.residency.write_actions: not a valid regular"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^" + message.replace("[", r"\[").replace("]", r"\]")):
        Residency.parse_settings(settings)
