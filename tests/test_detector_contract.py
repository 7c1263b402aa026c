"""One contract for every detector in the registry (scikit-learn's check_estimator habit)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import detectors
from detectors import testing
from detectors.base import Detector
from pipeline.config import parse_config
from pipeline.config_tenants import Tenant
from pipeline.errors import ConfigError
from tests.factories import api, event, events, role
from tests.pooled import pooled_config

IDS = list(detectors.BUILTIN)
RELATIONSHIPS = pooled_config().relationships


def make(detector_id: str) -> Detector:
    return detectors.load(detector_id)(None, RELATIONSHIPS)


def configured(detector_id: str) -> type[Detector]:
    """The detector as ``from_config`` builds it for the mixed window's world: ``residency``
    judges only tenants given regions (t0002 is pinned to eu-west-1, its reads are in us-east-1)."""
    cls = detectors.load(detector_id)
    if detector_id != "residency":
        return cls

    class Configured(cls):  # type: ignore[misc,valid-type]
        def __init__(self, settings: Any = None, relationships: Any = ()) -> None:
            super().__init__(settings, relationships, (Tenant(id="t0002", regions=("eu-west-1",)),))

    return Configured


def mixed_window() -> list[dict]:
    """Something for every detector: a cross-tenant read, an enumeration, a failure burst, a
    cached authorizer decision served on another tenant's path, a trail stopped, a token sent
    to another tenant than its claim, a user's new pattern."""
    rows = [event(i, target_tenant="t0002") for i in range(3)]
    rows += [
        api(
            10 + 5 * i,
            actor_principal="usr-e",
            actor_tenant="t0035",
            target_tenant=f"t{n:04d}",
            outcome="denied",
            status_code=403,
            source_ip="192.0.2.5",
        )
        for i, n in enumerate(range(1, 30))
    ]
    rows += [event(200, actor_principal=role("support-break-glass", "erik"), actor_tenant=None)]
    # An authorizer's Allow for usr-c (t0003), then served from the cache to another client on
    # t0004's path.
    rows += [
        api(250, request_id="req-c0", actor_principal="usr-c", actor_tenant="t0003"),
        api(250, source="authorizer", request_id="req-c0", actor_principal="usr-c"),
        api(
            260,
            request_id="req-c1",
            actor_principal="usr-c",
            actor_tenant="t0003",
            target_tenant="t0004",
            source_ip="203.0.113.50",
            user_agent="python-requests/2.32.3",
        ),
    ]
    rows += [
        event(
            250,
            source="authorizer",
            event_kind="authorizer_decision",
            actor_principal="usr-e",
            actor_type="token",
            actor_session="sha256:00000000000000e1",
            actor_tenant="t0035",
            target_tenant="t0001",
            outcome="denied",
            error_code="tenant claim t0035 does not match requested tenant t0001",
            request_id="req-e1",
        )
    ]
    # A user's first bulk read of a prefix: new to it and its peers (access_pattern, low).
    rows += [
        event(
            400 + i,
            actor_principal=role("tenant-scoped-access", "usr-n"),
            target_tenant="t0001",
            resource=f"s3://acme-saas-tenant-data/tenants/t0001/projects/p/{i}.csv",
        )
        for i in range(12)
    ]
    # A trail stopped, for the rule pack the ``sigma`` detector runs by default.
    stop = {"eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging"}
    rows += [
        event(
            300,
            service=stop["eventSource"],
            action=stop["eventName"],
            target_tenant=None,
            resource=None,
            raw=json.dumps(stop),
        )
    ]
    return rows


@pytest.mark.parametrize("detector_id", IDS)
def test_names_line_up(detector_id: str) -> None:
    cls = detectors.load(detector_id)
    assert cls.id == detector_id
    assert cls.__module__ == f"detectors.{detector_id}"
    assert (Path(__file__).parent / f"test_{detector_id}.py").is_file()
    assert isinstance(make(detector_id).settings, cls.Settings)


