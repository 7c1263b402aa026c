"""Break-glass, whole: a use is valid only under a known ticket with enough distinct approvers,
for a tenant it lists, before its expiry; the evidence says which rule a use broke; tickets carry
a justification from every source; ``tenantwatch breakglass report`` lists every use, per tenant.

The ticket sources' other fields and errors are in test_tickets.py, the rest of the detector in
test_cross_tenant_access.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from detectors.base import finding_id
from detectors.cross_tenant_access import CrossTenantAccess
from pipeline import tickets
from pipeline.cli import cli
from pipeline.config import BreakGlass, Ticket, load_config, parse_config
from pipeline.errors import ConfigError
from tests.factories import ACCOUNT, T0, event, events, role

PATTERN = rf"^arn:aws:sts::{ACCOUNT}:assumed-role/support-break-glass/"
EXPIRES = datetime(2026, 11, 17, tzinfo=UTC)
TWO = ("alice@example.com", "bob@example.com")
WHY = "Customer t0031 asked support to restore a deleted invoice (case 77120)."


def ticket(ident: str = "SUP-1", **kw: Any) -> Ticket:
    fields: dict[str, Any] = {
        "id": ident,
        "tenants": ("t0031",),
        "expires": EXPIRES,
        "approvers": TWO,
        "justification": WHY,
    }
    fields.update(kw)
    return Ticket(**fields)


def detect(rows: list[dict[str, Any]], *tks: Ticket, **rel: Any) -> list[dict[str, Any]]:
    bg = BreakGlass(principal_pattern=PATTERN, tickets=tks or (ticket(),), **rel)
    return CrossTenantAccess(None, (bg,)).detect(None, events(rows)).to_pylist()


def use(at: float | timedelta = 0, session: str = "SUP-1.dana", **kw: Any) -> dict[str, Any]:
    """One read of ``target_tenant`` (t0031 unless told) by the break-glass role."""
    kw.setdefault("target_tenant", "t0031")
    return event(at, actor_principal=role("support-break-glass", session), actor_tenant=None, **kw)


def only(found: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(found) == 1, [f["title"] for f in found]
    return found[0]


def evidence(f: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(f["evidence"])
    return doc


# --- the configuration -------------------------------------------------------------------------


def _rel(**kw: Any) -> dict[str, Any]:
    return {"kind": "break_glass", "principal_pattern": PATTERN, **kw}


def test_approvals_required_defaults_to_two() -> None:
    (rel,) = parse_config({"relationships": [_rel()]}, environ={}).relationships
    assert isinstance(rel, BreakGlass) and rel.approvals_required == 2


@pytest.mark.parametrize("n", [0, 1, 3])
def test_approvals_required_is_per_relationship(n: int) -> None:
    cfg = parse_config({"relationships": [_rel(approvals_required=n), _rel()]}, environ={})
    assert [r.approvals_required for r in cfg.relationships] == [n, 2]  # type: ignore[union-attr]


def test_a_negative_approvals_required_is_one_line_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"relationships": [_rel(approvals_required=-1)]}, "t.toml", environ={})
    assert str(err.value) == (
        "t.toml: relationships[0].approvals_required: expected 0 (no approval needed) or more, "
        "got -1"
    )


def test_approvals_required_that_is_no_number_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"relationships": [_rel(approvals_required="two")]}, "t.toml", environ={})
    assert str(err.value).startswith("t.toml: relationships[0].approvals_required: expected")


def test_a_negative_approvals_required_in_a_file_stops_the_command_with_exit_code_2(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tenantwatch.toml"
    path.write_text(
        f"[[relationships]]\nkind = \"break_glass\"\nprincipal_pattern = '{PATTERN}'\n"
        "approvals_required = -2\n"
    )
    out = CliRunner().invoke(cli, ["--config", str(path), "incident", "list", "--lake", "x"])
    assert out.exit_code == 2
    assert "relationships[0].approvals_required: expected 0" in out.stderr


# --- justification in every ticket source ---------------------------------------------------


def _config(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "tenantwatch.toml"
    path.write_text(
        f"[[relationships]]\nkind = \"break_glass\"\nprincipal_pattern = '{PATTERN}'\n{source}\n"
    )
    return path


def _resolved(path: Path) -> tuple[Ticket, ...]:
    rel = tickets.resolve(load_config(path)).relationships[0]
    assert isinstance(rel, BreakGlass)
    return rel.tickets


EXPECTED = (ticket("SUP-1"), ticket("SUP-2", justification=""))


def test_an_inline_ticket_carries_its_justification(tmp_path: Path) -> None:
    inline = (
        'tickets = [{ id = "SUP-1", tenants = ["t0031"], expires = 2026-11-17T00:00:00Z, '
        f'approvers = ["alice@example.com", "bob@example.com"], justification = "{WHY}" }}, '
        '{ id = "SUP-2", tenants = ["t0031"], expires = 2026-11-17T00:00:00Z, '
        'approvers = ["alice@example.com", "bob@example.com"] }]'
    )
    assert _resolved(_config(tmp_path, inline)) == EXPECTED


def test_csv_json_and_parquet_files_carry_the_justification(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "id,tenants,expires,approvers,justification\n"
        f'SUP-1,t0031,2026-11-17T00:00:00Z,alice@example.com;bob@example.com,"{WHY}"\n'
        "SUP-2,t0031,2026-11-17T00:00:00Z,alice@example.com;bob@example.com,\n"
    )
    assert _resolved(_config(tmp_path, 'tickets_file = "t.csv"')) == EXPECTED
    rows = [
        {"id": "SUP-1", "tenants": ["t0031"], "expires": "2026-11-17T00:00:00Z",
         "approvers": list(TWO), "justification": WHY},
        {"id": "SUP-2", "tenants": ["t0031"], "expires": "2026-11-17T00:00:00Z",
         "approvers": list(TWO), "justification": None},
    ]  # fmt: skip
    (tmp_path / "t.json").write_text(json.dumps(rows))
    assert _resolved(_config(tmp_path, 'tickets_file = "t.json"')) == EXPECTED
    table = pa.table(
        {
            "id": ["SUP-1", "SUP-2"],
            "tenants": [["t0031"], ["t0031"]],
            "expires": pa.array([EXPIRES, EXPIRES]),
            "approvers": [list(TWO), list(TWO)],
            "justification": [WHY, None],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    assert _resolved(_config(tmp_path, 'tickets_file = "t.parquet"')) == EXPECTED


def test_a_justification_that_is_not_text_names_the_row(tmp_path: Path) -> None:
    rows = [{"id": "SUP-1", "tenants": ["t0031"], "expires": "2026-11-17T00:00:00Z",
             "justification": ["a", "b"]}]  # fmt: skip
    (tmp_path / "t.json").write_text(json.dumps(rows))
    with pytest.raises(ConfigError, match=r"t\.json: row 1: justification: expected text$"):
        _resolved(_config(tmp_path, 'tickets_file = "t.json"'))


def test_a_dynamodb_ticket_carries_its_justification(aws: str, tmp_path: Path) -> None:
    import boto3

    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName="tickets",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for t in EXPECTED:
        item: dict[str, Any] = {
            "id": {"S": t.id},
            "tenants": {"SS": list(t.tenants)},
            "expires": {"S": "2026-11-17T00:00:00Z"},
            "approvers": {"L": [{"S": a} for a in t.approvers]},
        }
        if t.justification:
            item["justification"] = {"S": t.justification}
        ddb.put_item(TableName="tickets", Item=item)
    got = _resolved(_config(tmp_path, 'tickets_table = "tickets"'))
    assert sorted(got, key=lambda t: t.id) == list(EXPECTED)


# --- the detector: valid uses are recorded, every broken rule pages -----------------------------


def test_a_valid_use_is_recorded_low_as_before() -> None:
    f = only(detect([use(0), use(60)]))
    ev = evidence(f)
    assert (f["severity"], ev["kind"], f["event_count"]) == ("low", "break_glass_ticket", 2)
    assert "violations" not in ev
    assert ev["tickets"] == [
        {
            "id": "SUP-1",
            "tenants": ["t0031"],
            "expires": "2026-11-17T00:00:00+00:00",
            "approvers": list(TWO),
            "justification": WHY,
        }
    ]


@pytest.mark.parametrize(
    ("approvers", "required"),
    [
        pytest.param((), 0, id="none-needed"),
        pytest.param(("alice@example.com",), 1, id="one-of-one"),
        pytest.param(("a@x", "b@x", "c@x"), 3, id="three-of-three"),
        pytest.param(("a@x", "b@x", "c@x"), 2, id="more-than-needed"),
    ],
)
def test_enough_distinct_approvers_make_a_valid_use(
    approvers: tuple[str, ...], required: int
) -> None:
    f = only(detect([use()], ticket(approvers=approvers), approvals_required=required))
    assert (f["severity"], evidence(f)["kind"]) == ("low", "break_glass_ticket")


@pytest.mark.parametrize(
    ("approvers", "required", "distinct"),
    [
        pytest.param(("alice@example.com",), 2, 1, id="one-of-two"),
        pytest.param((), 2, 0, id="no-approvers"),
        pytest.param(("alice@example.com", "alice@example.com"), 2, 1, id="same-approver-twice"),
        pytest.param(("Alice@Example.com", " alice@example.com "), 2, 1, id="same-in-other-case"),
        pytest.param(TWO, 3, 2, id="two-of-three"),
    ],
)
def test_too_few_distinct_approvers_page_naming_the_rule(
    approvers: tuple[str, ...], required: int, distinct: int
) -> None:
    f = only(detect([use()], ticket(approvers=approvers), approvals_required=required))
    ev = evidence(f)
    assert (f["severity"], ev["kind"]) == ("high", "break_glass_no_ticket")
    assert ev["violations"] == [
        {
            "rule": "approvals",
            "ticket": "SUP-1",
            "events": 1,
            "approvers": list(approvers),
            "approvals": distinct,
            "approvals_required": required,
            "expires": "2026-11-17T00:00:00+00:00",
            "justification": WHY,
        }
    ]


def test_a_use_past_the_expiry_pages_naming_the_rule_and_the_expiry() -> None:
    late = EXPIRES - T0 + timedelta(minutes=5)
    f = only(detect([use(late)]))
    ev = evidence(f)
    assert (f["severity"], ev["kind"]) == ("high", "break_glass_no_ticket")
    (v,) = ev["violations"]
    assert (v["rule"], v["ticket"], v["expires"], v["approvers"], v["justification"]) == (
        "expired", "SUP-1", "2026-11-17T00:00:00+00:00", list(TWO), WHY,
    )  # fmt: skip


def test_a_use_at_the_very_expiry_is_past_it() -> None:
    f = only(detect([use(EXPIRES - T0)]))
    assert [v["rule"] for v in evidence(f)["violations"]] == ["expired"]


def test_a_use_on_a_tenant_not_on_the_ticket_pages_naming_the_rule() -> None:
    f = only(detect([use(target_tenant="t0042")]))
    assert f["severity"] == "high" and f["tenants"] == ["t0042"]
    (v,) = evidence(f)["violations"]
    assert (v["rule"], v["ticket"], v["events"]) == ("tenant", "SUP-1", 1)


def test_a_use_naming_no_ticket_or_an_unknown_one_pages_naming_the_rule() -> None:
    # One actor: the second use's ticket comes from its session tag (``actor_ticket``).
    found = only(detect([use(session="dana"), use(60, session="dana", actor_ticket="SUP-9")]))
    assert evidence(found)["violations"] == [
        {"rule": "no_ticket", "ticket": None, "events": 1},
        {"rule": "unknown_ticket", "ticket": "SUP-9", "events": 1},
    ]


def test_every_rule_a_use_broke_is_named_and_a_ticket_without_justification_says_none() -> None:
    t = ticket(approvers=("alice@example.com",), justification="")
    late = EXPIRES - T0 + timedelta(hours=1)
    f = only(detect([use(late, target_tenant="t0042")], t))
    ev = evidence(f)
    assert [v["rule"] for v in ev["violations"]] == ["tenant", "expired", "approvals"]
    assert all("justification" not in v for v in ev["violations"])
    assert "justification" not in ev["tickets"][0]


def test_valid_and_invalid_uses_of_one_actor_are_two_findings() -> None:
    found = detect([use(0), use(60, target_tenant="t0042")])
    assert sorted((f["severity"], evidence(f)["kind"]) for f in found) == [
        ("high", "break_glass_no_ticket"),
        ("low", "break_glass_ticket"),
    ]


def test_a_use_valid_under_one_relationship_is_valid() -> None:
    strict = BreakGlass(principal_pattern=PATTERN, tickets=(ticket(),), approvals_required=3)
    usual = BreakGlass(principal_pattern=PATTERN, tickets=(ticket(),))
    for rels in ((strict, usual), (usual, strict)):
        f = only(CrossTenantAccess(None, rels).detect(None, events([use()])).to_pylist())
        assert f["severity"] == "low"


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        pytest.param(use(target_tenant="t0042"), "break_glass_no_ticket", id="tenant"),
        pytest.param(use(EXPIRES - T0), "break_glass_no_ticket", id="expired"),
        pytest.param(use(session="dana"), "break_glass_no_ticket", id="no-ticket"),
        pytest.param(use(), "break_glass_ticket", id="valid"),
    ],
)
def test_finding_ids_are_those_of_the_kind_actor_and_window(row: dict[str, Any], kind: str) -> None:
    f = only(detect([row]))
    key = f"{kind}|{row['actor_principal']}|-"
    assert f["dedup_key"] == f"cross_tenant_access:{key}"
    assert f["finding_id"] == finding_id(
        "cross_tenant_access", key, f["window_start"], f["window_end"]
    )
