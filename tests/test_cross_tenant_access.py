"""cross_tenant_access: named positive and negative cases on small inline data."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest

from detectors.cross_tenant_access import CrossTenantAccess, Settings
from pipeline.config import (
    BreakGlass,
    Consultant,
    Organisation,
    Reseller,
    ServiceRole,
    Ticket,
)
from tests.factories import ACCOUNT, api, event, events, role

RELATIONSHIPS = (
    Organisation(parent="t0010", children=("t0011", "t0012")),
    Reseller(reseller="t0050", clients=("t0051",)),
    Consultant(principal="ext-consultant-ana", tenants=("t0020", "t0021")),
    ServiceRole(principal_pattern=rf"^arn:aws:sts::{ACCOUNT}:assumed-role/saas-nightly-export/"),
    BreakGlass(
        principal_pattern=rf"^arn:aws:sts::{ACCOUNT}:assumed-role/support-break-glass/",
        tickets=(
            Ticket(
                id="SUP-4821",
                tenants=("t0031",),
                expires=datetime(2026, 11, 17, tzinfo=UTC),
                approvers=("alice@example.com", "bob@example.com"),
            ),
        ),
    ),
)


def detect(rows: list[dict], **settings: object) -> list[dict]:
    det = CrossTenantAccess(Settings(**settings), RELATIONSHIPS)  # type: ignore[arg-type]
    return det.detect(None, events(rows)).to_pylist()


def detect_tickets(rows: list[dict], tickets: list[str | None]) -> list[dict]:
    """``rows`` with ``actor_ticket`` (the ticket resolved at ingest) set to ``tickets``."""
    table = events(rows)
    if "actor_ticket" in table.column_names:
        table = table.drop_columns(["actor_ticket"])
    table = table.append_column("actor_ticket", pa.array(tickets, pa.string()))
    return CrossTenantAccess(None, RELATIONSHIPS).detect(None, table).to_pylist()


def only(findings: list[dict]) -> dict:
    assert len(findings) == 1, [f["title"] for f in findings]
    return findings[0]


# --- positives ---------------------------------------------------------------------------------


def test_s3_read_of_another_tenants_prefix_is_critical() -> None:
    f = only(detect([event(i, target_tenant="t0002") for i in range(3)]))
    assert (f["severity"], f["actor_tenant"], f["tenants"], f["event_count"]) == (
        "critical",
        "t0001",
        ["t0002"],
        3,
    )
    ev = orjson.loads(f["evidence"])
    assert ev["kind"] == "cross_tenant"
    assert ev["event_ids"] == ["ev-000001", "ev-000002", "ev-000003"]
    assert ev["top_actions"] == [["GetObject", 3]]


def test_denied_attempt_on_another_tenant_is_high() -> None:
    f = only(detect([api(0, target_tenant="t0002", outcome="denied", status_code=403)]))
    assert f["severity"] == "high"


def test_one_success_among_denials_makes_the_finding_critical() -> None:
    rows = [api(i, target_tenant="t0002", outcome="denied") for i in range(5)]
    f = only(detect([*rows, api(9, target_tenant="t0002")]))
    assert (f["severity"], f["event_count"]) == ("critical", 6)


def test_child_acting_on_its_parent_is_not_covered_by_the_organisation() -> None:
    f = only(detect([api(0, actor_tenant="t0011", target_tenant="t0010")]))
    assert f["severity"] == "critical"


def test_consultant_outside_its_declared_tenants() -> None:
    rows = [
        api(0, actor_principal="ext-consultant-ana", actor_tenant="t0049", target_tenant="t0022")
    ]
    assert only(detect(rows))["tenants"] == ["t0022"]


def test_break_glass_without_ticket_is_high() -> None:
    bg = role("support-break-glass", "erik")
    f = only(detect([event(0, actor_principal=bg, actor_tenant=None, target_tenant="t0042")]))
    assert f["severity"] == "high"
    assert orjson.loads(f["evidence"])["kind"] == "break_glass_no_ticket"


def test_break_glass_with_ticket_for_another_tenant_is_high() -> None:
    bg = role("support-break-glass", "SUP-4821.dana")
    f = only(detect([event(0, actor_principal=bg, actor_tenant=None, target_tenant="t0042")]))
    assert f["severity"] == "high"


def test_break_glass_after_the_ticket_expired_is_high() -> None:
    bg = role("support-break-glass", "SUP-4821.dana")
    late = datetime(2026, 11, 17, 0, 5, tzinfo=UTC)
    rows = [event(actor_principal=bg, actor_tenant=None, target_tenant="t0031", event_time=late)]
    assert only(detect(rows))["severity"] == "high"


def test_break_glass_with_open_ticket_is_recorded_low() -> None:
    bg = role("support-break-glass", "SUP-4821.dana")
    f = only(detect([event(0, actor_principal=bg, actor_tenant=None, target_tenant="t0031")]))
    assert f["severity"] == "low"
    assert orjson.loads(f["evidence"])["kind"] == "break_glass_ticket"


def test_break_glass_ticket_from_the_session_tag_column_is_recorded_low() -> None:
    bg = role("support-break-glass", "dana")  # the session name names no ticket
    row = event(0, actor_principal=bg, actor_tenant=None, target_tenant="t0031")
    f = only(detect_tickets([row], ["SUP-4821"]))
    assert (f["severity"], orjson.loads(f["evidence"])["kind"]) == ("low", "break_glass_ticket")


def test_break_glass_evidence_names_the_ticket_and_its_approvers() -> None:
    bg = role("support-break-glass", "SUP-4821.dana")
    f = only(detect([event(0, actor_principal=bg, actor_tenant=None, target_tenant="t0031")]))
    ev = orjson.loads(f["evidence"])
    assert ev["tickets"] == [
        {
            "id": "SUP-4821",
            "tenants": ["t0031"],
            "expires": "2026-11-17T00:00:00+00:00",
            "approvers": ["alice@example.com", "bob@example.com"],
        }
    ]
    assert ev["tickets_unknown"] == []


def test_the_session_tag_ticket_wins_over_the_session_name() -> None:
    bg = role("support-break-glass", "SUP-4821.dana")
    row = event(0, actor_principal=bg, actor_tenant=None, target_tenant="t0031")
    f = only(detect_tickets([row], ["SUP-9999"]))
    ev = orjson.loads(f["evidence"])
    assert (f["severity"], ev["tickets"], ev["tickets_unknown"]) == ("high", [], ["SUP-9999"])


def test_a_null_ticket_column_falls_back_to_the_session_name() -> None:
    bg = role("support-break-glass", "SUP-4821.dana")
    row = event(0, actor_principal=bg, actor_tenant=None, target_tenant="t0031")
    assert only(detect_tickets([row], [None]))["severity"] == "low"


@pytest.mark.parametrize(
    ("target", "when"),
    [
        pytest.param("t0042", datetime(2026, 11, 16, 10, tzinfo=UTC), id="wrong-tenant"),
        pytest.param("t0031", datetime(2026, 11, 17, 0, 5, tzinfo=UTC), id="expired"),
    ],
)
def test_a_session_tag_ticket_for_another_tenant_or_expired_pages(
    target: str, when: datetime
) -> None:
    bg = role("support-break-glass", "dana")
    row = event(actor_principal=bg, actor_tenant=None, target_tenant=target, event_time=when)
    f = only(detect_tickets([row], ["SUP-4821"]))
    assert (f["severity"], orjson.loads(f["evidence"])["kind"]) == (
        "high",
        "break_glass_no_ticket",
    )


def test_tenant_context_conflict_is_its_own_finding() -> None:
    rows = [event(0, tenant_conflict="actor:session_tag=t0001,role_session_name=t0002")]
    f = only(detect(rows))
    assert f["severity"] == "high"
    ev = orjson.loads(f["evidence"])
    assert (ev["kind"], ev["conflicts"]) == (
        "tenant_conflict",
        ["actor:session_tag=t0001,role_session_name=t0002"],
    )


def test_unresolved_actor_acting_on_tenant_data_is_low() -> None:
    f = only(detect([event(0, actor_tenant=None, target_tenant="t0007")]))
    assert (f["severity"], f["actor_tenant"]) == ("low", None)
    assert orjson.loads(f["evidence"])["kind"] == "unresolved_actor"


def test_severities_come_from_settings() -> None:
    rows = [event(0, actor_tenant=None, target_tenant="t0007")]
    assert only(detect(rows, severity_unresolved="medium"))["severity"] == "medium"


def test_one_finding_per_actor_lists_every_target_tenant() -> None:
    rows = [event(i, target_tenant=t) for i, t in enumerate(["t0002", "t0003", "t0002"])]
    f = only(detect(rows))
    assert (f["tenants"], f["event_count"]) == (["t0002", "t0003"], 3)


# --- negatives ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(event(0), id="own-tenant"),
        pytest.param(api(0, actor_tenant="t0010", target_tenant="t0011"), id="parent-on-child"),
        pytest.param(api(0, actor_tenant="t0050", target_tenant="t0051"), id="reseller-on-client"),
        pytest.param(
            api(
                0, actor_principal="ext-consultant-ana", actor_tenant="t0049", target_tenant="t0020"
            ),
            id="consultant-api-principal",
        ),
        pytest.param(
            event(
                0,
                actor_principal=role("tenant-reports", "tenant-t0049-ext-consultant-ana"),
                actor_tenant="t0049",
                target_tenant="t0021",
            ),
            id="consultant-prefixed-session-name",
        ),
        pytest.param(
            event(
                0,
                actor_principal=role("saas-nightly-export", "saas-nightly-export"),
                actor_tenant=None,
                target_tenant="t0005",
            ),
            id="service-role",
        ),
        pytest.param(
            event(
                0,
                actor_principal="aws-account:444455556666/ext-consultant-ana",
                actor_type="AWSAccount",
                actor_tenant="t0049",
                target_tenant="t0020",
            ),
            id="consultant-from-another-account",
        ),
        pytest.param(
            event(
                0,
                actor_principal=role("app-reports", "ext-consultant-ana"),
                actor_tenant="t0049",
                target_tenant="t0020",
                tenant_conflict="actor:accountId=t0049,claim=t0020",
            ),
            id="consultant-token-naming-its-client",
        ),
        pytest.param(
            api(0, actor_principal=None, actor_tenant=None, target_tenant="t0005"),
            id="anonymous-login",
        ),
        pytest.param(
            event(0, actor_tenant=None, target_tenant="t0005", outcome="denied"),
            id="unresolved-actor-denied",
        ),
        pytest.param(event(0, target_tenant=None), id="no-target-tenant"),
    ],
)
def test_allowed_or_irrelevant_access_is_not_reported(row: dict) -> None:
    assert detect([row]) == []


def test_a_consultant_session_name_must_end_with_the_principal() -> None:
    # "ext-consultant-ana-evil" is not ext-consultant-ana.
    rows = [
        event(
            0,
            actor_principal=role("tenant-reports", "ext-consultant-ana-evil"),
            actor_tenant="t0049",
            target_tenant="t0020",
        )
    ]
    assert only(detect(rows))["severity"] == "critical"


def test_findings_have_the_fixed_schema() -> None:
    det = CrossTenantAccess(None, RELATIONSHIPS)
    table = det.detect(None, events([event(0, target_tenant="t0002")]))
    from pipeline.schema import FINDINGS

    assert table.schema == FINDINGS
    assert isinstance(table, pa.Table)


@pytest.mark.parametrize(
    "principal",
    [
        "aws-account:444455556666/ext-consultant-ana-evil",
        "aws-account:444455556666",  # no session: nothing to match a consultant on
    ],
)
def test_another_accounts_caller_is_a_consultant_only_by_its_session(principal: str) -> None:
    rows = [event(0, actor_principal=principal, actor_tenant="t0049", target_tenant="t0020")]
    assert only(detect(rows))["severity"] == "critical"


def test_a_conflict_outside_the_consultants_tenants_still_pages() -> None:
    rows = [
        event(
            0,
            actor_principal=role("app-reports", "ext-consultant-ana"),
            actor_tenant="t0049",
            target_tenant="t0049",
            tenant_conflict="actor:accountId=t0049,claim=t0030",
        )
    ]
    f = only(detect(rows))
    assert (f["severity"], orjson.loads(f["evidence"])["kind"]) == ("high", "tenant_conflict")
