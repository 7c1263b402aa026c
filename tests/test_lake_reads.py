"""The lake's reads for notebooks (``lake.events``, ``lake.quarantine``) on an ingested lake."""

from __future__ import annotations

from pathlib import Path

from tests import logfactory as lf
from tests.ingestlake import run


def test_notebook_api_filters_by_time_tenant_source_and_actor(tmp_path: Path) -> None:
    from pipeline import lake as api

    lf.delivery_file(
        tmp_path / "in" / "1.json.gz",
        [
            lf.ct(time="2026-11-16T09:00:00Z", key="tenants/t0001/a"),
            lf.ct(time="2026-11-16T11:30:00Z", key="tenants/t0002/b"),
            lf.ct(time="2026-11-17T11:30:00Z", key="tenants/t0002/c", session="usr-other"),
        ],
    )
    lf.lines_file(tmp_path / "in" / "api.log", [lf.access_log(tenant_path="t0002", claim="t0002")])
    lf.lines_file(tmp_path / "in" / "junk.log", [{"no": "idea"}])
    run(tmp_path / "lake", tmp_path / "in")
    lake = str(tmp_path / "lake")
    df = api.events(lake, "2026-11-16T10:00:00", "2026-11-17")
    assert list(df["resource"]) == [
        "/prod/tenants/t0002/invoices",  # 10:00
        "s3://acme-saas-tenant-data/tenants/t0002/b",  # 11:30
    ]
    assert len(api.events(lake, tenant="t0002")) == 3
    assert len(api.events(lake, source="apigateway")) == 1
    other = f"arn:aws:sts::{lf.ACCOUNT}:assumed-role/tenant-scoped-access/usr-other"
    assert list(api.events(lake, actor=other)["resource"]) == [
        "s3://acme-saas-tenant-data/tenants/t0002/c"
    ]
    narrow = api.events(lake, columns=["event_id", "event_time"])
    assert list(narrow.columns) == ["event_id", "event_time"]
    q = api.quarantine(lake)
    assert list(q["reason"]) == ["unrecognised_record"]
    assert api.events(str(tmp_path / "empty")).empty