# The contract itself is detectors.testing's, which a plugin's tests run over their detectors.
CHECKS_OF_THE_CLASS = [testing.check_declaration, testing.check_docstring, testing.check_settings]
CHECKS_ON_A_WINDOW = [
    testing.check_finds,
    testing.check_optional_columns,
    testing.check_input_not_mutated,
    testing.check_stable_ids,
    testing.check_missing_column,
    testing.check_fit_returns_self,
]


@pytest.mark.parametrize("check", CHECKS_OF_THE_CLASS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("detector_id", IDS)
def test_the_class_keeps_the_contract(detector_id: str, check: Any) -> None:
    check(detectors.load(detector_id))


@pytest.mark.parametrize("detector_id", IDS)
def test_empty_window_gives_empty_findings_with_every_column(detector_id: str) -> None:
    testing.check_empty_window(detectors.load(detector_id), RELATIONSHIPS)


@pytest.mark.parametrize("check", CHECKS_ON_A_WINDOW, ids=lambda c: c.__name__)
@pytest.mark.parametrize("detector_id", IDS)
def test_the_detector_keeps_the_contract_on_the_mixed_window(detector_id: str, check: Any) -> None:
    check(configured(detector_id), events(mixed_window()), RELATIONSHIPS)


def test_a_broken_detector_fails_the_contract_saying_where() -> None:
    class Overrides(detectors.load("cross_tenant_access")):  # type: ignore[misc]
        def detect(self, *args: Any, **kwargs: Any) -> Any:
            return None

    with pytest.raises(AssertionError, match=r"^Settings: declare it beside the detector$"):
        testing.check_declaration(Overrides)
    cls = detectors.load("cross_tenant_access")
    with pytest.raises(AssertionError, match="no finding"):
        testing.check_finds(cls, events([event(0)]), RELATIONSHIPS)  # nothing to find there


@pytest.mark.parametrize("detector_id", IDS)
def test_unknown_setting_is_a_config_error_naming_the_key(detector_id: str) -> None:
    cfg = parse_config({"detectors": {detector_id: {"no_such_key": 1}}}, environ={})
    with pytest.raises(ConfigError, match=rf"^detectors\.{detector_id}\.no_such_key: unknown key$"):
        detectors.from_config(cfg)


def test_wrong_type_is_a_config_error_in_one_line() -> None:
    cfg = parse_config({"detectors": {"authz_failure_spike": {"min_count": "ten"}}}, environ={})
    with pytest.raises(ConfigError) as err:
        detectors.from_config(cfg)
    assert str(err.value) == (
        "detectors.authz_failure_spike.min_count: expected an integer, got a string"
    )


def test_unknown_detector_is_a_config_error() -> None:
    cfg = parse_config({"detectors": {"cross_tenant": {}}}, environ={})
    with pytest.raises(ConfigError, match=r"^detectors\.cross_tenant: unknown detector"):
        detectors.from_config(cfg)


def test_disabled_detector_is_not_built() -> None:
    cfg = parse_config({"detectors": {"tenant_switching": {"enabled": False}}}, environ={})
    assert list(detectors.from_config(cfg)) == [
        "cross_tenant_access",
        "authz_failure_spike",
        "authorizer_cache",
        "sigma",
        "residency",
        "token_replay",
        "access_pattern",
    ]


def test_importing_the_registry_stays_light() -> None:
    code = (
        "import sys, detectors; "
        "heavy = [m for m in ('pandas', 'sklearn', 'numpy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.stdout.strip() == ""


def test_every_detector_in_the_package_is_registered() -> None:
    # The contract tests run over the registry: a detector class outside it would go unchecked
    # (and never run). Helper modules (rules, evidence, a detector's parts) define none.
    found = set()
    for mod in pkgutil.walk_packages(detectors.__path__, "detectors."):
        module = importlib.import_module(mod.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Detector)
                and obj is not Detector
                and obj.__module__ == mod.name
            ):
                found.add(f"{obj.__module__}:{obj.__name__}")
    assert found == set(detectors.BUILTIN.values())
