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


# --- the configuration ---------------------------------------------------------------------------


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


# --- justification in every ticket source --------------------------------------------------------


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


# --- the detector: valid uses are recorded, every broken rule pages ------------------------------


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


# --- tenantwatch breakglass report ---------------------------------------------------------------

NEXT_DAY = EXPIRES + timedelta(minutes=30)  # 2026-11-17 00:30, past SUP-1's expiry
PIPE = "restore | re-import"


def _report_lake(root: Path) -> str:
    """A lake holding, on 2026-11-16, dana's valid reads of t0031 under SUP-1 and one of t0042
    (not on the ticket), lee's read of t0031 under SUP-2 (one approver), erik's read of t0042
    with no ticket, kim's under SUP-9 (no ticket source has it) and an ordinary user's read of
    its own t0031; on 2026-11-17, dana's read of t0031 after SUP-1 expired."""
    from pipeline.lake import Lake, event_partition

    lake = Lake(str(root))
    day1 = [
        use(0, action="GetObject"),
        use(120, action="ListObjectsV2"),
        use(60, action="GetObject"),
        use(300, target_tenant="t0042"),
        use(400, session="SUP-2.lee"),
        use(500, session="erik", target_tenant="t0042"),
        use(550, session="SUP-9.kim", target_tenant="t0042"),
        event(600, target_tenant="t0031", actor_tenant="t0031"),
    ]
    day2 = [use(NEXT_DAY - T0, action="DeleteObject")]
    lake.write_table(f"{event_partition('cloudtrail', '2026-11-16', '10')}/a.parquet", events(day1))
    lake.write_table(
        f"{event_partition('cloudtrail', '2026-11-17', '00')}/b.parquet", events(day2, "ev2")
    )
    return lake.root


def _report_config(tmp_path: Path) -> Path:
    path = tmp_path / "tenantwatch.toml"
    path.write_text(
        f"[[relationships]]\nkind = \"break_glass\"\nprincipal_pattern = '{PATTERN}'\n"
        'tickets = [{ id = "SUP-1", tenants = ["t0031"], expires = 2026-11-17T00:00:00Z, '
        f'approvers = ["alice@example.com", "bob@example.com"], justification = "{PIPE}" }}, '
        '{ id = "SUP-2", tenants = ["t0031"], expires = 2026-11-17T00:00:00Z, '
        'approvers = ["alice@example.com"] }]\n'
    )
    return path


@pytest.fixture
def report_args(tmp_path: Path) -> list[str]:
    return ["--config", str(_report_config(tmp_path)), "breakglass", "report",
            "--lake", _report_lake(tmp_path / "lake")]  # fmt: skip


def _report(args: list[str], *more: str) -> Any:
    out = CliRunner().invoke(cli, [*args, *more])
    assert out.exit_code == 0, out.output
    return out


def _json(args: list[str], *more: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_report(args, "--format", "json", *more).stdout)
    return doc


def test_the_report_lists_every_use_per_tenant_with_its_ticket_and_verdict(
    report_args: list[str],
) -> None:
    doc = _json(report_args, "--since", "2026-11-16", "--until", "2026-11-18")
    assert (doc["uses"], doc["invalid"]) == (6, 5)
    got = {
        t["tenant"]: [(u["actor"].rsplit("/", 1)[1], u["ticket"], u["events"], u["broken"])
                      for u in t["uses"]]
        for t in doc["tenants"]
    }  # fmt: skip
    assert got == {
        "t0031": [
            ("SUP-1.dana", "SUP-1", 3, []),
            ("SUP-2.lee", "SUP-2", 1, ["approvals"]),
            ("SUP-1.dana", "SUP-1", 1, ["expired"]),
        ],
        "t0042": [
            ("SUP-1.dana", "SUP-1", 1, ["tenant"]),
            ("erik", None, 1, ["no_ticket"]),
            ("SUP-9.kim", "SUP-9", 1, ["unknown_ticket"]),
        ],
    }
    valid = doc["tenants"][0]["uses"][0]
    assert valid == {
        "tenant": "t0031",
        "actor": role("support-break-glass", "SUP-1.dana"),
        "first": "2026-11-16T10:00:00+00:00",
        "last": "2026-11-16T10:02:00+00:00",
        "events": 3,
        "actions": {"GetObject": 2, "ListObjectsV2": 1},
        "outcomes": {"success": 3},
        "ticket": "SUP-1",
        "ticket_known": True,
        "approvers": list(TWO),
        "approvals": 2,
        "approvals_required": 2,
        "expires": "2026-11-17T00:00:00+00:00",
        "justification": PIPE,
        "valid": True,
        "broken": [],
    }
    lee = doc["tenants"][0]["uses"][1]
    assert (lee["approvals"], lee["approvals_required"], lee["valid"]) == (1, 2, False)


