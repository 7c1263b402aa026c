"""The detector contract, importable: what the project checks of each of its detectors, for a
plugin's own tests to check of its detectors (scikit-learn's ``check_estimator`` habit).

    from detectors.testing import check_detector, event, events

    def test_my_detector_keeps_the_contract() -> None:
        check_detector(MyDetector, events([event(0, ...), ...]))  # a window it finds something in

``check_detector`` runs every check and raises ``AssertionError`` naming the first one broken;
each check is also a function of its own. ``event``, ``api`` and ``events`` build small
``EVENTS``-shaped tables from a few keyword arguments (an assumed-role S3 read of tenant t0001,
success, 2026-11-16 10:00 UTC, unless told otherwise).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa

from detectors.base import Detector, DetectorInputError, DetectorSettings, Partition
from pipeline import schema
from pipeline.config import Relationship
from pipeline.errors import ConfigError

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)  # a Monday
ACCOUNT = "111122223333"
SECTIONS = ("Threat", "Signal", "Data needed", "Known false positives", "Runbook")


# --- events -------------------------------------------------------------------------------------


def role(role_name: str, session: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{session}"


def event(at: float | timedelta = 0, **kw: Any) -> dict[str, Any]:
    """One event; ``at`` is seconds (or a timedelta) after ``T0`` unless ``event_time`` is given."""
    offset = at if isinstance(at, timedelta) else timedelta(seconds=at)
    target = kw.get("target_tenant", "t0001")
    row: dict[str, Any] = {
        "event_time": T0 + offset,
        "source": "cloudtrail",
        "event_kind": "api_call",
        "service": "s3.amazonaws.com",
        "action": "GetObject",
        "actor_principal": role("tenant-scoped-access", "usr-a"),
        "actor_type": "AssumedRole",
        "actor_session": "ASIAEXAMPLE0000001",
        "actor_tenant": "t0001",
        "actor_tenant_source": "session_tag",
        "target_tenant": target,
        "target_tenant_source": "s3_key",
        "tenant_conflict": None,
        "resource": f"s3://acme-saas-tenant-data/tenants/{target}/invoices/x.pdf",
        "outcome": "success",
        "error_code": None,
        "status_code": None,
        "source_ip": "198.51.100.7",
        "user_agent": "aws-cli/2.18.7",
        "account_id": ACCOUNT,
        "region": "us-east-1",
        "request_id": None,
        "raw": "{}",
        "record_hash": None,
        "input_uri": "test://factory",
    }
    row.update(kw)
    return row


def api(at: float | timedelta = 0, **kw: Any) -> dict[str, Any]:
    """An API Gateway access-log event of user ``usr-a`` (tenant t0001) on its own tenant."""
    target = kw.get("target_tenant", "t0001")
    defaults: dict[str, Any] = {
        "source": "apigateway",
        "event_kind": "access_log",
        "service": "execute-api:a1b2c3d4e5/prod",
        "action": "GET /tenants/{tenantId}/invoices",
        "actor_principal": "usr-a",
        "actor_type": "token",
        "actor_session": None,
        "actor_tenant_source": "authorizer_context",
        "target_tenant_source": "api_path",
        "resource": f"/prod/tenants/{target}/invoices",
        "status_code": 200,
        "user_agent": "Mozilla/5.0",
    }
    defaults.update(kw)
    return event(at, **defaults)


def events(rows: Iterable[dict[str, Any]], prefix: str = "ev") -> pa.Table:
    """An EVENTS table; rows without ``event_id`` get ``<prefix>-000001``, ... in order."""
    out = []
    for i, row in enumerate(rows, 1):
        r = dict(row)
        r.setdefault("event_id", f"{prefix}-{i:06d}")
        out.append(r)
    cols = {name: [r.get(name) for r in out] for name in schema.EVENTS.names}
    return pa.Table.from_pydict(cols, schema=schema.EVENTS)


# --- the contract -------------------------------------------------------------------------------


def _make(cls: type[Detector], relationships: tuple[Relationship, ...]) -> Detector:
    return cls(None, relationships)


def check_declaration(cls: type[Detector]) -> None:
    """Its class attributes: a severity, sources and columns the lake has, partitions keyed on
    event columns, a lookback and a dedup period, its own settings class, and the base class's
    ``detect``."""
    assert isinstance(getattr(cls, "id", None), str) and cls.id, "id: a non-empty string"
    assert cls.severity in schema.SEVERITIES, f"severity {cls.severity!r}"
    assert set(cls.sources) <= set(schema.SOURCES), f"sources {cls.sources} not all lake sources"
    assert set(cls.columns) <= set(schema.EVENTS.names), "columns: not all are event columns"
    assert set(cls.baseline_columns) <= set(cls.columns) | {"event_time", "source"}, (
        "baseline_columns: not a subset of columns"
    )
    assert {"event_id", "event_time", "source"} <= set(cls.columns), (
        "columns: event_id, event_time and source are needed for evidence"
    )
    assert set(cls.optional_columns).isdisjoint(cls.columns), "optional_columns overlap columns"
    for part in cls.partitions:
        assert isinstance(part, Partition) and part.by, "partitions: Partition(by=(columns...))"
        cols = part.columns()
        assert set(cols) <= set(schema.EVENTS.names), f"partitions: {cols}: not event columns"
        assert (part.link is None) == (part.lead is None), "partitions: link and lead together"
    assert cls.lookback >= timedelta(0), "lookback: negative"
    assert cls.dedup_period > timedelta(0), "dedup_period: not positive"
    assert issubclass(cls.Settings, DetectorSettings) and cls.Settings is not DetectorSettings, (
        "Settings: name a DetectorSettings subclass in Detector[...]"
    )
    assert cls.Settings.__module__ == cls.__module__, "Settings: declare it beside the detector"
    assert "detect" not in vars(cls) and cls.detect is Detector.detect, (
        "detect: the base class's; fill fit and score only"
    )


def check_docstring(cls: type[Detector]) -> None:
    """Its module docstring has every section, and a numbered runbook of three steps or more."""
    doc = sys.modules[cls.__module__].__doc__ or ""
    for section in SECTIONS:
        assert f"\n{section}\n" in doc, f"module docstring: no {section!r} section"
    assert cls.runbook().startswith("1. "), "Runbook: numbered steps from 1."
    assert "\n3. " in cls.runbook(), "Runbook: three steps or more"


def check_empty_window(cls: type[Detector], relationships: tuple[Relationship, ...] = ()) -> None:
    out = _make(cls, relationships).detect(schema.empty(schema.EVENTS), schema.empty(schema.EVENTS))
    assert out.num_rows == 0, "an empty window gave findings"
    assert out.schema == schema.FINDINGS, "findings: not the FINDINGS schema"


def check_finds(
    cls: type[Detector], window: pa.Table, relationships: tuple[Relationship, ...] = ()
) -> None:
    out = _make(cls, relationships).detect(None, window)
    assert out.num_rows >= 1, "the positive window gave no finding"
    assert out.schema == schema.FINDINGS, "findings: not the FINDINGS schema"
    assert set(out["detector"].to_pylist()) == {cls.id}, "findings: detector is not its id"
    assert set(out["severity"].to_pylist()) <= set(schema.SEVERITIES), "findings: a bad severity"


def check_optional_columns(
    cls: type[Detector], window: pa.Table, relationships: tuple[Relationship, ...] = ()
) -> None:
    """A window without its optional columns (a lake older than them) reads them as null."""
    without = window.drop_columns([c for c in cls.optional_columns if c in window.column_names])
    nulls = without
    for c in cls.optional_columns:
        nulls = nulls.append_column(c, pa.nulls(nulls.num_rows, pa.string()))
    a = _make(cls, relationships).detect(None, without)
    b = _make(cls, relationships).detect(None, nulls)
    assert a.equals(b), "a missing optional column is not read as null"


def check_input_not_mutated(
    cls: type[Detector], window: pa.Table, relationships: tuple[Relationship, ...] = ()
) -> None:
    frame = window.to_pandas()
    before_table = pa.Table.from_pylist(window.to_pylist(), schema=window.schema)
    before_frame = frame.copy(deep=True)
    _make(cls, relationships).detect(frame, frame)
    _make(cls, relationships).detect(window, window)
    pd.testing.assert_frame_equal(frame, before_frame)
    assert window.equals(before_table), "detect changed its input table"


def check_stable_ids(
    cls: type[Detector], window: pa.Table, relationships: tuple[Relationship, ...] = ()
) -> None:
    end = T0 + timedelta(hours=1)
    a = _make(cls, relationships).detect(None, window, start=T0, end=end)
    b = _make(cls, relationships).detect(None, window, start=T0, end=end)
    assert a.equals(b), "the same window gave different findings"
    assert len(set(a["finding_id"].to_pylist())) == a.num_rows, "two findings share an id"


def check_missing_column(
    cls: type[Detector], window: pa.Table, relationships: tuple[Relationship, ...] = ()
) -> None:
    try:
        _make(cls, relationships).detect(None, window.drop_columns(["event_id"]))
    except DetectorInputError as exc:
        assert "event_id" in str(exc), "the error does not name the missing column"
        return
    raise AssertionError("a window without event_id is not a DetectorInputError")


def check_fit_returns_self(
    cls: type[Detector], window: pa.Table, relationships: tuple[Relationship, ...] = ()
) -> None:
    det = _make(cls, relationships)
    frame = window.to_pandas()[list(det.baseline_columns)]
    frame.attrs["period"] = (pd.Timestamp(T0 - timedelta(days=1)), pd.Timestamp(T0))
    assert det.fit(frame) is det, "fit does not return self"


def check_settings(cls: type[Detector]) -> None:
    """An unknown setting is a one-line configuration error naming the key."""
    try:
        cls.parse_settings({"no_such_key": 1})
    except ConfigError as exc:
        assert str(exc) == f"detectors.{cls.id}.no_such_key: unknown key", str(exc)
        return
    raise AssertionError("an unknown setting is not a ConfigError")


def check_detector(
    cls: type[Detector], window: pa.Table, relationships: tuple[Relationship, ...] = ()
) -> None:
    """Every check of the contract; ``window`` is one the detector finds something in."""
    check_declaration(cls)
    check_docstring(cls)
    check_settings(cls)
    check_empty_window(cls, relationships)
    for check in (
        check_finds,
        check_optional_columns,
        check_input_not_mutated,
        check_stable_ids,
        check_missing_column,
        check_fit_returns_self,
    ):
        check(cls, window, relationships)
