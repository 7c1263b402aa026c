"""Detector plugins: packages add detectors through the ``tenantwatch.detectors`` entry point
group; their settings are validated like the built-ins'; one that does not load is left out and
reported, and the others run (detectors/__init__.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

import detectors
from pipeline.cli import cli
from pipeline.config import parse_config
from pipeline.detect import run_detect
from pipeline.errors import ConfigError
from pipeline.lake import Lake
from tests import factories as fx

GOOD = ("tenant_touched", "tests.plugin_detectors:TenantTouched")
BROKEN = {
    "no_module": "tests.no_such_module:Detector",
    "not_a_detector": "tests.plugin_detectors:NOT_A_DETECTOR",
    "misnamed": "tests.plugin_detectors:Misnamed",
    "cross_tenant_access": "tests.plugin_detectors:TenantTouched",  # a built-in's id
    "no_colon": "tests.plugin_detectors",
}


def _ep(name: str, value: str) -> Any:
    dist = SimpleNamespace(name="acme-detectors", version="2.3.4")
    return SimpleNamespace(name=name, value=value, dist=dist)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The entry points a test installs, instead of those of the environment."""
    import importlib.metadata

    installed: dict[str, str] = {}
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group: (
            [_ep(n, v) for n, v in installed.items()] if group == detectors.ENTRY_POINTS else []
        ),
    )
    detectors._registered.cache_clear()
    yield installed
    detectors._registered.cache_clear()


def test_a_plugin_joins_the_registry_after_the_built_ins(plugins: dict[str, str]) -> None:
    plugins[GOOD[0]] = GOOD[1]
    assert list(detectors.REGISTRY) == [*detectors.BUILTIN, "tenant_touched"]
    entry = detectors.registered()["tenant_touched"]
    assert (entry.origin, entry.version, entry.target) == ("acme-detectors", "2.3.4", GOOD[1])
    cfg = parse_config({"detectors": {"tenant_touched": {"tenant": "t0009"}}}, environ={})
    built = detectors.from_config(cfg)
    assert list(built) == [*detectors.BUILTIN, "tenant_touched"]
    assert built["tenant_touched"].settings.tenant == "t0009"  # type: ignore[attr-defined]
    assert detectors.unavailable() == {}


def test_a_plugin_s_settings_are_validated_like_a_built_in_s(plugins: dict[str, str]) -> None:
    plugins[GOOD[0]] = GOOD[1]
    cfg = parse_config({"detectors": {"tenant_touched": {"tenant": 7}}}, environ={})
    with pytest.raises(ConfigError, match=r"^detectors\.tenant_touched\.tenant: expected a string"):
        detectors.from_config(cfg)


def test_plugins_that_do_not_load_are_left_out_and_say_why(
    plugins: dict[str, str], tmp_path: Path
) -> None:
    plugins.update(BROKEN)
    plugins[GOOD[0]] = GOOD[1]
    missing = detectors.unavailable()
    assert set(missing) == {
        "no_module",
        "not_a_detector",
        "misnamed",
        "cross_tenant_access (acme-detectors)",
        "no_colon",
    }
    assert "ModuleNotFoundError" in missing["no_module"]
    assert "is not a Detector subclass" in missing["not_a_detector"]
    assert "has id 'not_what_it_is_registered_as'" in missing["misnamed"]
    assert "taken by built-in" in missing["cross_tenant_access (acme-detectors)"]
    assert "not module:Class" in missing["no_colon"]
    # The built-in keeps its id; the others run, the good plugin among them.
    assert detectors.load("cross_tenant_access").__module__ == "detectors.cross_tenant_access"
    built = detectors.from_config(parse_config({}, environ={}))
    assert list(built) == [*detectors.BUILTIN, "tenant_touched"]
    # A detection run goes on, and says what it left out.
    lake = Lake(str(tmp_path / "lake"))
    table = fx.events([fx.event(0, target_tenant="t0002")])
    lake.write_table("events/source=cloudtrail/date=2026-11-16/hour=10/p.parquet", table)
    warned: list[str] = []
    done = run_detect(lake.root, parse_config({}, environ={}), warn=warned.append)
    assert done.summary["failed"] == {}
    assert set(done.summary["unavailable"]) == set(missing)
    assert "tenant_touched" in done.summary["detectors"]
    assert any(w.startswith("detector no_module left out: ") for w in warned)


def test_detectors_list_shows_origin_version_and_the_ones_left_out(plugins: dict[str, str]) -> None:
    plugins[GOOD[0]] = GOOD[1]
    plugins["no_module"] = BROKEN["no_module"]
    out = CliRunner().invoke(cli, ["detectors", "list", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["id"]: r for r in json.loads(out.output)["detectors"]}
    assert rows["cross_tenant_access"]["origin"] == "built-in"
    assert rows["cross_tenant_access"]["status"] == "enabled"
    assert (rows["tenant_touched"]["origin"], rows["tenant_touched"]["version"]) == (
        "acme-detectors",
        "2.3.4",
    )
    assert (rows["tenant_touched"]["kind"], rows["tenant_touched"]["status"]) == ("rule", "enabled")
    assert rows["no_module"]["status"] == "unavailable"
    assert "does not load" in rows["no_module"]["reason"]
    table = CliRunner().invoke(cli, ["detectors", "list"])
    assert (
        table.exit_code == 0 and "acme-detectors" in table.output and "unavailable" in table.output
    )