def test_the_span_bounds_the_report(report_args: list[str]) -> None:
    doc = _json(report_args, "--since", "2026-11-17T00:00:00Z", "--until", "2026-11-18")
    ((tenant, uses),) = [(t["tenant"], t["uses"]) for t in doc["tenants"]]
    assert (tenant, [u["broken"] for u in uses]) == ("t0031", [["expired"]])
    doc = _json(report_args, "--since", "2026-11-16T10:01:00Z", "--until", "2026-11-16T10:06")
    assert [u["events"] for t in doc["tenants"] for u in t["uses"]] == [2, 1]  # 10:01, 10:02; 10:05


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_a_tenants_report_shows_only_its_own_uses(report_args: list[str], fmt: str) -> None:
    out = _report(report_args, "--since", "2026-11-16", "--until", "2026-11-18",
                  "--tenant", "t0042", "--format", fmt).stdout  # fmt: skip
    assert "t0042" in out and "erik" in out
    assert "t0031" not in out and "SUP-2" not in out and "lee" not in out
    mine = _report(report_args, "--since", "2026-11-16", "--until", "2026-11-18",
                   "--tenant", "t0031", "--format", fmt).stdout  # fmt: skip
    assert "t0042" not in mine and "erik" not in mine and "lee" in mine


def test_a_tenant_with_no_use_gets_an_empty_report(report_args: list[str]) -> None:
    doc = _json(report_args, "--since", "2026-11-16", "--tenant", "t0099")
    assert (doc["tenant"], doc["uses"], doc["tenants"]) == ("t0099", 0, [])
    out = _report(report_args, "--since", "2026-11-16", "--tenant", "t0099").stdout
    assert out.startswith("no break-glass use of t0099 from 2026-11-16 00:00Z")


def test_the_markdown_report_is_a_table_a_value_cannot_break(report_args: list[str]) -> None:
    out = _report(report_args, "--since", "2026-11-16", "--until", "2026-11-18",
                  "--tenant", "t0031", "--format", "markdown").stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "# Break-glass access to t0031"
    assert "3 uses of the break-glass role, 2 of them invalid." in lines[2]
    rows = [line for line in lines if line.startswith("| ")]
    assert rows[0].startswith("| Who | First | Last |")
    assert len(rows) == 4  # the header and three uses
    assert all(r.replace("\\|", "").count("|") == 10 for r in rows)  # nine columns each
    assert "restore \\| re-import" in rows[1] and rows[1].endswith("| valid |")
    assert rows[2].endswith("| invalid: 1 of 2 distinct approvals |")
    assert rows[3].endswith("| invalid: after the ticket expired |")


def test_the_table_report_says_which_rule_each_use_broke(report_args: list[str]) -> None:
    out = _report(report_args, "--since", "2026-11-16", "--until", "2026-11-18").stdout
    assert "break-glass use of t0031" in out and "break-glass use of t0042" in out
    for said in (
        "tenant not on the ticket",
        "no ticket named",
        "after the ticket expired",
        "ticket unknown to every ticket source",
        "SUP-9 (unknown)",
    ):
        assert said in out


def test_an_empty_span_is_a_usage_error(report_args: list[str]) -> None:
    out = CliRunner().invoke(cli, [*report_args, "--since", "2026-11-17", "--until", "2026-11-16"])
    assert out.exit_code == 2 and "empty span" in out.stderr
