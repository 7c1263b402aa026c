"""access_pattern: named positive and negative cases on small inline data."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

import orjson
import pyarrow as pa

import detectors
from detectors.access_pattern import AccessPattern, Settings, _prefix
from detectors.testing import check_detector
from pipeline.config import Classification, Config, ServiceRole
from tests.factories import ACCOUNT, T0, api, event, events, role

BUCKET = "s3://acme-saas-tenant-data/tenants/t0001"
CLASSES = (
    Classification(pattern="/invoices/|/billing/", data_class="financial"),
    Classification(pattern="/payroll/", data_class="personal"),
)
SERVICE = ServiceRole(
    principal_pattern=rf"^arn:aws:sts::{ACCOUNT}:assumed-role/saas-nightly-export/"
)
DAYS = 7


def user(name: str, role_name: str = "tenant-scoped-access") -> str:
    return role(role_name, name)


def read(at: float | timedelta, who: str, rel: str, **kw: Any) -> dict[str, Any]:
    """``who`` (a principal) reads ``rel`` under tenant t0001's prefix."""
    return event(at, actor_principal=who, resource=f"{BUCKET}/{rel}", **kw)


@cache
def baseline(peers_read_invoices: bool = False) -> pa.Table:
    """A week before T0: usr-a, usr-b and usr-c of t0001 (tenant-scoped-access) download
    attachments every day and usr-a its dated reports; with ``peers_read_invoices``, usr-b and
    usr-c also read invoices each day. An analyst (tenant-analytics) reads invoices daily."""
    rows = []
    for d in range(1, DAYS + 1):
        at = timedelta(days=-d)
        for u in ("usr-a", "usr-b", "usr-c"):
            for i in range(4):
                rel = f"attachments/inv-{d:02d}{i:04d}/scan-{i}.pdf"
                rows.append(read(at + timedelta(minutes=i), user(u), rel))
            if peers_read_invoices and u != "usr-a":
                rows.append(read(at, user(u), f"invoices/2026-10/inv-{d:06d}.pdf"))
        day = (T0 + at).date().isoformat()
        rows.append(read(at, user("usr-a"), f"exports/{day}/report-01.csv.gz"))
        rows.append(read(at, user("ana", "tenant-analytics"), f"invoices/2026-10/i-{d}.pdf"))
    return events(rows, prefix="base")


def detect(
    rows: list[dict[str, Any]],
    base: pa.Table | None = None,
    classification: tuple[Classification, ...] = CLASSES,
    **settings: Any,
) -> list[dict[str, Any]]:
    s = Settings(**{"classes": {"financial": "high", "personal": "high"}, **settings})
    det = AccessPattern(s, (SERVICE,), classification=classification)
    history = baseline() if base is None else base
    return det.detect(
        history,
        events(rows),
        start=T0,
        end=T0 + timedelta(hours=2),
        baseline_start=T0 - timedelta(days=14),
    ).to_pylist()


def export(who: str, n: int = 15, folder: str = "invoices/2026-11") -> list[dict[str, Any]]:
    return [read(10 * i, who, f"{folder}/inv-{i:06d}.pdf") for i in range(n)]


