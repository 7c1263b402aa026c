"""One contract for every detector in the registry (scikit-learn's check_estimator habit)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import detectors
from detectors.base import Detector, DetectorInputError, DetectorSettings
from pipeline import schema
from pipeline.config import parse_config
from pipeline.errors import ConfigError
from tests.factories import T0, api, event, events, role
from tests.pooled import pooled_config

IDS = list(detectors.REGISTRY)


def make(detector_id: str) -> Detector:
    return detectors.load(detector_id)(None, pooled_config().relationships)


def mixed_window() -> list[dict]:
    """Something for every detector: a cross-tenant read, an enumeration, a failure burst."""
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
    return rows


@pytest.mark.parametrize("detector_id", IDS)
def test_names_line_up(detector_id: str) -> None:
    cls = detectors.load(detector_id)
    assert cls.id == detector_id
    assert cls.__module__ == f"detectors.{detector_id}"
    assert (Path(__file__).parent / f"test_{detector_id}.py").is_file()
    assert cls.severity in schema.SEVERITIES
    assert set(cls.sources) <= set(schema.SOURCES)
    assert set(cls.columns) <= set(schema.EVENTS.names)
    assert set(cls.baseline_columns) <= set(cls.columns) | {"event_time", "source"}
    assert {"event_id", "event_time", "source"} <= set(cls.columns)
    assert set(cls.optional_columns).isdisjoint(cls.columns)
    assert cls.lookback >= timedelta(0) and cls.dedup_period > timedelta(0)
    # Its settings class is the one it names in ``Detector[...]``, declared beside it.
    assert issubclass(cls.Settings, DetectorSettings) and cls.Settings is not DetectorSettings
    assert cls.Settings.__module__ == cls.__module__
    assert isinstance(make(detector_id).settings, cls.Settings)
    # ``detect`` is the base class's: a detector fills ``fit`` and ``score`` only.
    assert "detect" not in vars(cls) and cls.detect is Detector.detect


@pytest.mark.parametrize("detector_id", IDS)
def test_docstring_has_every_section_and_a_numbered_runbook(detector_id: str) -> None:
    cls = detectors.load(detector_id)
    doc = importlib.import_module(cls.__module__).__doc__ or ""
    for section in ("Threat", "Signal", "Data needed", "Known false positives", "Runbook"):
        assert f"\n{section}\n" in doc, section
    assert cls.runbook().startswith("1. ")
    assert "\n3. " in cls.runbook()


@pytest.mark.parametrize("detector_id", IDS)
def test_empty_window_gives_empty_findings_with_every_column(detector_id: str) -> None:
    det = make(detector_id)
    out = det.detect(schema.empty(schema.EVENTS), schema.empty(schema.EVENTS))
    assert out.num_rows == 0
    assert out.schema == schema.FINDINGS


@pytest.mark.parametrize("detector_id", IDS)
def test_finds_something_in_the_mixed_window(detector_id: str) -> None:
    out = make(detector_id).detect(None, events(mixed_window()))
    assert out.num_rows >= 1
    assert out.schema == schema.FINDINGS
    assert set(out["detector"].to_pylist()) == {detector_id}
    assert set(out["severity"].to_pylist()) <= set(schema.SEVERITIES)


@pytest.mark.parametrize("detector_id", IDS)
def test_a_window_without_its_optional_columns_reads_them_as_null(detector_id: str) -> None:
    # A lake written before a column existed lacks it: the detector works as on nulls.
    cls = detectors.load(detector_id)
    window = events(mixed_window())
    without = window.drop_columns([c for c in cls.optional_columns if c in window.column_names])
    nulls = without
    for c in cls.optional_columns:
        nulls = nulls.append_column(c, pa.nulls(nulls.num_rows, pa.string()))
    assert make(detector_id).detect(None, without).equals(make(detector_id).detect(None, nulls))


@pytest.mark.parametrize("detector_id", IDS)
def test_input_is_not_mutated(detector_id: str) -> None:
    table = events(mixed_window())
    frame = table.to_pandas()
    # Copies rebuilt from the values: they share no buffer with what the detectors are given.
    before_table = pa.Table.from_pylist(table.to_pylist(), schema=table.schema)
    before_frame = frame.copy(deep=True)
    make(detector_id).detect(frame, frame)
    make(detector_id).detect(table, table)
    pd.testing.assert_frame_equal(frame, before_frame)
    assert table.equals(before_table)


@pytest.mark.parametrize("detector_id", IDS)
def test_ids_are_stable_across_runs_and_instances(detector_id: str) -> None:
    window = events(mixed_window())
    a = make(detector_id).detect(None, window, start=T0, end=T0 + timedelta(hours=1))
    b = make(detector_id).detect(None, window, start=T0, end=T0 + timedelta(hours=1))
    assert a.equals(b)
    assert len(set(a["finding_id"].to_pylist())) == a.num_rows


@pytest.mark.parametrize("detector_id", IDS)
def test_a_missing_column_is_a_clear_error(detector_id: str) -> None:
    window = events(mixed_window()).drop_columns(["event_id"])
    with pytest.raises(DetectorInputError, match="event_id"):
        make(detector_id).detect(None, window)


@pytest.mark.parametrize("detector_id", IDS)
def test_fit_returns_self(detector_id: str) -> None:
    det = make(detector_id)
    frame = events(mixed_window()).to_pandas()[list(det.baseline_columns)]
    frame.attrs["period"] = (pd.Timestamp(T0 - timedelta(days=1)), pd.Timestamp(T0))
    assert det.fit(frame) is det


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
    assert list(detectors.from_config(cfg)) == ["cross_tenant_access", "authz_failure_spike"]


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
    assert found == set(detectors.REGISTRY.values())