def only(findings: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(findings) == 1, [f["title"] for f in findings]
    return findings[0]


def test_access_pattern_keeps_the_contract() -> None:
    check_detector(AccessPattern, events(export(user("usr-a"))))


# --- positives ---------------------------------------------------------------------------------


def test_user_exporting_its_own_tenants_invoices_is_high() -> None:
    f = only(detect(export(user("usr-a"))))
    assert (f["severity"], f["actor"], f["actor_tenant"], f["tenants"], f["event_count"]) == (
        "high",
        user("usr-a"),
        "t0001",
        ["t0001"],
        15,
    )
    ev = orjson.loads(f["evidence"])
    assert ev["novel"]["prefix"] == [["s3://acme-saas-tenant-data/tenants/*/invoices", 15]]
    assert ev["classes"] == {"financial": 15}
    assert (ev["peers"], ev["peer_group"]) == (2, "t0001 / tenant-scoped-access")
    assert f["baseline"].startswith("35 events over 14 d; new = never in its own history")


def test_peers_under_another_role_do_not_make_it_usual() -> None:
    # The analyst reads invoices every day, but as tenant-analytics: not usr-a's peer.
    f = only(detect(export(user("usr-a"))))
    assert orjson.loads(f["evidence"])["peers"] == 2


def test_peers_of_the_whole_tenant_when_configured() -> None:
    # peers = "tenant": the analyst is a peer too, 1 of 3 read invoices (33 %).
    assert detect(export(user("usr-a")), peers="tenant", peer_share=0.3) == []
    assert len(detect(export(user("usr-a")), peers="tenant", peer_share=0.5)) == 1


def test_each_class_maps_to_its_severity() -> None:
    f = only(detect(export(user("usr-a"), folder="payroll/2026"), classes={"personal": "medium"}))
    assert f["severity"] == "medium"
    assert orjson.loads(f["evidence"])["classes"] == {"personal": 15}


def test_large_novelty_on_unclassified_data_pages_at_the_base_severity() -> None:
    f = only(detect(export(user("usr-a"), n=40, folder="projects/x"), large=30))
    assert f["severity"] == "medium"


def test_a_new_action_on_a_known_prefix_is_novel() -> None:
    rows = [
        read(5 * i, user("usr-a"), f"attachments/inv-{i:06d}/scan-0.pdf", action="DeleteObject")
        for i in range(12)
    ]
    f = only(detect(rows))
    assert orjson.loads(f["evidence"])["novel"] == {"action": [["DeleteObject", 12]]}
    assert f["severity"] == "low"  # unclassified: recorded, not paged


def test_classes_weigh_a_new_action_when_prefixes_are_not_compared() -> None:
    rows = [
        read(5 * i, user("usr-a"), f"invoices/2026-11/inv-{i:06d}.pdf", action="DeleteObject")
        for i in range(12)
    ]
    f = only(detect(rows, dimensions=("action",)))
    assert (f["severity"], orjson.loads(f["evidence"])["classes"]) == ("high", {"financial": 12})


def test_api_principal_compared_with_its_tenants_other_tokens() -> None:
    base = [
        api(timedelta(days=-d, minutes=i), actor_principal=u, resource="/prod/tenants/t0001/users")
        for d in range(1, 4)
        for i in range(3)
        for u in ("usr-a", "usr-b")
    ]
    rows = [
        api(
            i,
            action="GET /tenants/{tenantId}/invoices/{id}",
            resource=f"/prod/tenants/t0001/invoices/inv-{i:06d}",
        )
        for i in range(12)
    ]
    f = only(detect(rows, base=events(base, "base")))
    ev = orjson.loads(f["evidence"])
    assert (f["actor"], f["severity"], ev["peer_group"]) == ("usr-a", "high", "t0001 / token")
    assert ev["novel"]["action"] == [["GET /tenants/{tenantId}/invoices/{id}", 12]]


# --- negatives ---------------------------------------------------------------------------------


def test_yesterdays_work_with_todays_date_is_not_novel() -> None:
    day = T0.date().isoformat()
    rows = [read(i, user("usr-a"), f"exports/{day}/report-{i:02d}.csv.gz") for i in range(20)]
    rows += [read(i, user("usr-a"), f"attachments/inv-9{i:05d}/scan-1.pdf") for i in range(20)]
    assert detect(rows) == []


def test_a_prefix_its_peers_already_read_is_not_novel() -> None:
    assert detect(export(user("usr-a")), base=baseline(peers_read_invoices=True)) == []


def test_new_unclassified_project_is_recorded_low() -> None:
    f = only(detect(export(user("usr-a"), n=30, folder="projects/warehouse-move")))
    assert f["severity"] == "low"
    assert orjson.loads(f["evidence"])["unclassified"] == 30


def test_a_few_stray_requests_are_below_the_floor() -> None:
    assert detect(export(user("usr-a"), n=9)) == []
    assert len(detect(export(user("usr-a"), n=9), min_events=5)) == 1


def test_a_user_without_history_stays_low_and_says_so() -> None:
    f = only(detect(export(user("usr-new"))))
    assert f["severity"] == "low"
    assert f["baseline"].startswith("no history: ")
    assert orjson.loads(f["evidence"])["history_events"] == 0


def test_without_classification_novelty_is_not_paged() -> None:
    assert only(detect(export(user("usr-a")), classification=()))["severity"] == "low"


def test_service_roles_and_aws_services_are_not_actors() -> None:
    job = role("saas-nightly-export", "saas-nightly-export")
    rows = export(job) + export("delivery.logs.amazonaws.com")
    rows += [{**r, "actor_type": "AWSService", "actor_principal": "x"} for r in export("x")]
    assert detect(rows) == []


def test_events_without_actor_tenant_are_skipped_and_counted() -> None:
    rows = [{**r, "actor_tenant": None} for r in export(user("usr-b"))]
    f = only(detect(rows + export(user("usr-a"))))
    assert f["actor"] == user("usr-a")
    assert orjson.loads(f["evidence"])["skipped"] == {"no actor tenant": 15}


def test_denied_reads_are_no_access() -> None:
    assert detect([{**r, "outcome": "denied"} for r in export(user("usr-a"))]) == []


# --- parts -------------------------------------------------------------------------------------


def test_prefix_keeps_places_and_drops_objects_dates_and_ids() -> None:
    got = _prefix(
        pa.array(
            [
                "s3://data/tenants/t0001/invoices/2026-10/inv-1.pdf",
                "s3://bkt-4d49a486/exports/2026-11-02/report.csv.gz",
                "s3://bkt-4d49a486/exports/",
                "s3://data/x.pdf",
                "dynamodb:tenant-data/TENANT#t0001",
                "/prod/tenants/t0001/invoices/inv-1",
                "s3://bucket-only",
                None,
            ]
        ),
        depth=3,
    ).to_pylist()
    assert got == [
        "s3://data/tenants/*/invoices",
        "s3://bkt-4d49a486/exports",
        "s3://bkt-4d49a486/exports",
        "s3://data",
        "dynamodb:tenant-data",
        "/prod/tenants",
        "s3://bucket-only",
        None,
    ]


def test_an_arrow_baseline_and_a_pandas_one_give_the_same_findings() -> None:
    table = baseline()
    encoded = pa.table(
        [c.dictionary_encode() if pa.types.is_string(c.type) else c for c in table.columns],
        names=table.column_names,
    )
    assert detect(export(user("usr-a")), base=encoded) == detect(export(user("usr-a")))
    frame = table.to_pandas()
    det = AccessPattern(Settings(), classification=CLASSES)
    a = det.detect(frame, events(export(user("usr-a"))), start=T0, end=T0 + timedelta(hours=2))
    b = det.detect(table, events(export(user("usr-a"))), start=T0, end=T0 + timedelta(hours=2))
    assert a.equals(b)


def test_from_config_hands_the_detector_the_classification() -> None:
    cfg = Config(classification=CLASSES, detectors={"access_pattern": {"min_events": 3}})
    det = detectors.from_config(cfg, only=("access_pattern",))["access_pattern"]
    assert isinstance(det, AccessPattern)
    assert det.classes.data_class(f"{BUCKET}/billing/x.pdf") == "financial"
    assert det.settings.min_events == 3
